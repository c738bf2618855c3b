// Drives the guard app (/guard) in real headless Chromium at a phone's viewport, with a fake
// position and a fake camera, next to a supervisor's dashboard, for tests/guard.rs. Steps are
// JSON lines on stdout; the Rust side answers by files in LOOKOUT_CONTROL (`<name>` appears
// when the step may go on). Screenshots go to LOOKOUT_ARTIFACTS.
import fs from 'node:fs';
import path from 'node:path';
import { emit, env, launch, phoneContext, proceed as proceedAfter, sameOriginOnly, sleep, watchPage as watchPageFor } from './harness.mjs';
import jsQR from 'jsqr';
import { PNG } from 'pngjs';

const supervisorLink = env('SUPERVISOR_LINK');
const artifacts = env('LOOKOUT_ARTIFACTS');
const control = env('LOOKOUT_CONTROL');
const origin = new URL(supervisorLink).origin;
fs.mkdirSync(artifacts, { recursive: true });

const proceed = (name) => proceedAfter(control, name);

const problems = [];
const foreign = [];

const watchPage = (page, who) => watchPageFor(page, who, problems);

async function hold(page, selector, ms) {
  const box = await page.locator(selector).boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await sleep(ms);
  await page.mouse.up();
}

async function main() {
  const browser = await launch([
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    // The test appliance's CA is not installed in this browser: a service worker needs the
    // certificate accepted.
    '--ignore-certificate-errors',
  ]);
  const phone = await phoneContext(
    browser,
    { latitude: 52.3740, longitude: 4.8890, accuracy: 5 },
    ['geolocation', 'camera'],
  );
  const desk = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 900 } });
  for (const context of [phone, desk]) await sameOriginOnly(context, origin, foreign);
  const guard = await phone.newPage();
  watchPage(guard, 'guard');
  // Video frames the phone sends: MessagePack publishes far larger than a position.
  const videoSent = [];
  guard.on('websocket', (ws) => {
    ws.on('framesent', (f) => {
      const size = typeof f.payload === 'string' ? f.payload.length : f.payload.byteLength;
      if (size > 1500) videoSent.push(Date.now());
    });
  });
  const shot = (page, name) => page.screenshot({ path: path.join(artifacts, `guard-${name}.png`) });

  // The supervisor adds the guard's phone from the dashboard; the phone scans the QR code.
  const dashboard = await desk.newPage();
  watchPage(dashboard, 'dashboard');
  await dashboard.goto(supervisorLink);
  await dashboard.locator('#conn[data-state="open"]').waitFor({ timeout: 30000 });
  await dashboard.locator('#add-device').click();
  await dashboard.locator('#enroll-guard').fill('g-1');
  await dashboard.locator('#enroll-name').fill('Ana');
  await dashboard.locator('#enroll button[type="submit"]').click();
  const qr = dashboard.locator('#enroll-qr-image');
  await dashboard.locator('#enroll-qr').waitFor({ timeout: 10000 });
  await dashboard.waitForFunction(() => document.querySelector('#enroll-qr-image').complete && document.querySelector('#enroll-qr-image').naturalWidth > 0);
  const png = PNG.sync.read(await qr.screenshot());
  const decoded = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
  await dashboard.screenshot({ path: path.join(artifacts, 'guard-enroll.png') });
  emit({ event: 'enrolled', decoded: decoded?.data ?? null, shown: await dashboard.locator('#enroll-url').textContent() });
  if (!decoded) throw new Error('the QR code does not decode');

  // Sign in and walk.
  await guard.goto(decoded.data);
  await guard.locator('#conn[data-state="open"]').waitFor({ timeout: 30000 });
  const walk = [
    [52.3741, 4.8892],
    [52.3743, 4.8895],
    [52.3745, 4.8899],
  ];
  for (const [latitude, longitude] of walk) {
    await sleep(1200);
    await phone.setGeolocation({ latitude, longitude, accuracy: 5 });
  }
  await sleep(1500);
  emit({
    event: 'walked',
    url: guard.url(),
    stored: await guard.evaluate(() => Boolean(localStorage.getItem('lookout.guard.token'))),
    last: walk[walk.length - 1],
  });
  await shot(guard, 'patrol');

  const marker = dashboard.locator('.guard[data-user="g-1"]');
  await marker.waitFor({ timeout: 30000 });
  emit({ event: 'on-dashboard' });

  // A supervisor's message arrives; the guard answers it.
  await proceed('message-sent');
  const message = guard.locator('#messages li', { hasText: 'Check gate 3' });
  await message.waitFor({ timeout: 10000 });
  await guard.locator('#reply-text').fill('Gate 3 is locked');
  await guard.locator('#reply button[type="submit"]').click();
  await guard.locator('#messages li', { hasText: 'Gate 3 is locked' }).waitFor({ timeout: 10000 });
  emit({ event: 'replied', shown: await message.textContent() });

  // A short tap raises nothing.
  await hold(guard, '#panic', 150);
  await sleep(1500);
  emit({ event: 'tapped', shown: await guard.locator('#alert').isVisible() });
  await proceed('tapped');

  // Held for a second: PANIC.
  await hold(guard, '#panic', 1300);
  await guard.locator('#alert[data-state="sent"], #alert[data-state="open"]').waitFor({ timeout: 10000 });
  await guard.waitForFunction(() => document.querySelector('#alert').dataset.id, null, { timeout: 10000 });
  const alertId = await guard.locator('#alert').getAttribute('data-id');
  emit({ event: 'panic', id: alertId });
  const row = dashboard.locator(`.alert[data-id="${alertId}"]`);
  await row.waitFor({ timeout: 15000 });
  await row.locator('input').fill('on my way');
  await row.locator('button.do-ack').click();
  await guard.locator('#alert[data-state="acknowledged"]').waitFor({ timeout: 10000 });
  emit({ event: 'acknowledged', text: await guard.locator('#alert').textContent() });
  await shot(guard, 'acknowledged');

  // The camera runs while the supervisor watches, and only then.
  const before = videoSent.length;
  await marker.locator('circle').click();
  await guard.locator('#camera.watched').waitFor({ timeout: 10000 });
  await dashboard.waitForFunction(() => Number(document.querySelector('#video-fps').textContent) > 0, null, { timeout: 15000 });
  const fps = Number(await dashboard.locator('#video-fps').textContent());
  await shot(guard, 'camera');
  await dashboard.screenshot({ path: path.join(artifacts, 'guard-dashboard-video.png') });
  await dashboard.locator('#video-stop').click();
  const stoppedAt = Date.now();
  await sleep(4000);
  const after = videoSent.filter((t) => t > stoppedAt);
  emit({
    event: 'video',
    fps,
    framesWhileWatched: videoSent.length - before - after.length,
    lastFrameAfterStopMs: after.length ? after[after.length - 1] - stoppedAt : 0,
    cameraText: await guard.locator('#camera').textContent(),
  });
  await proceed('video');

  // Offline: the appliance stops; the guard walks on and presses PANIC, the page is even
  // reloaded (from the service worker's cache); all of it arrives once it is back.
  emit({ event: 'stop-server' });
  await proceed('server-stopped');
  await guard.locator('#conn:not([data-state="open"])').waitFor({ timeout: 15000 });
  const offlineWalk = [
    [52.3747, 4.8902],
    [52.3749, 4.8905],
    [52.3751, 4.8908],
    [52.3753, 4.8911],
  ];
  for (const [latitude, longitude] of offlineWalk.slice(0, 2)) {
    await phone.setGeolocation({ latitude, longitude, accuracy: 5 });
    await sleep(1200);
  }
  await guard.reload();
  await guard.locator('#app').waitFor({ timeout: 10000 });
  const fromCache = await guard.evaluate(() => Boolean(navigator.serviceWorker?.controller));
  for (const [latitude, longitude] of offlineWalk.slice(2)) {
    await phone.setGeolocation({ latitude, longitude, accuracy: 5 });
    await sleep(1200);
  }
  await hold(guard, '#panic', 1300);
  await guard.locator('#alert[data-state="queued"]').waitFor({ timeout: 5000 });
  await shot(guard, 'offline');
  const queued = await guard.evaluate(() => JSON.parse(localStorage.getItem('lookout.guard.outbox')));
  emit({
    event: 'offline',
    fromCache,
    positions: queued.positions.map((p) => p.data.ts),
    alarms: queued.alarms.length,
    outboxText: await guard.locator('#outbox').textContent(),
  });
  await proceed('server-back');
  await guard.locator('#conn[data-state="open"]').waitFor({ timeout: 30000 });
  await guard.locator('#outbox[data-size="0"]').waitFor({ state: 'attached', timeout: 20000 });
  await guard.locator('#alert[data-state="sent"], #alert[data-state="open"]').waitFor({ timeout: 10000 });
  await guard.waitForFunction((first) => {
    const id = document.querySelector('#alert').dataset.id;
    return id && id !== first;
  }, alertId, { timeout: 10000 });
  emit({ event: 'flushed', id: await guard.locator('#alert').getAttribute('data-id') });

  // A lost phone: the supervisor revokes it from the dashboard, and it is signed out at once.
  const device = dashboard.locator('tr.device[data-guard="g-1"]');
  await device.locator('.online').waitFor({ timeout: 20000 });
  await device.locator('button.do-revoke').click();
  await device.locator('button.do-revoke').click();
  const revokedAt = Date.now();
  await guard.locator('#signin').waitFor({ timeout: 5000 });
  emit({
    event: 'revoked',
    signedOutAfterMs: Date.now() - revokedAt,
    text: await guard.locator('#signin-error').textContent(),
    kept: await guard.evaluate(() => localStorage.getItem('lookout.guard.token')),
  });
  await shot(guard, 'revoked');

  await browser.close();
  emit({ event: 'done', problems, foreign });
}

main().catch((e) => {
  emit({ event: 'fail', message: String(e?.stack ?? e) });
  process.exit(1);
});
