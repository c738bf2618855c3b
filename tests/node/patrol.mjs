// Drives a guard tour for tests/patrol_app.rs: the supervisor's dashboard (1400x900) prints the
// checkpoints' QR sheet; a checkpoint's code, taken from that sheet, is what a phone's fake
// camera shows (Chromium's --use-file-for-fake-video-capture, an MJPEG file rewritten before
// each scan: the device reads it when the camera starts); the guard app at a phone's viewport
// scans it online, then scans a second one offline, and sends it once back online — its first
// answer lost on the way, so the app sends it again. Steps are JSON lines on stdout; the Rust
// side answers by files in LOOKOUT_CONTROL. Screenshots: LOOKOUT_ARTIFACTS/patrol-*.png.
import fs from 'node:fs';
import path from 'node:path';
import { emit, env, launch, phoneContext, proceed as proceedAfter, sameOriginOnly, signedInDashboard, watchPage as watchPageFor } from './harness.mjs';

const origin = env('ORIGIN');
const artifacts = env('LOOKOUT_ARTIFACTS');
const control = env('LOOKOUT_CONTROL');
const guardToken = env('GUARD_TOKEN');
const supervisorToken = env('SUPERVISOR_TOKEN');
const first = env('FIRST_CHECKPOINT');
const second = env('SECOND_CHECKPOINT');
const firstAt = JSON.parse(env('FIRST_POSITION'));
const secondAt = JSON.parse(env('SECOND_POSITION'));
fs.mkdirSync(artifacts, { recursive: true });
const camera = path.join(control, '..', 'camera.mjpeg');

const PATIENT = 30000;
const problems = [];
const foreign = [];
const proceed = (name) => proceedAfter(control, name);
const watchPage = (page, who) => watchPageFor(page, who, problems);
const shot = (page, name) => page.screenshot({ path: path.join(artifacts, `patrol-${name}.png`) });

/** The dashboard, signed in, on its Patrols tab with the three checkpoints listed. */
async function openDashboard(browser) {
  const { context: desk, page } = await signedInDashboard(browser, { origin, token: supervisorToken, foreign, problems, timeout: PATIENT });
  await page.locator('#tab-patrols').click();
  await page.locator('#cp-list li').nth(2).waitFor({ timeout: PATIENT });
  await page.locator('#tour-list tr').first().waitFor({ timeout: PATIENT });
  return { desk, page };
}

/** "Print QR sheet": the sheet opens as a page of its own; the SVG of each checkpoint's code. */
async function printSheet(desk, page) {
  const opened = desk.waitForEvent('page');
  await page.locator('#cp-print').click();
  const sheet = await opened;
  watchPage(sheet, 'sheet');
  await sheet.waitForLoadState();
  await sheet.locator('figure.checkpoint').nth(2).waitFor({ timeout: PATIENT });
  // The sheet's stylesheet applies (the page is a blob: of the dashboard's origin).
  const styled = await sheet.locator('body.sheet').evaluate((b) => getComputedStyle(b).backgroundColor);
  await shot(sheet, 'sheet');
  const code = async (id) => sheet.locator(`figure.checkpoint[data-id="${id}"] svg`).evaluate((s) => s.outerHTML);
  return { styled, codes: { [first]: await code(first), [second]: await code(second) } };
}

