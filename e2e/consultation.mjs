// A referrer signs in, creates and submits a consultation; the routed consultant accepts and reports; the Arabic
// page is right-to-left; pages stay under 100 KB and load nothing from outside the node.
// Usage: BASE=http://127.0.0.1:PORT node consultation.mjs   (run.sh starts the node and sets BASE)
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const BASE = process.env.BASE;
const PASSWORD = 'caravan-demo-2026';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.ARTIFACTS || 'artifacts';

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run'],
});

async function session(username) {
  const context = await browser.newContext({ locale: 'en-US' });
  const page = await context.newPage();
  const foreign = [];
  const weights = new Map();
  page.on('request', (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) foreign.push(r.url()); });
  page.on('response', async (r) => {
    if (r.request().resourceType() === 'document') {
      try { weights.set(new URL(r.url()).pathname, (await r.body()).length); } catch { /* redirects have no body */ }
    }
  });
  await page.goto(`${BASE}/ui/login`);
  await page.fill('#username', username);
  await page.fill('#password', PASSWORD);
  await Promise.all([page.waitForURL(/\/ui\/(inbox|worklist|routing)/), page.click('button[type=submit]')]);
  return { context, page, foreign, weights };
}

async function english(page) {
  await page.selectOption('select[name=lang]', 'en');
  await Promise.all([page.waitForLoadState('load'), page.click('form[action="/ui/lang"] button')]);
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
}

// 1. The referrer (whose own language is Russian) switches to English and creates a consultation.
const ref = await session('dr.aliyev');
await english(ref.page);
await ref.page.goto(`${BASE}/ui/consultations/new`);
const options = await ref.page.$$eval('#patient_id option', (os) => os.map((o) => [o.value, o.textContent]));
const [patientId] = options.find(([, label]) => label.startsWith('Yerlan Tokayev'));
await ref.page.selectOption('#patient_id', patientId);
const question = `Browser test ${Date.now()}: new LBBB with chest pain`;
await ref.page.fill('#question', question);
await ref.page.fill('#clinical_summary', '61 y, onset 2 h ago, haemodynamically stable.');
await ref.page.selectOption('#specialty', 'cardiology');
await ref.page.selectOption('#urgency', 'urgent');
await ref.page.check('input[name=consent]');
await Promise.all([ref.page.waitForURL(/\/ui\/consultations\/[0-9a-f-]{36}$/), ref.page.click('button[name=submit][value=yes]')]);
const caseUrl = ref.page.url();
assert.equal((await ref.page.textContent('#case-state')).trim(), 'assigned');
const team = await ref.page.textContent('section.card:has(h2:text("Team"))');
const consultant = team.includes('Askar Nurlanov') ? 'cardio.nurlanov' : team.includes('Li Wei') ? 'cardio.li' : null;
assert.ok(consultant, `routed to a cardiologist: ${team}`);

// 2. The consultant accepts and issues the report.
const cons = await session(consultant);
await english(cons.page);
await cons.page.goto(caseUrl);
await Promise.all([cons.page.waitForLoadState('load'), cons.page.click('button[value=accept]')]);
assert.equal((await cons.page.textContent('#case-state')).trim(), 'in progress');
await cons.page.fill('#findings', 'Sinus rhythm, LBBB morphology, Sgarbossa criteria negative.');
await cons.page.fill('#impression', 'LBBB without evidence of acute occlusion.');
await cons.page.fill('#recommendations', 'Serial troponin; echocardiography; no emergency angiography.');
await Promise.all([cons.page.waitForLoadState('load'), cons.page.click('button[value=report]')]);
assert.equal((await cons.page.textContent('#case-state')).trim(), 'reported');
assert.match(await cons.page.textContent('#report'), /Sgarbossa/);
await cons.page.screenshot({ path: `${ARTIFACTS}/case-reported.png`, fullPage: true });

// 3. The referrer sees the report; the Arabic page is right-to-left.
await ref.page.goto(caseUrl);
assert.match(await ref.page.textContent('#report'), /LBBB without evidence/);
await ref.page.selectOption('select[name=lang]', 'ar');
await Promise.all([ref.page.waitForLoadState('load'), ref.page.click('form[action="/ui/lang"] button')]);
assert.equal(await ref.page.getAttribute('html', 'dir'), 'rtl');
assert.equal(await ref.page.getAttribute('html', 'lang'), 'ar');
const direction = await ref.page.evaluate(() => getComputedStyle(document.body).direction);
assert.equal(direction, 'rtl');
assert.equal((await ref.page.textContent('#case-state')).trim(), 'صدر التقرير');
await ref.page.screenshot({ path: `${ARTIFACTS}/case-arabic.png`, fullPage: true });
await ref.page.goto(`${BASE}/ui/inbox`);

// 4. Page weight and no external requests.
for (const s of [ref, cons]) {
  assert.deepEqual(s.foreign, [], 'no request leaves the node');
}
const weights = { ...Object.fromEntries(ref.weights), ...Object.fromEntries(cons.weights) };
const casePath = new URL(caseUrl).pathname;
for (const path of ['/ui/inbox', casePath]) {
  assert.ok(weights[path] > 0, `measured ${path}`);
  assert.ok(weights[path] < 100 * 1024, `${path} weighs ${weights[path]} bytes`);
}
console.log(JSON.stringify({ ok: true, case: caseUrl, consultant, page_bytes: { inbox: weights['/ui/inbox'], case: weights[casePath] } }));
await browser.close();
