// Pathology slides in the browser: a referring clinician attaches an Aperio SVS to a case, follows the case page's
// "view slide" link, and the node's own viewer draws the slide from Deep Zoom tiles; zooming out and in
// switches between coarser and finer levels, dragging pans; the script obeys the CSP and nothing is loaded from outside the node.
// Usage: BASE=http://127.0.0.1:PORT node slides.mjs   (run.sh starts the node and sets BASE)
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const BASE = process.env.BASE;
const PASSWORD = 'caravan-demo-2026';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.ARTIFACTS || 'artifacts';
const here = path.dirname(fileURLToPath(import.meta.url));
const SVS = path.join(here, '..', 'crates', 'imaging', 'tests', 'data', 'wsi', 'aperio-jpeg.svs');

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const context = await browser.newContext({ locale: 'en-US', viewport: { width: 1200, height: 900 } });
const page = await context.newPage();
const foreign = [];
const problems = [];
page.on('request', (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) foreign.push(r.url()); });
page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(m.text()); });
page.on('response', (r) => { if (r.status() >= 400 && !r.url().endsWith('/favicon.ico')) problems.push(`${r.status()} ${r.url()}`); });
page.on('pageerror', (e) => problems.push(String(e)));

await page.goto(`${BASE}/ui/login`);
await page.fill('#username', 'dr.aliyev');
await page.fill('#password', PASSWORD);
await Promise.all([page.waitForURL(/\/ui\/inbox/), page.click('button[type=submit]')]);
await page.selectOption('select[name=lang]', 'en');
await Promise.all([page.waitForLoadState('load'), page.click('form[action="/ui/lang"] button')]);

// 1. Attach the slide to the first case of the inbox.
const caseHref = await page.getAttribute('a[href^="/ui/consultations/"]:not([href$="/new"])', 'href');
await page.goto(`${BASE}${caseHref}`);
await page.setInputFiles('#file', SVS);
await Promise.all([page.waitForLoadState('load'), page.click('#attachments button[type=submit]')]);
const link = page.locator('#attachments a[href^="/ui/slides/att-"]').last();
await Promise.all([page.waitForURL(/\/ui\/slides\/att-/), link.click()]);

// 2. The viewer fits the slide and draws it from tiles.
const viewer = page.locator('#slide-viewer');
await page.waitForSelector('#slide-viewer[data-complete="true"]', { timeout: 15000 });
assert.equal(await viewer.getAttribute('data-width'), '600');
assert.equal(await viewer.getAttribute('data-height'), '400');
const levelFit = Number(await viewer.getAttribute('data-level'));
// The canvas shows the slide, not the dark background, at its centre.
const centre = await page.evaluate(() => {
  const c = document.querySelector('#slide-viewer canvas');
  const d = c.getContext('2d').getImageData(Math.floor(c.width / 2), Math.floor(c.height / 2), 1, 1).data;
  return [d[0], d[1], d[2]];
});
assert.ok(centre.some((v) => Math.abs(v - 0x22) > 20), `the slide is drawn at the centre: ${centre}`);
await page.screenshot({ path: `${ARTIFACTS}/slide-fit.png`, fullPage: true });

// 3. Zooming out draws from a coarser level, zooming in from finer ones again; dragging pans.
const complete = () => page.waitForFunction(() => document.querySelector('#slide-viewer').getAttribute('data-complete') === 'true');
const scaleFit = Number(await viewer.getAttribute('data-scale'));
for (let i = 0; i < 4; i++) await page.click('button[data-zoom="out"]');
await complete();
const levelOut = Number(await viewer.getAttribute('data-level'));
assert.ok(levelOut < levelFit, `zooming out draws from a coarser level (${levelFit} → ${levelOut})`);
for (let i = 0; i < 6; i++) await page.click('button[data-zoom="in"]');
await complete();
const levelZoomed = Number(await viewer.getAttribute('data-level'));
assert.ok(levelZoomed > levelOut, `zooming in loads a finer level (${levelOut} → ${levelZoomed})`);
assert.ok(Number(await viewer.getAttribute('data-scale')) > scaleFit, 'zoomed in beyond the fit');
const box = await viewer.boundingBox();
await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
await page.mouse.down();
await page.mouse.move(box.x + box.width / 2 - 200, box.y + box.height / 2 - 100, { steps: 5 });
await page.mouse.up();
await page.waitForFunction(() => document.querySelector('#slide-viewer').getAttribute('data-complete') === 'true');
await page.screenshot({ path: `${ARTIFACTS}/slide-zoomed.png`, fullPage: true });

assert.deepEqual(foreign, [], 'nothing loaded from outside the node');
assert.deepEqual(problems, [], 'no console errors, CSP violations or failed requests');
await browser.close();
console.log(JSON.stringify({ ok: true, levels: [levelFit, levelOut, levelZoomed] }));
