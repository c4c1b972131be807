// Video visits in two real browsers (Debian's Chromium, fake camera and microphone): a clinician books a visit
// and invites the patient; the patient opens the link on a phone-sized page, passes the pre-call check and waits;
// the clinician admits them; both reach `connected` with video flowing (getStats). Three nodes, each started
// here: (1) peer to peer, where a capped outgoing bitrate switches the call to audio-only and back;
// (2) relay-only through a private coturn started here, with TURN REST credentials minted by the node;
// (3) a node with the wrong TURN secret: the pre-call check and the call show the relay's refusal.
// Usage: CARAVAN_BIN=target/debug/caravan node visits.mjs   (run.sh sets it). Needs Debian's `coturn`.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BIN = process.env.CARAVAN_BIN;
const PASSWORD = 'caravan-demo-2026';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TURNSERVER = process.env.TURNSERVER || '/usr/bin/turnserver';
const ARTIFACTS = process.env.ARTIFACTS || 'artifacts';
assert.ok(BIN, 'set CARAVAN_BIN to the caravan binary');

const children = [];
const dirs = [];
process.on('exit', () => {
  for (const c of children) try { c.kill('SIGKILL'); } catch { /* gone */ }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function waitForLine(child, re, what) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start:\n${buf}`)), 20000);
    const on = (d) => {
      buf += d;
      const m = buf.match(re);
      if (m) { clearTimeout(timer); resolve(m); }
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.on('exit', (code) => reject(new Error(`${what} exited ${code}:\n${buf}`)));
  });
}

async function startCoturn(secret) {
  const port = await freePort();
  const minPort = 40000 + Math.floor(Math.random() * 20000);
  const dir = mkdtempSync(join(tmpdir(), 'caravan-coturn-'));
  dirs.push(dir);
  const c = spawn(TURNSERVER, ['-n', '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', `--listening-port=${port}`,
    '--use-auth-secret', `--static-auth-secret=${secret}`, '--realm=caravan.test', '--no-cli', '--no-tls', '--no-dtls',
    '--allow-loopback-peers', `--min-port=${minPort}`, `--max-port=${minPort + 200}`, '--log-file=stdout', '--simple-log',
    '--no-multicast-peers', `--userdb=${join(dir, 'turndb')}`, `--pidfile=${join(dir, 'turn.pid')}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(c);
  await waitForLine(c, /listener opened on|Total General servers|IPv4. TCP listener/, 'coturn');
  return { port, child: c };
}

async function startNode(flags) {
  const data = mkdtempSync(join(tmpdir(), 'caravan-visits-'));
  dirs.push(data);
  const c = spawn(BIN, ['demo', '--listen', '127.0.0.1:0', '--data', data, '--audio-only-after-seconds', '2', ...flags],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
  children.push(c);
  const m = await waitForLine(c, /Caravan node listening on (http:\/\/[^/\s]+)\//, 'node');
  return m[1];
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run',
         '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream'],
});

/// The clinician: signed in, books a visit for a demo patient and invites them; returns the invitation link.
async function clinician(base) {
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
    { start: new Date(Date.now() + 60000).toISOString(), minutes: 20, count: 1 });
  const patients = await (await context.request.get(`${base}/api/v1/patients`)).json();
  const patient = patients.find((p) => p.family_name === 'Abenova');
  const visit = await post('/api/v1/visits', { patient_id: patient.id, slot_id: slots[0].id, reason: 'ECG follow-up' });
  const inv = await post(`/api/v1/visits/${visit.visit.id}/invitations`, { role: 'patient', display_name: 'Aigerim' });
  const page = await context.newPage();
  return { context, page, link: `${base}${inv.link}`, visitId: visit.visit.id };
}