/** A camera frame of `svgMarkup` as printed: the code on white paper, 640x480, as a JPEG. */
async function frame(browser, svgMarkup) {
  const context = await browser.newContext({ viewport: { width: 640, height: 480 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  await page.setContent(`<body style="margin:0;background:#fff;display:grid;place-items:center;height:480px">
    <div style="width:300px;height:300px">${svgMarkup}</div></body>`);
  await page.locator('svg').evaluate((s) => {
    s.setAttribute('width', '300');
    s.setAttribute('height', '300');
  });
  const jpeg = await page.screenshot({ type: 'jpeg', quality: 90 });
  await context.close();
  return jpeg;
}

/** What the fake camera shows from its next start on: the frame, over and over. */
function showToCamera(jpeg) {
  fs.writeFileSync(camera, Buffer.concat([jpeg, jpeg, jpeg]));
}

async function main() {
  const desktop = await launch(['--ignore-certificate-errors']);
  const { desk, page: dashboard } = await openDashboard(desktop);
  await shot(dashboard, 'dashboard');
  const { styled, codes } = await printSheet(desk, dashboard);
  showToCamera(await frame(desktop, codes[first]));
  const secondFrame = await frame(desktop, codes[second]);
  emit({ event: 'sheet', styled });

  // The phone: a browser whose camera is the printed code.
  const phoneBrowser = await launch([
    '--ignore-certificate-errors',
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    `--use-file-for-fake-video-capture=${camera}`,
  ]);
  const context = await phoneContext(phoneBrowser, { ...firstAt, accuracy: 5 }, ['geolocation', 'camera']);
  await sameOriginOnly(context, origin, foreign);
  await context.addInitScript((t) => {
    if (location.pathname.startsWith('/guard')) localStorage.setItem('lookout.guard.token', t);
  }, guardToken);
  const phone = await context.newPage();
  watchPage(phone, 'phone');
  await phone.goto(`${origin}/guard`);
  await phone.locator('#conn[data-state="open"]').waitFor({ timeout: PATIENT });
  await phone.locator('#patrol:not([hidden]) #tours .stops li').nth(2).waitFor({ timeout: PATIENT });
  await shot(phone, 'phone-tour');

  // 1. Online: the camera reads the first checkpoint's code.
  await phone.locator('#scan-open').click();
  await phone.locator('#scan-result[data-state="ok"]').waitFor({ timeout: PATIENT });
  emit({
    event: 'scanned-first',
    reader: await phone.locator('#scanner').getAttribute('data-reader'),
    result: await phone.locator('#scan-result').textContent(),
    stop: await phone.locator(`.stops li[data-id="${first}"]`).getAttribute('data-state'),
  });
  await shot(phone, 'phone-scanned');
  await proceed('first-checked');

  // 2. Offline: the second checkpoint's code is read and queued with its time.
  showToCamera(secondFrame);
  await context.setGeolocation({ ...secondAt, accuracy: 5 });
  await context.setOffline(true);
  await phone.locator('#scan-open').click();
  await phone.locator('#scan-result[data-state="queued"]').waitFor({ timeout: PATIENT });
  await phone.locator('#scan-queue[data-size="1"]').waitFor({ timeout: PATIENT });
  await shot(phone, 'phone-offline');
  emit({ event: 'queued-second', at: Date.now() });
  await proceed('go-online');

  // 3. Back online: the first answer is lost on the way (the appliance recorded the scan), so
  //    the app sends it again with the same key.
  let posts = 0;
  let lost = 0;
  await phone.route('**/api/v1/patrols/scans', async (route) => {
    if (route.request().method() !== 'POST') return route.fallback();
    posts += 1;
    if (lost === 0) {
      lost += 1;
      await route.fetch();
      return route.abort('connectionreset');
    }
    return route.fallback();
  });
  const backAt = Date.now();
  await context.setOffline(false);
  await phone.locator('#scan-queue[data-size="0"]').waitFor({ state: 'attached', timeout: PATIENT });
  await phone.locator('#scan-result[data-state="ok"]').waitFor({ timeout: PATIENT });
  emit({ event: 'sent-second', back_at: backAt, posts, lost, result: await phone.locator('#scan-result').textContent() });
  await proceed('missed');

  // 4. The missed checkpoint on the dashboard.
  await dashboard.locator('#alerts .alert[data-type="TOUR_MISSED"]').waitFor({ timeout: PATIENT });
  await shot(dashboard, 'missed');
  emit({ event: 'dashboard-missed', text: await dashboard.locator('#alerts .alert[data-type="TOUR_MISSED"]').first().textContent() });

  await phoneBrowser.close();
  await desktop.close();
  emit({ event: 'done', problems, foreign });
}

main().catch((e) => {
  emit({ event: 'fail', message: String(e?.stack ?? e) });
  process.exit(1);
});
