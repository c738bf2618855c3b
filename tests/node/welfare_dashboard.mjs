// Lone-worker safety on the dashboard (tests/welfare_dashboard.rs), in headless Chromium at
// 1366×900 against a test server over TLS. The supervisor sets the org's check-ins, a site's
// own and a guard's own in the settings panel (a value out of the server's bounds shows its
// 400 message; one the form can judge is refused before anything is sent) and reverts the
// site's; a guard in lone work reads "ok" in the guard table, then "missed" with a
// CHECK_IN_MISSED row, its icon and the alarm; LOST_CONTACT and MAN_DOWN rows show with their
// icons, and a DURESS comes first and loudest. The Rust side drives the guards and answers by
// files in LOOKOUT_CONTROL; steps are JSON lines on stdout; screenshots go to LOOKOUT_ARTIFACTS.
import fs from 'node:fs';
import path from 'node:path';
import { emit, env, launch, proceed as proceedAfter, sameOriginOnly, watchPage } from './harness.mjs';

const link = env('LOOKOUT_LINK');
const artifacts = env('LOOKOUT_ARTIFACTS');
const control = env('LOOKOUT_CONTROL');
const guard = env('GUARD');
const siteGuard = env('SITE_GUARD');
const fallen = env('FALLEN_GUARD');
const site = env('SITE');
const origin = new URL(link).origin;
fs.mkdirSync(artifacts, { recursive: true });

// Generous: a loaded 2-core machine runs other builds and browsers beside this one.
const LONG = 45000;
const S = '1000';
const MIN = '60000';
const H = '3600000';

const proceed = (name) => proceedAfter(control, name);
const problems = [];
const foreign = [];

