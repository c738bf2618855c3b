// The dashboard as the supervisor's workplace (tests/dashboard.rs), in headless Chromium at
// 1366×768 next to the guard app at a phone's size: the supervisor writes to a guard and the
// guard answers; both see the conversation in order after a reload and after a server restart.
// The supervisor draws a forbidden fence on the plan (and one by typing, moved and deleted),
// puts the guard on shift, sees the fence alert when the guard walks in, acknowledges and
// resolves it, finds its audit trail in the alert log (and the CSV export), plays back the
// guard's last five minutes, and sorts the guard table. Steps are JSON lines on stdout; the
// Rust side answers by files in LOOKOUT_CONTROL. Screenshots go to LOOKOUT_ARTIFACTS.
import fs from 'node:fs';
import path from 'node:path';
import { emit, env, launch, phoneContext, proceed as proceedAfter, sameOriginOnly, sleep, watchPage as watchPageFor } from './harness.mjs';

const supervisorLink = env('LOOKOUT_LINK');
const guardLink = env('GUARD_LINK');
const guardId = env('GUARD_ID');
const artifacts = env('LOOKOUT_ARTIFACTS');
const control = env('LOOKOUT_CONTROL');
const origin = new URL(supervisorLink).origin;
fs.mkdirSync(artifacts, { recursive: true });
// The demo site's centre; the guard starts 150 m west and 100 m north of it, inside the
// perimeter and away from the demo's rounds.
const M_LAT = 1 / 111320;
const M_LON = 1 / (111320 * Math.cos((52.3731 * Math.PI) / 180));
const start = { latitude: 52.3731 + 100 * M_LAT, longitude: 4.8922 - 150 * M_LON, accuracy: 5 };

const proceed = (name) => proceedAfter(control, name);

const problems = [];
const foreign = [];

const watchPage = (page, who) => watchPageFor(page, who, problems);

/** The conversation as each side shows it, texts in order. */
const thread = (dashboard) => dashboard.$$eval('#msg-thread .msg .text', (t) => t.map((x) => x.textContent));
const phoneThread = (guard) => guard.$$eval('#messages li', (li) => li.map((x) => x.lastChild.textContent));

async function openConversation(dashboard) {
  await dashboard.locator('#tab-messages').click();
  await dashboard.locator('#msg-search').fill(guardId);
  await dashboard.locator(`#msg-people .person[data-user="${guardId}"]`).click();
}

/** Both pages reloaded: the conversation as each shows it then. */
async function reloadAndRead(dashboard, guard) {
  await dashboard.reload();
  await guard.reload();
  await guard.locator('#conn[data-state="open"]').waitFor({ timeout: 30000 });
  await dashboard.locator('#conn[data-state="open"]').waitFor({ timeout: 30000 });
  await openConversation(dashboard);
  await dashboard.locator('#msg-thread .msg', { hasText: 'Thanks' }).waitFor({ timeout: 10000 });
  await guard.locator('#messages li', { hasText: 'Thanks' }).waitFor({ timeout: 10000 });
  return { dashboard: await thread(dashboard), guard: await phoneThread(guard) };
}

