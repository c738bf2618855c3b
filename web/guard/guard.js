// The guard app: a phone's browser as a guard device. Sign-in with a one-time link (kept on the
// device for the shift), positions from the phone's GPS, hold-to-send alarms with the
// supervisor's answer, the camera while (and only while) a supervisor watches, and messages.
// Built on ../lookout-client.js over MessagePack; everything comes from this appliance.
// Lone-worker safety (check-ins, man-down, the safety PIN) is in ./welfare.js; tours and
// checkpoint scans in ./patrol.js; incident reports with photos in ./incident.js.
//
// What must reach the server — positions and alarms — goes through this page's own outbox,
// kept in localStorage so a reload or a lost network loses nothing: alarms first, then
// positions in the order they were fixed, each with an idempotency key so a retry after a lost
// reply is stored once.
import { LookoutClient } from '/lookout-client.js';
import { claims, exchangeLink } from '/signin.js';
import { startWelfare } from '/guard/welfare.js';
import { startPatrol } from '/guard/patrol.js';
import { startIncidents } from '/guard/incident.js';

const $ = (selector) => document.querySelector(selector);
const TOKEN_KEY = 'lookout.guard.token';
const OUTBOX_KEY = 'lookout.guard.outbox';
const ALERT_KEY = 'lookout.guard.alert';
const HOLD_MS = 1000;
// Positions kept while offline: at one fix a second, a quarter of an hour; the oldest go first.
const MAX_POSITIONS = 900;
// How often a position is sent at most, whatever the GPS delivers.
const FIX_EVERY_MS = 1000;
const FRAME_EVERY_MS = 250;
const FRAME_WIDTH = 320;

// ---- Sign-in --------------------------------------------------------------------------------

function usable(token) {
  const c = token && claims(token);
  return c && c.sub && c.exp * 1000 > Date.now() ? c : null;
}

/** Exchanges a `#link=` for a session token kept on this device; otherwise the kept one. */
async function takeToken() {
  const link = await exchangeLink();
  if (link?.error) return { error: link.error };
  if (link?.token) {
    const before = claims(localStorage.getItem(TOKEN_KEY) ?? '')?.sub;
    // Another guard's sign-in on this phone must not send what was queued for the previous one.
    if (before && before !== claims(link.token)?.sub) {
      localStorage.removeItem(OUTBOX_KEY);
      localStorage.removeItem(ALERT_KEY);
    }
    localStorage.setItem(TOKEN_KEY, link.token);
  }
  const token = localStorage.getItem(TOKEN_KEY);
  if (token && !usable(token)) {
    localStorage.removeItem(TOKEN_KEY);
    return { error: 'Your shift session ended: ask your supervisor for a new link.' };
  }
  return { token };
}

// What a running patrol must stop when the phone is signed out (position watch, camera,
// connection); set by start().
let stopPatrol = () => {};

function signOut(message) {
  stopPatrol();
  localStorage.removeItem(TOKEN_KEY);
  $('#app').hidden = true;
  $('#signin').hidden = false;
  $('#signin-error').hidden = !message;
  $('#signin-error').textContent = message ?? '';
}

// ---- Outbox ---------------------------------------------------------------------------------

// Refusals that no retry can change; anything else (the store briefly unavailable, an
// unknown code) is retried, with a growing pause, and never dropped.
const REFUSED_FOR_GOOD = ['bad_request', 'too_large', 'forbidden', 'not_found', 'unauthorized'];

class Outbox {
  /** `owner`: the guard the queue belongs to; a kept queue of another guard is not sent. */
  constructor(client, owner, onChange) {
    this.client = client;
    this.owner = owner;
    this.onChange = onChange;
    this.onSent = () => {};
    this.onRefused = () => {};
    let kept = null;
    try {
      kept = JSON.parse(localStorage.getItem(OUTBOX_KEY) ?? 'null');
    } catch {
      // An unreadable queue is dropped rather than blocking the app.
    }
    if (kept && kept.owner !== owner) kept = null;
    this.alarms = kept?.alarms ?? [];
    this.positions = kept?.positions ?? [];
    this.retryIn = 1000;
    this.dropped = 0;
    this.pumping = false;
    this.serial = Date.now();
  }

