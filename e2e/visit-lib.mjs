// Shared by the video-visit browser test (visits.mjs) and benchmark (visits-bench.mjs): start nodes and a private
// coturn, launch Debian's Chromium with a fake camera and microphone, book a visit and walk the patient through
// the pre-call check and the waiting room into the call, read WebRTC statistics, and (as root) a network namespace
// behind a rate-limited veth pair.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const PASSWORD = 'caravan-demo-2026';
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const TURNSERVER = process.env.TURNSERVER || '/usr/bin/turnserver';

const children = [];
const dirs = [];
const cleanups = [];
export function onExit(f) { cleanups.push(f); }
process.on('exit', () => {
  for (const c of children) try { c.kill('SIGKILL'); } catch { /* gone */ }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  for (const f of cleanups.reverse()) try { f(); } catch { /* best effort */ }
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

export function tempDir(prefix) {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

export function freePort(host = '127.0.0.1') {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, host, () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/// Resolves with the match once the child's output matches `re`; the child's whole output stays in `out.text`.
function waitForLine(child, re, what, out = { text: '' }) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start:\n${out.text}`)), 20000);
    let done = false;
    const on = (d) => {
      out.text += d;
      const m = !done && out.text.match(re);
      if (m) { done = true; clearTimeout(timer); resolve(m); }
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.on('exit', (code) => { if (!done) reject(new Error(`${what} exited ${code}:\n${out.text}`)); });
  });
}

/// A private coturn with TURN REST credentials (`use-auth-secret`), listening and relaying on `ip`.
export async function startCoturn(secret, { ip = '127.0.0.1' } = {}) {
  const port = await freePort(ip);
  const minPort = 40000 + Math.floor(Math.random() * 20000);
  const dir = tempDir('caravan-coturn-');
  const c = spawn(TURNSERVER, ['-n', `--listening-ip=${ip}`, `--relay-ip=${ip}`, `--listening-port=${port}`,
    '--use-auth-secret', `--static-auth-secret=${secret}`, '--realm=caravan.test', '--no-cli', '--no-tls', '--no-dtls',
    '--allow-loopback-peers', `--min-port=${minPort}`, `--max-port=${minPort + 200}`, '--log-file=stdout', '--simple-log',
    '--no-multicast-peers', `--userdb=${join(dir, 'turndb')}`, `--pidfile=${join(dir, 'turn.pid')}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(c);
  const out = { text: '' };
  await waitForLine(c, /listener opened on|Total General servers|IPv4. TCP listener/, 'coturn', out);
  return { port, child: c, url: `turn:${ip}:${port}?transport=udp`, log: () => out.text };
}

/// A TURN REST API credential as the node mints it: username `<expiry>:<user>`, HMAC-SHA1 of it under the secret.
export function turnCredential(secret, user, expiresUnix) {
  const username = `${expiresUnix}:${user}`;
  return { username, credential: createHmac('sha1', secret).update(username).digest('base64') };
}

/// A demo node with the given extra flags; resolves with its base URL.
export async function startNode(bin, flags, { listen = '127.0.0.1:0', audioOnlyAfterSeconds = 2 } = {}) {
  const data = tempDir('caravan-visits-');
  const args = ['demo', '--listen', listen, '--data', data];
  if (audioOnlyAfterSeconds) args.push('--audio-only-after-seconds', String(audioOnlyAfterSeconds));
  const c = spawn(bin, [...args, ...flags], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
  children.push(c);
  const m = await waitForLine(c, /Caravan node listening on (http:\/\/[^/\s]+)\//, 'node');
  return m[1];
}

/// Debian's Chromium, headless, with a fake camera, microphone and screen, permission prompts accepted.
/// `netns` runs it inside that network namespace; `secureOrigins` are plain-http origins to treat as secure
/// (getUserMedia needs a secure context; only loopback is one by default).
export async function launchBrowser({ netns, secureOrigins = [] } = {}) {
  let executablePath = CHROMIUM;
  if (netns) {
    const dir = tempDir('caravan-chromium-');
    executablePath = join(dir, 'chromium-in-netns');
    writeFileSync(executablePath, `#!/bin/sh\nexec ip netns exec ${netns} ${CHROMIUM} "$@"\n`);
    chmodSync(executablePath, 0o755);
  }
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream'];
  if (secureOrigins.length) args.push(`--unsafely-treat-insecure-origin-as-secure=${secureOrigins.join(',')}`);
  return chromium.launch({ executablePath, args });
}

/// The clinician: signed in, books a visit for a demo patient and invites them; returns the invitation link.
/// `slot` (0, 1, ...) books the n-th 25-minute slot from a minute from now, so repeated visits do not overlap.
export async function clinician(browser, base, { slot = 0 } = {}) {
  const context = await browser.newContext({ locale: 'en-US' });
  const login = await context.request.post(`${base}/api/v1/session`, { data: { username: 'dr.aliyev', password: PASSWORD } });
  assert.equal(login.status(), 200);
  const csrf = (await login.json()).csrf_token;
  const post = async (path, data) => {
    const r = await context.request.post(`${base}${path}`, { data, headers: { 'x-csrf-token': csrf } });
    const body = await r.json();
    assert.ok(r.ok(), `${path}: ${r.status()} ${JSON.stringify(body)}`);
    return body;
  };
  await context.request.post(`${base}/ui/lang`, { form: { lang: 'en', csrf, next: '/ui/visits' } });
  const schedule = await post('/api/v1/visits/schedules', { service: 'cardiology follow-up' });
  const slots = await post(`/api/v1/visits/schedules/${schedule.id}/slots`,
    { start: new Date(Date.now() + 60000 + slot * 25 * 60000).toISOString(), minutes: 20, count: 1 });
  const patients = await (await context.request.get(`${base}/api/v1/patients`)).json();
  const patient = patients.find((p) => p.family_name === 'Abenova');
  const visit = await post('/api/v1/visits', { patient_id: patient.id, slot_id: slots[0].id, reason: 'ECG follow-up' });
  const inv = await post(`/api/v1/visits/${visit.visit.id}/invitations`, { role: 'patient', display_name: 'Aigerim' });
  const page = await context.newPage();
  const finish = () => post(`/api/v1/visits/${visit.visit.id}/finish`, {});
  return { context, page, link: `${base}${inv.link}`, visitId: visit.visit.id, finish };
}

/// The patient on a phone (small viewport, touch) opening the invitation link; records requests to other origins.
export async function patient(browser, link, { route } = {}) {
  const context = await browser.newContext({ locale: 'en-US', viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  if (route) await route(context);
  const page = await context.newPage();
  const foreign = [];
  page.on('request', (r) => { if (!r.url().startsWith(new URL(link).origin)) foreign.push(r.url()); });
  await page.goto(link);
  assert.match(page.url(), /\/visit\/guest$/);
  return { context, page, foreign };
}

export const connected = (page, timeout = 20000) => page.waitForFunction(
  () => window.caravanCall && [...window.caravanCall.peers.values()].some((p) => p.pc.connectionState === 'connected'),
  null, { timeout, polling: 50 });

/// Sum of one field of the inbound RTP streams of one kind ('audio', 'video') of all the page's connections.
export async function inboundRtp(page, kind, field) {
  return page.evaluate(async ([kind, field]) => {
    let n = 0;
    for (const p of window.caravanCall.peers.values()) {
      (await p.pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === kind) n += r[field] || 0; });
    }
    return n;
  }, [kind, field]);
}
export const inboundVideo = (page, field) => inboundRtp(page, 'video', field);
export const inboundVideoBytes = (page) => inboundRtp(page, 'video', 'bytesReceived');
export const inboundAudioBytes = (page) => inboundRtp(page, 'audio', 'bytesReceived');

/// Waits for the page's automatic switch to audio-only; returns how long after its first `connected` it came
/// and the switch as visit.js recorded it.
export async function autoAudioOnly(page, timeout = 30000) {
  await page.waitForSelector('#call-mode[data-mode="audio-only-auto"]', { timeout });
  return page.evaluate(() => {
    const st = window.caravanCall.state;
    const sw = st.switches.find((x) => x.audioOnly && x.auto);
    return { ms: sw.at - st.connectedAt, switch: sw };
  });
}

/// Bytes of video the page sent over `ms` while audio-only (by hand or automatically). A window in which the
/// mode changed (a trial of video, a recovery) does not count: it waits for audio-only again, up to 3 times.
export async function videoSentWhileAudioOnly(page, ms = 1000) {
  for (let attempt = 0; attempt < 3; attempt++) {
    await page.waitForSelector('#call-mode[data-mode^="audio-only"]', { timeout: 30000 });
    const r = await page.evaluate(async (ms) => {
      const bytes = async () => {
        let b = 0;
        for (const p of window.caravanCall.peers.values()) (await p.pc.getStats()).forEach((x) => { if (x.type === 'outbound-rtp' && x.kind === 'video') b += x.bytesSent; });
        return b;
      };
      const n = window.caravanCall.state.switches.length;
      const b0 = await bytes();
      await new Promise((resolve) => setTimeout(resolve, ms));
      const b1 = await bytes();
      return { sent: b1 - b0, whole: window.caravanCall.state.switches.length === n && window.caravanCall.state.audioOnly };
    }, ms);
    if (r.whole) return r.sent;
  }
  throw new Error('audio-only never lasted a whole window');
}

/// Frame size of the first inbound video stream (what the other side sends: camera or screen).
export async function inboundVideoSize(page) {
  return page.evaluate(async () => {
    for (const p of window.caravanCall.peers.values()) {
      let size = null;
      (await p.pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video' && r.frameWidth) {
          size = { width: r.frameWidth, height: r.frameHeight, framesDecoded: r.framesDecoded };
        }
      });
      if (size) return size;
    }
    return null;
  });
}

export async function selectedCandidateTypes(page) {
  return page.evaluate(async () => {
    const types = [];
    for (const p of window.caravanCall.peers.values()) {
      const stats = await p.pc.getStats();
      // The transport's selected pair (a pair is marked nominated only a moment later).
      let selected = null;
      stats.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) selected = r.selectedCandidatePairId; });
      stats.forEach((r) => {
        if (r.type === 'candidate-pair' && (selected ? r.id === selected : (r.nominated && r.state === 'succeeded'))) {
          types.push(stats.get(r.localCandidateId).candidateType, stats.get(r.remoteCandidateId).candidateType);
        }
      });
    }
    return types;
  });
}

