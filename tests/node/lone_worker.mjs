// Drives the guard app's lone-worker safety (/guard, web/guard/welfare.js) in real headless
// Chromium at a phone's viewport, next to a supervisor's dashboard (1400x900), for
// tests/lone_worker_app.rs. SCENARIO picks one of `check-in`, `lost-contact`, `man-down`,
// `duress`. Steps are JSON lines on stdout; the Rust side answers by files in LOOKOUT_CONTROL.
// Screenshots go to LOOKOUT_ARTIFACTS as lone-worker-*.png.
//
// Motion is emulated through the DevTools protocol's virtual sensors
// (Emulation.setSensorOverrideEnabled / setSensorOverrideReadings). In Debian's Chromium 156
// they drive DeviceMotionEvent (`accelerometer` its accelerationIncludingGravity,
// `linear-acceleration` its acceleration, `gyroscope` its rotationRate; `gravity` is not
// used): every overridden sensor must have a reading before any event comes (one overridden
// without a reading holds every event back), and one not overridden is the machine's own
// (none here: its fields are null). Only with the `accelerometer` and `gyroscope` permissions
// granted: a context's permission list denies what it does not name, and a denied page gets one
// devicemotion event with null readings. Overridden with `metadata: {available: false}`, the
// page gets one devicemotion event whose readings are all null, as on a phone without a sensor
// (and as headless Chromium does with no override at all). The Generic Sensor API's
// Accelerometer follows the `accelerometer` override alone.
import fs from 'node:fs';
import path from 'node:path';
import { emit, env, launch, phoneContext, proceed as proceedAfter, sameOriginOnly, signedInDashboard, sleep, watchPage as watchPageFor } from './harness.mjs';

const scenario = env('SCENARIO');
const origin = env('ORIGIN');
const artifacts = env('LOOKOUT_ARTIFACTS');
const control = env('LOOKOUT_CONTROL');
const guardToken = env('GUARD_TOKEN');
const supervisorToken = env('SUPERVISOR_TOKEN');
fs.mkdirSync(artifacts, { recursive: true });

// Generous: a loaded CI machine runs several browsers at once.
const PATIENT = 30000;
const HOME = { latitude: 52.3740, longitude: 4.8890, accuracy: 5 };
const NO_SENSOR_TEXT = 'This phone reports no motion sensor: man-down is off. Check-ins still run.';

const problems = [];
const foreign = [];
const proceed = (name) => proceedAfter(control, name);
const watchPage = (page, who) => watchPageFor(page, who, problems);
const shot = (page, name) => page.screenshot({ path: path.join(artifacts, `lone-worker-${name}.png`) });

/**
 * Installed in every page of a phone before its scripts: records the tones the page starts on
 * its AudioContexts (and whether the context was running, i.e. audible), the vibrations it
 * asks for, and the WebSockets it opens (so a test can cut them).
 */
function instruments() {
  const record = { contexts: [], tones: 0, audibleTones: 0, toneTimes: [], vibrations: [], vibrationTimes: [], sockets: [] };
  Object.defineProperty(window, '__test', { value: record });
  const RealAudio = window.AudioContext;
  if (RealAudio) {
    window.AudioContext = class extends RealAudio {
      constructor(...args) {
        super(...args);
        record.contexts.push(this);
      }

      createOscillator() {
        const tone = super.createOscillator();
        const start = tone.start.bind(tone);
        tone.start = (...args) => {
          record.tones += 1;
          record.toneTimes.push(performance.now());
          if (this.state === 'running') record.audibleTones += 1;
          return start(...args);
        };
        return tone;
      }
    };
  }
  const vibrate = navigator.vibrate?.bind(navigator);
  Object.defineProperty(navigator, 'vibrate', {
    configurable: true,
    value: (pattern) => {
      record.vibrations.push(pattern);
      record.vibrationTimes.push(performance.now());
      return vibrate ? vibrate(pattern) : true;
    },
  });
  // While `record.cut`, a new WebSocket fails at once (as without a network).
  const RealSocket = window.WebSocket;
  window.WebSocket = class extends RealSocket {
    constructor(...args) {
      super(...args);
      record.sockets.push(this);
      if (record.cut) this.close();
    }
  };
}

