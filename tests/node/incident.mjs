// An incident report end to end (tests/incident_app.rs), in headless Chromium: the guard app
// (/guard, web/guard/incident.js) at a phone's viewport files a report with two camera photos
// (two JPEGs of 3000×2000 made by this Chromium's own canvas, given to the file input as the
// camera's pictures), which the phone makes smaller before sending (first without a network,
// which the phone says, then again); then a supervisor's
// dashboard (web/dashboard/incidents.js) opens it, sees both photos, comments and closes it.
// Last, a second report with three photos on an appliance that takes two: the phone shows the
// appliance's refusal, which names the setting.
// Steps are JSON lines on stdout; screenshots go to LOOKOUT_ARTIFACTS as incident-*.png.
import fs from 'node:fs';
import path from 'node:path';
import { emit, env, launch, phoneContext, sameOriginOnly, signedInDashboard, watchPage } from './harness.mjs';

const origin = env('ORIGIN');
const artifacts = env('LOOKOUT_ARTIFACTS');
const guardToken = env('GUARD_TOKEN');
const supervisorToken = env('SUPERVISOR_TOKEN');
fs.mkdirSync(artifacts, { recursive: true });

// Generous: a loaded 2-core machine runs other builds and browsers beside this one.
const PATIENT = 30000;
const problems = [];
const foreign = [];

/** A camera-sized JPEG (3000×2000) drawn in `page`, as bytes. */
async function cameraPicture(page, hue) {
  const b64 = await page.evaluate((h) => {
    const canvas = document.createElement('canvas');
    canvas.width = 3000;
    canvas.height = 2000;
    const g = canvas.getContext('2d');
    const gradient = g.createLinearGradient(0, 0, 3000, 2000);
    gradient.addColorStop(0, `hsl(${h}, 70%, 40%)`);
    gradient.addColorStop(1, `hsl(${h + 90}, 70%, 60%)`);
    g.fillStyle = gradient;
    g.fillRect(0, 0, 3000, 2000);
    g.fillStyle = '#fff';
    g.font = 'bold 300px sans-serif';
    g.fillText(`Bay ${h}`, 300, 1100);
    return canvas.toDataURL('image/jpeg', 0.95).split(',')[1];
  }, hue);
  return Buffer.from(b64, 'base64');
}

async function main() {
  const browser = await launch();

  // ---- The guard files the report with two photos.
  const phone = await phoneContext(browser, { latitude: 52.374, longitude: 4.889, accuracy: 5 }, ['geolocation']);
  await sameOriginOnly(phone, origin, foreign);
  await phone.addInitScript((t) => {
    if (location.pathname.startsWith('/guard')) localStorage.setItem('lookout.guard.token', t);
  }, guardToken);
  const guard = await phone.newPage();
  watchPage(guard, 'guard', problems);
  await guard.goto(`${origin}/guard`);
  await guard.locator('#conn[data-state="open"]').waitFor({ timeout: PATIENT });
  await guard.locator('#incident-open').click();
  await guard.locator('#incident-dialog:not([hidden])').waitFor({ timeout: PATIENT });
  await guard.locator('#incident-category').selectOption('damage');
  await guard.locator('#incident-text').fill('Loading bay 3: the shutter is bent.\nNobody around.');
  const pictures = [await cameraPicture(guard, 20), await cameraPicture(guard, 200)];
  const input = guard.locator('#incident-photos');
  const capture = await input.getAttribute('capture');
  const accept = await input.getAttribute('accept');
  await input.setInputFiles(pictures.map((buffer, i) => ({ name: `IMG_000${i + 1}.jpg`, mimeType: 'image/jpeg', buffer })));
  await guard.locator('#incident-thumbs li').nth(1).waitFor({ timeout: PATIENT });
  await guard.screenshot({ path: path.join(artifacts, 'incident-phone-form.png'), fullPage: true });
  // First without a network: the phone says so and keeps the report for another try.
  await phone.setOffline(true);
  await guard.locator('#incident-send').click();
  await guard.locator('#incident-error:not([hidden])').waitFor({ timeout: PATIENT });
  const offline = await guard.locator('#incident-error').textContent();
  await phone.setOffline(false);
  await guard.locator('#incident-send').click();
  await guard.locator('#incident-sent', { hasText: 'Report sent with 2 photos' }).waitFor({ timeout: PATIENT });
  await guard.screenshot({ path: path.join(artifacts, 'incident-phone-sent.png') });
  emit({
    event: 'filed',
    offline,
    capture,
    accept,
    pictureBytes: pictures.map((p) => p.length),
    sent: await guard.locator('#incident-sent').textContent(),
    dialogHidden: await guard.locator('#incident-dialog').isHidden(),
  });

  // ---- A supervisor opens it, sees both photos, comments and closes it.
  const { page } = await signedInDashboard(browser, { origin, token: supervisorToken, foreign, problems, timeout: PATIENT });
  await page.locator('#tab-incidents').click();
  const row = page.locator('#inc-rows tr[data-state="open"]').first();
  await row.waitFor({ timeout: PATIENT });
  await row.locator('button').click();
  await page.locator('#inc-photos img').nth(1).waitFor({ timeout: PATIENT });
  // Both photos decoded in the page (not a broken image).
  await page.waitForFunction(() => [...document.querySelectorAll('#inc-photos img')].every((i) => i.complete && i.naturalWidth > 0), null, { timeout: PATIENT });
  const photoSizes = await page.$$eval('#inc-photos img', (imgs) => imgs.map((i) => [i.naturalWidth, i.naturalHeight]));
  const text = await page.locator('#inc-text').textContent();
  await page.locator('#inc-comment-text').fill('Maintenance called');
  await page.locator('#inc-comment button[type="submit"]').click();
  await page.locator('#inc-comments li', { hasText: 'Maintenance called' }).waitFor({ timeout: PATIENT });
  await page.locator('#inc-close-note').fill('Shutter secured');
  await page.locator('#inc-close').click();
  await page.locator('#inc-closed', { hasText: 'Shutter secured' }).waitFor({ timeout: PATIENT });
  await page.locator('.work').scrollIntoViewIfNeeded();
  await page.screenshot({ path: path.join(artifacts, 'incident-dashboard-closed.png') });
  emit({ event: 'closed', photoSizes, text, rowState: await page.locator('#inc-rows tr').first().getAttribute('data-state') });

  // ---- A report with one photo too many: the appliance's words on the phone.
  await guard.locator('#incident-open').click();
  await guard.locator('#incident-text').fill('Second shutter, same bay.');
  await input.setInputFiles([...pictures, pictures[0]].map((buffer, i) => ({ name: `IMG_001${i}.jpg`, mimeType: 'image/jpeg', buffer })));
  await guard.locator('#incident-thumbs li').nth(2).waitFor({ timeout: PATIENT });
  await guard.locator('#incident-send').click();
  await guard.locator('#incident-error:not([hidden])').waitFor({ timeout: PATIENT });
  await guard.screenshot({ path: path.join(artifacts, 'incident-phone-refused.png') });
  emit({
    event: 'refused',
    error: await guard.locator('#incident-error').textContent(),
    dialogShown: await guard.locator('#incident-dialog').isVisible(),
  });

  await browser.close();
  emit({ event: 'done', problems, foreign });
}

main().then(
  () => process.exit(0),
  (e) => {
    emit({ event: 'fail', error: String(e?.stack ?? e), problems, foreign });
    process.exit(1);
  },
);