async function main() {
  const browser = await launch(['--ignore-certificate-errors']);
  const phone = await phoneContext(browser, start, ['geolocation']);
  const desk = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1366, height: 768 }, acceptDownloads: true });
  for (const context of [phone, desk]) await sameOriginOnly(context, origin, foreign);
  const guard = await phone.newPage();
  watchPage(guard, 'guard');
  const dashboard = await desk.newPage();
  watchPage(dashboard, 'dashboard');
  const shot = (name) => dashboard.screenshot({ path: path.join(artifacts, `workplace-${name}.png`) });
  const tools = async (name) => {
    await dashboard.locator('.work').scrollIntoViewIfNeeded();
    await dashboard.screenshot({ path: path.join(artifacts, `workplace-${name}.png`) });
  };

  await guard.goto(guardLink);
  await guard.locator('#conn[data-state="open"]').waitFor({ timeout: 30000 });
  await dashboard.goto(supervisorLink);
  await dashboard.locator('#conn[data-state="open"]').waitFor({ timeout: 30000 });
  await dashboard.locator(`.guard[data-user="${guardId}"]`).waitFor({ timeout: 30000 });

  // ---- Messages, both ways, by keyboard on the dashboard.
  await openConversation(dashboard);
  await dashboard.locator('#msg-text').fill('Report to gate B');
  await dashboard.locator('#msg-text').press('Enter');
  await guard.locator('#messages li', { hasText: 'Report to gate B' }).waitFor({ timeout: 10000 });
  await guard.locator('#reply-text').fill('On my way to gate B');
  await guard.locator('#reply button[type="submit"]').click();
  await dashboard.locator('#msg-thread .msg.in', { hasText: 'On my way to gate B' }).waitFor({ timeout: 10000 });
  // The guard's phone acknowledges what it shows: the supervisor's message reads as read.
  await dashboard.locator('#msg-thread .msg.out .meta', { hasText: 'read' }).waitFor({ timeout: 20000 });
  await dashboard.locator('#msg-text').fill('Thanks');
  await dashboard.locator('#msg-text').press('Enter');
  await guard.locator('#messages li', { hasText: 'Thanks' }).waitFor({ timeout: 10000 });
  const expected = ['Report to gate B', 'On my way to gate B', 'Thanks'];
  emit({ event: 'talked', dashboard: await thread(dashboard), guard: await phoneThread(guard), expected });
  await tools('messages');
  await guard.screenshot({ path: path.join(artifacts, 'workplace-guard-messages.png') });

  emit({ event: 'reloaded', ...(await reloadAndRead(dashboard, guard)) });

  emit({ event: 'restart-me' });
  await proceed('restarted');
  await dashboard.locator('#conn[data-state="open"]').waitFor({ timeout: 60000 });
  await guard.locator('#conn[data-state="open"]').waitFor({ timeout: 60000 });
  emit({ event: 'restarted', ...(await reloadAndRead(dashboard, guard)) });

  // ---- A fence typed in (circle), moved by keyboard and deleted.
  await dashboard.locator('#tab-fences').click();
  await dashboard.locator('#fence-name').fill('Typed circle');
  await dashboard.locator('#fence-shape').selectOption('circle');
  await dashboard.locator('#fence-points').fill(`${52.3731 - 120 * M_LAT}, ${4.8922 + 150 * M_LON}`);
  await dashboard.locator('#fence-radius').fill('15');
  await dashboard.locator('#fence-form button[type="submit"]').click();
  const typed = dashboard.locator('#fence-list li', { hasText: 'Typed circle' });
  await typed.waitFor({ timeout: 10000 });
  await typed.locator('.do-move').click();
  await dashboard.locator('#fence-list li', { hasText: 'Typed circle' }).getByRole('button', { name: 'Move 5 m east' }).click();
  await dashboard.locator('#fence-status', { hasText: 'moved' }).waitFor({ timeout: 10000 });
  await dashboard.locator('#fence-list li', { hasText: 'Typed circle' }).locator('.do-move').click();
  const moved = await dashboard.evaluate(async () => {
    const token = sessionStorage.getItem('lookout.token');
    const fences = await (await fetch('/api/v1/geofences', { headers: { authorization: `Bearer ${token}` } })).json();
    return fences.find((f) => f.name === 'Typed circle')?.shape.center;
  });
  await dashboard.locator('#fence-list li', { hasText: 'Typed circle' }).locator('.do-delete').click();
  await dashboard.locator('#fence-list li', { hasText: 'Typed circle' }).locator('.do-delete').click();
  await typed.waitFor({ state: 'detached', timeout: 10000 });
  emit({ event: 'typed-fence', moved, expectedLon: 4.8922 + 155 * M_LON });
  await dashboard.locator('#shift-site').fill('');

  // ---- A forbidden fence drawn on the plan east of the guard, by mouse.
  await dashboard.locator('#fence-name').fill('Loading bay');
  await dashboard.locator('#fence-kind').selectOption('forbidden');
  await dashboard.locator('#fence-shape').selectOption('polygon');
  await dashboard.locator('#fence-draw').click();
  await dashboard.evaluate(() => window.scrollTo(0, 0));
  const marker = await dashboard.locator(`.guard[data-user="${guardId}"] circle`).boundingBox();
  const gx = marker.x + marker.width / 2;
  const gy = marker.y + marker.height / 2;
  for (const [dx, dy] of [[40, -25], [100, -25], [100, 25], [40, 25]]) await dashboard.mouse.click(gx + dx, gy + dy);
  const corners = (await dashboard.locator('#fence-points').inputValue()).trim().split('\n').map((l) => l.split(',').map(Number));
  await shot('fence-draft');
  await dashboard.locator('#fence-form button[type="submit"]').click();
  await dashboard.locator('#fence-list li', { hasText: 'Loading bay' }).waitFor({ timeout: 10000 });
  await dashboard.locator('.fence.forbidden', { hasText: 'Loading bay' }).waitFor({ timeout: 10000 });

  // ---- The guard on shift.
  await dashboard.locator('#shift-guard').fill(guardId);
  await dashboard.locator('#shift-site').fill('demo-site');
  await dashboard.locator('#shift-form button[type="submit"]').click();
  await dashboard.locator(`#shift-list tr[data-user="${guardId}"].current`).waitFor({ timeout: 10000 });
  await dashboard.locator(`.guard.on-shift[data-user="${guardId}"]`).waitFor({ timeout: 10000 });
  await tools('fences');
  // Its report from its row: fetched with the token, saved from a blob: URL.
  const shiftRow = dashboard.locator(`#shift-list tr[data-user="${guardId}"].current`);
  const [report] = await Promise.all([dashboard.waitForEvent('download'), shiftRow.locator('button', { hasText: 'PDF' }).click()]);
  const pdf = fs.readFileSync(await report.path());
  fs.writeFileSync(path.join(artifacts, 'workplace-shift-report.pdf'), pdf);
  emit({ event: 'shift-report', name: report.suggestedFilename(), head: pdf.subarray(0, 5).toString('latin1'), bytes: pdf.length });

  // ---- The guard walks in: the fence alert.
  const lat = corners.reduce((a, c) => a + c[0], 0) / corners.length;
  const lon = corners.reduce((a, c) => a + c[1], 0) / corners.length;
  for (let i = 1; i <= 3; i += 1) {
    await sleep(1200);
    await phone.setGeolocation({ latitude: start.latitude + ((lat - start.latitude) * i) / 3, longitude: start.longitude + ((lon - start.longitude) * i) / 3, accuracy: 5 });
  }
  const row = dashboard.locator('#alerts .alert[data-type="GEOFENCE"]', { hasText: guardId });
  await row.waitFor({ timeout: 20000 });
  const alertId = await row.getAttribute('data-id');
  emit({ event: 'fence-alert', id: alertId, corners });
  await shot('fence-alert');
  await row.locator('input').fill('checking the bay');
  await row.locator('.do-ack').click();
  const acked = dashboard.locator(`#alerts .alert[data-id="${alertId}"][data-state="acknowledged"]`);
  await acked.waitFor({ timeout: 10000 });
  await acked.locator('input').fill('guard was sent there');
  await acked.locator('.do-resolve').click();
  await dashboard.locator(`#alerts .alert[data-id="${alertId}"][data-state="resolved"]`).waitFor({ timeout: 10000 });

  // ---- The alert log: filtered, its audit trail, the CSV.
  await dashboard.locator('#tab-log').click();
  await dashboard.locator('#log-type').selectOption('GEOFENCE');
  await dashboard.locator('#log-guard').fill(guardId);
  const logRow = dashboard.locator(`#log-rows tr[data-id="${alertId}"]`);
  await logRow.waitFor({ timeout: 10000 });
  await logRow.locator('button').click();
  await dashboard.locator('#log-trail li[data-action="resolved"]').waitFor({ timeout: 10000 });
  const trail = await dashboard.$$eval('#log-trail li', (li) => li.map((x) => ({ action: x.dataset.action, text: x.textContent })));
  const listed = await dashboard.$$eval('#log-rows tr', (tr) => tr.map((x) => x.dataset.id));
  const [download] = await Promise.all([dashboard.waitForEvent('download'), dashboard.locator('#log-export').click()]);
  const csv = fs.readFileSync(await download.path(), 'utf8');
  emit({ event: 'trail', trail, listed, csvHasAlert: csv.includes(alertId), csvHeader: csv.split('\r\n')[0] });
  await tools('alert-log');

  // ---- Playback of the guard's last five minutes, the slider moved by keyboard.
  await dashboard.locator('#tab-playback').click();
  await dashboard.locator('#play-guard').fill(guardId);
  await dashboard.locator('#play-last5').click();
  await dashboard.locator('#track polyline').waitFor({ state: 'attached', timeout: 10000 });
  const points = await dashboard.$eval('#track polyline', (p) => p.getAttribute('points').split(' ').length);
  const atEnd = await dashboard.locator('#play-time').textContent();
  await dashboard.locator('#play-slider').focus();
  await dashboard.keyboard.press('Home');
  const atStart = await dashboard.locator('#play-time').textContent();
  const events = await dashboard.$$eval('#play-events li', (li) => li.map((x) => x.textContent));
  emit({ event: 'playback', points, atStart, atEnd, events, marks: await dashboard.locator('#track .track-alert').count() });
  await dashboard.keyboard.press('End');
  await tools('playback');
  await dashboard.locator('#site').scrollIntoViewIfNeeded();
  await shot('playback-map');

  // ---- The guard table, sorted by battery.
  await dashboard.locator('#tab-guards').click();
  await dashboard.locator('#table-head th[data-key="battery"] button').click();
  await dashboard.locator('#table-head th[data-key="battery"][aria-sort="ascending"]').waitFor({ timeout: 5000 });
  const table = await dashboard.$$eval('#table-rows tr', (tr) => tr.map((x) => x.dataset.user));
  emit({ event: 'table', rows: table.length, hasGuard: table.includes(guardId) });
  await tools('guards');
  await dashboard.setViewportSize({ width: 820, height: 1180 });
  await dashboard.locator('#tab-messages').click();
  await openConversation(dashboard);
  await dashboard.locator('.work').scrollIntoViewIfNeeded();
  await dashboard.screenshot({ path: path.join(artifacts, 'workplace-tablet.png') });

  await browser.close();
  emit({ event: 'done', problems, foreign });
}

main().then(
  () => process.exit(0),
  (e) => {
    emit({ event: 'fail', error: String(e?.stack ?? e), problems });
    process.exit(1);
  },
);
