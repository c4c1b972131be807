// Imaging and ECG on the case page, in a real browser: a referrer uploads a multi-frame MR and a MONOCHROME1
// radiograph on a case, opens the viewer, scrolls through the slices, changes the window (preset and drag),
// zooms, measures a length in mm (checked against Pixel Spacing), sees the radiograph shown inverted as
// MONOCHROME1 requires (compared with the node's own rendering), and sees the ECG attachment on paper.
// Usage: BASE=http://127.0.0.1:PORT node viewer.mjs   (run.sh starts the node and sets BASE)
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BASE = process.env.BASE;
const PASSWORD = 'caravan-demo-2026';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.ARTIFACTS || 'artifacts';
const here = path.dirname(fileURLToPath(import.meta.url));
const pixels = (f) => path.join(here, '..', 'crates', 'imaging', 'tests', 'data', 'pixels', f);

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const context = await browser.newContext({ locale: 'en-US', viewport: { width: 1280, height: 1000 } });
const page = await context.newPage();
const foreign = [];
const errors = [];
page.on('request', (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) foreign.push(r.url()); });
page.on('pageerror', (e) => errors.push(String(e)));

await page.goto(`${BASE}/ui/login`);
await page.fill('#username', 'dr.aliyev');
await page.fill('#password', PASSWORD);
await Promise.all([page.waitForURL(/\/ui\/inbox/), page.click('button[type=submit]')]);
await page.selectOption('select[name=lang]', 'en');
await Promise.all([page.waitForLoadState('load'), page.click('form[action="/ui/lang"] button')]);

// An in-progress case of the demo.
const cases = await (await page.request.get(`${BASE}/api/v1/consultations?state=in_progress`)).json();
const caseId = cases[0].consultation.id;
const caseUrl = `${BASE}/ui/consultations/${caseId}`;