/// Resolves with the wall-clock time (ms since the epoch, the page's clock) at which the call page first had a
/// `connected` peer connection that had decoded at least one inbound video frame (getStats polled every 20 ms),
/// and the time its document started loading (performance.timeOrigin).
export async function callReady(page, timeout = 20000) {
  return page.evaluate(async (timeout) => {
    const start = performance.timeOrigin;
    const until = Date.now() + timeout;
    for (;;) {
      const call = window.caravanCall;
      if (call) {
        for (const p of call.peers.values()) {
          if (p.pc.connectionState !== 'connected') continue;
          let frames = 0;
          (await p.pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') frames += r.framesDecoded || 0; });
          if (frames > 0) return { start, connectedAt: call.state.connectedAt, ready: Date.now() };
        }
      }
      if (Date.now() > until) throw new Error('no connected call with inbound video');
      await new Promise((r) => setTimeout(r, 20));
    }
  }, timeout);
}

/// Book, invite, pre-check, wait, admit, connect. Returns both sides and the timings:
///   setupMs  from the later of the two call pages' navigation start (the second participant arriving; the first
///            waits alone) to both sides `connected` with an inbound video frame decoded;
///   connectedMs  the same start to both sides' first `connected` (ICE + DTLS, no media yet);
///   admitMs  from the clinician's click on "admit" to both sides ready (includes the patient's waiting-room
///            poll, up to 2 s).
/// `relay`: the pre-call check must find the TURN relay ('ok') rather than none.
export async function visit(base, { browser, patientBrowser = browser, relay, slot = 0, checkVideo = true, timeout = 20000 }) {
  const doc = await clinician(browser, base, { slot });
  const pat = await patient(patientBrowser, doc.link);
  // Pre-call check: camera, microphone, relay.
  await pat.page.waitForSelector('#check-camera[data-state="ok"]', { timeout: 15000 });
  await pat.page.waitForSelector('#check-mic[data-state="ok"]');
  const relayState = relay ? 'ok' : 'none';
  await pat.page.waitForSelector(`#check-relay[data-state="${relayState}"]`, { timeout: 15000 });
  await Promise.all([pat.page.waitForURL(/\/visit\/guest$/), pat.page.click('#check-in')]);
  await pat.page.waitForSelector('#guest-status[data-status="arrived"]');
  assert.match(await pat.page.textContent('#guest-status'), /number\s*\u2068?1\u2069? of/);
  // The clinician's waiting room shows the patient; admitting opens the call.
  await doc.page.goto(`${base}/ui/visits`);
  assert.match(await doc.page.textContent('#queue'), /Aigerim|Abenova/);
  const tAdmit = Date.now();
  await Promise.all([doc.page.waitForURL(/\/call$/), doc.page.click('#admit-next')]);
  await pat.page.waitForURL(/\/visit\/guest\/call$/, { timeout: 10000 });
  const [d, p] = await Promise.all([callReady(doc.page, timeout), callReady(pat.page, timeout)]);
  const start = Math.max(d.start, p.start);
  const setupMs = Math.round(Math.max(d.ready, p.ready) - start);
  const connectedMs = Math.round(Math.max(d.connectedAt, p.connectedAt) - start);
  const admitMs = Math.round(Math.max(d.ready, p.ready) - tAdmit);
  if (checkVideo) {
    // Video flows both ways.
    const before = [await inboundVideoBytes(doc.page), await inboundVideoBytes(pat.page)];
    await doc.page.waitForTimeout(1500);
    const after = [await inboundVideoBytes(doc.page), await inboundVideoBytes(pat.page)];
    assert.ok(after[0] > before[0] && after[1] > before[1], `video flows: ${before} → ${after}`);
    assert.equal(await pat.page.textContent('#call-status'), 'Connected');
  }
  return { doc, pat, setupMs, connectedMs, admitMs };
}

/// A network namespace joined to this one by a veth pair, each direction shaped by `tc ... tbf` to `rate`
/// (e.g. '256kbit'). The host end is `<subnet>.1`, the namespace's `<subnet>.2` (a /24 per process, so two runs
/// do not collide). Returns `{ error }` where namespaces cannot be made (not root, no `ip`); removed at exit.
export function netnsWithCap({ name = `cvn${process.pid % 100000}`, rate = '256kbit', subnet = `10.213.${process.pid % 250}` } = {}) {
  const hostIp = `${subnet}.1`;
  const nsIp = `${subnet}.2`;
  const run = (...a) => execFileSync(a[0], a.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const host = `${name}h`;
  const inner = `${name}n`;
  const remove = () => {
    try { run('ip', 'netns', 'del', name); } catch { /* not there */ }
    try { run('ip', 'link', 'del', host); } catch { /* gone with the namespace */ }
  };
  try {
    remove();
    run('ip', 'netns', 'add', name);
    onExit(remove);
    run('ip', 'link', 'add', host, 'type', 'veth', 'peer', 'name', inner);
    run('ip', 'link', 'set', inner, 'netns', name);
    run('ip', 'addr', 'add', `${hostIp}/24`, 'dev', host);
    run('ip', 'link', 'set', host, 'up');
    run('ip', '-n', name, 'addr', 'add', `${nsIp}/24`, 'dev', inner);
    run('ip', '-n', name, 'link', 'set', inner, 'up');
    run('ip', '-n', name, 'link', 'set', 'lo', 'up');
    shape(name, host, inner, 'add', rate);
  } catch (e) {
    remove();
    return { error: `${e.message.split('\n')[0]} ${e.stderr ? e.stderr.toString().trim() : ''}`.trim() };
  }
  return {
    name, hostIp, nsIp, rate,
    /// Changes the cap on both ends (e.g. '100mbit' to lift it).
    setRate: (r) => shape(name, host, inner, 'change', r),
  };
}

/// Token bucket on both ends of the veth: at most `rate` each way; 50 ms of queue before drops (a congested link).
function shape(ns, host, inner, verb, rate) {
  for (const [n, dev] of [[null, host], [ns, inner]]) {
    execFileSync('tc', [...(n ? ['-n', n] : []), 'qdisc', verb, 'dev', dev, 'root', 'tbf', 'rate', rate, 'burst', '4kb', 'latency', '50ms'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
  }
}

/// Statistics of the `tc` shaper on the host end (bytes sent and dropped), to show the cap was in the path.
export function tcStats(dev) {
  try { return execFileSync('tc', ['-s', 'qdisc', 'show', 'dev', dev]).toString(); } catch (e) { return e.message; }
}

export function percentile(sorted, p) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)];
}

export function summary(values) {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, p50: percentile(s, 50), p95: percentile(s, 95), max: s[s.length - 1] ?? null, min: s[0] ?? null };
}
