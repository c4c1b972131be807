// Surveillance in the browser: the public-health officer opens the dashboard from the navigation (risk map, series
// and neighbours as server-rendered SVG), imports a CSV with a bad line (refused, the line named, nothing stored),
// imports the corrected file (detection raises an alert), opens the alert, discusses and acknowledges it, sees the
// region red on the map, and reports one case with the form; the series page shows the chart with its alarm and
// the demo outbreak's forecast fan chart; the Arabic dashboard is right-to-left; nothing is loaded from outside.
// Usage: BASE=http://127.0.0.1:PORT node surveillance.mjs   (run.sh starts the node and sets BASE)
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
const context = await browser.newContext({ locale: 'en-US' });
const page = await context.newPage();
const foreign = [];
const problems = [];
page.on('request', (r) => { if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) foreign.push(r.url()); });
page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(m.text()); });
page.on('pageerror', (e) => problems.push(String(e)));

await page.goto(`${BASE}/ui/login`);
await page.fill('#username', 'officer');
await page.fill('#password', PASSWORD);
await Promise.all([page.waitForURL(/\/ui\/inbox/), page.click('button[type=submit]')]);
await page.selectOption('select[name=lang]', 'en');
await Promise.all([page.waitForLoadState('load'), page.click('form[action="/ui/lang"] button')]);

// 1. The dashboard from the navigation: map, series, neighbours.
await Promise.all([page.waitForURL(/\/ui\/surveillance$/), page.click('nav a[href="/ui/surveillance"]')]);
assert.ok(await page.isVisible('#surv-map svg'), 'risk map');
assert.ok((await page.locator('#surv-map [data-region]').count()) >= 6, 'regions and neighbours on the map');
assert.ok((await page.locator('#surv-series tbody tr').count()) >= 4, 'series rows');
await page.screenshot({ path: `${ARTIFACTS}/surveillance-dashboard.png`, fullPage: true });

// 2. Weekly counts of cholera in Zhambyl: eleven quiet weeks, then a spike. One bad line refuses the whole file.
function isoWeek(d) {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const year = t.getUTCFullYear();
  const week = Math.ceil(((t - Date.UTC(year, 0, 1)) / 86400000 + 1) / 7);
  return [year, week];
}
const rows = [];
for (let k = 12; k >= 1; k--) {
  const [y, w] = isoWeek(new Date(Date.now() - k * 7 * 86400000));
  rows.push(`A00,KZ-ZHA,${y},${w},${k === 1 ? 40 : 1 + (k % 2)}`);
}
const header = 'disease,region,iso_year,iso_week,count';
const bad = [header, ...rows.slice(0, 5), 'A00,KZ-ZHA,2026,99,3', ...rows.slice(5)].join('\n') + '\n';
await Promise.all([page.waitForURL(/\/ui\/surveillance\/report$/), page.click('a[href="/ui/surveillance/report"]')]);
await page.setInputFiles('#file', { name: 'zhambyl.csv', mimeType: 'text/csv', buffer: Buffer.from(bad) });
await Promise.all([page.waitForLoadState('load'), page.click('#surv-import-form button')]);
const refusal = await page.textContent('#surv-error');
assert.match(refusal, /line 7: iso_week 99/, refusal);
assert.match(refusal, /nothing was imported/);
await page.screenshot({ path: `${ARTIFACTS}/surveillance-import-refused.png`, fullPage: true });

const good = [header, ...rows].join('\n') + '\n';
await page.setInputFiles('#file', { name: 'zhambyl.csv', mimeType: 'text/csv', buffer: Buffer.from(good) });
await Promise.all([page.waitForLoadState('load'), page.click('#surv-import-form button')]);
// Fluent isolates variables with U+2068/U+2069.
const plain = (t) => t.replace(/[\u2068\u2069]/g, '');
const flash = plain(await page.textContent('.flash'));
assert.match(flash, /12 aggregate count\(s\)/, flash);
assert.match(flash, /raised 1 alert/, flash);

// 3. One case through the form.
await page.selectOption('#c-disease', 'A00');
await page.selectOption('#c-region', 'KZ-ZHA');
const today = new Date().toISOString().slice(0, 10);
const onset = new Date(Date.now() - 2 * 86400000).toISOString().slice(0, 10);
await page.fill('#c-onset', onset);
await page.fill('#c-report', today);
await page.selectOption('#c-sex', 'female');
await page.selectOption('#c-lab', 'yes');
await page.fill('#c-pseudonym', 'zh-lab-17');
await Promise.all([page.waitForLoadState('load'), page.click('#surv-case-form button')]);
assert.match(plain(await page.textContent('.flash')), /1 case\(s\)/);

// 4. The alert: discuss, acknowledge.
await Promise.all([page.waitForURL(/\/ui\/surveillance\/alerts$/), page.click('main a[href="/ui/surveillance/alerts"]')]);
const row = page.locator('#surv-alerts tbody tr', { hasText: 'KZ-ZHA' }).first();
assert.match(await row.textContent(), /Cholera/);
await Promise.all([page.waitForURL(/\/ui\/surveillance\/alerts\/[0-9a-f-]+$/), row.locator('a').click()]);
assert.equal(await page.getAttribute('#surv-alert', 'data-status'), 'open');
await page.fill('#body', 'Water samples taken at the Taraz pumping station.');
await Promise.all([page.waitForLoadState('load'), page.click('form[action$="/notes"] button')]);
assert.match(await page.textContent('.thread'), /Taraz pumping station/);
await Promise.all([page.waitForLoadState('load'), page.click('form[action$="/ack"] button')]);
assert.equal(await page.getAttribute('#surv-alert', 'data-status'), 'acknowledged');
await page.screenshot({ path: `${ARTIFACTS}/surveillance-alert.png`, fullPage: true });

// 5. The map shows Zhambyl red for cholera; the series page has the alarm; the outbreak has a fan chart.
await page.goto(`${BASE}/ui/surveillance?disease=A00`);
assert.equal(await page.getAttribute('#surv-map [data-region="KZ-ZHA"]', 'data-level'), 'alarm');
await page.goto(`${BASE}/ui/surveillance/series?disease=A00&region=KZ-ZHA`);
assert.equal(await page.locator('#surv-chart .alarm').count(), 1);
await page.goto(`${BASE}/ui/surveillance/series?disease=B05&region=KZ-ALM`);
assert.ok(await page.isVisible('#surv-forecast svg'), 'forecast fan chart');
assert.ok((await page.locator('#surv-chart .alarm').count()) >= 1);
await page.screenshot({ path: `${ARTIFACTS}/surveillance-series.png`, fullPage: true });

// 6. Arabic: right-to-left, translated.
await page.selectOption('select[name=lang]', 'ar');
await Promise.all([page.waitForLoadState('load'), page.click('form[action="/ui/lang"] button')]);
await page.goto(`${BASE}/ui/surveillance`);
assert.equal(await page.getAttribute('html', 'dir'), 'rtl');
assert.match(await page.textContent('h1'), /لوحة الترصّد/);
await page.screenshot({ path: `${ARTIFACTS}/surveillance-dashboard-ar.png`, fullPage: true });

assert.deepEqual(foreign, [], 'nothing from outside the node');
assert.deepEqual(problems, [], 'no script errors');
await browser.close();
console.log('surveillance: ok');