const audio = (page) => page.evaluate(() => ({
  running: window.__test.contexts.some((c) => c.state === 'running'),
  tones: window.__test.tones,
  audibleTones: window.__test.audibleTones,
  vibrations: window.__test.vibrations.length,
  lastVibration: window.__test.vibrations.at(-1) ?? null,
}));

async function phone(browser, token, { geolocation = HOME, init } = {}) {
  // Chromium's permission grant denies whatever it does not list: the motion sensors too.
  const context = await phoneContext(browser, geolocation, ['geolocation', 'accelerometer', 'gyroscope']);
  await sameOriginOnly(context, origin, foreign);
  await context.addInitScript(instruments);
  await context.addInitScript((t) => {
    if (location.pathname.startsWith('/guard')) localStorage.setItem('lookout.guard.token', t);
  }, token);
  if (init) await context.addInitScript(init);
  return context;
}

/** The guard app signed in and online, its lone-worker card shown. */
async function openGuard(context, who, before) {
  const page = await context.newPage();
  watchPage(page, who);
  if (before) await before(page);
  await page.goto(`${origin}/guard`);
  await page.locator('#conn[data-state="open"]').waitFor({ timeout: PATIENT });
  await page.locator('#welfare:not([hidden])').waitFor({ timeout: PATIENT });
  return page;
}

async function openDashboard(browser) {
  const { page } = await signedInDashboard(browser, { origin, token: supervisorToken, foreign, problems, timeout: PATIENT });
  return page;
}

const dashboardAlert = (dashboard, type) => dashboard.locator(`#alerts .alert[data-type="${type}"]`);
const deadlineOf = async (page) => Number(await page.locator('#welfare').getAttribute('data-deadline')) || null;

// ---- 1. Check-ins, a miss, and a kill -9 during the countdown --------------------------------