  key(kind) {
    this.serial += 1;
    return `${kind}-${this.serial}-${Math.random().toString(36).slice(2, 8)}`;
  }

  save() {
    try {
      localStorage.setItem(OUTBOX_KEY, JSON.stringify({ owner: this.owner, alarms: this.alarms, positions: this.positions }));
    } catch {
      // Storage full: what is in memory still goes out.
    }
    this.onChange(this);
  }

  alarm(channel, data, key = this.key('alarm')) {
    const item = { channel, data, key };
    this.alarms.push(item);
    this.save();
    this.pump();
    return item;
  }

  position(channel, data) {
    this.positions.push({ channel, data, key: this.key('fix') });
    if (this.positions.length > MAX_POSITIONS) {
      this.positions.shift();
      this.dropped += 1;
    }
    this.save();
    this.pump();
  }

  get size() {
    return this.alarms.length + this.positions.length;
  }

  /** Sends what is queued, one at a time and in order, while the connection is open. */
  async pump() {
    if (this.pumping) return;
    this.pumping = true;
    let retry = false;
    try {
      while (this.client.state === 'open') {
        const queue = this.alarms.length ? this.alarms : this.positions;
        const item = queue[0];
        if (!item) break;
        let reply;
        try {
          reply = await this.client.request({
            type: 'publish',
            channel: item.channel,
            data: item.data,
            idempotency_key: item.key,
          });
        } catch (e) {
          if (!REFUSED_FOR_GOOD.includes(e.code)) {
            // Not sent, or not known to be: tried again (same key) on the next connection or
            // after a pause, whichever comes first.
            retry = true;
            break;
          }
          // Refused for good (e.g. a malformed fix): keeping it would block the queue.
          console.warn('the appliance refused a queued message', e.code, e.message);
          this.onRefused(item, e);
        }
        this.retryIn = 1000;
        if (queue[0] === item) queue.shift();
        this.save();
        if (reply) this.onSent(item, reply);
      }
    } finally {
      this.pumping = false;
    }
    if (retry && this.client.state === 'open') {
      setTimeout(() => this.pump(), this.retryIn);
      this.retryIn = Math.min(this.retryIn * 2, 15000);
    }
  }
}

// ---- Alarms ---------------------------------------------------------------------------------

/** A button that fires only when held for HOLD_MS: a tap or a pocket press does nothing. */
function holdToSend(button, fire) {
  let timer = null;
  const cancel = () => {
    clearTimeout(timer);
    timer = null;
    button.classList.remove('holding');
  };
  const begin = (event) => {
    event.preventDefault();
    if (timer) return;
    button.classList.add('holding');
    timer = setTimeout(() => {
      timer = null;
      button.classList.remove('holding');
      navigator.vibrate?.(200);
      fire(button.dataset.type);
    }, HOLD_MS);
  };
  button.addEventListener('pointerdown', begin);
  for (const end of ['pointerup', 'pointerleave', 'pointercancel']) button.addEventListener(end, cancel);
  button.addEventListener('keydown', (e) => {
    if ((e.key === ' ' || e.key === 'Enter') && !e.repeat) begin(e);
  });
  button.addEventListener('keyup', cancel);
  button.addEventListener('contextmenu', (e) => e.preventDefault());
}

function showAlert(state) {
  const box = $('#alert');
  if (!state) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  box.dataset.state = state.state;
  box.dataset.id = state.id ?? '';
  const text = {
    queued: `${state.type} will be sent as soon as the connection returns.`,
    sending: `Sending ${state.type}…`,
    sent: `${state.type} sent — waiting for a supervisor.`,
    refused: `${state.type} was refused by the appliance: ${state.note ?? ''}. Call your supervisor.`,
    open: `${state.type} sent — waiting for a supervisor.`,
    acknowledged: `${state.type} acknowledged by ${state.by}${state.note ? `: “${state.note}”` : ''}. Help is coming.`,
    resolved: `${state.type} resolved${state.by ? ` by ${state.by}` : ''}${state.note ? `: “${state.note}”` : ''}.`,
  }[state.state];
  box.textContent = text ?? `${state.type}: ${state.state}`;
}

