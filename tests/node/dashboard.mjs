// Drives the dashboard in real headless Chromium (Playwright with Debian's chromium) against
// `lookout demo`, for tests/dashboard.rs. Every request must stay on the appliance's origin:
// anything else is aborted and reported. Steps are JSON lines on stdout; screenshots go to
// LOOKOUT_ARTIFACTS. DEBUG_WS=1 logs the page's WebSocket frames, console and errors to stderr.
import fs from 'node:fs';
import path from 'node:path';
import { emit, env, launch } from './harness.mjs';

const link = env('LOOKOUT_LINK');
const artifacts = env('LOOKOUT_ARTIFACTS');
const origin = new URL(link).origin;
fs.mkdirSync(artifacts, { recursive: true });

const foreign = [];
const problems = [];

async function positions(page) {
  // Markers on the plan only: alert rows name their guard in a `.guard` span too.
  return page.$$eval('#guards .guard[data-user]', (gs) => Object.fromEntries(gs.map((g) => [g.dataset.user, `${g.dataset.x},${g.dataset.y}`])));
}

// Guards report once a second: waits for the first marker to move, up to `ms`, and reports how
// many moved and when.
async function moved(page, ms) {
  const before = await positions(page);
  const started = Date.now();
  let count = 0;
  while (Date.now() - started < ms) {
    await page.waitForTimeout(250);
    const after = await positions(page);
    count = Object.keys(after).filter((u) => before[u] && before[u] !== after[u]).length;
    if (count > 0) break;
  }
  return { count, ms: Date.now() - started };
}

async function main() {
  const browser = await launch();
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 900 } });
  // The appliance has no internet: only its own origin may be reached.
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.origin === origin || url.protocol === 'data:' || url.protocol === 'blob:') return route.continue();
    foreign.push(url.href);
    return route.abort();
  });
  const page = await context.newPage();
  page.on('websocket', (ws) => {
    const url = new URL(ws.url());
    if (url.host !== new URL(origin).host) foreign.push(ws.url());
    if (process.env.DEBUG_WS) {
      const t0 = Date.now();
      const show = (dir) => (f) => console.error(`ws ${Date.now() - t0}ms ${dir} ${String(f.payload).slice(0, 160)}`);
      ws.on('framesent', show('>'));
      ws.on('framereceived', show('<'));
      ws.on('close', () => console.error(`ws ${Date.now() - t0}ms closed`));
      ws.on('socketerror', (e) => console.error(`ws ${Date.now() - t0}ms error ${e}`));
    }
  });
  if (process.env.DEBUG_WS) {
    page.on('console', (msg) => console.error(`console ${msg.type()}: ${msg.text()}`));
    page.on('pageerror', (e) => console.error(`pageerror ${e.stack}`));
  }
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (msg) => {
    // CSP violations are reported as console errors.
    if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) problems.push(msg.text());
  });
  const shot = (name) => page.screenshot({ path: path.join(artifacts, `dashboard-${name}.png`) });

  await page.goto(link);
  await page.waitForFunction(() => document.querySelectorAll('#guards .guard[data-user]').length >= 2, null, { timeout: 30000 });
  const first = await moved(page, 10000);
  await page.locator('#plan image').waitFor({ state: 'attached', timeout: 10000 });
  // The operations panel names the running release.
  const version = page.locator('#ops dt', { hasText: /^version$/ }).locator('xpath=following-sibling::dd[1]');
  await version.waitFor({ timeout: 10000 });
  emit({
    event: 'moving',
    version: await version.textContent(),
    moved: first.count,
    movedAfterMs: first.ms,
    guards: Object.keys(await positions(page)).length,
    url: page.url(),
    plan: await page.locator('#plan image').count(),
  });
  await shot('site');

  const panic = page.locator('.alert[data-type="PANIC"]').first();
  await panic.waitFor({ timeout: 30000 });
  const id = await panic.getAttribute('data-id');
  emit({ event: 'panic', id });
  await shot('panic');
  const row = page.locator(`.alert[data-id="${id}"]`);
  await row.locator('input').fill('on my way');
  await row.locator('button.do-ack').click();
  await page.locator(`.alert[data-id="${id}"][data-state="acknowledged"]`).waitFor({ timeout: 15000 });
  await row.click();
  const audit = await row.locator('ol.audit li').allTextContents();
  emit({ event: 'acked', id, audit });

  await page.locator('.guard[data-user="guard-02"]').click();
  await page.locator('#video').waitFor({ state: 'visible' });
  await page.waitForFunction(() => {
    const img = document.querySelector('#video-frame');
    return img && img.complete && img.naturalWidth > 0;
  }, null, { timeout: 20000 });
  const size = await page.$eval('#video-frame', (img) => ({ width: img.naturalWidth, height: img.naturalHeight }));
  await page.waitForTimeout(1200);
  const fps = Number(await page.textContent('#video-fps'));
  emit({ event: 'video', ...size, fps });
  await shot('video');
  await page.click('#video-stop');
  await page.locator('#video').waitFor({ state: 'hidden' });

  emit({ event: 'restart-me' });
  await page.locator('#banner').waitFor({ state: 'visible', timeout: 30000 });
  emit({ event: 'offline-banner', text: await page.textContent('#banner') });
  await shot('offline');
  await page.locator('#banner').waitFor({ state: 'hidden', timeout: 60000 });
  const again = await moved(page, 10000);
  const panicRows = await page.locator('.alert[data-type="PANIC"]').count();
  const state = await page.getAttribute(`.alert[data-id="${id}"]`, 'data-state');
  emit({ event: 'back', movedAgain: again.count, movedAgainAfterMs: again.ms, panicRows, state });
  await shot('back');

  await browser.close();
  emit({ event: 'done', foreign, problems });
}

main().then(
  () => process.exit(0),
  (e) => {
    emit({ event: 'fail', error: String(e?.stack ?? e), foreign, problems });
    process.exit(1);
  },
);
