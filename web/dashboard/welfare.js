// Lone-worker safety on the dashboard: the alert types it adds (CHECK_IN_MISSED, LOST_CONTACT,
// MAN_DOWN, DURESS) with their labels and icons, which alerts sound the alarm, and each guard's
// welfare state (next check-in and its state, lone work, lost contact, man-down, duress) from
// one GET /api/v1/welfare/guards for the whole org, times counted on the server's clock.
import { svg, coalesce } from './dom.js';

export const WELFARE_TYPES = ['CHECK_IN_MISSED', 'LOST_CONTACT', 'MAN_DOWN', 'DURESS'];
/** Every alert type the server raises, for the alert log's filter. */
export const ALERT_TYPES = ['PANIC', 'MEDICAL', 'FIRE', 'SECURITY', 'GENERAL', 'GEOFENCE', ...WELFARE_TYPES, 'TOUR_MISSED'];
/** Alerts that sound the alarm when they are raised. */
export const ALARM_TYPES = new Set(['PANIC', ...WELFARE_TYPES]);
export const TYPE_LABELS = {
  TOUR_MISSED: 'Tour missed',
  CHECK_IN_MISSED: 'Check-in missed',
  LOST_CONTACT: 'Lost contact',
  MAN_DOWN: 'Man down',
  DURESS: 'Duress',
};

// 24×24 strokes, drawn in the text's colour.
const ICONS = {
  // A clock whose hand has run out, and a mark.
  CHECK_IN_MISSED: [['circle', { cx: 11, cy: 12, r: 8 }], ['path', { d: 'M11 7v5l3 2' }], ['path', { d: 'M21 4v7M21 14.5v.5' }]],
  // Signal bars, struck through.
  LOST_CONTACT: [['path', { d: 'M4 20v-3M9 20v-6M14 20v-9M19 20v-12' }], ['path', { d: 'M3 3l18 18' }]],
  // A person lying on the ground.
  MAN_DOWN: [['circle', { cx: 5, cy: 13, r: 2 }], ['path', { d: 'M8 14h8l3 3M12 14l2-3' }], ['path', { d: 'M2 19h20' }]],
  // A flag on a pole with a cross: a checkpoint not reached.
  TOUR_MISSED: [['path', { d: 'M5 21V4h11l-2 4 2 4H5' }], ['path', { d: 'M15 15l6 6M21 15l-6 6' }]],
  // A shield with an exclamation mark.
  DURESS: [['path', { d: 'M12 2l8 3v6c0 5-3.4 9-8 11-4.6-2-8-6-8-11V5z' }], ['path', { d: 'M12 7v6M12 16.5v.5' }]],
};

/** The icon of an alert type (its label stays next to it in text), or null. */
export function typeIcon(type) {
  const parts = ICONS[type];
  if (!parts) return null;
  const icon = svg('svg', {
    class: 'icon',
    viewBox: '0 0 24 24',
    width: 18,
    height: 18,
    fill: 'none',
    stroke: 'currentColor',
    'stroke-width': 2,
    'stroke-linecap': 'round',
    'stroke-linejoin': 'round',
    'aria-hidden': 'true',
    focusable: 'false',
    'data-icon': type,
  });
  for (const [tag, attrs] of parts) icon.append(svg(tag, attrs));
  return icon;
}

export function typeLabel(type) {
  return TYPE_LABELS[type] ?? type;
}

/** A duration for people: "40 s", "4 min", "2 h 5 min". */
export function span(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  return `${Math.floor(m / 60)} h${m % 60 ? ` ${m % 60} min` : ''}`;
}

const CHECK_IN_WORDS = { ok: 'ok', pre_alarm: 'pre-alarm', overdue: 'overdue', missed: 'missed', off: 'off' };
// Worst first: how the guard table sorts its check-in column.
const RANK = { duress: 0, manDown: 1, lost: 2, missed: 3, overdue: 4, pre_alarm: 5, ok: 6, off: 7 };
const NONE_RANK = 8;
// How often the org's welfare state is asked for besides alert events.
const POLL_MS = 15000;

/**
 * The org's lone-worker state per guard. One request for the whole org: on `start()`, soon
 * after any alert of the four types arrives (`setAlerts`), after a settings change
 * (`refreshSoon`), and every 15 s. A single 1 s timer moves the countdowns on (server time)
 * and tells `onChange` when a guard's state changes, `onTick` while a countdown runs.
 */