async function checkIn(browser) {
  const dashboard = await openDashboard(browser);
  const context = await phone(browser, guardToken);
  const guard = await openGuard(context, 'guard');
  // The guard has used the phone (a tap): the browser lets the page's audio play.
  await guard.locator('#welfare-title').click();
  // Until the pre-alarm shows, the page's status reads go unanswered: whatever the page
  // knows of the deadline then came from its welfare queue.
  const statusReads = [];
  const statusAnswers = [];
  const isStatus = (url) => url.includes('/api/v1/welfare/status');
  guard.on('request', (r) => {
    if (isStatus(r.url())) statusReads.push(Date.now());
  });
  guard.on('response', (r) => {
    if (isStatus(r.url())) statusAnswers.push(Date.now());
  });
  const unanswered = (route) => route.abort();
  await guard.route('**/api/v1/welfare/status*', unanswered);
  await guard.evaluate(() => {
    window.__shown = [];
    new MutationObserver(() => {
      if (!document.querySelector('#prealarm').hidden) window.__shown.push(Date.now());
    }).observe(document.querySelector('#prealarm'), { attributes: true, attributeFilter: ['hidden'] });
  });
  const before = await guard.locator('#check-in').textContent();
  const readyAt = Date.now();
  emit({ event: 'ready', deadline: await deadlineOf(guard), text: before });

  // Lone work started elsewhere (another of the guard's devices): the page hears that its
  // deadline moved (and asks for its status, unanswered here), then the server's
  // check_in_due on its welfare queue.
  await guard.locator('#prealarm:not([hidden])').waitFor({ timeout: PATIENT });
  const shownAt = await guard.evaluate(() => window.__shown[0]);
  await guard.unroute('**/api/v1/welfare/status*', unanswered);
  const firstDeadline = Number(await guard.locator('#prealarm').getAttribute('data-deadline'));
  await guard.locator('#prealarm[data-sound="playing"]').waitFor({ timeout: 10000 });
  const sound = await audio(guard);
  await shot(guard, 'prealarm');
  emit({
    event: 'prealarm',
    deadline: firstDeadline,
    statusAsksBefore: statusReads.filter((t) => t > readyAt && t < shownAt).length,
    statusAnswersBefore: statusAnswers.filter((t) => t > readyAt && t < shownAt).length,
    title: await guard.locator('#prealarm-title').textContent(),
    role: await guard.locator('#prealarm').getAttribute('role'),
    sound,
  });

  // One tap on "I'm OK": the overlay closes and the next deadline is later.
  await guard.locator('#prealarm-ok').click();
  await guard.locator('#prealarm').waitFor({ state: 'hidden', timeout: 10000 });
  await guard.waitForFunction((old) => Number(document.querySelector('#welfare').dataset.deadline) > old, firstDeadline, { timeout: 10000 });
  const secondDeadline = await deadlineOf(guard);
  emit({
    event: 'checked-in',
    first: firstDeadline,
    second: secondDeadline,
    soundAfter: await guard.locator('#prealarm').getAttribute('data-sound'),
    text: await guard.locator('#check-in').textContent(),
  });

  // No answer this time: the pre-alarm again, then the miss; supervisors see it.
  await guard.locator('#prealarm:not([hidden])').waitFor({ timeout: PATIENT });
  await guard.locator('#welfare[data-check-in="missed"]').waitFor({ timeout: PATIENT });
  const row = dashboardAlert(dashboard, 'CHECK_IN_MISSED');
  await row.first().waitFor({ timeout: PATIENT });
  await guard.locator('#prealarm[data-missed]').waitFor({ timeout: 10000 });
  await shot(guard, 'missed');
  await dashboard.screenshot({ path: path.join(artifacts, 'lone-worker-dashboard-missed.png') });
  emit({
    event: 'missed',
    deadline: secondDeadline,
    alertId: await row.first().getAttribute('data-id'),
    missedAlert: await guard.locator('#welfare').getAttribute('data-missed-alert'),
    overlay: await guard.locator('#prealarm-text').textContent(),
    notice: await guard.locator('#missed').textContent(),
    imOkShown: await guard.locator('#im-ok').isVisible(),
  });

  // Checked in again; Lookout is killed (-9) during the countdown.
  await proceed('kill-phase');
  await guard.locator('#prealarm-ok').click();
  await guard.locator('#welfare[data-check-in="ok"]').waitFor({ timeout: 10000 });
  const thirdDeadline = await deadlineOf(guard);
  emit({ event: 'armed', deadline: thirdDeadline });
  await proceed('killed');
  await guard.locator('#conn:not([data-state="open"])').waitFor({ timeout: PATIENT });
  // The server is down: only the page's own clock can raise the pre-alarm.
  await guard.locator('#prealarm:not([hidden])').waitFor({ timeout: PATIENT });
  await shot(guard, 'offline-prealarm');
  emit({
    event: 'local-prealarm',
    conn: await guard.locator('#conn').getAttribute('data-state'),
    deadline: Number(await guard.locator('#prealarm').getAttribute('data-deadline')),
  });
  await proceed('restarted');
  await guard.locator('#conn[data-state="open"]').waitFor({ timeout: 60000 });
  await guard.waitForFunction(
    (old) => {
      const card = document.querySelector('#welfare');
      return card.dataset.checkIn === 'missed' && card.dataset.missedAlert && card.dataset.missedAlert !== old;
    },
    await row.first().getAttribute('data-id'),
    { timeout: PATIENT },
  );
  await dashboard.locator('#conn[data-state="open"]').waitFor({ timeout: 60000 });
  emit({
    event: 'after-restart',
    missedAlert: await guard.locator('#welfare').getAttribute('data-missed-alert'),
    notice: await guard.locator('#missed').textContent(),
  });
  await proceed('counted');
  await dashboard.reload();
  await dashboard.locator('#conn[data-state="open"]').waitFor({ timeout: PATIENT });
  await dashboard.waitForFunction(() => document.querySelectorAll('#alerts .alert[data-type="CHECK_IN_MISSED"]').length >= 2, null, { timeout: PATIENT });
  emit({
    event: 'dashboard-counted',
    ids: await row.evaluateAll((rows) => rows.map((r) => r.dataset.id)),
  });
}

// ---- 2. Lost contact ------------------------------------------------------------------------