async function main() {
  // The alarm may sound without a click first (the page cannot be clicked for it in a test).
  const browser = await launch(['--autoplay-policy=no-user-gesture-required']);
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1366, height: 900 } });
  await sameOriginOnly(context, origin, foreign);
  const page = await context.newPage();
  watchPage(page, 'dashboard', problems);
  // Every settings change the page sends.
  const puts = [];
  page.on('request', (r) => {
    if (r.method() === 'PUT' && r.url().includes('/api/v1/welfare/settings')) puts.push(r.url());
  });
  const shot = (name) => page.screenshot({ path: path.join(artifacts, `welfare-dashboard-${name}.png`) });
  const tools = async (name) => {
    await page.locator('.work').scrollIntoViewIfNeeded();
    await shot(name);
  };
  const tab = (name) => page.locator(`#tab-${name}`).click();
  const scope = (kind) => page.locator(`input[name="wf-scope"][value="${kind}"]`).check();
  /** Fills the form: durations as [value, unit ms]. */
  const fill = async (s) => {
    if ('enabled' in s) await page.locator('#wf-enabled').setChecked(s.enabled);
    for (const [id, key] of [['#wf-interval', 'interval'], ['#wf-pre-alarm', 'preAlarm'], ['#wf-grace', 'grace']]) {
      if (!s[key]) continue;
      await page.locator(id).fill(String(s[key][0]));
      await page.locator(`${id}-unit`).selectOption(s[key][1]);
    }
  };
  const save = () => page.locator('#wf-save').click();
  const cell = (user, col, more = '') => page.locator(`#table-rows tr[data-user="${user}"] td[data-col="${col}"]${more}`);
  const body = () => page.evaluate(() => ({ ...document.body.dataset }));
  /** An alert row of `type` for `user`, as shown. */
  const row = async (type, user) => {
    const r = page.locator(`#alerts .alert[data-type="${type}"]`, { hasText: user }).first();
    await r.waitFor({ timeout: LONG });
    // Its alarm sounded as it came in.
    await page.locator(`#alerts .alert[data-type="${type}"][data-alarm="sounded"]`, { hasText: user }).first().waitFor({ timeout: 10000 });
    return r.evaluate((li) => ({
      id: li.dataset.id,
      state: li.dataset.state,
      alarm: li.dataset.alarm ?? null,
      icon: li.querySelector('.type svg.icon')?.dataset.icon ?? null,
      label: li.querySelector('.type').textContent,
      border: getComputedStyle(li).borderLeftWidth,
      className: li.className,
      silentHint: li.querySelector('.silent')?.textContent ?? null,
    }));
  };

  await page.goto(link);
  await page.locator('#conn[data-state="open"]').waitFor({ timeout: LONG });
  // Progress between the steps the Rust side waits for (each wait there is bounded).
  emit({ event: 'step', step: 'signed-in' });

  // ---- The org's check-ins: refused values first, then saved.
  await tab('welfare');
  await page.locator('#wf-from[data-from="org"]').waitFor({ timeout: LONG });
  const defaults = await page.locator('#wf-interval').inputValue();
  await fill({ enabled: true, interval: ['0.5', S], preAlarm: ['0.2', S], grace: ['1', S] });
  await save();
  await page.locator('#wf-error').waitFor({ state: 'visible', timeout: LONG });
  const refused = await page.locator('#wf-error').textContent();
  const putsAfterRefusal = puts.length;
  // The form's own check: a reminder after the deadline is never sent.
  await fill({ interval: ['1', H], preAlarm: ['2', H] });
  await save();
  await page.locator('#wf-error', { hasText: 'before the deadline' }).waitFor({ timeout: 10000 });
  const invalid = await page.locator('#wf-error').textContent();
  const putsAfterInvalid = puts.length;
  await shot('refused');
  emit({ event: 'step', step: 'refused' });
  await fill({ enabled: true, interval: ['1', H], preAlarm: ['2', MIN], grace: ['2', MIN] });
  await save();
  await page.locator('#wf-status', { hasText: 'Saved' }).waitFor({ timeout: LONG });
  const orgError = await page.locator('#wf-error').isVisible();
  emit({ event: 'step', step: 'org-saved' });

  // ---- A site's own (the site of a planned shift).
  await scope('site');
  await page.locator(`#wf-site option[value="${site}"]`).waitFor({ state: 'attached', timeout: LONG });
  await page.locator('#wf-site').selectOption(site);
  await page.locator('#wf-from', { hasText: `${site} follows the org's settings` }).waitFor({ timeout: LONG });
  const siteBefore = await page.locator('#wf-interval').inputValue();
  await fill({ interval: ['45', MIN] });
  await save();
  await page.locator('#wf-from[data-from="site"]').waitFor({ timeout: LONG });
  await page.locator('#wf-status', { hasText: 'Saved' }).waitFor({ timeout: LONG });
  // The overview: the site has its own, and the guard on shift there follows them.
  await page.locator(`#wf-overview tr[data-scope="site"][data-name="${site}"][data-from="site"]`).waitFor({ timeout: LONG });
  await page.locator(`#wf-overview tr[data-scope="guard"][data-name="${siteGuard}"][data-from="site"]`).waitFor({ timeout: LONG });
  await tools('settings');
  emit({
    event: 'settings-saved',
    refused,
    invalid,
    putsAfterRefusal,
    putsAfterInvalid,
    orgError,
    defaults,
    siteBefore,
    puts: puts.length,
  });

  // ---- A guard in lone work: "ok" in the guard table.
  await proceed('lone-work');
  await tab('guards');
  await cell(guard, 'checkin', '[data-state="ok"]').waitFor({ timeout: LONG });
  const okText = await cell(guard, 'checkin').textContent();
  const loneText = await cell(guard, 'lone').textContent();
  await tools('guards-ok');
  emit({ event: 'ok', text: okText, lone: loneText });

  // ---- The guard's own settings: a 3 s check-in it will miss.
  await tab('welfare');
  await scope('guard');
  await page.locator('#wf-guard').fill(guard);
  await page.locator('#wf-guard').press('Tab');
  await page.locator('#wf-from', { hasText: `${guard} follows the org's settings` }).waitFor({ timeout: LONG });
  await fill({ interval: ['3', S], preAlarm: ['1', S], grace: ['1', S] });
  await save();
  await page.locator('#wf-from[data-from="guard"]').waitFor({ timeout: LONG });
  emit({ event: 'guard-saved', from: await page.locator('#wf-from').textContent() });
  // Its next deadline is 3 s away: "missed" in the table, the alert in the list.

  await tab('guards');
  await cell(guard, 'checkin', '[data-state="missed"]').waitFor({ timeout: LONG });
  emit({ event: 'step', step: 'missed-in-table' });
  const missedRow = await row('CHECK_IN_MISSED', guard);
  // The audio context starts running a moment after the first alarm (the outcome is checked
  // on the Rust side).
  await page.locator('body[data-audio="running"]').waitFor({ state: 'attached', timeout: 10000 }).catch(() => {});
  const missedSound = await body();
  await tools('missed');
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot('missed-alert');
  emit({ event: 'missed', text: await cell(guard, 'checkin').textContent(), row: missedRow, sound: missedSound });

  // ---- The site's own settings reverted from the overview.
  await tab('welfare');
  const siteRow = page.locator(`#wf-overview tr[data-scope="site"][data-name="${site}"]`);
  await siteRow.locator('.do-revert').click();
  await page.locator(`#wf-overview tr[data-scope="site"][data-name="${site}"][data-from="org"]`).waitFor({ timeout: LONG });
  await page.locator(`#wf-overview tr[data-scope="guard"][data-name="${siteGuard}"][data-from="org"]`).waitFor({ timeout: LONG });
  await page.locator('#wf-from[data-from="org"]').waitFor({ timeout: LONG });
  const revertedStatus = await page.locator('#wf-status').textContent();
  const guardRow = await page.locator(`#wf-overview tr[data-scope="guard"][data-name="${guard}"]`).getAttribute('data-from');
  await tools('reverted');
  emit({ event: 'reverted', status: revertedStatus, guardFrom: guardRow });

  // ---- Lost contact: the guard on shift at the site goes silent.
  await proceed('dropped');
  const lostRow = await row('LOST_CONTACT', siteGuard);
  emit({ event: 'step', step: 'lost-contact-row' });
  await tab('guards');
  await cell(siteGuard, 'lone', ' .badge.lost-contact').waitFor({ timeout: LONG });
  emit({ event: 'lost-contact', row: lostRow, sound: await body(), lone: await cell(siteGuard, 'lone').textContent() });

  // ---- Man down.
  await proceed('man-down');
  const manDownRow = await row('MAN_DOWN', fallen);
  emit({ event: 'step', step: 'man-down-row' });
  await cell(fallen, 'lone', ' .badge.man-down').waitFor({ timeout: LONG });
  emit({ event: 'man-down', row: manDownRow, sound: await body(), lone: await cell(fallen, 'lone').textContent() });
  await tools('guards');

  // ---- Duress: first, loudest, its own banner.
  await proceed('duress');
  const duressRow = await row('DURESS', guard);
  emit({ event: 'step', step: 'duress-row' });
  await page.locator('#duress').waitFor({ state: 'visible', timeout: 10000 });
  const first = await page.locator('#alerts .alert').first().getAttribute('data-id');
  const banner = await page.locator('#duress').textContent();
  const duressSound = await body();
  await cell(guard, 'lone', ' .badge.duress').waitFor({ timeout: LONG });
  // The list beside the map is redrawn at most once a second.
  await page.locator(`#guard-list .roster-item[data-user="${guard}"] .badge.duress`).waitFor({ timeout: LONG });
  const rosterBadge = await page.locator(`#guard-list .roster-item[data-user="${guard}"] .badge.duress`).count();
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot('duress');
  // The supervisor acknowledges it: nothing of it reaches the guard (checked on the Rust side).
  const duress = page.locator(`#alerts .alert[data-id="${duressRow.id}"]`);
  await duress.locator('input').fill('police called');
  await duress.locator('.do-ack').click();
  await page.locator(`#alerts .alert[data-id="${duressRow.id}"][data-state="acknowledged"]`).waitFor({ timeout: LONG });
  await page.locator('#duress', { hasText: 'acknowledged' }).waitFor({ timeout: 10000 });
  // Acknowledged, it stays first: the guard is still in danger.
  const firstAfterAck = await page.locator('#alerts .alert').first().getAttribute('data-id');
  emit({
    event: 'duress',
    row: duressRow,
    first,
    banner,
    sound: duressSound,
    rosterBadge,
    otherBorder: manDownRow.border,
    bannerAfterAck: await page.locator('#duress').textContent(),
    firstAfterAck,
    alarmsAfterAck: (await body()).alarms,
  });

  // ---- The alert log's type filter offers the four types.
  await tab('log');
  const types = await page.$$eval('#log-type option', (o) => o.map((x) => x.value));
  await page.locator('#log-type').selectOption('DURESS');
  await page.locator(`#log-rows tr[data-id="${duressRow.id}"]`).waitFor({ timeout: LONG });
  const listed = await page.$$eval('#log-rows tr', (tr) => tr.map((x) => x.dataset.id));
  const logIcon = await page.locator(`#log-rows tr[data-id="${duressRow.id}"] svg.icon[data-icon="DURESS"]`).count();
  await tools('log');
  emit({ event: 'log', types, listed, logIcon });

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
