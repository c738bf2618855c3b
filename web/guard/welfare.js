// Lone-worker safety in the guard app, on the server's welfare check-ins (src/field/welfare.rs)
// and PINs (src/field/duress.rs):
//
// - Lone work and check-ins: the guard starts (and, with the safety PIN, ends) a session of lone
//   work; the next check-in's deadline is shown, "I'm OK" is one tap. Before the deadline a
//   full-screen "Are you OK?" pre-alarm vibrates and beeps, raised by the server's
//   `check_in_due` message on /user/queue/welfare and by a local timer on the status'
//   `preAlarmAt`, whichever comes first. Deadlines are the server's: the phone's clock is only
//   used through the offset measured against the server's `now`.
// - Man-down: while on shift or in lone work, no significant motion (or lying flat) for
//   `manDownAfterMs` starts a loud countdown of `manDownCountdownMs`; not cancelled, MAN_DOWN
//   goes out through the outbox like a PANIC. A phone without a motion sensor is told so.
// - The safety PIN and the duress PIN: wherever the PIN is asked, the duress PIN gets exactly
//   the answer of the real one (the server answers both alike; this page cannot tell them apart
//   and keeps neither).
import { rest } from '/guard/rest.js';

const $ = (selector) => document.querySelector(selector);

const WELFARE_QUEUE = '/user/queue/welfare';
// The status is read again this often (a shift starting arms check-ins without a message).
const REFRESH_MS = 30000;
// Without a motion reading in this long after the watch starts, the phone has no sensor.
const SENSOR_WAIT_MS = 3000;
// Readings that stop for this long (page hidden, sensor paused) restart the no-motion clock.
const READING_GAP_MS = 2000;
// Linear acceleration (m/s²) and rotation (°/s) that count as motion; when lying flat only a
// strong movement (the phone picked up) does.
const MOTION_MS2 = 1.0;
const STRONG_MS2 = 3.0;
const ROTATION_DEG_S = 30;

// ---- Sound and vibration --------------------------------------------------------------------

/**
 * A repeating two-tone beep (WebAudio oscillators, no audio file) and vibration while any of its
 * users wants it. Browsers start audio only after the page was touched once: the context is
 * resumed on the first touch or key. `element.dataset.sound` says `playing` once the tone
 * really sounds (the context running), `blocked` while the browser keeps it muted, `off`.
 */
class Siren {
  constructor() {
    this.users = new Map();
    this.timer = null;
    this.context = null;
    this.high = false;
    const unlock = () => {
      this.audio()?.resume().catch(() => {});
    };
    for (const type of ['pointerdown', 'keydown']) document.addEventListener(type, unlock, { capture: true });
  }

  audio() {
    if (!this.context) {
      const Context = window.AudioContext ?? window.webkitAudioContext;
      if (!Context) return null;
      try {
        this.context = new Context();
      } catch {
        return null;
      }
      this.context.addEventListener('statechange', () => this.mark());
    }
    return this.context;
  }

  on(user, element) {
    this.users.set(user, element);
    if (!this.timer) {
      this.beep();
      this.timer = setInterval(() => this.beep(), 1000);
    }
    this.mark();
  }

  off(user) {
    const element = this.users.get(user);
    this.users.delete(user);
    if (element) element.dataset.sound = 'off';
    if (this.users.size === 0) {
      clearInterval(this.timer);
      this.timer = null;
      navigator.vibrate?.(0);
    }
  }

  mark() {
    const state = this.context?.state === 'running' ? 'playing' : 'blocked';
    for (const element of this.users.values()) element.dataset.sound = state;
  }

  beep() {
    navigator.vibrate?.([400, 150, 300]);
    const context = this.audio();
    if (!context) return;
    if (context.state !== 'running') context.resume().catch(() => {});
    try {
      const tone = context.createOscillator();
      const gain = context.createGain();
      tone.type = 'square';
      this.high = !this.high;
      tone.frequency.value = this.high ? 1046 : 784;
      gain.gain.value = 0.25;
      tone.connect(gain).connect(context.destination);
      const at = context.currentTime;
      tone.start(at);
      tone.stop(at + 0.45);
    } catch {
      // No audio output: the vibration and the screen remain.
    }
    this.mark();
  }
}

// ---- Motion ---------------------------------------------------------------------------------

const magnitude = (v) => Math.hypot(v.x, v.y, v.z);

