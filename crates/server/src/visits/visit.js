// Caravan video visits: the pre-call check, the guest's waiting room and the call itself (WebRTC, a mesh of up
// to four browsers). Served by the node (CSP script-src 'self'); every text comes from the page's data-t-*
// attributes, which the node renders from its Fluent messages. No media ever goes to the node: it relays only
// the signaling messages of the participants of one visit.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const text = (root, key) => (root && root.dataset[key]) || '';

  async function getJson(url) {
    const r = await fetch(url, { credentials: 'same-origin', headers: { accept: 'application/json' } });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.message || ('HTTP ' + r.status));
    return body;
  }

  function mark(id, state, label) {
    const el = $(id);
    if (!el) return;
    el.dataset.state = state;
    el.textContent = label;
  }

  const isTurn = (s) => [].concat(s.urls).some((u) => String(u).startsWith('turn'));

  // ---------- pre-call check: camera, microphone, and an ICE gathering test against the TURN relay ----------

  async function relayCheck(iceUrl, timeoutMs) {
    const ice = await getJson(iceUrl);
    const turn = ice.iceServers.filter(isTurn);
    if (!turn.length) return { state: 'none' };
    const pc = new RTCPeerConnection({ iceServers: turn, iceTransportPolicy: 'relay' });
    const errors = [];
    pc.addEventListener('icecandidateerror', (e) => errors.push(e.errorCode + ' ' + (e.errorText || '')));
    const found = new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      pc.addEventListener('icecandidate', (e) => {
        if (e.candidate && / typ relay /.test(e.candidate.candidate)) { clearTimeout(timer); resolve(true); }
        if (!e.candidate) { clearTimeout(timer); resolve(false); }
      });
    });
    pc.createDataChannel('probe');
    await pc.setLocalDescription(await pc.createOffer());
    const ok = await found;
    pc.close();
    return { state: ok ? 'ok' : 'failed', errors };
  }

  async function precheck(root) {
    const run = async () => {
      mark('check-camera', 'pending', text(root, 'tRunning'));
      mark('check-mic', 'pending', text(root, 'tRunning'));
      mark('check-relay', 'pending', text(root, 'tRunning'));
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
        $('precheck-video').srcObject = stream;
        mark('check-camera', stream.getVideoTracks().length ? 'ok' : 'failed',
          stream.getVideoTracks().length ? text(root, 'tOk') : text(root, 'tFailed'));
        mark('check-mic', stream.getAudioTracks().length ? 'ok' : 'failed',
          stream.getAudioTracks().length ? text(root, 'tOk') : text(root, 'tFailed'));
        if (stream.getAudioTracks().length && window.AudioContext) {
          const ctx = new AudioContext();
          const analyser = ctx.createAnalyser();
          ctx.createMediaStreamSource(stream).connect(analyser);
          const buf = new Uint8Array(analyser.fftSize);
          setInterval(() => {
            analyser.getByteTimeDomainData(buf);
            let peak = 0;
            for (const v of buf) peak = Math.max(peak, Math.abs(v - 128) / 128);
            $('mic-level').value = peak;
          }, 150);
        }
      } catch (e) {
        mark('check-camera', 'failed', text(root, 'tFailed') + ' (' + e.name + ')');
        mark('check-mic', 'failed', text(root, 'tFailed') + ' (' + e.name + ')');
      }
      try {
        const r = await relayCheck(root.dataset.ice, 8000);
        const label = { ok: 'tRelayOk', failed: 'tRelayFailed', none: 'tRelayNone' }[r.state];
        mark('check-relay', r.state, text(root, label) + (r.errors && r.errors.length ? ' (' + r.errors[0] + ')' : ''));
      } catch (e) {
        mark('check-relay', 'failed', text(root, 'tRelayFailed') + ' (' + e.message + ')');
      }
    };
    $('precheck-run').addEventListener('click', run);
    run();
  }

  // ---------- the guest's waiting room: place in the queue, then into the call ----------

  function waiting(root) {
    const status = $('guest-status');
    const poll = async () => {
      try {
        const s = await getJson(root.dataset.stateUrl);
        status.dataset.status = s.status;
        if (s.status === 'in-progress') {
          status.textContent = text(root, 'tAdmitted');
          $('guest-join').hidden = false;
          location.assign(root.dataset.callUrl);
          return;
        }
        if (s.status === 'finished' || s.status === 'cancelled') {
          status.textContent = text(root, 'tOver');
          return;
        }
        if (s.status === 'arrived' && s.place) {
          status.textContent = text(root, 'tPlace').replace('{place}', s.place).replace('{waiting}', s.waiting);
        }
        setTimeout(poll, 2000);
      } catch (e) {
        status.textContent = e.message;
        setTimeout(poll, 5000);
      }
    };
    if (status.dataset.status === 'arrived' || status.dataset.status === 'booked') setTimeout(poll, 1000);
  }

  // ---------- the call ----------

  async function call(root) {
    const statusEl = $('call-status');
    const modeEl = $('call-mode');
    const errorEl = $('call-error');
    const say = (key) => { statusEl.textContent = text(root, key); statusEl.dataset.state = key; };
    const fail = (msg) => { errorEl.textContent = msg; };

    let ice;
    try {
      ice = await getJson(root.dataset.ice);
    } catch (e) {
      fail(text(root, 'tFailed') + ' (' + e.message + ')');
      return;
    }
    const rtcConfig = { iceServers: ice.iceServers, iceTransportPolicy: ice.iceTransportPolicy };
    // The TURN credential minted when the page loaded expires after the node's --turn-ttl; a peer that joins
    // (or comes back) later gets its connection built with a fresh one.
    async function freshIce() {
      if (!ice.expires || Date.now() / 1000 < ice.expires - Math.min(30, (ice.ttl || 0) / 2)) return;
      try {
        ice = await getJson(root.dataset.ice);
        rtcConfig.iceServers = ice.iceServers;
      } catch (e) {
        // Keep the old one: if the relay refuses it, the call says so.
      }
    }
    let local;
    try {
      local = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: { ideal: 640 }, height: { ideal: 480 } } });
    } catch (e) {
      try {
        local = await navigator.mediaDevices.getUserMedia({ audio: true });
      } catch (e2) {
        fail(text(root, 'tMedia') + ' (' + e2.name + ')');
        local = new MediaStream();
      }
    }
    $('local').srcObject = local;
    const camTrack = local.getVideoTracks()[0] || null;
    const micTrack = local.getAudioTracks()[0] || null;
    let screenTrack = null;

    const peers = new Map();
    const names = new Map();
    const rule = ice.audioOnly;
    const TRIAL_S = 10; // the first trial of video after an automatic switch to audio-only, in seconds
    const state = {
      audioOnly: false, auto: false, samples: [], highSince: null, hold: rule.seconds, trialAfter: TRIAL_S,
      recoveredAt: 0, judgeFrom: null, switches: [], kbps: null, availableKbps: null, videoTargetKbps: null,
      connectedAt: null,
    };
    // For troubleshooting and the browser tests: the connections and the audio-only state, read-only in spirit.
    window.caravanCall = { peers, state, config: rtcConfig, setAudioOnly: (on) => setAudioOnly(on, false) };

    const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + root.dataset.ws);
    const send = (o) => { if (ws.readyState === 1) ws.send(JSON.stringify(o)); };

    const currentVideo = () => (state.audioOnly ? null : (screenTrack || camTrack));

    function overall() {
      const states = [...peers.values()].map((p) => p.pc.connectionState);
      if (states.includes('connected')) {
        say('tConnected');
        if (!state.connectedAt) state.connectedAt = Date.now();
      } else if (!states.length) say('tAlone');
      else if (states.every((s) => s === 'failed')) {
        say('tFailed');
        fail(text(root, 'tFailed'));
      } else say('tConnecting');
    }

    function newPeer(id, polite) {
      const pc = new RTCPeerConnection(rtcConfig);
      const p = { id, pc, polite, makingOffer: false, ignoreOffer: false, stream: new MediaStream(), iceErrors: [] };
      peers.set(id, p);
      if (micTrack) pc.addTrack(micTrack, local); else pc.addTransceiver('audio', { direction: 'recvonly' });
      if (camTrack) {
        p.videoSender = pc.addTrack(camTrack, local);
        if (currentVideo() !== camTrack) p.videoSender.replaceTrack(currentVideo());
      } else {
        p.videoSender = pc.addTransceiver('video', { direction: 'sendrecv' }).sender;
      }
      const fig = document.createElement('figure');
      const video = document.createElement('video');
      video.autoplay = true; video.playsInline = true; video.srcObject = p.stream;
      const cap = document.createElement('figcaption');
      cap.textContent = names.get(id) || '';
      fig.append(video, cap);
      fig.dataset.peer = id;
      $('videos').append(fig);
      p.fig = fig; p.caption = cap;
      pc.ontrack = ({ track }) => { p.stream.addTrack(track); };
      pc.onicecandidate = ({ candidate }) => { if (candidate) send({ type: 'signal', to: id, data: { candidate } }); };
      pc.onicecandidateerror = (e) => {
        p.iceErrors.push(e.errorCode);
        // Relay only: a refused credential (wrong secret, expired) means no media at all; say so at once.
        if (e.errorCode === 401 && rtcConfig.iceTransportPolicy === 'relay') fail(text(root, 'tFailed') + ' (TURN 401)');
      };
      pc.onconnectionstatechange = () => {
        fig.dataset.state = pc.connectionState;
        if (pc.connectionState === 'failed' && p.iceErrors.includes(401)) fail(text(root, 'tFailed') + ' (TURN 401)');
        overall();
      };
      pc.onnegotiationneeded = async () => {
        try {
          p.makingOffer = true;
          await pc.setLocalDescription();
          send({ type: 'signal', to: id, data: { description: pc.localDescription } });
        } catch (e) {
          fail(e.message);
        } finally {
          p.makingOffer = false;
        }
      };
      overall();
      return p;
    }

    function dropPeer(id) {
      const p = peers.get(id);
      if (!p) return;
      p.pc.close();
      p.fig.remove();
      peers.delete(id);
      overall();
    }

    async function onSignal(from, data) {
      const p = peers.get(from) || newPeer(from, true);
      const pc = p.pc;
      if (data.description) {
        const collision = data.description.type === 'offer' && (p.makingOffer || pc.signalingState !== 'stable');
        p.ignoreOffer = !p.polite && collision;
        if (p.ignoreOffer) return;
        await pc.setRemoteDescription(data.description);
        if (data.description.type === 'offer') {
          await pc.setLocalDescription();
          send({ type: 'signal', to: from, data: { description: pc.localDescription } });
        }
      } else if (data.candidate) {
        try {
          await pc.addIceCandidate(data.candidate);
        } catch (e) {
          if (!p.ignoreOffer) throw e;
        }
      }
    }

    // Messages are handled one after the other: a candidate must not overtake the offer it belongs to.
    let inbox = Promise.resolve();
    ws.onmessage = (ev) => { inbox = inbox.then(() => handle(ev)); };
    const handle = async (ev) => {
      const m = JSON.parse(ev.data);
      try {
        if (m.type === 'welcome') {
          for (const peer of m.peers) { names.set(peer.id, peer.name); newPeer(peer.id, false); }
          overall();
        } else if (m.type === 'peer-joined') {
          names.set(m.peer.id, m.peer.name);
        } else if (m.type === 'peer-left') {
          dropPeer(m.id);
        } else if (m.type === 'signal') {
          if (!peers.has(m.from)) await freshIce();
          await onSignal(m.from, m.data);
          const p = peers.get(m.from);
          if (p && names.has(m.from)) p.caption.textContent = names.get(m.from);
        } else if (m.type === 'mode') {
          const p = peers.get(m.from);
          if (p) p.caption.textContent = (names.get(m.from) || '') + (m.audioOnly ? ' · ' + text(root, 'tPeerAudio') : '');
        } else if (m.type === 'ended') {
          say('tEnded');
          hangUp();
        } else if (m.type === 'error') {
          fail(m.message);
        }
      } catch (e) {
        fail(e.message);
      }
    };
    ws.onclose = () => { if (statusEl.dataset.state !== 'tEnded' && !peers.size) say('tAlone'); };
    ws.onerror = () => fail(text(root, 'tFailed'));

    function hangUp() {
      for (const id of [...peers.keys()]) dropPeer(id);
      for (const t of local.getTracks()) t.stop();
      if (screenTrack) screenTrack.stop();
      try { ws.close(); } catch (e) { /* already closed */ }
    }

    // ----- audio-only: manual, and automatic when the uplink cannot carry video -----

    function showMode() {
      const key = !state.audioOnly ? 'tVideo' : (state.auto ? 'tAudioAuto' : 'tAudioManual');
      modeEl.textContent = text(root, key);
      modeEl.dataset.mode = state.audioOnly ? (state.auto ? 'audio-only-auto' : 'audio-only') : 'video';
      $('btn-audio-only').setAttribute('aria-pressed', String(state.audioOnly && !state.auto));
      $('me').hidden = state.audioOnly;
    }

    function setAudioOnly(on, auto) {
      state.audioOnly = on;
      state.auto = on && auto;
      state.samples = [];
      state.highSince = null;
      if (!on) state.judgeFrom = Date.now() + 1000;
      state.switches.push({ at: Date.now(), audioOnly: on, auto, kbps: state.kbps, availableKbps: state.availableKbps, videoTargetKbps: state.videoTargetKbps });
      for (const p of peers.values()) p.videoSender.replaceTrack(currentVideo());
      send({ type: 'mode', audioOnly: on });
      showMode();
    }

    // Per tick, of the worst connected peer: what was sent (kbit/s, from bytesSent), the uplink the congestion
    // controller estimates (availableOutgoingBitrate of the selected candidate pair) and the bitrate it gives the
    // video encoder (targetBitrate; it also reflects a sender's maxBitrate). Browsers without the last two
    // (Firefox has neither) are judged on what they sent.
    const lastBytes = new Map();
    async function measure() {
      let sent = null;
      let available = null;
      let target = null;
      const now = performance.now();
      const min = (a, b) => (a == null ? b : Math.min(a, b));
      for (const p of peers.values()) {
        if (p.pc.connectionState !== 'connected') continue;
        const stats = await p.pc.getStats();
        let bytes = 0;
        let pairId = null;
        stats.forEach((r) => {
          if (r.type === 'outbound-rtp') bytes += r.bytesSent || 0;
          if (r.type === 'outbound-rtp' && r.kind === 'video' && r.targetBitrate) target = min(target, r.targetBitrate / 1000);
          if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
        });
        stats.forEach((r) => {
          const selected = pairId ? r.id === pairId : (r.nominated && r.state === 'succeeded');
          if (r.type === 'candidate-pair' && selected && r.availableOutgoingBitrate) {
            available = min(available, r.availableOutgoingBitrate / 1000);
          }
        });
        const prev = lastBytes.get(p.id);
        lastBytes.set(p.id, { bytes, at: now });
        if (prev && now > prev.at) sent = min(sent, ((bytes - prev.bytes) * 8) / (now - prev.at));
      }
      state.kbps = sent;
      state.availableKbps = available;
      state.videoTargetKbps = target;
      return { sent, available, target };
    }

    // The rule: video stops when, over the last `seconds`, the bitrate video can have (the lower of the uplink
    // estimate and the encoder's target) averages below `lowKbps`. It comes back when the estimate has stayed at
    // `recoverKbps` or more for `hold` seconds, or, since an audio-only sender hardly probes the link and its
    // estimate then stays where it was, on trial after `trialAfter` seconds: video resumes and the same rule
    // judges it again. A relapse within 30 s doubles both waits (up to a minute): no flapping.
    // Judging starts a second after connecting or resuming video: the estimate is the browser's start value
    // until its first probe. Sampled twice a second.
    const TICK_MS = 500;
    function toVideo(now) {
      state.recoveredAt = now;
      setAudioOnly(false, true);
    }
    async function tick() {
      const { sent, available, target } = await measure();
      const now = Date.now();
      if (!state.connectedAt) return;
      if (state.judgeFrom == null) state.judgeFrom = state.connectedAt + 1000;
      if (!state.audioOnly) {
        if (now < state.judgeFrom || !currentVideo()) return;
        const value = available == null && target == null ? sent : Math.min(available == null ? Infinity : available, target == null ? Infinity : target);
        if (value == null) return;
        state.samples.push({ at: now, value });
        while (state.samples.length && state.samples[0].at < now - rule.seconds * 1000) state.samples.shift();
        const span = now - state.samples[0].at;
        const mean = state.samples.reduce((a, x) => a + x.value, 0) / state.samples.length;
        if (span >= rule.seconds * 1000 - TICK_MS && mean < rule.lowKbps) {
          const relapse = now - state.recoveredAt < 30000;
          state.hold = relapse ? Math.min(state.hold * 2, 60) : rule.seconds;
          state.trialAfter = relapse ? Math.min(state.trialAfter * 2, 60) : TRIAL_S;
          setAudioOnly(true, true);
        }
      } else if (state.auto) {
        const since = state.switches[state.switches.length - 1].at;
        if (available != null && available >= rule.recoverKbps) {
          state.highSince = state.highSince || now;
          if (now - state.highSince >= state.hold * 1000) toVideo(now);
        } else state.highSince = null;
        if (state.audioOnly && now - since >= state.trialAfter * 1000) toVideo(now);
      }
    }
    setInterval(() => { tick().catch(() => {}); }, TICK_MS);

    // ----- controls -----

    $('btn-mute').addEventListener('click', (e) => {
      if (!micTrack) return;
      micTrack.enabled = !micTrack.enabled;
      e.currentTarget.setAttribute('aria-pressed', String(!micTrack.enabled));
    });
    $('btn-camera').addEventListener('click', (e) => {
      if (!camTrack) return;
      camTrack.enabled = !camTrack.enabled;
      e.currentTarget.setAttribute('aria-pressed', String(!camTrack.enabled));
    });
    $('btn-audio-only').addEventListener('click', () => setAudioOnly(!(state.audioOnly && !state.auto), false));
    $('btn-share').addEventListener('click', async (e) => {
      const button = e.currentTarget;
      if (screenTrack) {
        screenTrack.stop();
        screenTrack = null;
      } else {
        try {
          const s = await navigator.mediaDevices.getDisplayMedia({ video: true });
          screenTrack = s.getVideoTracks()[0];
          screenTrack.addEventListener('ended', () => {
            screenTrack = null;
            button.setAttribute('aria-pressed', 'false');
            for (const p of peers.values()) p.videoSender.replaceTrack(currentVideo());
          });
        } catch (err) {
          fail(err.message);
          return;
        }
      }
      button.setAttribute('aria-pressed', String(!!screenTrack));
      for (const p of peers.values()) p.videoSender.replaceTrack(currentVideo());
    });
    $('btn-leave').addEventListener('click', () => hangUp());
    window.addEventListener('pagehide', () => hangUp());
    showMode();
    say('tConnecting');
  }

  const pre = $('precheck');
  if (pre) precheck(pre);
  const guest = $('guest');
  if (guest) waiting(guest);
  const room = $('call');
  if (room) call(room);
})();