async function lostContact(browser) {
  const dashboard = await openDashboard(browser);
  const context = await phone(browser, guardToken);
  const guard = await openGuard(context, 'guard');
  await guard.locator('#fix', { hasText: 'Position' }).waitFor({ timeout: PATIENT });
  await guard.locator('#outbox[data-size="0"]').waitFor({ state: 'attached', timeout: PATIENT });
  emit({ event: 'online' });
  await proceed('cut');

  // The phone loses its network: no request gets out (nor a long-poll the client would fall
  // back to), the open socket drops and no new one gets through; then the context goes
  // offline too (not first: Chromium's offline emulation holds an open socket's closing
  // handshake, and the socket with it).
  let cut = true;
  await context.route('**/*', (route) => (cut ? route.abort('internetdisconnected') : route.fallback()));
  const cutAt = Date.now();
  await guard.evaluate(() => {
    window.__test.cut = true;
    for (const socket of window.__test.sockets) socket.close();
  });
  await guard.locator('#conn:not([data-state="open"])').waitFor({ timeout: PATIENT });
  await context.setOffline(true);
  emit({ event: 'cut', at: cutAt });
  const row = dashboardAlert(dashboard, 'LOST_CONTACT');
  await row.first().waitFor({ timeout: PATIENT });
  await dashboard.screenshot({ path: path.join(artifacts, 'lone-worker-dashboard-lost-contact.png') });
  emit({
    event: 'dashboard-lost',
    id: await row.first().getAttribute('data-id'),
    // Still offline when the supervisors saw it.
    conn: await guard.locator('#conn').getAttribute('data-state'),
  });
  await proceed('reconnect');

  await context.setOffline(false);
  cut = false;
  await guard.evaluate(() => {
    window.__test.cut = false;
  });
  await guard.locator('#conn[data-state="open"]').waitFor({ timeout: 60000 });
  emit({ event: 'back', at: Date.now() });
  await dashboard.locator('#alerts .alert[data-type="LOST_CONTACT"][data-state="resolved"]').waitFor({ timeout: PATIENT });
  emit({ event: 'dashboard-resolved' });
}

// ---- 3. Man-down ----------------------------------------------------------------------------

const MOTION_SENSORS = ['accelerometer', 'linear-acceleration', 'gyroscope'];

/**
 * Virtual motion sensors for `page` (before it loads): `move()` and `still()`. `types`: the
 * sensors overridden (the accelerometer alone drives no devicemotion event, only the Generic
 * Sensor API's Accelerometer).
 */
async function virtualSensors(page, { available = true, types = MOTION_SENSORS } = {}) {
  const cdp = await page.context().newCDPSession(page);
  for (const type of types) {
    await cdp.send('Emulation.setSensorOverrideEnabled', { enabled: true, type, metadata: { available } });
  }
  const read = async (type, xyz) => {
    if (types.includes(type)) await cdp.send('Emulation.setSensorOverrideReadings', { type, reading: { xyz } });
  };
  const set = async (linear, rotation = { x: 0, y: 0, z: 0 }) => {
    // Held upright (gravity along y), as in a chest holster.
    await read('linear-acceleration', linear);
    await read('accelerometer', { x: linear.x, y: linear.y + 9.81, z: linear.z });
    await read('gyroscope', rotation);
  };
  let walking = null;
  return {
    /** A walk: a changing acceleration of 2–3 m/s², read every 100 ms. */
    move() {
      if (walking) return;
      let i = 0;
      walking = setInterval(() => {
        i += 1;
        set({ x: 2 * Math.sin(i), y: 1.5 * Math.cos(i), z: 0.5 }).catch(() => {});
      }, 100);
    },
    /** Motionless: no linear acceleration, gravity only, no rotation. */
    async still() {
      clearInterval(walking);
      walking = null;
      await sleep(150);
      await set({ x: 0, y: 0, z: 0 });
    },
  };
}