/** A reading's vector, or null when the browser gives none (no sensor behind the event). */
function vector(v) {
  return v && [v.x, v.y, v.z].every(Number.isFinite) ? { x: v.x, y: v.y, z: v.z } : null;
}

/**
 * Watches DeviceMotionEvent (and the Generic Sensor API's Accelerometer when the events carry
 * nothing) for a phone that stopped moving. `onQuiet()` when there was no significant motion for
 * `afterMs`; `onSensor(true|false)` once it is known whether the phone has a motion sensor.
 */
class MotionWatch {
  constructor(onQuiet, onSensor) {
    this.onQuiet = onQuiet;
    this.onSensor = onSensor;
    this.running = false;
    this.sensor = null;
    this.listener = (event) => this.fromEvent(event);
  }

  start(afterMs) {
    this.afterMs = afterMs;
    if (this.running) return;
    this.running = true;
    this.paused = false;
    this.waitForMotion = false;
    this.lastReading = 0;
    this.lastMotion = performance.now();
    this.lastEventData = 0;
    this.baseline = null;
    this.has = false;
    if (!('DeviceMotionEvent' in window) && !('Accelerometer' in window)) {
      this.onSensor(false);
      this.running = false;
      return;
    }
    window.addEventListener('devicemotion', this.listener);
    this.startAccelerometer();
    this.timer = setInterval(() => this.check(), 250);
    this.detect = setTimeout(() => {
      if (!this.has) this.onSensor(false);
    }, SENSOR_WAIT_MS);
  }

  stop() {
    if (!this.running) return;
    this.running = false;
    window.removeEventListener('devicemotion', this.listener);
    clearInterval(this.timer);
    clearTimeout(this.detect);
    try {
      this.sensor?.stop();
    } catch {
      // Already stopped.
    }
    this.sensor = null;
  }

  /** Not watched while a countdown runs; `afterMotion`: only motion starts the watch again. */
  pause() {
    this.paused = true;
  }

  resume(afterMotion) {
    this.paused = false;
    this.waitForMotion = afterMotion;
    this.lastMotion = performance.now();
  }

  startAccelerometer() {
    if (!('Accelerometer' in window)) return;
    try {
      const sensor = new window.Accelerometer({ frequency: 20 });
      sensor.addEventListener('reading', () => {
        // Used only when the motion events carry nothing.
        if (performance.now() - this.lastEventData < 1000) return;
        this.sample(null, vector(sensor), null);
      });
      sensor.addEventListener('error', () => {
        // Refused or absent: DeviceMotionEvent may still deliver.
      });
      sensor.start();
      this.sensor = sensor;
    } catch {
      // Blocked by a permissions policy, or not supported.
    }
  }

  fromEvent(event) {
    const linear = vector(event.acceleration);
    const gravity = vector(event.accelerationIncludingGravity);
    const r = event.rotationRate;
    const rotation = r && [r.alpha, r.beta, r.gamma].some(Number.isFinite)
      ? Math.max(...[r.alpha, r.beta, r.gamma].map((v) => Math.abs(v ?? 0)))
      : null;
    if (!linear && !gravity) return;
    this.lastEventData = performance.now();
    this.sample(linear, gravity, rotation);
  }

  sample(linear, gravity, rotation) {
    const now = performance.now();
    if (!this.has) {
      this.has = true;
      this.onSensor(true);
    }
    if (now - this.lastReading > READING_GAP_MS) this.lastMotion = now;
    this.lastReading = now;
    let moving = false;
    let strong = false;
    if (linear) {
      const m = magnitude(linear);
      moving = m > MOTION_MS2;
      strong = m > STRONG_MS2;
    }
    let flat = false;
    if (gravity) {
      const g = magnitude(gravity);
      flat = g > 5 && Math.abs(gravity.z) / g > 0.9;
      if (!linear && this.baseline) {
        const d = Math.hypot(gravity.x - this.baseline.x, gravity.y - this.baseline.y, gravity.z - this.baseline.z);
        moving = d > MOTION_MS2;
        strong = d > STRONG_MS2;
      }
      // A slow average: what the phone reads when still.
      this.baseline = this.baseline
        ? {
            x: this.baseline.x * 0.9 + gravity.x * 0.1,
            y: this.baseline.y * 0.9 + gravity.y * 0.1,
            z: this.baseline.z * 0.9 + gravity.z * 0.1,
          }
        : gravity;
    }
    if (rotation !== null && rotation > ROTATION_DEG_S) moving = true;
    if (moving && (!flat || strong)) {
      this.lastMotion = now;
      this.waitForMotion = false;
    }
  }