// Upload the studies on the case (the studies page), and an ECG as an attachment.
for (const f of ['emri_small.dcm', 'MR_small.dcm', 'RG1_UNCR_subsampled.dcm']) {
  await page.goto(`${caseUrl}/studies`);
  await page.setInputFiles('#upload input[type=file]', pixels(f));
  await Promise.all([page.waitForURL(/#studies$/), page.click('#upload button[type=submit]')]);
}
await page.goto(caseUrl);
await page.setInputFiles('#attachments input[type=file]',
  path.join(here, '..', 'crates', 'ecg', 'tests', 'data', 'dicom', 'waveform_ecg.dcm'));
await Promise.all([page.waitForURL(/#attachments$/), page.click('#attachments button[type=submit]')]);
await page.goto(caseUrl);
const studyLinks = await page.$$eval('#studies ul.studies a', (as) => as.map((a) => [a.href, a.textContent]));
assert.equal(studyLinks.length, 3, JSON.stringify(studyLinks));

// The ECG on paper, inline on the case page and printable on its own page.
const ecgImg = page.locator('#studies figure.ecg-preview img');
await ecgImg.waitFor();
assert.ok(await ecgImg.evaluate((img) => img.complete && img.naturalWidth > 500), 'the ECG preview is drawn');
await page.screenshot({ path: `${ARTIFACTS}/case-studies.png`, fullPage: true });
await page.click('#studies figure.ecg-preview figcaption a');
await page.waitForSelector('#ecg svg');
const ecgText = await page.textContent('#ecg-measurements');
assert.match(ecgText, /Heart rate/);
assert.match(ecgText, /QTc \(Bazett\)/);
const drawn = await page.$$eval('#ecg svg path, #ecg svg polyline, #ecg svg line', (els) => els.length);
assert.ok(drawn >= 3, `the tracing, grid and beat marks are drawn (${drawn} shapes)`);
assert.ok((await page.textContent('#ecg svg')).includes('II'), 'leads are labelled');
await page.emulateMedia({ media: 'print' });
assert.equal(await page.$eval('header', (h) => getComputedStyle(h).display), 'none', 'print hides the navigation');
const printedWidth = await page.$eval('#ecg svg', (s) => s.getBoundingClientRect().width);
await page.pdf({ path: `${ARTIFACTS}/ecg.pdf`, landscape: true, format: 'A4', printBackground: true });
await page.emulateMedia({ media: 'screen' });
assert.ok(printedWidth > 1000, `printed at true scale (277 mm ≈ 1047 px): ${printedWidth}`);

// The MR: the viewer on raw frames.
const mrs = studyLinks.filter(([, t]) => t.includes('MR'));
const canvas = page.locator('#canvas');
const attr = async (n) => canvas.getAttribute(n);
await page.goto(mrs[0][0]);
await page.waitForFunction(() => document.querySelector('#canvas')?.getAttribute('data-slice'));
// The multi-frame MR (10 frames) is the one to scroll; the other MR has Pixel Spacing to measure on.
const [mr, mrSmall] = (await attr('data-slices')) === '10' ? mrs : [mrs[1], mrs[0]];
await page.goto(mr[0]);
await page.waitForFunction(() => document.querySelector('#canvas')?.getAttribute('data-slice'));
assert.equal(await attr('data-slices'), '10');
const start = Number(await attr('data-slice'));
await canvas.focus();
await page.keyboard.press('ArrowDown');
await page.waitForFunction((s) => document.querySelector('#canvas').getAttribute('data-slice') === String(s + 1), start);
const box = await canvas.boundingBox();
await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
await page.mouse.wheel(0, 120);
await page.waitForFunction((s) => document.querySelector('#canvas').getAttribute('data-slice') === String(s + 2), start);
assert.match(await page.textContent('#status'), new RegExp(`Slice ${start + 2}/10`));

// Window: a preset, then a drag (width grows to the right, center moves down).
await page.selectOption('#preset', '40,80');
assert.equal(await attr('data-wc'), '40');
assert.equal(await attr('data-ww'), '80');
const before = await canvas.evaluate((c) => c.toDataURL());
await page.selectOption('#tool', 'wl');
await page.mouse.move(box.x + 100, box.y + 100);
await page.mouse.down();
await page.mouse.move(box.x + 160, box.y + 130, { steps: 5 });
await page.mouse.up();
assert.ok(Number(await attr('data-ww')) > 80, 'the drag widened the window');
assert.ok(Number(await attr('data-wc')) > 40, 'the drag moved the center');
assert.notEqual(await canvas.evaluate((c) => c.toDataURL()), before, 'the image changed');

// Zoom.
await page.click('#zoom-in');
assert.equal(await attr('data-zoom'), '1.25');
await page.click('#reset');

await page.screenshot({ path: `${ARTIFACTS}/viewer-mr.png`, fullPage: true });

// Length on the small MR: a horizontal line, checked against its Pixel Spacing from the metadata.
await page.goto(mrSmall[0]);
await page.waitForFunction(() => document.querySelector('#canvas')?.getAttribute('data-slice'));
const mbox = await canvas.boundingBox();
const base = await page.getAttribute('#viewer', 'data-base');
const series = await page.getAttribute('.series-item.active', 'data-series');
const meta = await (await page.request.get(`${BASE}${base}/series/${series}/metadata`)).json();
const sp = meta[0]['00280030'] || meta[0]['00181164'];
const spacing = sp.Value.map(Number);
assert.ok(spacing[0] > 0 && spacing[1] > 0, `a calibrated image: ${spacing}`);
const cols = meta[0]['00280011'].Value[0];
const rows = meta[0]['00280010'].Value[0];
await page.selectOption('#tool', 'measure');
const dxCss = 200;
await page.mouse.move(mbox.x + 150, mbox.y + 200);
await page.mouse.down();
await page.mouse.move(mbox.x + 150 + dxCss, mbox.y + 200, { steps: 8 });
await page.mouse.up();
const mm = Number(await page.getAttribute('#measure', 'data-mm'));
const canvasPx = 512;
const scale = Math.min(canvasPx / cols, canvasPx / rows); // the image fits the square canvas at zoom 1
const expected = ((dxCss * canvasPx) / mbox.width / scale) * spacing[1];
assert.ok(mm > 1 && Math.abs(mm - expected) < 0.2, `length ${mm} mm, expected ${expected.toFixed(2)} mm`);
assert.match(await page.textContent('#measure'), /Length: \d+\.\d mm/);
await page.screenshot({ path: `${ARTIFACTS}/viewer-measure.png`, fullPage: true });

// The radiograph: MONOCHROME1, shown inverted exactly as the node renders it (not as stored).
const rg = studyLinks.find(([, t]) => !t.includes('MR'));
await page.goto(rg[0]);
await page.waitForFunction(() => document.querySelector('#canvas')?.getAttribute('data-photometric') === 'MONOCHROME1');
const means = await page.evaluate(async () => {
  const c = document.querySelector('#canvas');
  const thumb = document.querySelector('.series-item img');
  const img = new Image();
  img.src = thumb.src.replace(/\?.*$/, '') + '?quality=95';
  await img.decode();
  const w = Number(c.getAttribute('data-ww'));
  const mean = (ctx, x, y, wd, h) => {
    const d = ctx.getImageData(x, y, wd, h).data;
    let s = 0;
    for (let i = 0; i < d.length; i += 4) s += d[i];
    return s / (d.length / 4);
  };
  // The canvas shows the image centred; sample its middle quarter, and the same part of the node's rendering.
  const g = c.getContext('2d');
  const canvasMean = mean(g, 192, 192, 128, 128);
  const o = document.createElement('canvas');
  o.width = img.naturalWidth; o.height = img.naturalHeight;
  const og = o.getContext('2d');
  og.drawImage(img, 0, 0);
  const q = (n) => Math.floor(n * 3 / 8);
  const nodeMean = mean(og, q(o.width), q(o.height), Math.floor(o.width / 4), Math.floor(o.height / 4));
  return { canvasMean, nodeMean, w };
});
assert.ok(Math.abs(means.canvasMean - means.nodeMean) < 25,
  `the viewer matches the node's MONOCHROME1 rendering: ${JSON.stringify(means)}`);
await page.screenshot({ path: `${ARTIFACTS}/viewer-monochrome1.png`, fullPage: true });

// Without JavaScript the viewer page still lists the series with rendered thumbnails.
const nojs = await browser.newContext({ javaScriptEnabled: false, locale: 'en-US' });
await nojs.addCookies(await context.cookies());
const p2 = await nojs.newPage();
await p2.goto(mr[0]);
const thumbs = await p2.$$eval('.series-item img', (imgs) => imgs.map((i) => i.complete && i.naturalWidth));
assert.ok(thumbs.length >= 1 && thumbs.every((w) => w > 0), `thumbnails without JS: ${thumbs}`);

assert.deepEqual(foreign, [], 'nothing loaded from outside the node');
assert.deepEqual(errors, [], 'no uncaught script errors');
await browser.close();
console.log('viewer: 1 passed, 0 failed');