async function manDown(browser) {
  const dashboard = await openDashboard(browser);
  const context = await phone(browser, guardToken);
  let sensors = null;
  const guard = await openGuard(context, 'guard', async (page) => {
    sensors = await virtualSensors(page);
  });
  sensors.move();
  await guard.locator('#lone-start').click();
  await guard.locator('#welfare[data-lone-work="true"]').waitFor({ timeout: PATIENT });
  await guard.locator('#motion[data-sensor="present"]').waitFor({ timeout: PATIENT });
  // Walking for longer than man_down_after_ms: no countdown.
  await sleep(4500);
  const hiddenWhileMoving = await guard.locator('#mandown').isHidden();

  // The phone stops moving: the countdown, loud. (The seconds it shows, and when it shows and
  // goes, are recorded.)
  await guard.evaluate(() => {
    window.__counts = [];
    window.__overlay = [];
    const count = document.querySelector('#mandown-count');
    new MutationObserver(() => window.__counts.push(count.textContent)).observe(count, { childList: true, characterData: true, subtree: true });
    const overlay = document.querySelector('#mandown');
    new MutationObserver(() => window.__overlay.push({ shown: !overlay.hidden, at: performance.now() }))
      .observe(overlay, { attributes: true, attributeFilter: ['hidden'] });
  });
  await sensors.still();
  await guard.locator('#mandown:not([hidden])').waitFor({ timeout: PATIENT });
  await guard.locator('#mandown[data-sound="playing"]').waitFor({ timeout: 10000 });
  const sounding = await audio(guard);
  await shot(guard, 'mandown');
  // Cancelled with one tap (no PIN set): quiet, and nothing raised.
  const clickedAt = await guard.evaluate(() => performance.now());
  await guard.locator('#mandown-cancel').click();
  await guard.locator('#mandown').waitFor({ state: 'hidden', timeout: 10000 });
  await sleep(1500);
  // From the cancel to the next countdown (if the phone, still motionless, already has one):
  // no tone, and the vibration stopped.
  const quiet = await guard.evaluate((clicked) => {
    const hidden = window.__overlay.find((o) => !o.shown && o.at > clicked)?.at ?? Infinity;
    const next = window.__overlay.find((o) => o.shown && o.at > hidden)?.at ?? Infinity;
    const t = window.__test;
    return {
      tones: t.toneTimes.filter((at) => at > hidden && at < next).length,
      vibrations: t.vibrations.filter((_, i) => t.vibrationTimes[i] > clicked && t.vibrationTimes[i] < next),
    };
  }, clickedAt);
  emit({
    event: 'cancelled',
    hiddenWhileMoving,
    sounding,
    counts: await guard.evaluate(() => window.__counts),
    role: await guard.locator('#mandown').getAttribute('role'),
    soundAfter: await guard.locator('#mandown').getAttribute('data-sound'),
    tonesAfterCancel: quiet.tones,
    lastVibration: quiet.vibrations.at(-1) ?? null,
    notice: await guard.locator('#welfare-notice').textContent(),
    alertShown: await guard.locator('#alert').isVisible(),
  });

  // Still motionless: the countdown again, and this time nobody cancels it.
  await guard.locator('#mandown:not([hidden])').waitFor({ timeout: PATIENT });
  await guard.waitForFunction(() => {
    const box = document.querySelector('#alert');
    return !box.hidden && box.dataset.id && box.textContent.includes('MAN_DOWN');
  }, null, { timeout: PATIENT });
  await shot(guard, 'mandown-sent');
  const row = dashboardAlert(dashboard, 'MAN_DOWN');
  await row.first().waitFor({ timeout: PATIENT });
  emit({
    event: 'man-down',
    id: await guard.locator('#alert').getAttribute('data-id'),
    text: await guard.locator('#alert').textContent(),
    overlayHidden: await guard.locator('#mandown').isHidden(),
    dashboardId: await row.first().getAttribute('data-id'),
  });

  // A phone whose browser reports no motion sensor (CDP: the sensors unavailable).
  const bare = await phone(browser, env('GUARD2_TOKEN'));
  const noSensor = await openGuard(bare, 'no-sensor', (page) => virtualSensors(page, { available: false }));
  await noSensor.locator('#lone-start').click();
  await noSensor.locator('#motion[data-sensor="none"]').waitFor({ timeout: PATIENT });
  await shot(noSensor, 'no-sensor');
  // A browser without the motion APIs at all.
  const old = await phone(browser, env('GUARD2_TOKEN'), {
    init: () => {
      delete window.DeviceMotionEvent;
      delete window.Accelerometer;
      delete window.ondevicemotion;
    },
  });
  const noApi = await openGuard(old, 'no-api');
  await noApi.locator('#motion[data-sensor="none"]').waitFor({ timeout: PATIENT });
  // A phone whose browser has only the Generic Sensor API's Accelerometer (no devicemotion
  // event, no DeviceMotionEvent): watched through the Accelerometer.
  const generic = await phone(browser, env('GUARD2_TOKEN'), {
    init: () => {
      delete window.DeviceMotionEvent;
      delete window.ondevicemotion;
      // Chromium would still dispatch devicemotion to a listener.
      const add = window.addEventListener;
      window.addEventListener = function addEventListener(type, ...rest) {
        if (type !== 'devicemotion') add.call(this, type, ...rest);
      };
    },
  });
  let genericSensors = null;
  const genericPage = await openGuard(generic, 'accelerometer-only', async (page) => {
    genericSensors = await virtualSensors(page, { types: ['accelerometer'] });
  });
  await genericSensors.still();
  await genericPage.locator('#motion[data-sensor="present"]').waitFor({ timeout: PATIENT });
  // A guard whose settings turn man-down off.
  const off = await phone(browser, env('GUARD3_TOKEN'));
  const offPage = await openGuard(off, 'man-down-off', (page) => virtualSensors(page));
  await offPage.locator('#lone-start').click();
  await offPage.locator('#motion[data-sensor="off"]').waitFor({ timeout: PATIENT });
  emit({
    event: 'no-sensor',
    text: await noSensor.locator('#motion').textContent(),
    noApiText: await noApi.locator('#motion').textContent(),
    accelerometerOnlyText: await genericPage.locator('#motion').textContent(),
    offText: await offPage.locator('#motion').textContent(),
    expected: NO_SENSOR_TEXT,
  });
}