  check() {
    const now = performance.now();
    if (this.paused || this.waitForMotion || !this.has || now - this.lastReading > READING_GAP_MS) return;
    if (now - this.lastMotion >= this.afterMs) {
      this.paused = true;
      this.onQuiet();
    }
  }
}

// ---- Lone-worker safety ---------------------------------------------------------------------

const two = (n) => String(n).padStart(2, '0');
/** Sets a text only when it changes (a live region is not told the same thing twice a second). */
function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}
const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
function span(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}:${two(s % 60)} min` : `${Math.floor(m / 60)} h ${two(m % 60)} min`;
}

/**
 * Starts the lone-worker part of the app. `client`: the page's LookoutClient; `token()`: the
 * session token; `raise(type, message)`: sends an alarm through the outbox and shows its state.
 * Answers `{ connected(), alert(alert), stop() }`.
 */
export function startWelfare({ client, token, raise }) {
  const siren = new Siren();
  let status = null;
  // Server time minus this phone's, measured at each status.
  let offset = 0;
  const serverNow = () => Date.now() + offset;
  let loaded = null;
  let lastRefresh = 0;
  // When the request of the status last taken was sent: an older answer that comes later is
  // stale.
  let takenSentAt = 0;
  let stopped = false;
  // The deadline whose pre-alarm is up, and the one the guard already answered.
  let prealarmFor = null;
  let prealarmSince = 0;
  let missedAlertState = null;
  let sensor = null;

  const api = (method, path, body) => rest(token(), method, `/api/v1/welfare/${path}`, body);

  /** Takes a status answer of the server: clock offset, then everything shown. */
  function take(next, sentAt) {
    if (!next || typeof next.now !== 'number' || sentAt < takenSentAt) return;
    takenSentAt = sentAt;
    // The server read its clock about halfway through the request.
    offset = next.now - (sentAt + Date.now()) / 2;
    status = next;
    // Answered elsewhere (another device) or disarmed: the pre-alarm goes, unless this answer
    // was asked for before the pre-alarm came.
    const replaced = status.deadline !== prealarmFor && status.checkIn !== 'missed';
    if (prealarmFor !== null && replaced && sentAt >= prealarmSince) hidePrealarm();
    render();
    watchMotion();
  }

  async function refresh() {
    lastRefresh = Date.now();
    const sentAt = Date.now();
    try {
      const { status: code, body } = await api('GET', 'status');
      if (code === 200) take(body, sentAt);
    } catch {
      // Offline: what is shown stays, the local timers go on.
    }
  }

  async function act(method, path, body) {
    const sentAt = Date.now();
    const answer = await api(method, path, body);
    if (answer.status === 200 && answer.body?.now) take(answer.body, sentAt);
    return answer;
  }

  // ---- What is shown ----

  const card = $('#welfare');

  function notice(text, { error = false } = {}) {
    $('#welfare-notice').hidden = !text;
    $('#welfare-notice').classList.toggle('error', error);
    $('#welfare-notice').textContent = text ?? '';
  }

  /** The check-in state now, by the server's clock (the status' own is as of its answer). */
  function checkIn() {
    if (!status) return 'off';
    if (status.deadline) {
      const t = serverNow();
      if (t >= status.deadline) return 'overdue';
      if (t >= (status.preAlarmAt ?? status.deadline)) return 'pre_alarm';
      return 'ok';
    }
    return status.missedAlert ? 'missed' : 'off';
  }

  function render() {
    if (!status) return;
    card.hidden = false;
    const state = checkIn();
    card.dataset.checkIn = state;
    card.dataset.deadline = status.deadline ?? '';
    card.dataset.loneWork = String(Boolean(status.loneWork));
    card.dataset.missedAlert = status.missedAlert ?? '';
    const deadline = status.deadline;
    let line;
    if (!status.enabled) {
      line = status.loneWork ? 'Lone work: check-ins are off for you.' : 'Check-ins are off for you.';
    } else if (deadline && state === 'overdue') {
      line = 'Check-in overdue: tap I\'m OK now.';
    } else if (deadline) {
      line = `Next check-in by ${clock(deadline - offset)} (in ${span(deadline - serverNow())}).`;
    } else if (status.missedAlert) {
      line = 'No check-in is due until you tap I\'m OK.';
    } else {
      line = 'Check-ins start with lone work or your shift.';
    }
    setText($('#check-in'), line);
    const missed = $('#missed');
    missed.hidden = !status.missedAlert;
    setText(missed, status.missedAlert
      ? `You missed a check-in: your supervisors were alerted${missedAlertState?.by ? ` (acknowledged by ${missedAlertState.by})` : ''}. Tap I'm OK when you can.`
      : '');
    $('#im-ok').hidden = !(deadline || status.missedAlert);
    $('#lone-start').hidden = Boolean(status.loneWork);
    $('#lone-end').hidden = !status.loneWork;
    const overlay = $('#prealarm');
    if (!overlay.hidden) {
      if (status.missedAlert && !deadline) {
        overlay.dataset.missed = '';
        setText($('#prealarm-title'), 'Check-in missed');
        setText($('#prealarm-text'), 'Your supervisors were alerted. Tap I\'m OK if you are.');
        $('#prealarm-close').hidden = false;
      } else if (deadline) {
        const t = serverNow();
        setText($('#prealarm-text'), t < deadline
          ? `Check in now: due in ${span(deadline - t)}.`
          : `Check in now: your supervisors are alerted in ${span(deadline + status.graceMs - t)}.`);
      }
    }
  }

  // ---- Pre-alarm ----

  function showPrealarm(deadline) {
    const overlay = $('#prealarm');
    if (prealarmFor === deadline && !overlay.hidden) return;
    prealarmFor = deadline;
    prealarmSince = Date.now();
    delete overlay.dataset.missed;
    overlay.dataset.deadline = String(deadline);
    $('#prealarm-title').textContent = 'Are you OK?';
    $('#prealarm-close').hidden = true;
    overlay.hidden = false;
    siren.on('prealarm', overlay);
    $('#prealarm-ok').focus();
    render();
  }

  function hidePrealarm() {
    prealarmFor = null;
    $('#prealarm').hidden = true;
    siren.off('prealarm');
  }

  async function imOk(button) {
    button.disabled = true;
    try {
      const { status: code } = await act('POST', 'ok');
      if (code === 200) {
        hidePrealarm();
        missedAlertState = null;
        notice('Checked in.');
      } else {
        notice(`The check-in was not taken (${code}): try again.`, { error: true });
      }
    } catch {
      notice('No connection: the check-in was not taken. Try again.', { error: true });
    } finally {
      button.disabled = false;
    }
  }
  $('#im-ok').addEventListener('click', (e) => imOk(e.currentTarget));
  $('#prealarm-ok').addEventListener('click', (e) => imOk(e.currentTarget));
  $('#prealarm-close').addEventListener('click', hidePrealarm);

  // The server's pre-alarm; a stale one (a deadline since replaced) is only acknowledged.
  client.subscribe(WELFARE_QUEUE, async (data, message) => {
    if (data?.kind === 'check_in_due' && typeof data.deadline === 'number') {
      await loaded;
      if (!status?.deadline || data.deadline >= status.deadline) {
        if (status && data.deadline > (status.deadline ?? 0)) {
          status = { ...status, deadline: data.deadline, preAlarmAt: data.deadline - status.preAlarmMs };
        }
        showPrealarm(data.deadline);
      }
      refresh();
    } else if (data?.kind === 'armed' || data?.kind === 'disarmed') {
      // A shift, new settings or another device moved the deadline: the status says how.
      refresh();
    }
    client.ack(WELFARE_QUEUE, message.seq).catch(() => {});
  });

  // The local clock of the pre-alarm and the miss, on the server's time.
  const ticker = setInterval(() => {
    if (!status) return;
    const t = serverNow();
    if (status.deadline && t >= (status.preAlarmAt ?? status.deadline)) showPrealarm(status.deadline);
    const missAt = status.deadline ? status.deadline + status.graceMs : null;
    const stale = Date.now() - lastRefresh;
    if ((missAt && t > missAt + 300 && stale > 2000) || stale > REFRESH_MS) refresh();
    render();
  }, 500);

  // ---- Lone work ----

  $('#lone-start').addEventListener('click', async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    askMotionPermission();
    try {
      const { status: code } = await act('POST', 'start');
      if (code === 200) notice('Lone work started.');
      else notice(`Lone work was not started (${code}).`, { error: true });
    } catch {
      notice('No connection: lone work was not started. Try again.', { error: true });
    } finally {
      button.disabled = false;
    }
  });

  $('#lone-end').addEventListener('click', async (e) => {
    if (!status?.pinSet) {
      // Without a PIN there is nothing to ask: the server ends it as asked.
      const button = e.currentTarget;
      button.disabled = true;
      try {
        const { status: code } = await act('POST', 'stop');
        if (code === 200) notice('Lone work ended.');
        else notice(`Lone work was not ended (${code}).`, { error: true });
      } catch {
        notice('No connection: lone work was not ended. Try again.', { error: true });
      } finally {
        button.disabled = false;
      }
      return;
    }
    const accepted = await askPin('end_lone_work', 'Enter your safety PIN to end lone work.');
    if (accepted) {
      notice('Lone work ended.');
      refresh();
    }
  });

  // ---- PIN ----

  let pinAction = null;
  let pinDone = null;

  /**
   * Asks for the safety PIN for `action` (`end_lone_work` or `cancel`); resolves true when the
   * server accepted it. The PIN and the duress PIN get the same answer, so the same screens.
   */
  function askPin(action, purpose) {
    pinDone?.(false);
    pinAction = action;
    $('#pin-purpose').textContent = purpose;
    $('#pin-error').hidden = true;
    $('#pin-error').textContent = '';
    $('#pin-input').value = '';
    $('#pin-dialog').hidden = false;
    $('#pin-input').focus();
    return new Promise((resolve) => {
      pinDone = (accepted) => {
        pinDone = null;
        pinAction = null;
        $('#pin-input').value = '';
        $('#pin-dialog').hidden = true;
        resolve(accepted);
      };
    });
  }

  let pinPending = false;
  $('#pin-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const pin = $('#pin-input').value.trim();
    const action = pinAction;
    if (!pinDone || pinPending) return;
    pinPending = true;
    $('#pin-submit').disabled = true;
    let code = 0;
    try {
      code = (await api('POST', 'pin', { pin, action })).status;
    } catch {
      code = 0;
    } finally {
      pinPending = false;
      $('#pin-submit').disabled = false;
    }
    if (pinAction !== action || !pinDone) return;
    if (code === 200) {
      pinDone(true);
      return;
    }
    $('#pin-input').value = '';
    $('#pin-error').hidden = false;
    $('#pin-error').textContent = {
      0: 'No connection: the PIN cannot be checked. Try again.',
      403: 'Wrong PIN. Try again.',
      429: 'Too many wrong PINs: wait a few minutes.',
    }[code] ?? `The PIN could not be checked (${code}). Try again.`;
  });
  $('#pin-back').addEventListener('click', () => pinDone?.(false));

  function openPinSetup(why) {
    $('#pin-current-row').hidden = !status?.pinSet;
    $('#pin-current').required = Boolean(status?.pinSet);
    for (const id of ['#pin-current', '#pin-new', '#pin-duress']) $(id).value = '';
    $('#pin-setup-error').hidden = !why;
    $('#pin-setup-error').textContent = why ?? '';
    $('#pin-setup').hidden = false;
    $(status?.pinSet ? '#pin-current' : '#pin-new').focus();
  }
  const closePinSetup = () => {
    for (const id of ['#pin-current', '#pin-new', '#pin-duress']) $(id).value = '';
    $('#pin-setup').hidden = true;
  };
  $('#pin-open').addEventListener('click', () => openPinSetup(null));
  $('#pin-setup-close').addEventListener('click', closePinSetup);
  $('#pin-setup-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = { pin: $('#pin-new').value.trim(), duress_pin: $('#pin-duress').value.trim() };
    if (status?.pinSet) body.current = $('#pin-current').value.trim();
    const error = (text) => {
      $('#pin-setup-error').hidden = false;
      $('#pin-setup-error').textContent = text;
    };
    if (!/^[0-9]{4,12}$/.test(body.pin) || !/^[0-9]{4,12}$/.test(body.duress_pin)) {
      error('Each PIN is 4 to 12 digits.');
      return;
    }
    if (body.pin === body.duress_pin) {
      error('The two PINs must differ.');
      return;
    }
    $('#pin-setup-save').disabled = true;
    try {
      const answer = await api('PUT', 'pin', body);
      if (answer.status === 200) {
        closePinSetup();
        notice('Safety PIN saved.');
        refresh();
      } else {
        error(answer.status === 403 ? 'The current PIN is wrong.' : answer.body?.error?.message ?? `Not saved (${answer.status}).`);
      }
    } catch {
      error('No connection: the PIN was not saved. Try again.');
    } finally {
      $('#pin-setup-save').disabled = false;
    }
  });

  // ---- Man-down ----

  let countdown = null;

  const motionLine = (text, state) => {
    $('#motion').hidden = !text;
    $('#motion').textContent = text ?? '';
    $('#motion').dataset.sensor = state;
  };

  const watch = new MotionWatch(
    () => startCountdown(),
    (present) => {
      sensor = present;
      showMotion();
    },
  );

  function watching() {
    return Boolean(status?.manDown && (status.loneWork || status.site));
  }

  function showMotion() {
    if (!status || !(status.loneWork || status.site)) motionLine(null, 'unknown');
    else if (!status.manDown) motionLine('Man-down is off for you.', 'off');
    else if (sensor === false) motionLine('This phone reports no motion sensor: man-down is off. Check-ins still run.', 'none');
    else if (sensor === true) motionLine('Man-down watch on: keep this page open.', 'present');
    else motionLine('Man-down watch starting…', 'unknown');
  }

  function watchMotion() {
    if (watching()) {
      watch.start(status.manDownAfterMs);
    } else {
      watch.stop();
      sensor = null;
      if (countdown) endCountdown();
    }
    showMotion();
  }

  function askMotionPermission() {
    // iOS asks once, from a tap; elsewhere this is absent or answers at once.
    const ask = window.DeviceMotionEvent?.requestPermission;
    if (typeof ask === 'function') {
      ask.call(window.DeviceMotionEvent).catch(() => {});
    }
  }
  document.addEventListener('pointerdown', askMotionPermission, { once: true, capture: true });

  function startCountdown() {
    const overlay = $('#mandown');
    const total = status?.manDownCountdownMs ?? 15000;
    countdown = { endsAt: performance.now() + total, timer: null, pin: false };
    const show = () => {
      const left = countdown.endsAt - performance.now();
      setText($('#mandown-count'), String(Math.max(0, Math.ceil(left / 1000))));
      // A PIN being checked holds the alarm until the server answered.
      if (left <= 0 && !pinPending) fireManDown();
    };
    show();
    countdown.timer = setInterval(show, 200);
    overlay.hidden = false;
    siren.on('mandown', overlay);
    $('#mandown-cancel').focus();
  }

  function endCountdown() {
    if (!countdown) return;
    clearInterval(countdown.timer);
    countdown = null;
    $('#mandown').hidden = true;
    siren.off('mandown');
    if (pinAction === 'cancel') pinDone?.(false);
  }

  function fireManDown() {
    endCountdown();
    notice(null);
    raise('MAN_DOWN', 'No movement: MAN DOWN from the guard app');
    // Raised once: the watch starts again when the phone moves.
    watch.resume(true);
  }

  $('#mandown-cancel').addEventListener('click', async () => {
    if (!countdown) return;
    if (!status?.pinSet) {
      endCountdown();
      notice('Man-down alarm cancelled.');
      watch.resume(false);
      return;
    }
    const accepted = await askPin('cancel', 'Enter your safety PIN to cancel the man-down alarm.');
    if (accepted && countdown) {
      endCountdown();
      notice('Man-down alarm cancelled.');
      watch.resume(false);
    }
  });

  // ---- Wiring ----

  loaded = refresh();
  return {
    /** The connection is (back) up: the status may have changed meanwhile. */
    connected() {
      if (!stopped) refresh();
    },
    /** An alert of the guard's own queue: a missed check-in's news. */
    alert(alert) {
      if (alert?.type !== 'CHECK_IN_MISSED') return;
      if (alert.id === status?.missedAlert || !status?.missedAlert) {
        const last = [...(alert.audit ?? [])].reverse().find((e) => e.action === 'acknowledged');
        missedAlertState = { id: alert.id, by: last?.by };
      }
      refresh();
    },
    stop() {
      stopped = true;
      clearInterval(ticker);
      watch.stop();
      endCountdown();
      hidePrealarm();
    },
  };
}