export class WelfareBoard {
  /** `ctx`: { call, onChange(), onTick() }. */
  constructor(ctx) {
    Object.assign(this, ctx);
    this.guards = new Map(); // user → the server's status of the guard
    this.offset = 0; // server ms − this browser's ms
    this.open = new Map(); // user → { DURESS, MAN_DOWN, LOST_CONTACT, CHECK_IN_MISSED: alert id }
    this.alertIds = '';
    this.signature = '';
    this.loading = false;
    this.again = false;
    this.error = null;
    this.refreshSoon = coalesce(() => this.load(), 400);
  }

  start() {
    this.load();
    setInterval(() => this.load(), POLL_MS);
    setInterval(() => this.tick(), 1000);
  }

  async load() {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    try {
      const answer = await this.call('/api/v1/welfare/guards');
      this.offset = answer.now - Date.now();
      this.guards = new Map(answer.guards.map((g) => [g.user, g]));
      this.error = null;
    } catch (e) {
      if (this.error !== e.message) console.warn('welfare', e);
      this.error = e.message;
    }
    this.loading = false;
    if (this.again) {
      this.again = false;
      this.load();
      return;
    }
    this.changed(true);
  }

  serverNow() {
    return Date.now() + this.offset;
  }

  /** The dashboard's alerts: open ones of the four types per guard; new ones ask again. */
  setAlerts(all) {
    const open = new Map();
    for (const a of all) {
      if (!WELFARE_TYPES.includes(a.type) || a.state === 'resolved') continue;
      if (!open.has(a.user)) open.set(a.user, {});
      open.get(a.user)[a.type] = a.id;
    }
    const ids = all.filter((a) => WELFARE_TYPES.includes(a.type)).map((a) => `${a.id}:${a.state}`).sort().join(',');
    // Not on the first listing: the page asks for the welfare state itself when it opens.
    const first = !this.seenAlerts;
    this.seenAlerts = true;
    if (ids === this.alertIds) return;
    this.alertIds = ids;
    this.open = open;
    if (!first) this.refreshSoon();
    this.changed(true);
  }

  /** A guard's lone-worker state as shown, or null when it has none. */
  state(user) {
    const w = this.guards.get(user);
    const open = this.open.get(user);
    // Most guards of a large site have none: asked for each at every render of the table.
    if (!w && !open) return null;
    let checkIn = w?.checkIn ?? null;
    const now = this.serverNow();
    if (w?.deadline && ['ok', 'pre_alarm', 'overdue'].includes(checkIn)) {
      // Between two answers the countdown goes on here, on the server's clock.
      checkIn = now >= w.deadline ? 'overdue' : w.preAlarmAt != null && now >= w.preAlarmAt ? 'pre_alarm' : 'ok';
    }
    let text = '–';
    if (checkIn === 'ok' || checkIn === 'pre_alarm') text = `${CHECK_IN_WORDS[checkIn]} · due in ${span(w.deadline - now)}`;
    else if (checkIn === 'overdue') text = `overdue ${span(now - w.deadline)}`;
    else if (checkIn) text = CHECK_IN_WORDS[checkIn];
    const duress = Boolean(open?.DURESS);
    const manDown = Boolean(open?.MAN_DOWN);
    const lost = Boolean(w?.lostContact || open?.LOST_CONTACT);
    const worst = duress ? 'duress' : manDown ? 'manDown' : lost ? 'lost' : checkIn;
    return {
      checkIn,
      text,
      rank: RANK[worst] ?? NONE_RANK,
      loneWork: Boolean(w?.loneWork),
      lost,
      manDown,
      duress,
      from: w?.settingsFrom ?? null,
      site: w?.site ?? null,
    };
  }

  /** The guards with lone-worker state or an open alert of the four types. */
  users() {
    return new Set([...this.guards.keys(), ...this.open.keys()]);
  }

  flags(user) {
    const s = this.state(user);
    return s ? `${s.checkIn}${+s.loneWork}${+s.lost}${+s.manDown}${+s.duress}` : '';
  }

  tick() {
    let running = false;
    for (const w of this.guards.values()) if (w.deadline) running = true;
    if (running) this.onTick?.();
    this.changed(false);
  }

  /** Tells `onChange` when any guard's shown state differs (or always, when `force`). */
  changed(force) {
    const signature = [...this.users()].sort().map((u) => `${u}:${this.flags(u)}`).join(',');
    if (!force && signature === this.signature) return;
    this.signature = signature;
    this.onChange?.();
  }
}