// ---- 4. Duress ------------------------------------------------------------------------------

/**
 * What the guard sees, without what moves on its own: the fix's time, and `also` (e.g. a
 * countdown's seconds, which depend on when the guard typed).
 */
const screen = (page, also = []) => page.evaluate((blank) => {
  const body = document.body.cloneNode(true);
  for (const id of ['#fix', '#outbox', ...blank]) body.querySelector(id).textContent = '';
  return { html: body.innerHTML, text: document.body.innerText.replace(/Position .*\n/, '') };
}, also);

async function endLoneWork(guard, pin) {
  await guard.locator('#lone-start').click();
  await guard.locator('#welfare[data-lone-work="true"]').waitFor({ timeout: PATIENT });
  await guard.locator('#lone-end').click();
  await guard.locator('#pin-dialog:not([hidden])').waitFor({ timeout: 10000 });
  await guard.locator('#pin-input').fill(pin);
  const started = Date.now();
  await guard.locator('#pin-submit').click();
  await guard.locator('#welfare[data-lone-work="false"]').waitFor({ timeout: PATIENT });
  await guard.locator('#pin-dialog').waitFor({ state: 'hidden', timeout: 10000 });
  await guard.locator('#welfare-notice', { hasText: 'Lone work ended.' }).waitFor({ timeout: 10000 });
  const tookMs = Date.now() - started;
  // Settled: nothing further changes on its own.
  await sleep(1000);
  return { ...(await screen(guard)), tookMs, card: (await guard.locator('#welfare').screenshot()).toString('base64') };
}

/** Cancels a man-down countdown with `pin`: what the guard sees then. */
async function cancelCountdown(guard, pin) {
  await guard.locator('#mandown:not([hidden])').waitFor({ timeout: PATIENT });
  await guard.locator('#mandown-cancel').click();
  await guard.locator('#pin-dialog:not([hidden])').waitFor({ timeout: 10000 });
  await guard.locator('#pin-input').fill(pin);
  await guard.locator('#pin-submit').click();
  await guard.locator('#mandown').waitFor({ state: 'hidden', timeout: PATIENT });
  await guard.locator('#pin-dialog').waitFor({ state: 'hidden', timeout: 10000 });
  await guard.locator('#welfare-notice', { hasText: 'Man-down alarm cancelled.' }).waitFor({ timeout: 10000 });
  // At once: the watch starts again, and the next countdown comes after man_down_after_ms.
  const seen = await screen(guard, ['#mandown-count']);
  return { ...seen, sound: await guard.locator('#mandown').getAttribute('data-sound') };
}