function alertState(alert) {
  const last = [...(alert.audit ?? [])].reverse().find((e) => e.action === alert.state);
  return { id: alert.id, type: alert.type, state: alert.state, by: last?.by, note: last?.note };
}

// ---- Camera ---------------------------------------------------------------------------------

class Camera {
  constructor(client, channel) {
    this.client = client;
    this.channel = channel;
    this.stream = null;
    this.timer = null;
    this.viewers = 0;
    this.sending = false;
  }

  async watched(viewers) {
    this.viewers = viewers;
    $('#camera').textContent = viewers > 0 ? `Camera on: ${viewers} watching.` : 'Camera off: nobody is watching.';
    $('#camera').classList.toggle('watched', viewers > 0);
    if (viewers > 0) await this.start();
    else this.stop();
  }

  async start() {
    if (this.stream || this.starting) return;
    this.starting = true;
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: 'environment', width: { ideal: 640 } },
        audio: false,
      });
    } catch (e) {
      $('#camera').textContent = `Camera unavailable: ${e.message}`;
      return;
    } finally {
      this.starting = false;
    }
    if (this.viewers === 0) {
      this.stop();
      return;
    }
    const stream = this.stream;
    const video = $('#preview');
    video.srcObject = stream;
    await video.play().catch(() => {});
    // Stopped (or restarted) while the video was starting: this start is void.
    if (this.stream !== stream) return;
    clearInterval(this.timer);
    this.timer = setInterval(() => this.grab(), FRAME_EVERY_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    $('#preview').srcObject = null;
  }

  grab() {
    const video = $('#preview');
    if (this.sending || this.client.state !== 'open' || !video.videoWidth) return;
    const canvas = $('#grab');
    canvas.width = FRAME_WIDTH;
    canvas.height = Math.round((video.videoHeight / video.videoWidth) * FRAME_WIDTH);
    canvas.getContext('2d').drawImage(video, 0, 0, canvas.width, canvas.height);
    this.sending = true;
    canvas.toBlob(async (blob) => {
      try {
        if (!blob || !this.stream) return;
        const data = new Uint8Array(await blob.arrayBuffer());
        // Live only: a frame that cannot go now is worthless later, so it is never queued.
        await this.client.request({
          type: 'publish',
          channel: this.channel,
          data: { codec: 'jpeg', keyframe: true, ts: Date.now(), data },
        });
      } catch {
        // Dropped; the next frame follows.
      } finally {
        this.sending = false;
      }
    }, 'image/jpeg', 0.6);
  }
}

// ---- Messages -------------------------------------------------------------------------------

function showMessage(text, from, scope, at = Date.now()) {
  const li = document.createElement('li');
  const who = document.createElement('span');
  who.className = 'from';
  who.textContent = `${scope === 'all' ? 'To all guards' : from ? `From ${from}` : 'Message'} · ${new Date(at).toLocaleTimeString()}`;
  li.append(who, document.createTextNode(text));
  $('#messages').append(li);
  li.scrollIntoView({ block: 'end' });
}

function textOf(data) {
  if (typeof data === 'string') return data;
  if (data && typeof data.text === 'string') return data.text;
  if (data && typeof data.message === 'string') return data.message;
  return JSON.stringify(data);
}

// ---- Wiring ---------------------------------------------------------------------------------

