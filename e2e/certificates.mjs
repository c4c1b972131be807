// Health certificates in the browser: a clinician issues an EU DCC and sees its QR code; an officer verifies it by
// pasting the text and by uploading the QR code as a photo, sees red for garbage, and the camera button either
// appears (BarcodeDetector present) or a note says why not; the script obeys the CSP; the Arabic page is
// right-to-left; nothing is loaded from outside the node.
// Usage: BASE=http://127.0.0.1:PORT node certificates.mjs   (run.sh starts the node and sets BASE)
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
  const problems = [];
  page.on('request', (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) foreign.push(r.url()); });
  page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(m.text()); });
  page.on('response', (r) => { if (r.status() >= 400 && !r.url().endsWith('/favicon.ico')) problems.push(`${r.status()} ${r.url()}`); });
  page.on('pageerror', (e) => problems.push(String(e)));
  await page.goto(`${BASE}/ui/login`);
  await page.fill('#username', username);
  await page.fill('#password', PASSWORD);
  await Promise.all([page.waitForURL(/\/ui\/(inbox|worklist|routing)/), page.click('button[type=submit]')]);
  await page.selectOption('select[name=lang]', 'en');
  await Promise.all([page.waitForLoadState('load'), page.click('form[action="/ui/lang"] button')]);
  return { context, page, foreign, problems };
}

// 1. A referring clinician issues a vaccination certificate from the navigation's Certificates page.
const doc = await session('dr.aliyev');
await doc.page.click('nav a[href="/ui/certs/verify"]');
await Promise.all([doc.page.waitForURL(/\/ui\/certs\/issue/), doc.page.click('a[href="/ui/certs/issue"]')]);
await doc.page.fill('#given_name', 'Saule');
await doc.page.fill('#family_name', 'Bekova');
await doc.page.fill('#dob', '1984-09-17');
await doc.page.check('input[name=kind][value=vaccination]');
await doc.page.selectOption('#mp', 'EU/1/20/1528');
await doc.page.selectOption('#ma', 'ORG-100030215');
await doc.page.fill('#dn', '2');
await doc.page.fill('#sd', '2');
await Promise.all([doc.page.waitForLoadState('load'), doc.page.click('#issue-form button[type=submit]')]);
const hc1 = (await doc.page.inputValue('#cert-text')).trim();
assert.match(hc1, /^HC1:/);
const qrSrc = await doc.page.getAttribute('#cert-qr', 'src');
assert.match(qrSrc, /^data:image\/png;base64,/);
await doc.page.screenshot({ path: `${ARTIFACTS}/cert-issued.png`, fullPage: true });

// 2. An officer verifies it by pasting the text.
const off = await session('officer');
await off.page.goto(`${BASE}/ui/certs/verify`);
await off.page.waitForLoadState('load');
const scanShown = await off.page.isVisible('#scan');
const noteShown = await off.page.isVisible('#scan-note');
assert.ok(scanShown !== noteShown, `camera button (${scanShown}) or the note why not (${noteShown})`);
if (noteShown) assert.match(await off.page.textContent('#scan-note'), /paste the text or upload a photo/);
await off.page.fill('#text', hc1);
await Promise.all([off.page.waitForLoadState('load'), off.page.click('#verify-form button[type=submit]')]);
assert.equal(await off.page.getAttribute('#cert-result', 'data-status'), 'green');
assert.equal((await off.page.textContent('#cert-name')).trim(), 'Saule Bekova');
assert.equal((await off.page.textContent('#cert-dob')).trim(), '1984-09-17');
assert.equal(await off.page.inputValue('#text'), '', 'the certificate is not echoed back');
await off.page.screenshot({ path: `${ARTIFACTS}/cert-verified.png`, fullPage: true });

// 3. Garbage is red with its reason; a photo of the QR code verifies without typing.
await off.page.fill('#text', 'HC1:this is not a certificate');
await Promise.all([off.page.waitForLoadState('load'), off.page.click('#verify-form button[type=submit]')]);
assert.equal(await off.page.getAttribute('#cert-result', 'data-status'), 'red');
assert.ok((await off.page.textContent('#cert-reasons')).length > 10);
await off.page.setInputFiles('#image', {
  name: 'qr.png', mimeType: 'image/png', buffer: Buffer.from(qrSrc.split(',')[1], 'base64'),
});
await Promise.all([off.page.waitForLoadState('load'), off.page.click('#verify-form button[type=submit]')]);
assert.equal(await off.page.getAttribute('#cert-result', 'data-status'), 'green');

// 4. The rules of a country of arrival decide, naming the rule (Germany wants 14 days after the last dose).
await off.page.fill('#text', hc1);
await off.page.selectOption('#country', 'DE');
await Promise.all([off.page.waitForLoadState('load'), off.page.click('#verify-form button[type=submit]')]);
assert.equal(await off.page.getAttribute('#cert-result', 'data-status'), 'red');
assert.match(await off.page.textContent('#cert-reasons'), /VR-DE-\d{4}/);
await off.page.screenshot({ path: `${ARTIFACTS}/cert-rules.png`, fullPage: true });

// 5. Right to left in Arabic.
await off.page.selectOption('select[name=lang]', 'ar');
await Promise.all([off.page.waitForLoadState('load'), off.page.click('form[action="/ui/lang"] button')]);
assert.equal(await off.page.getAttribute('html', 'dir'), 'rtl');
assert.equal(await off.page.evaluate(() => getComputedStyle(document.body).direction), 'rtl');
await off.page.screenshot({ path: `${ARTIFACTS}/cert-verify-arabic.png`, fullPage: true });

for (const s of [doc, off]) {
  assert.deepEqual(s.foreign, [], 'no request leaves the node');
  assert.deepEqual(s.problems.filter((p) => /Content Security Policy|Refused/.test(p)), [], 'the script obeys the CSP');
  assert.deepEqual(s.problems, [], 'no script error, no failed request');
}
console.log(JSON.stringify({ ok: true, certificates: { issued: hc1.length, camera: scanShown ? 'BarcodeDetector' : 'note' } }));
await browser.close();