async function duress(browser) {
  const dashboard = await openDashboard(browser);
  const context = await phone(browser, guardToken);
  const frames = [];
  let sensors = null;
  const guard = await openGuard(context, 'guard', async (page) => {
    // Every frame the phone's page receives, on any of its connections.
    page.on('websocket', (ws) => ws.on('framereceived', (f) => frames.push(Buffer.from(f.payload))));
    sensors = await virtualSensors(page);
  });
  await sensors.still();

  await guard.locator('#pin-open').click();
  await guard.locator('#pin-setup:not([hidden])').waitFor({ timeout: 10000 });
  await guard.locator('#pin-new').fill('1234');
  await guard.locator('#pin-duress').fill('9999');
  await shot(guard, 'pin-setup');
  await guard.locator('#pin-setup-save').click();
  await guard.locator('#welfare-notice', { hasText: 'Safety PIN saved.' }).waitFor({ timeout: PATIENT });
  await guard.locator('#pin-setup').waitFor({ state: 'hidden', timeout: 10000 });

  // Ending lone work: with the PIN, then with the duress PIN.
  const real = await endLoneWork(guard, '1234');
  await shot(guard, 'ended-with-pin');
  const forced = await endLoneWork(guard, '9999');
  await shot(guard, 'ended-with-duress-pin');
  emit({
    event: 'ended',
    same: real.html === forced.html && real.text === forced.text,
    sameCard: real.card === forced.card,
    real: { text: real.text, tookMs: real.tookMs },
    duress: { text: forced.text, tookMs: forced.tookMs },
    htmlReal: real.html === forced.html ? null : real.html,
    htmlDuress: real.html === forced.html ? null : forced.html,
  });
  const row = dashboardAlert(dashboard, 'DURESS');
  await row.first().waitFor({ timeout: PATIENT });
  await dashboard.screenshot({ path: path.join(artifacts, 'lone-worker-dashboard-duress.png') });
  emit({ event: 'dashboard-duress', id: await row.first().getAttribute('data-id') });

  // Cancelling a man-down countdown: with the PIN, then with the duress PIN.
  await proceed('man-down-settings');
  await guard.locator('#lone-start').click();
  await guard.locator('#welfare[data-lone-work="true"]').waitFor({ timeout: PATIENT });
  await guard.locator('#motion[data-sensor="present"]').waitFor({ timeout: PATIENT });
  const pinCancel = await cancelCountdown(guard, '1234');
  const duressCancel = await cancelCountdown(guard, '9999');
  await shot(guard, 'cancelled-with-duress-pin');
  // Lone work ends before the next countdown could run out.
  await guard.locator('#lone-end').click();
  await guard.locator('#pin-input').fill('1234');
  await guard.locator('#pin-submit').click();
  await guard.locator('#welfare[data-lone-work="false"]').waitFor({ timeout: PATIENT });
  await guard.locator('#mandown').waitFor({ state: 'hidden', timeout: PATIENT });
  await dashboard.waitForFunction(() => document.querySelectorAll('#alerts .alert[data-type="DURESS"]').length >= 2, null, { timeout: PATIENT });
  emit({
    event: 'cancelled',
    same: pinCancel.html === duressCancel.html && pinCancel.text === duressCancel.text,
    sound: [pinCancel.sound, duressCancel.sound],
    text: pinCancel.text,
    htmlReal: pinCancel.html === duressCancel.html ? null : pinCancel.html,
    htmlDuress: pinCancel.html === duressCancel.html ? null : duressCancel.html,
    dashboardRows: await row.count(),
  });

  await proceed('escalated');
  // Past the level 3 of both (the escalation's notice goes to /topic/system, which phones read).
  await sleep(1500);
  const mentions = frames.filter((f) => f.toString('latin1').toLowerCase().includes('duress'));
  emit({
    event: 'frames',
    count: frames.length,
    mentions: mentions.map((f) => f.toString('latin1').slice(0, 300)),
    page: (await guard.content()).includes('DURESS'),
  });
}

async function main() {
  const browser = await launch(['--ignore-certificate-errors']);
  const run = { 'check-in': checkIn, 'lost-contact': lostContact, 'man-down': manDown, duress }[scenario];
  if (!run) throw new Error(`unknown SCENARIO ${scenario}`);
  await run(browser);
  await browser.close();
  emit({ event: 'done', problems, foreign });
}

main().catch((e) => {
  emit({ event: 'fail', message: String(e?.stack ?? e) });
  process.exit(1);
});