async function start(token) {
  const me = usable(token);
  $('#signin').hidden = true;
  $('#app').hidden = false;
  $('#me').textContent = me.name ?? me.sub;
  const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  const client = new LookoutClient({
    url: wsUrl,
    encoding: 'msgpack',
    token: () => {
      const t = localStorage.getItem(TOKEN_KEY);
      if (!usable(t)) throw new Error('session ended');
      return t;
    },
  });
  const outbox = new Outbox(client, me.sub, (o) => {
    const waiting = o.size;
    $('#outbox').textContent = waiting
      ? `${waiting} update${waiting === 1 ? '' : 's'} waiting for the connection${o.dropped ? ` (${o.dropped} oldest positions dropped)` : ''}.`
      : '';
    $('#outbox').dataset.size = String(waiting);
  });
  outbox.onChange(outbox);
  const camera = new Camera(client, `/topic/video/${me.sub}`);
  let lastFix = null;

  // Set once the alarms are wired (below); the connection's state reaches them from then on.
  let welfare = null;
  let patrol = null;
  client.on('state', (state) => {
    $('#conn').dataset.state = state;
    $('#conn').textContent = state === 'open' ? 'online' : state;
    if (state === 'open') {
      outbox.pump();
      welfare?.connected();
      patrol?.connected();
    } else camera.watched(0);
  });
  client.on('disconnect', ({ code }) => {
    if (code === 4005) signOut('This phone was signed out by a supervisor.');
  });
  client.on('error', (e) => {
    if (e?.message === 'session ended') signOut('Your shift session ended: ask your supervisor for a new link.');
  });
  client.on('frame', (frame) => {
    if (frame.type === 'viewers' && frame.channel === camera.channel) camera.watched(frame.viewers);
  });

  // Alarms: shown as queued or sending, sent, then as the supervisors answer.
  let current = null;
  try {
    current = JSON.parse(localStorage.getItem(ALERT_KEY) ?? 'null');
  } catch {
    // Unreadable: nothing shown.
  }
  if (current && current.owner !== me.sub) current = null;
  const setCurrent = (state) => {
    current = { ...state, owner: me.sub };
    localStorage.setItem(ALERT_KEY, JSON.stringify(current));
    showAlert(state);
  };
  showAlert(current);
  // Only news moves the state on: an answer that came first is never overwritten by "sent".
  const waiting = (state) => ['queued', 'sending'].includes(state);
  outbox.onSent = (item, reply) => {
    if (!item.channel.startsWith('/topic/emergency/') || current?.key !== item.key) return;
    setCurrent({ ...current, id: reply.alertId, state: waiting(current.state) ? 'sent' : current.state });
  };
  outbox.onRefused = (item, e) => {
    if (current?.key === item.key) setCurrent({ ...current, state: 'refused', note: e.message });
  };
  /** Sends an alarm of `type` through the outbox (with the last fix) and shows its state. */
  const raise = (type, message) => {
    const data = { type, message };
    if (lastFix) Object.assign(data, { lat: lastFix.lat, lon: lastFix.lon, accuracy: lastFix.accuracy });
    // Shown before the outbox sends it, so a reply that comes at once finds it.
    const key = outbox.key('alarm');
    setCurrent({ key, type, raisedAt: Date.now(), state: client.state === 'open' ? 'sending' : 'queued' });
    outbox.alarm(`/topic/emergency/${me.sub}`, data, key);
  };
  for (const button of document.querySelectorAll('.hold')) {
    holdToSend(button, (type) => raise(type, `${type} from the guard app`));
  }
  // Alerts the server raises about the guard (not an alarm of the phone's): the welfare part
  // shows them.
  const raisedByLookout = ['CHECK_IN_MISSED', 'LOST_CONTACT'];
  const alertsQueue = '/user/queue/alerts';
  client.subscribe(alertsQueue, (data, message) => {
    const alert = data?.alert;
    welfare?.alert(alert);
    // Ours by id; or, while the reply with its id was lost, the update of the same alarm.
    const ours = alert && !raisedByLookout.includes(alert.type) && (
      !current ||
      alert.id === current.id ||
      (!current.id && alert.type === current.type && alert.user === me.sub && alert.created_at >= (current.raisedAt ?? 0) - 5000)
    );
    if (ours) setCurrent({ ...current, ...alertState(alert) });
    client.ack(alertsQueue, message.seq).catch(() => {});
  });

  // Messages: private ones (replies go to their sender) and the org's broadcasts to guards.
  let replyTo = null;
  const messages = '/user/queue/messages';
  // Each private message once, by its recipient and seq: the conversation so far is loaded
  // (both ways, GET /api/v1/messages), and the queue's live messages may repeat some of it.
  const shown = new Set();
  const showPrivate = (m) => {
    const key = `${m.to}#${m.seq}`;
    if (shown.has(key)) return;
    shown.add(key);
    if (m.from !== me.sub) replyTo = m.from;
    showMessage(textOf(m.data), m.from === me.sub ? `you to ${m.to}` : m.from, 'me', m.timestamp);
  };
  const history = fetch('/api/v1/messages', { headers: { authorization: `Bearer ${token}` } })
    .then((r) => (r.ok ? r.json() : { messages: [] }))
    .then((page) => page.messages.forEach(showPrivate))
    .catch(() => {});
  client.subscribe(messages, async (data, message) => {
    await history;
    showPrivate({ from: data?.from, to: me.sub, seq: message.seq, timestamp: message.timestamp ?? Date.now(), data });
    client.ack(messages, message.seq).catch(() => {});
  });
  // The supervisor sees that the guard is writing (the org's presence channel).
  let typedAt = 0;
  $('#reply-text').addEventListener('input', () => {
    if (!replyTo || Date.now() - typedAt < 3000) return;
    typedAt = Date.now();
    client.send({ type: 'typing', room: `dm:${replyTo}`, active: true }).catch(() => {});
  });
  if (me.org) {
    client.subscribe(`/topic/org/${me.org}/role/guard`, (data) => showMessage(textOf(data), data?.from, 'all'));
  }
  $('#reply').addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = $('#reply-text').value.trim();
    if (!text) return;
    if (!replyTo) {
      showMessage('Nobody to reply to yet: a supervisor must write first.', null, 'me');
      return;
    }
    try {
      const reply = await client.publish(messages, { text }, { to: replyTo });
      $('#reply-text').value = '';
      showPrivate({ from: me.sub, to: replyTo, seq: reply.seq, timestamp: Date.now(), data: { text } });
    } catch (e) {
      showMessage(`Not sent: ${e.message}`, null, 'me');
    }
  });

  // Position: every fix, at most one a second, queued in order with the time it was taken.
  let lastSentAt = 0;
  let battery = null;
  navigator.getBattery?.().then((b) => {
    battery = b;
  }).catch(() => {});
  let watch = null;
  welfare = startWelfare({
    client,
    token: () => localStorage.getItem(TOKEN_KEY),
    raise,
  });
  patrol = startPatrol({
    client,
    token: () => localStorage.getItem(TOKEN_KEY),
    owner: me.sub,
    fix: () => lastFix,
  });
  startIncidents({
    token: () => localStorage.getItem(TOKEN_KEY),
    // The alarm this phone raised, while the appliance has it open: a report may be about it.
    openAlert: () => (current?.id && ['sent', 'open', 'acknowledged'].includes(current.state) ? current : null),
  });
  stopPatrol = () => {
    if (watch !== null) navigator.geolocation.clearWatch(watch);
    watch = null;
    camera.stop();
    welfare.stop();
    patrol.stop();
    client.close();
  };
  if ('geolocation' in navigator) {
    watch = navigator.geolocation.watchPosition(
      (pos) => {
        const c = pos.coords;
        lastFix = { lat: c.latitude, lon: c.longitude, accuracy: c.accuracy };
        $('#fix').textContent = `Position ±${Math.round(c.accuracy)} m at ${new Date(pos.timestamp).toLocaleTimeString()}`;
        if (pos.timestamp - lastSentAt < FIX_EVERY_MS) return;
        lastSentAt = pos.timestamp;
        const data = { lat: c.latitude, lon: c.longitude, accuracy: c.accuracy, ts: Math.round(pos.timestamp) };
        if (Number.isFinite(c.heading)) data.heading = c.heading;
        if (Number.isFinite(c.speed)) data.speed = c.speed;
        if (battery) data.battery = Math.round(battery.level * 100);
        outbox.position(`/topic/location/${me.sub}`, data);
      },
      (e) => {
        $('#fix').textContent = `No position: ${e.message}`;
      },
      { enableHighAccuracy: true, maximumAge: 0, timeout: 30000 },
    );
  } else {
    $('#fix').textContent = 'This browser gives no position.';
  }

  // Keep the screen on while on patrol (the browser releases it when the page is hidden).
  const wake = async () => {
    try {
      await navigator.wakeLock?.request('screen');
    } catch {
      // Refused (battery saver): the patrol goes on with the screen's own timeout.
    }
  };
  wake();
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') wake();
  });

  client.connect();
}

if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register('/guard/sw.js', { scope: '/guard' }).catch((e) => console.warn('service worker', e));
}
const { token, error } = await takeToken();
if (token) start(token);
else signOut(error);