async function patient(link) {
  // A phone: small viewport, touch.
  const context = await browser.newContext({ locale: 'en-US', viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const page = await context.newPage();
  const foreign = [];
  page.on('request', (r) => { if (!r.url().startsWith(new URL(link).origin)) foreign.push(r.url()); });
  await page.goto(link);
  assert.match(page.url(), /\/visit\/guest$/);
  return { context, page, foreign };
}

const connected = (page) => page.waitForFunction(
  () => window.caravanCall && [...window.caravanCall.peers.values()].some((p) => p.pc.connectionState === 'connected'),
  null, { timeout: 20000, polling: 50 });

async function inboundVideoBytes(page) {
  return page.evaluate(async () => {
    let bytes = 0;
    for (const p of window.caravanCall.peers.values()) {
      (await p.pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') bytes += r.bytesReceived; });
    }
    return bytes;
  });
}

async function selectedCandidateTypes(page) {
  return page.evaluate(async () => {
    const types = [];
    for (const p of window.caravanCall.peers.values()) {
      const stats = await p.pc.getStats();
      stats.forEach((r) => {
        if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') {
          types.push(stats.get(r.localCandidateId).candidateType, stats.get(r.remoteCandidateId).candidateType);
        }
      });
    }
    return types;
  });
}

/// Book, invite, pre-check, wait, admit, connect; returns both pages and the setup time to `connected`.
async function visit(base, { relay }) {
  const doc = await clinician(base);
  const pat = await patient(doc.link);
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
  const t0 = Date.now();
  await Promise.all([doc.page.waitForURL(/\/call$/), doc.page.click('#admit-next')]);
  await pat.page.waitForURL(/\/visit\/guest\/call$/, { timeout: 10000 });
  const t1 = Date.now();
  await Promise.all([connected(doc.page), connected(pat.page)]);
  const setupMs = Date.now() - t1;
  const totalMs = Date.now() - t0;
  // Video flows both ways.
  const before = [await inboundVideoBytes(doc.page), await inboundVideoBytes(pat.page)];
  await doc.page.waitForTimeout(1500);
  const after = [await inboundVideoBytes(doc.page), await inboundVideoBytes(pat.page)];
  assert.ok(after[0] > before[0] && after[1] > before[1], `video flows: ${before} → ${after}`);
  assert.equal(await pat.page.textContent('#call-status'), 'Connected');
  return { doc, pat, setupMs, totalMs };
}

const results = {};

// 1. Peer to peer; then a capped bitrate switches to audio-only, and back when the cap is lifted.
{
  const base = await startNode([]);
  const { doc, pat, setupMs, totalMs } = await visit(base, { relay: false });
  results.direct = { setupMs, totalMs, candidates: await selectedCandidateTypes(doc.page) };
  assert.ok(!results.direct.candidates.includes('relay'), JSON.stringify(results.direct));
  await pat.page.screenshot({ path: `${ARTIFACTS}/visit-phone.png` });
  // The manual switch.
  await doc.page.click('#btn-audio-only');
  assert.equal(await doc.page.getAttribute('#call-mode', 'data-mode'), 'audio-only');
  await pat.page.waitForFunction(() => /audio only/.test(document.querySelector('figure[data-peer] figcaption').textContent));
  await doc.page.click('#btn-audio-only');
  assert.equal(await doc.page.getAttribute('#call-mode', 'data-mode'), 'video');
  // The automatic switch: cap what the clinician's browser may send (video and audio) far below the threshold.
  const cap = (bps) => doc.page.evaluate(async (bps) => {
    for (const p of window.caravanCall.peers.values()) {
      for (const s of p.pc.getSenders()) {
        const params = s.getParameters();
        if (!params.encodings || !params.encodings.length) continue;
        for (const e of params.encodings) { if (bps) e.maxBitrate = bps; else delete e.maxBitrate; }
        await s.setParameters(params);
      }
    }
  }, bps);
  await cap(8000);
  const tCap = Date.now();
  await doc.page.waitForSelector('#call-mode[data-mode="audio-only-auto"]', { timeout: 20000 });
  results.audioOnlyAfterMs = Date.now() - tCap;
  assert.match(await doc.page.textContent('#call-mode'), /Audio only/);
  const kbps = await doc.page.evaluate(() => window.caravanCall.state.switches);
  assert.ok(kbps.some((s) => s.audioOnly && s.auto), JSON.stringify(kbps));
  // No video goes out while audio-only.
  const sent = () => doc.page.evaluate(async () => {
    let b = 0;
    for (const p of window.caravanCall.peers.values()) (await p.pc.getStats()).forEach((r) => { if (r.type === 'outbound-rtp' && r.kind === 'video') b += r.bytesSent; });
    return b;
  });
  const v0 = await sent();
  await doc.page.waitForTimeout(1000);
  assert.ok((await sent()) - v0 < 2000, 'video stopped');
  await cap(0);
  const tLift = Date.now();
  await doc.page.waitForSelector('#call-mode[data-mode="video"]', { timeout: 40000 });
  results.videoBackAfterMs = Date.now() - tLift;
  await doc.page.screenshot({ path: `${ARTIFACTS}/visit-clinician.png` });
  assert.deepEqual(pat.foreign, [], 'nothing loaded from outside the node');
  // Ending the visit closes the call on the patient's side.
  await doc.page.goto(`${base}/ui/visits/${doc.visitId}`);
  await doc.page.click('#visit-finish');
  await pat.page.waitForSelector('#call-status[data-state="tEnded"]', { timeout: 10000 });
  await doc.context.close();
  await pat.context.close();
}

// 2. Relay only, through a private coturn with credentials minted by the node.
const secret = `s${Math.random().toString(36).slice(2)}`;
const turn = await startCoturn(secret);
{
  const base = await startNode(['--turn-url', `turn:127.0.0.1:${turn.port}?transport=udp`, '--turn-secret', secret,
    '--turn-ttl', '600', '--turn-relay-only']);
  const { doc, pat, setupMs, totalMs } = await visit(base, { relay: true });
  const types = await selectedCandidateTypes(pat.page);
  results.relay = { setupMs, totalMs, candidates: types };
  assert.ok(types.length && types.every((t) => t === 'relay'), `relay only: ${types}`);
  await doc.context.close();
  await pat.context.close();
}

// 3. The wrong secret: coturn refuses (401), the pre-check says so, and the call shows an error, not media.
{
  const base = await startNode(['--turn-url', `turn:127.0.0.1:${turn.port}?transport=udp`, '--turn-secret', 'wrong',
    '--turn-relay-only']);
  const doc = await clinician(base);
  const pat = await patient(doc.link);
  await pat.page.waitForSelector('#check-relay[data-state="failed"]', { timeout: 15000 });
  results.wrongSecret = { precheck: (await pat.page.textContent('#check-relay')).trim() };
  await doc.context.close();
  await pat.context.close();
}

await browser.close();
writeFileSync(`${ARTIFACTS}/visits.json`, JSON.stringify(results, null, 2));
console.log(JSON.stringify(results));
console.log('visits: 3 passed, 0 failed');
process.exit(0);
