// The dashboard at a large site's scale, in headless Chromium against `lookout demo --guards N`
// (tests/dashboard.rs): find a guard by name in the list, select it (the map centres on it and
// labels it), filter to guards in violation, zoom; labels never overlap. Reports the page's
// main-thread time over 10 s by phase (perf.mjs: script, style, layout; PROFILE=DIR adds a CPU
// profile and a trace), with the tools' tab PANEL open. Steps are JSON lines on stdout;
// screenshots go to LOOKOUT_ARTIFACTS.
import path from 'node:path';
import fs from 'node:fs';
import { desktopPage, emit, env, launch } from './harness.mjs';
import { measure } from './perf.mjs';

const link = env('LOOKOUT_LINK');
const guards = Number(env('GUARDS'));
const artifacts = env('LOOKOUT_ARTIFACTS');
fs.mkdirSync(artifacts, { recursive: true });

/** Overlapping pairs among the labels on screen: must be none. */
function overlaps(page) {
  return page.evaluate(() => {
    const boxes = [...document.querySelectorAll('.guard.labelled:not(.clustered)')].map((g) => {
      const a = g.querySelector('.name').getBoundingClientRect();
      const b = g.querySelector('.sub').getBoundingClientRect();
      return { x0: Math.min(a.left, b.left), y0: a.top, x1: Math.max(a.right, b.right), y1: b.bottom };
    });
    let n = 0;
    for (let i = 0; i < boxes.length; i += 1) {
      for (let j = i + 1; j < boxes.length; j += 1) {
        const p = boxes[i];
        const q = boxes[j];
        if (p.x0 < q.x1 && p.x1 > q.x0 && p.y0 < q.y1 && p.y1 > q.y0) n += 1;
      }
    }
    return { labels: boxes.length, overlapping: n };
  });
}

async function main() {
  const browser = await launch();
  const { context, page, problems } = await desktopPage(browser);
  const shot = (name) => page.screenshot({ path: path.join(artifacts, `dashboard-scale-${guards}-${name}.png`) });
  await page.goto(link);
  await page.waitForFunction((n) => document.querySelectorAll('#guards .guard').length >= n, guards, { timeout: 120000 });
  // Names come with presence; wait until the list shows them.
  await page.waitForFunction(() => [...document.querySelectorAll('.roster-item .who')].some((w) => w.textContent.startsWith('Guard')), null, { timeout: 60000 });

  // PANEL names a tab of the supervisor's tools to have open while measuring (default: the
  // one the dashboard opens with, Messages).
  if (process.env.PANEL) await page.locator(`#tab-${process.env.PANEL}`).click();

  const panel = process.env.PANEL ?? 'messages';
  const perf = await measure(browser, context, page, 10000, `dashboard-${guards}-${panel}`);
  const site = await page.$eval('#site', (s) => ({ clusters: Number(s.dataset.clusters), labels: Number(s.dataset.labels), zoom: Number(s.dataset.zoom) }));
  emit({
    event: 'measured',
    guards: await page.locator('#guards .guard').count(),
    panel,
    ...perf,
    site,
    labels: await overlaps(page),
  });
  await shot('default');

  // Find one guard by name and select it.
  const number = Math.max(1, Math.floor(guards * 0.42));
  const wanted = `Guard ${String(number).padStart(2, '0')}`;
  const user = `guard-${String(number).padStart(2, '0')}`;
  await page.locator('#guard-search').fill(wanted);
  const entry = page.locator(`.roster-item[data-user="${user}"]`);
  // Names come with the presence list, loaded when the page opens and every 30 s: a guard that
  // connected after the first load (a thousand connecting on a busy machine) is found by name
  // after the next.
  await entry.waitFor({ timeout: 40000 });
  const listed = await page.locator('.roster-item').count();
  await entry.click();
  await page.locator(`.guard.selected.labelled[data-user="${user}"]`).waitFor({ timeout: 5000 });
  const centred = await page.evaluate((u) => {
    const svgEl = document.querySelector('#site');
    const [x, y, w, h] = svgEl.getAttribute('viewBox').split(' ').map(Number);
    const g = document.querySelector(`.guard[data-user="${u}"]`);
    return { dx: Math.abs(Number(g.dataset.x) - (x + w / 2)), dy: Math.abs(Number(g.dataset.y) - (y + h / 2)), label: g.querySelector('.name').textContent, zoom: Number(svgEl.dataset.zoom) };
  }, user);
  emit({ event: 'selected', wanted, listed, centred, labels: await overlaps(page) });
  await shot('selected');

  // Only the guards in violation.
  await page.locator('#guard-search').fill('');
  await page.locator('#f-violation').check();
  await page.waitForTimeout(300);
  const violations = await page.$$eval('.roster-item', (items) => items.map((i) => ({ user: i.dataset.user, flagged: Boolean(i.querySelector('.badge.violation, .badge.panic')) })));
  emit({ event: 'filtered', violations });
  await page.locator('#f-violation').uncheck();

  // Zoom in further around the selection.
  await page.locator('#zoom-in').click();
  await page.locator('#zoom-in').click();
  await page.waitForTimeout(300);
  // Seconds later the selected guard has walked on, and the map has followed it.
  await page.waitForTimeout(2000);
  const zoomed = await page.evaluate((u) => {
    const s = document.querySelector('#site');
    const [x, y, w, h] = s.getAttribute('viewBox').split(' ').map(Number);
    const g = document.querySelector(`.guard[data-user="${u}"]`);
    return {
      zoom: Number(s.dataset.zoom),
      clusters: Number(s.dataset.clusters),
      dx: Math.abs(Number(g.dataset.x) - (x + w / 2)),
      dy: Math.abs(Number(g.dataset.y) - (y + h / 2)),
    };
  }, user);
  emit({ event: 'zoomed', zoomed, labels: await overlaps(page) });
  await shot('zoomed');

  await browser.close();
  emit({ event: 'done', problems });
}

main().then(
  () => process.exit(0),
  (e) => {
    emit({ event: 'fail', error: String(e?.stack ?? e) });
    process.exit(1);
  },
);
