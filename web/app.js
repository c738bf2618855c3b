// The supervisor dashboard: site plan with live guards and fences, alerts with acknowledge and
// resolve, live video, operations, and the supervisor's tools (web/dashboard/: messages, alert
// log, fences and shifts, track playback, guard table, incident reports). Plain ES modules on
// web/lookout-client.js; everything it loads comes from this appliance. Lone-worker safety
// (web/dashboard/welfare*.js): each guard's check-ins in the guard table and list, the four
// alert types with their icons and alarm (DURESS first and loudest), and the settings.
import { LookoutClient } from './lookout-client.js';
import { claims, exchangeLink } from './signin.js';
import { $, el, svg, age, coalesce } from './dashboard/dom.js';
import { Messages } from './dashboard/messages.js';
import { AlertLog } from './dashboard/alerts.js';
import { FencePanel } from './dashboard/fences.js';
import { Playback } from './dashboard/playback.js';
import { GuardTable } from './dashboard/guards.js';
import { ALARM_TYPES, WelfareBoard, typeIcon, typeLabel } from './dashboard/welfare.js';
import { WelfareSettings } from './dashboard/welfare-settings.js';
import { arcRows } from './dashboard/arc.js';
import { PatrolPanel } from './dashboard/patrols.js';
import { IncidentPanel } from './dashboard/incidents.js';

const TOKEN_KEY = 'lookout.token';
const PRIORITY = { CRITICAL: 0, HIGH: 1 };
const STATE_ORDER = { open: 0, acknowledged: 1, resolved: 2 };

// ---- Sign-in --------------------------------------------------------------------------------

/** A one-time `#link=` is exchanged for a session token; otherwise this tab's token, if any. */
async function takeToken() {
  const link = await exchangeLink();
  if (link?.error) return { error: link.error };
  if (link?.token) sessionStorage.setItem(TOKEN_KEY, link.token);
  return { token: sessionStorage.getItem(TOKEN_KEY) };
}

function usable(token) {
  const c = token && claims(token);
  return c && c.org && c.exp * 1000 > Date.now() ? c : null;
}

function showSignIn(message) {
  $('#app').hidden = true;
  $('#signin').hidden = false;
  $('#signin-error').hidden = !message;
  $('#signin-error').textContent = message ?? '';
  $('#signin').onsubmit = (event) => {
    event.preventDefault();
    const token = $('#token').value.trim();
    if (!usable(token)) {
      showSignIn('That token is not valid here (expired, or without an org).');
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    start(token);
  };
}

// ---- REST -----------------------------------------------------------------------------------

/** REST with the token; `withHeaders` answers { data, headers } instead of the data. */
function api(token) {
  return async (path, { method = 'GET', body, withHeaders = false } = {}) => {
    const response = await fetch(path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data?.error?.message ?? `HTTP ${response.status}`);
    return withHeaders ? { data, headers: response.headers } : data;
  };
}

// ---- Site plan ------------------------------------------------------------------------------

// Beyond this many guards, nearby ones are drawn as one cluster with a count at low zoom.
const CLUSTER_FROM = 40;
// From this zoom on, every guard is drawn on its own and labels are placed where they fit.
const DETAIL_ZOOM = 3;
const MAX_ZOOM = 64;
// Clustering cell and label box, in screen pixels of the 1000×700 view at zoom 1.
const CELL = 44;
// Label glyph widths (15 px name, 12 px age line; generous) and the two lines' extent.
const NAME_EM = 9.5;
const SUB_EM = 7.6;
const LABEL_TOP = 17;
const LABEL_BOTTOM = 20;
const STALE_MS = 30000;
const LOW_BATTERY = 20;
// How often streaming positions are drawn at most.
const RENDER_EVERY_MS = 250;

/**
 * The site view: plan, fences and guards in a fixed 1000×700 projection, zoomed and panned by
 * changing the SVG's viewBox; markers keep their size on screen. Renders are batched to one per
 * animation frame, so a thousand guards reporting every second cost a few renders a second.
 */
class SiteView {
  constructor(root, names) {
    this.root = root;
    this.names = names;
    this.fences = [];
    this.guards = new Map();
    this.bounds = null;
    this.raw = null;
    this.violating = new Set();
    this.violatedFences = new Set();
    this.panicking = new Set();
    this.selected = null;
    this.follow = false;
    this.hovered = null;
    this.view = { scale: 1, cx: 500, cy: 350 };
    this.pending = false;
    this.onShift = new Set();
    this.onSelect = () => {};
    this.onChange = () => {};
    // The tools' hooks: a click on the plan (lon, lat), a drag (metres east, north; done), a
    // new projection. A hook that returns true takes the gesture (no pan).
    this.onMapClick = () => false;
    this.onMapDrag = () => false;
    this.onProjection = () => {};
    this.controls();
  }

  /** Wheel zooms around the pointer, dragging pans, and the buttons zoom or fit. */
  controls() {
    const svgEl = this.root;
    svgEl.addEventListener('wheel', (e) => {
      e.preventDefault();
      if (e.deltaY === 0) return;
      const [px, py] = this.toView(e.clientX, e.clientY);
      this.zoomAt(px, py, this.view.scale * (e.deltaY < 0 ? 1.25 : 0.8));
    }, { passive: false });
    let drag = null;
    svgEl.addEventListener('pointerdown', (e) => {
      if (e.target.closest('.guard, .cluster')) return;
      drag = { x: e.clientX, y: e.clientY, cx: this.view.cx, cy: this.view.cy, moved: false };
      svgEl.setPointerCapture(e.pointerId);
    });
    // Metres east and north between two client points, at the site's latitude.
    const metres = (e) => {
      const [lon0, lat0] = this.unproject(...this.toView(drag.x, drag.y));
      const [lon1, lat1] = this.unproject(...this.toView(e.clientX, e.clientY));
      return [(lon1 - lon0) * 111320 * Math.cos((lat0 * Math.PI) / 180), (lat1 - lat0) * 111320];
    };
    svgEl.addEventListener('pointermove', (e) => {
      if (!drag) return;
      if (!drag.moved && Math.hypot(e.clientX - drag.x, e.clientY - drag.y) < 4) return;
      drag.moved = true;
      if (this.bounds && this.onMapDrag(...metres(e), false)) return;
      // Panning by hand stops following the selected guard.
      this.follow = false;
      const k = 1000 / this.view.scale / svgEl.getBoundingClientRect().width;
      this.view.cx = drag.cx - (e.clientX - drag.x) * k;
      this.view.cy = drag.cy - (e.clientY - drag.y) * k;
      this.clampView();
      this.schedule(true);
    });
    svgEl.addEventListener('pointerup', (e) => {
      if (drag && this.bounds) {
        if (!drag.moved) this.onMapClick(...this.unproject(...this.toView(e.clientX, e.clientY)));
        else this.onMapDrag(...metres(e), true);
      }
      drag = null;
    });
    svgEl.addEventListener('pointercancel', () => {
      drag = null;
    });
    $('#zoom-in').addEventListener('click', () => this.zoomAt(this.view.cx, this.view.cy, this.view.scale * 2));
    $('#zoom-out').addEventListener('click', () => this.zoomAt(this.view.cx, this.view.cy, this.view.scale / 2));
    $('#zoom-fit').addEventListener('click', () => {
      this.view = { scale: 1, cx: 500, cy: 350 };
      this.schedule(true);
    });
  }

  toView(clientX, clientY) {
    const r = this.root.getBoundingClientRect();
    const w = 1000 / this.view.scale;
    const h = 700 / this.view.scale;
    return [this.view.cx - w / 2 + ((clientX - r.left) / r.width) * w, this.view.cy - h / 2 + ((clientY - r.top) / r.height) * h];
  }

  /** Zooms to `scale`, keeping the view point (px, py) where it is on screen. */
  zoomAt(px, py, scale) {
    const next = Math.min(MAX_ZOOM, Math.max(1, scale));
    const ratio = this.view.scale / next;
    this.view.cx = px - (px - this.view.cx) * ratio;
    this.view.cy = py - (py - this.view.cy) * ratio;
    this.view.scale = next;
    this.clampView();
    this.schedule(true);
  }

  clampView() {
    const w = 500 / this.view.scale;
    const h = 350 / this.view.scale;
    this.view.cx = Math.min(1000 - w, Math.max(w, this.view.cx));
    this.view.cy = Math.min(700 - h, Math.max(h, this.view.cy));
  }

  /** Selects `user` (or nothing), centres the map on it at a zoom where its label shows. */
  select(user, { centre = true } = {}) {
    this.selected = user;
    this.follow = Boolean(user && centre);
    const guard = user && this.guards.get(user);
    if (guard && centre && this.bounds) {
      const [x, y] = this.project(guard.lon, guard.lat);
      this.view.scale = Math.max(this.view.scale, DETAIL_ZOOM + 1);
      this.view.cx = x;
      this.view.cy = y;
      this.clampView();
    }
    this.schedule(true);
    this.onChange();
  }

  /** A site-plan image (an object URL) whose edges are `bounds` [west, south, east, north]. */
  setPlan(url, bounds) {
    const [w, s, e, n] = bounds;
    this.plan = { url, bounds };
    this.fit([[w, s], [e, n]]);
    this.drawStatic();
  }

  setFences(fences) {
    this.fences = fences;
    const points = fences.flatMap((f) => fenceRing(f));
    if (points.length) this.fit(points);
    this.drawStatic();
  }

  /** Widens the projection to take in `points` ([lon, lat]) with a margin. */
  fit(points) {
    const lons = points.map((p) => p[0]);
    const lats = points.map((p) => p[1]);
    let b = { w: Math.min(...lons), e: Math.max(...lons), s: Math.min(...lats), n: Math.max(...lats) };
    // The margin goes around everything shown so far, once (not compounded per call).
    const r = this.raw;
    if (r) b = { w: Math.min(b.w, r.w), e: Math.max(b.e, r.e), s: Math.min(b.s, r.s), n: Math.max(b.n, r.n) };
    this.raw = b;
    const mx = (b.e - b.w || 0.001) * 0.06;
    const my = (b.n - b.s || 0.001) * 0.06;
    this.bounds = { w: b.w - mx, e: b.e + mx, s: b.s - my, n: b.n + my };
  }

  /** The projection's terms: longitude shrink `k`, degrees to view units, and the margins. */
  frame() {
    const b = this.bounds;
    const k = Math.cos((((b.n + b.s) / 2) * Math.PI) / 180);
    const width = (b.e - b.w) * k;
    const height = b.n - b.s;
    const scale = Math.min(1000 / width, 700 / height);
    return { b, k, scale, x0: (1000 - width * scale) / 2, y0: (700 - height * scale) / 2 };
  }

  /** Equirectangular projection into the 1000×700 view, keeping the aspect ratio. */
  project(lon, lat) {
    const { b, k, scale, x0, y0 } = this.frame();
    return [x0 + (lon - b.w) * k * scale, y0 + (b.n - lat) * scale];
  }

  /** The inverse of `project`: [lon, lat] of a point of the view. */
  unproject(x, y) {
    const { b, k, scale, x0, y0 } = this.frame();
    return [b.w + (x - x0) / (k * scale), b.n - (y - y0) / scale];
  }

  inside(lon, lat) {
    const b = this.bounds;
    return b && lon >= b.w && lon <= b.e && lat >= b.s && lat <= b.n;
  }

  update(user, loc) {
    if (typeof loc.lat !== 'number' || typeof loc.lon !== 'number') return;
    this.guards.set(user, { ...this.guards.get(user), ...loc, user, seenAt: loc.receivedAt ?? Date.now() });
    if (!this.inside(loc.lon, loc.lat)) {
      this.fit([[loc.lon, loc.lat]]);
      this.drawStatic();
    } else {
      this.schedule();
    }
    this.onChange();
  }

  /** What a guard's state is, for the map and the list. */
  status(user) {
    const g = this.guards.get(user);
    return {
      panic: this.panicking.has(user),
      violating: this.violating.has(user),
      stale: !g || Date.now() - g.seenAt > STALE_MS,
      lowBattery: typeof g?.battery === 'number' && g.battery < LOW_BATTERY,
    };
  }

  /** Plan and fences: redrawn when they or the projection change. */
  drawStatic() {
    const fencesG = this.root.querySelector('#fences');
    fencesG.replaceChildren();
    if (!this.bounds) return;
    const planG = this.root.querySelector('#plan');
    planG.replaceChildren();
    if (this.plan) {
      const [w, s, e, n] = this.plan.bounds;
      const [x0, y0] = this.project(w, n);
      const [x1, y1] = this.project(e, s);
      planG.append(svg('image', { href: this.plan.url, x: x0, y: y0, width: x1 - x0, height: y1 - y0, preserveAspectRatio: 'none' }));
    }
    for (const fence of this.fences) {
      const g = svg('g', { class: `fence ${fence.kind}${this.violatedFences.has(fence.id) ? ' violated' : ''}`, 'data-id': fence.id });
      const shape = fence.shape;
      let labelAt;
      if (shape.type === 'Polygon') {
        const pts = shape.coordinates[0].map(([lon, lat]) => this.project(lon, lat));
        g.append(svg('polygon', { points: pts.map((p) => p.join(',')).join(' ') }));
        labelAt = pts[0];
      } else {
        const [cx, cy] = this.project(shape.center[0], shape.center[1]);
        const [ex] = this.project(shape.center[0] + shape.radius / (111320 * Math.cos((shape.center[1] * Math.PI) / 180)), shape.center[1]);
        g.append(svg('circle', { cx, cy, r: Math.abs(ex - cx) }));
        labelAt = [cx, cy];
      }
      const label = svg('text', { x: labelAt[0] + 6, y: labelAt[1] - 6, class: 'fence-name' });
      label.textContent = fence.name;
      g.append(label);
      fencesG.append(g);
    }
    this.onProjection();
    this.schedule();
  }

  /**
   * Renders on the next frame (`now`: after the user's zoom, pan or selection) or within
   * RENDER_EVERY_MS (positions streaming in), never more than once per frame.
   */
  schedule(now = false) {
    if (now && this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
      this.pending = false;
    }
    if (this.pending) return;
    this.pending = true;
    const draw = () => {
      this.timer = null;
      requestAnimationFrame(() => {
        this.pending = false;
        this.render();
      });
    };
    if (now) draw();
    else this.timer = setTimeout(draw, RENDER_EVERY_MS);
  }

  /** Markers, clusters and labels for the current view. */
  render() {
    const followed = this.follow && this.bounds && this.guards.get(this.selected);
    if (followed) {
      // The selected guard stays in the middle as it walks, until the user pans.
      [this.view.cx, this.view.cy] = this.project(followed.lon, followed.lat);
      this.clampView();
    }
    const { scale, cx, cy } = this.view;
    const w = 1000 / scale;
    const h = 700 / scale;
    this.root.setAttribute('viewBox', `${(cx - w / 2).toFixed(2)} ${(cy - h / 2).toFixed(2)} ${w.toFixed(2)} ${h.toFixed(2)}`);
    this.root.dataset.zoom = scale.toFixed(2);
    // Fence outlines and names keep their size on screen too.
    this.root.style.setProperty('--k', String(1 / scale));
    if (!this.bounds) return;
    const k = 1 / scale;
    const left = cx - w / 2;
    const top = cy - h / 2;
    const layer = this.root.querySelector('#guards');
    const points = [];
    for (const [user, guard] of this.guards) {
      const [x, y] = this.project(guard.lon, guard.lat);
      let g = guard.el;
      if (!g) {
        g = svg('g', { class: 'guard', 'data-user': user });
        g.append(svg('circle', { r: 10 }));
        const name = svg('text', { x: 14, y: -2, class: 'name' });
        const sub = svg('text', { x: 14, y: 14, class: 'sub' });
        g.append(name, sub);
        g.addEventListener('click', () => {
          this.select(user, { centre: false });
          this.onSelect(user);
        });
        g.addEventListener('pointerenter', () => {
          this.hovered = user;
          this.schedule(true);
        });
        g.addEventListener('pointerleave', () => {
          if (this.hovered === user) this.hovered = null;
          this.schedule(true);
        });
        layer.append(g);
        guard.el = g;
      }
      // Only what changed is written: an unchanged attribute still costs a style pass.
      const transform = `translate(${x.toFixed(1)},${y.toFixed(1)}) scale(${k.toFixed(4)})`;
      if (guard.transform !== transform) {
        guard.transform = transform;
        g.setAttribute('transform', transform);
        g.dataset.x = x.toFixed(1);
        g.dataset.y = y.toFixed(1);
      }
      const st = this.status(user);
      g.classList.toggle('violating', st.violating);
      g.classList.toggle('panic', st.panic);
      g.classList.toggle('stale', st.stale);
      g.classList.toggle('selected', this.selected === user);
      g.classList.toggle('on-shift', this.onShift.has(user));
      // Screen position within the view, in view pixels at zoom 1.
      const sx = (x - left) * scale;
      const sy = (y - top) * scale;
      const visible = sx >= -20 && sx <= 1020 && sy >= -20 && sy <= 720;
      points.push({ user, g, sx, sy, visible, st });
    }
    // Clusters: at low zoom in a crowd, guards sharing a cell are drawn as one count. Alarms
    // and the selected guard always stand alone.
    const clustering = this.guards.size >= CLUSTER_FROM && scale < DETAIL_ZOOM;
    const cells = new Map();
    for (const p of points) {
      p.clustered = false;
      if (!clustering || !p.visible || p.st.panic || p.st.violating || p.user === this.selected) continue;
      const key = `${Math.floor(p.sx / CELL)},${Math.floor(p.sy / CELL)}`;
      if (!cells.has(key)) cells.set(key, []);
      cells.get(key).push(p);
    }
    const clusters = [];
    for (const members of cells.values()) {
      if (members.length < 2) continue;
      for (const p of members) p.clustered = true;
      const mx = members.reduce((a, p) => a + p.sx, 0) / members.length;
      const my = members.reduce((a, p) => a + p.sy, 0) / members.length;
      clusters.push({ x: left + mx / scale, y: top + my / scale, n: members.length });
    }
    const clusterG = this.root.querySelector('#clusters');
    clusterG.replaceChildren(...clusters.map((c) => {
      const g = svg('g', { class: 'cluster', 'data-count': c.n, transform: `translate(${c.x.toFixed(1)},${c.y.toFixed(1)}) scale(${k.toFixed(4)})` });
      g.append(svg('circle', { r: 12 + Math.min(12, Math.sqrt(c.n) * 2) }));
      const t = svg('text', { 'text-anchor': 'middle', dy: '0.35em' });
      t.textContent = String(c.n);
      g.append(t);
      g.addEventListener('click', () => {
        this.follow = false;
        this.zoomAt(c.x, c.y, Math.max(DETAIL_ZOOM, scale * 3));
      });
      return g;
    }));
    // Labels where they fit: the selected and hovered guard first, then alarms, then the
    // rest when zoomed in; a label that would overlap one already placed is not shown.
    const placed = new Map();
    const fits = (p, width) => {
      const box = { x0: p.sx + 12, y0: p.sy - LABEL_TOP, x1: p.sx + 16 + width, y1: p.sy + LABEL_BOTTOM };
      const keys = [];
      for (let gx = Math.floor(box.x0 / 100); gx <= Math.floor(box.x1 / 100); gx += 1) {
        for (let gy = Math.floor(box.y0 / 100); gy <= Math.floor(box.y1 / 100); gy += 1) keys.push(`${gx},${gy}`);
      }
      for (const key of keys) {
        for (const b of placed.get(key) ?? []) {
          if (box.x0 < b.x1 && box.x1 > b.x0 && box.y0 < b.y1 && box.y1 > b.y0) return false;
        }
      }
      for (const key of keys) {
        if (!placed.has(key)) placed.set(key, []);
        placed.get(key).push(box);
      }
      return true;
    };
    const rank = (p) => (p.user === this.selected ? 0 : p.user === this.hovered ? 1 : p.st.panic ? 2 : p.st.violating ? 3 : 4);
    const candidates = points.filter((p) => p.visible && !p.clustered).sort((a, b) => rank(a) - rank(b));
    const labelled = new Set();
    const texts = new Map();
    for (const p of candidates) {
      if (rank(p) === 4 && scale < DETAIL_ZOOM) break;
      const guard = this.guards.get(p.user);
      const name = this.names.get(p.user) ?? p.user;
      const battery = typeof guard.battery === 'number' ? ` · ${Math.round(guard.battery)}%` : '';
      const sub = `${age(guard.seenAt)} ago${battery}`;
      if (fits(p, Math.max(name.length * NAME_EM, sub.length * SUB_EM))) {
        labelled.add(p.user);
        texts.set(p.user, [name, sub]);
      }
    }
    for (const p of points) {
      p.g.classList.toggle('clustered', p.clustered);
      const text = texts.get(p.user);
      p.g.classList.toggle('labelled', Boolean(text));
      if (text) {
        const [name, sub] = p.g.querySelectorAll('text');
        if (name.textContent !== text[0]) name.textContent = text[0];
        if (sub.textContent !== text[1]) sub.textContent = text[1];
      }
    }
    this.root.dataset.clusters = String(clusters.length);
    this.root.dataset.labels = String(labelled.size);
  }

  tick() {
    this.schedule();
    $('#site-summary').textContent = `${this.guards.size} guards · ${this.violating.size} outside their fences`;
  }

  setViolations(alerts) {
    this.violating = new Set();
    this.violatedFences = new Set();
    this.panicking = new Set();
    for (const a of alerts) {
      if (a.state === 'resolved') continue;
      if (a.type === 'GEOFENCE') {
        this.violating.add(a.user);
        if (a.fence) this.violatedFences.add(a.fence);
      } else {
        // Every alarm a guard raises (PANIC, MEDICAL, FIRE, SECURITY, GENERAL) stands out.
        this.panicking.add(a.user);
      }
    }
    this.drawStatic();
    this.onChange();
  }
}

// ---- Guard list -----------------------------------------------------------------------------

// Entries drawn at most: the rest is counted, a search narrows it.
const LIST_MAX = 150;

/** The searchable, filterable list of guards beside the map; an entry selects its guard. */
class GuardList {
  constructor(site, names, welfare) {
    this.site = site;
    this.names = names;
    this.welfare = welfare;
    this.onShift = new Set();
    // Renders at most once a second while updates stream in; at once on the user's input.
    this.schedule = coalesce(() => this.render(), 1000);
    for (const id of ['#guard-search', '#f-violation', '#f-stale', '#f-battery', '#f-shift']) {
      $(id).addEventListener('input', () => this.render());
    }
  }


  render() {
    const query = $('#guard-search').value.trim().toLowerCase();
    const want = {
      violation: $('#f-violation').checked,
      stale: $('#f-stale').checked,
      battery: $('#f-battery').checked,
      shift: $('#f-shift').checked,
    };
    const rows = [];
    for (const user of this.site.guards.keys()) {
      const name = this.names.get(user) ?? user;
      if (query && !name.toLowerCase().includes(query) && !user.toLowerCase().includes(query)) continue;
      const st = this.site.status(user);
      if (want.violation && !(st.violating || st.panic)) continue;
      if (want.stale && !st.stale) continue;
      if (want.battery && !st.lowBattery) continue;
      if (want.shift && !this.onShift.has(user)) continue;
      rows.push({ user, name, st, wf: this.welfare.state(user) });
    }
    // A guard who may be unable to act (duress, man-down, lost contact, a missed check-in)
    // comes first, then alarms, then fences.
    const weight = (r) => (r.wf && r.wf.rank <= 3 ? -1 : r.st.panic ? 0 : r.st.violating ? 1 : 2);
    rows.sort((a, b) => weight(a) - weight(b) || a.name.localeCompare(b.name));
    // Positions stream in every second; the list changes far less often. Unchanged, the DOM
    // is left alone (no relayout of the column).
    const signature = `${rows.length}|${this.site.selected}|${rows
      .slice(0, LIST_MAX)
      .map((r) => `${r.user}:${r.name}:${+r.st.panic}${+r.st.violating}${+r.st.stale}${+r.st.lowBattery}${+this.onShift.has(r.user)}${r.wf ? this.welfare.flags(r.user) : ''}`)
      .join(',')}`;
    if (signature === this.shown) return;
    this.shown = signature;
    const shown = rows.slice(0, LIST_MAX).map((r) => {
      const badges = [];
      if (r.wf?.duress) badges.push(el('span', { class: 'badge duress' }, 'duress'));
      if (r.wf?.manDown) badges.push(el('span', { class: 'badge man-down' }, 'man down'));
      if (r.wf?.lost) badges.push(el('span', { class: 'badge lost-contact' }, 'lost contact'));
      if (r.wf?.checkIn === 'missed' || r.wf?.checkIn === 'overdue') badges.push(el('span', { class: `badge check-in ${r.wf.checkIn}` }, `check-in ${r.wf.checkIn}`));
      if (r.wf?.loneWork) badges.push(el('span', { class: 'badge lone-work' }, 'lone work'));
      if (r.st.panic) badges.push(el('span', { class: 'badge panic' }, 'alarm'));
      if (r.st.violating) badges.push(el('span', { class: 'badge violation' }, 'fence'));
      if (r.st.stale) badges.push(el('span', { class: 'badge stale' }, 'stale'));
      if (r.st.lowBattery) badges.push(el('span', { class: 'badge battery' }, 'battery'));
      if (this.onShift.has(r.user)) badges.push(el('span', { class: 'badge shift' }, 'on shift'));
      return el('li', {
        class: `roster-item${this.site.selected === r.user ? ' selected' : ''}`,
        'data-user': r.user,
        tabindex: '0',
        onclick: () => this.site.select(r.user),
        onkeydown: (e) => {
          if (e.key === 'Enter') this.site.select(r.user);
        },
      }, el('span', { class: 'who' }, r.name), ...badges);
    });
    $('#guard-list').replaceChildren(...shown);
    $('#guard-count').textContent = rows.length > LIST_MAX ? `${LIST_MAX} of ${rows.length} — refine the search` : `${rows.length}`;
  }
}

function fenceRing(fence) {
  const s = fence.shape;
  if (s.type === 'Polygon') return s.coordinates[0];
  const dLat = s.radius / 111320;
  const dLon = dLat / Math.cos((s.center[1] * Math.PI) / 180);
  return [
    [s.center[0] - dLon, s.center[1] - dLat],
    [s.center[0] + dLon, s.center[1] + dLat],
  ];
}

// ---- Alerts ---------------------------------------------------------------------------------

class AlertList {
  constructor(root, names, call, onChange) {
    this.root = root;
    this.names = names;
    this.call = call;
    this.onChange = onChange;
    this.alerts = new Map();
    this.open = new Set();
    this.notes = new Map();
    // The alerts whose alarm sounded on this page (each row says so in data-alarm).
    this.sounded = new Set();
  }

  /** Inserts or replaces by id, keeping the newest version: never twice the same alert. */
  upsert(alert) {
    const known = this.alerts.get(alert.id);
    if (known && known.updated_at > alert.updated_at) return false;
    this.alerts.set(alert.id, alert);
    return !known;
  }

  sorted() {
    // A duress alarm not yet resolved comes first, acknowledged or not (help is on its way,
    // the guard is still in danger); then open, acknowledged and resolved, critical first.
    const duress = (a) => (a.type === 'DURESS' && a.state !== 'resolved' ? 0 : 1);
    return [...this.alerts.values()].sort(
      (a, b) =>
        duress(a) - duress(b) ||
        STATE_ORDER[a.state] - STATE_ORDER[b.state] ||
        (PRIORITY[a.priority] ?? 9) - (PRIORITY[b.priority] ?? 9) ||
        a.created_at - b.created_at,
    );
  }

  render() {
    const items = this.sorted().slice(0, 100);
    const active = items.filter((a) => a.state !== 'resolved').length;
    $('#alert-count').textContent = `${active} active`;
    this.root.replaceChildren(...items.map((a) => this.row(a)));
    this.onChange([...this.alerts.values()]);
  }

  row(a) {
    const who = this.names.get(a.user) ?? a.user;
    const where = a.position ? `${a.position.lat.toFixed(5)}, ${a.position.lon.toFixed(5)}` : 'position unknown';
    const note = el('input', { type: 'text', placeholder: 'note', 'aria-label': 'note' });
    note.value = this.notes.get(a.id) ?? '';
    note.addEventListener('input', () => this.notes.set(a.id, note.value));
    note.addEventListener('click', (e) => e.stopPropagation());
    const act = (action) =>
      el('button', {
        type: 'button',
        class: `do-${action}`,
        onclick: async (event) => {
          event.stopPropagation();
          const sent = note.value;
          try {
            const updated = await this.call(`/api/v1/alerts/${encodeURIComponent(a.id)}/${action}`, {
              method: 'POST',
              body: sent ? { note: sent } : {},
            });
            // The live update may have redrawn the row before this answer, and a next note
            // (e.g. the resolution's) been typed into it since: that one is kept.
            if ((this.notes.get(a.id) ?? '') === sent) this.notes.delete(a.id);
            this.upsert(updated);
            this.render();
          } catch (e) {
            alert(`Could not ${action}: ${e.message}`);
          }
        },
      }, action === 'ack' ? 'Acknowledge' : 'Resolve');
    const actions = el('div', { class: 'actions' });
    if (a.state !== 'resolved') {
      actions.append(note);
      if (a.state === 'open') actions.append(act('ack'));
      actions.append(act('resolve'));
    }
    const li = el(
      'li',
      {
        class: `alert p-${a.priority.toLowerCase()} s-${a.state} t-${a.type.toLowerCase().replace(/_/g, '-')}`,
        'data-id': a.id,
        'data-type': a.type,
        'data-state': a.state,
        'data-alarm': this.sounded.has(a.id) ? 'sounded' : undefined,
        onclick: () => {
          if (this.open.has(a.id)) this.open.delete(a.id);
          else this.open.add(a.id);
          this.render();
        },
      },
      el('div', { class: 'head' },
        el('span', { class: 'type' }, ...[typeIcon(a.type), typeLabel(a.type)].filter(Boolean)),
        el('span', { class: 'guard' }, who),
        el('span', { class: 'level' }, `L${a.level}`),
        el('span', { class: 'state' }, a.state)),
      el('div', { class: 'meta' }, `${where} · ${age(a.created_at)} ago${a.message ? ` · ${a.message}` : ''}`),
      // The guard's phone shows nothing of a duress alarm: nor may anyone's reaction.
      a.type === 'DURESS' && a.state !== 'resolved'
        ? el('p', { class: 'silent' }, 'Silent alarm: the guard entered the duress PIN and their phone shows nothing. Do not call or message them about it; send help. Watching their camera shows on their phone.')
        : '',
      actions,
    );
    if (this.open.has(a.id)) {
      li.append(
        el('ol', { class: 'audit' }, ...a.audit.map((e) =>
          el('li', {}, `${new Date(e.at).toLocaleTimeString()} ${e.action} by ${e.by} (L${e.level})${e.note ? ` — ${e.note}` : ''}`))),
      );
    }
    return li;
  }
}

// One audio context for the page's alarms (a browser allows only a few); browsers may keep it
// suspended until the page was clicked once, so the first click anywhere resumes it.
let audio = null;
document.addEventListener('pointerdown', () => audio?.resume().catch(() => {}), { capture: true });

/**
 * A short two-tone beep. The page says what it sounded: <body data-alarms> counts the alarms,
 * data-alarm-type is the last one's type and data-audio the audio context's state.
 */
function beep(type) {
  const body = document.body.dataset;
  body.alarms = String(Number(body.alarms ?? 0) + 1);
  body.alarmType = type;
  try {
    if (!audio) {
      audio = new AudioContext();
      audio.addEventListener('statechange', () => {
        document.body.dataset.audio = audio.state;
      });
    }
    if (audio.state === 'suspended') audio.resume().catch(() => {});
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.connect(gain).connect(audio.destination);
    gain.gain.value = 0.2;
    const t = audio.currentTime;
    // A duress alarm is a longer, higher warble than the others.
    const tones = type === 'DURESS' ? [1175, 880, 1175, 880] : [880, 660];
    for (const [i, f] of tones.entries()) osc.frequency.setValueAtTime(f, t + i * 0.25);
    osc.start();
    osc.stop(t + tones.length * 0.25 + 0.1);
    body.audio = audio.state;
  } catch {
    // No audio here: the visual cue stays.
    body.audio = 'none';
  }
}

// ---- Video ----------------------------------------------------------------------------------

class VideoPanel {
  constructor(token, wsUrl, names) {
    this.token = token;
    this.wsUrl = wsUrl;
    this.names = names;
    this.client = null;
    this.watching = null;
    this.frames = [];
    this.url = null;
    $('#video-stop').addEventListener('click', () => this.stop());
  }

  watch(user) {
    if (this.watching === user) return;
    this.stop();
    if (!this.client) {
      // Frames are binary: MessagePack keeps them as bytes.
      this.client = new LookoutClient({ url: this.wsUrl, token: this.token, encoding: 'msgpack' });
      this.client.connect();
    }
    this.watching = user;
    $('#video').hidden = false;
    $('#video-who').textContent = this.names.get(user) ?? user;
    this.sub = this.client.subscribe(`/topic/video/${user}`, (frame) => this.draw(frame));
  }

  draw(frame) {
    if (!(frame?.data instanceof Uint8Array)) return;
    const now = Date.now();
    this.frames.push(now);
    this.frames = this.frames.filter((t) => now - t < 1000);
    const img = $('#video-frame');
    const url = URL.createObjectURL(new Blob([frame.data], { type: 'image/jpeg' }));
    const old = this.url;
    this.url = url;
    img.onload = () => old && URL.revokeObjectURL(old);
    img.src = url;
    $('#video-fps').textContent = String(this.frames.length);
    if (typeof frame.ts === 'number') $('#video-latency').textContent = String(Math.max(0, now - frame.ts));
  }

  stop() {
    if (!this.watching) return;
    this.sub?.unsubscribe();
    this.sub = null;
    this.watching = null;
    $('#video').hidden = true;
  }
}

// ---- Guard devices --------------------------------------------------------------------------

class DevicePanel {
  /** `known()` gives the guard ids the page knows of, offered when adding a device. */
  constructor(call, names, known) {
    this.call = call;
    this.names = names;
    $('#add-device').addEventListener('click', () => {
      $('#enroll').hidden = !$('#enroll').hidden;
      $('#known-guards').replaceChildren(...[...known()].sort().map((u) => el('option', { value: u }, this.names.get(u) ?? u)));
      $('#enroll-guard').focus();
    });
    $('#enroll-guard').addEventListener('change', () => {
      const name = this.names.get($('#enroll-guard').value);
      if (name && !$('#enroll-name').value) $('#enroll-name').value = name;
    });
    $('#enroll').addEventListener('submit', (event) => {
      event.preventDefault();
      this.enroll();
    });
  }

  async enroll() {
    const guard = $('#enroll-guard').value.trim();
    const name = $('#enroll-name').value.trim();
    $('#enroll-error').hidden = true;
    // Never the previous guard's code next to this one's error.
    $('#enroll-qr').hidden = true;
    try {
      const minted = await this.call('/api/v1/guard-links', { method: 'POST', body: name ? { guard, name } : { guard } });
      $('#enroll-qr-image').src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(minted.qr)}`;
      $('#enroll-url').textContent = minted.url;
      $('#enroll-ttl').textContent = String(Math.round(minted.expiresIn / 60));
      $('#enroll-qr').hidden = false;
      $('#enroll-qr').dataset.guard = guard;
      // The link names the address this page was opened at.
      $('#enroll-local').hidden = !['localhost', '127.0.0.1', '[::1]'].includes(location.hostname);
    } catch (e) {
      $('#enroll-error').textContent = `Could not add the device: ${e.message}`;
      $('#enroll-error').hidden = false;
    }
  }

  async refresh() {
    // A revoke waiting for its confirmation is not swept away by the periodic refresh.
    if (document.querySelector('#devices .do-revoke.danger')) return;
    let devices;
    try {
      ({ devices } = await this.call('/api/v1/devices'));
    } catch (e) {
      $('#devices').replaceChildren(el('tr', {}, el('td', { colspan: '5' }, e.message)));
      return;
    }
    $('#devices').replaceChildren(...devices.map((d) => this.row(d)));
  }

  row(d) {
    const seen = d.online ? el('span', { class: 'online' }, 'online') : d.lastSeen ? `${age(d.lastSeen)} ago` : '–';
    const action = el('td');
    if (d.revokedAt) {
      action.append(`revoked ${age(d.revokedAt)} ago`);
    } else {
      // Two steps: a stray click never cuts a guard off.
      const revoke = el('button', { type: 'button', class: 'secondary do-revoke' }, 'Revoke');
      revoke.addEventListener('click', async () => {
        if (!revoke.classList.contains('danger')) {
          revoke.classList.add('danger');
          revoke.textContent = 'Confirm revoke';
          return;
        }
        try {
          await this.call(`/api/v1/devices/${encodeURIComponent(d.id)}/revoke`, { method: 'POST', body: {} });
        } catch (e) {
          alert(`Could not revoke: ${e.message}`);
        }
        this.refresh();
      });
      action.append(revoke);
    }
    return el(
      'tr',
      { class: `device${d.revokedAt ? ' revoked' : ''}`, 'data-id': d.id, 'data-guard': d.guard },
      el('td', {}, d.guard),
      el('td', {}, d.name ?? this.names.get(d.guard) ?? ''),
      el('td', {}, `${age(d.enrolledAt)} ago`),
      el('td', {}, seen),
      action,
    );
  }
}

// ---- Operations -----------------------------------------------------------------------------

async function refreshOps(call, last) {
  let s;
  try {
    s = await call('/api/v1/websocket/stats');
  } catch (e) {
    $('#ops').replaceChildren(el('dt', {}, 'stats'), el('dd', {}, e.message));
    return last;
  }
  const now = Date.now();
  const rate = (key) => (last ? (((s[key] - last.s[key]) * 1000) / (now - last.at)).toFixed(1) : '–');
  const rows = [
    ['connections', s.connections],
    ['users online', s.users_online],
    ['subscriptions', s.subscriptions],
    ['messages in /s', rate('messages_received')],
    ['published /s', rate('messages_published')],
    ['delivered /s', rate('messages_delivered')],
    ['dropped (live)', s.dropped_live],
    // Above zero: positions come faster than the server processes them; alarms still go first.
    ['positions waiting', s.positions_waiting],
    ['positions shed /s', rate('positions_shed')],
    ['uptime', `${Math.floor(s.uptime_seconds / 60)} min`],
    ['version', s.version],
  ];
  rows.push(...(await arcRows(call)));
  $('#ops').replaceChildren(
    ...rows.flatMap(([k, v, down]) => [el('dt', {}, k), el('dd', { class: down ? 'down' : undefined }, String(v))]),
  );
  return { s, at: now };
}

// ---- Tools ----------------------------------------------------------------------------------

/** The tabs of the supervisor's tools: arrow keys, Home and End move between them. */
class Tabs {
  constructor(tools) {
    this.tools = tools;
    this.shown = null;
    this.buttons = [...document.querySelectorAll('.tabs [role="tab"]')];
    for (const [i, b] of this.buttons.entries()) {
      b.addEventListener('click', () => this.select(b.id.slice(4)));
      b.addEventListener('keydown', (e) => {
        const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: this.buttons.length - 1 }[e.key];
        if (to === undefined) return;
        e.preventDefault();
        const next = this.buttons[(to + this.buttons.length) % this.buttons.length];
        next.focus();
        this.select(next.id.slice(4));
      });
    }
  }

  select(name) {
    this.shown = name;
    for (const b of this.buttons) {
      const on = b.id === `tab-${name}`;
      b.setAttribute('aria-selected', String(on));
      b.tabIndex = on ? 0 : -1;
      $(`#${b.getAttribute('aria-controls')}`).hidden = !on;
    }
    this.tools()[name]?.();
  }
}

// ---- Wiring ---------------------------------------------------------------------------------

async function start(token) {
  const me = usable(token);
  if (!me) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(token ? 'Your sign-in expired; paste a new token.' : undefined);
    return;
  }
  $('#signin').hidden = true;
  $('#app').hidden = false;
  $('#who').textContent = `${me.name ?? me.sub} · ${me.org}`;
  const call = api(token);
  const names = new Map();
  const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  const site = new SiteView($('#site'), names);
  const tabs = new Tabs(() => tools);
  const known = () => new Set([...site.guards.keys(), ...names.keys()]);
  const fenceName = (id) => site.fences.find((f) => f.id === id)?.name ?? id;
  const alertLog = new AlertLog({ call, names, fenceName, visible: () => tabs.shown === 'log' });
  const welfare = new WelfareBoard({
    call,
    onChange: () => {
      roster.schedule();
      table.schedule();
      welfareSettings.renderOverview();
    },
    // The check-ins' countdowns ("due in 4 min") move on in the table while it is shown.
    onTick: () => table.schedule(),
  });
  const alerts = new AlertList($('#alerts'), names, call, (all) => {
    site.setViolations(all);
    alertLog.update(all);
    welfare.setAlerts(all);
    showDuress(all);
  });
  const video = new VideoPanel(token, wsUrl, names);
  site.onSelect = (user) => video.watch(user);
  const roster = new GuardList(site, names, welfare);
  const devices = new DevicePanel(call, names, known);

  const client = new LookoutClient({ url: wsUrl, token });
  const messages = new Messages({ call, client, me, names, guards: () => site.guards.keys(), visible: () => tabs.shown === 'messages' });
  const fences = new FencePanel({
    call,
    fetchFile: (path) => fetch(path, { headers: { authorization: `Bearer ${token}` } }),
    site,
    names,
    guards: known,
    onShiftChange: (onShift) => {
      roster.onShift = onShift;
      site.onShift = onShift;
      roster.schedule();
      site.schedule();
      table.schedule();
    },
  });
  const playback = new Playback({ call, site, names, guards: known, alerts: () => [...alertLog.alerts.values()], fenceName });
  const table = new GuardTable({
    site,
    names,
    online: () => messages.online,
    onShift: () => site.onShift,
    visible: () => tabs.shown === 'guards',
    select: (user) => site.select(user),
    welfare,
  });
  const welfareSettings = new WelfareSettings({
    call,
    names,
    guards: known,
    sites: () => fences.shifts.map((s) => s.site),
    board: welfare,
    visible: () => tabs.shown === 'welfare',
  });
  const patrols = new PatrolPanel({ call, token, site, names, guards: known, visible: () => tabs.shown === 'patrols' });
  const incidents = new IncidentPanel({ call, token: () => token, names });
  site.onChange = () => {
    roster.schedule();
    table.schedule();
  };
  site.onProjection = () => {
    fences.drawDraft();
    playback.draw();
    patrols.draw();
    playback.seek(Number($('#play-slider').value));
  };
  const tools = {
    messages: () => messages.render(),
    log: () => (alertLog.alerts.size ? alertLog.render(true) : alertLog.load()),
    fences: () => {
      fences.renderFences();
      fences.loadShifts();
    },
    playback: () => playback.options(),
    guards: () => table.render(true),
    // The sites offered are those of the shifts: loaded afresh first.
    welfare: () => fences.loadShifts().then(() => welfareSettings.show()),
    patrols: () => patrols.show(),
    incidents: () => incidents.load(),
  };
  const loadShifts = () => fences.loadShifts();
  let wasOpen = false;
  client.on('state', (state) => {
    $('#conn').dataset.state = state;
    $('#conn').textContent = state;
    const offline = state !== 'open' && wasOpen;
    $('#banner').hidden = !offline || state === 'closed';
    $('#banner').textContent = state === 'polling' ? 'Live over long-poll (WebSocket unavailable)' : 'Offline — reconnecting…';
    if (state === 'open') wasOpen = true;
  });

  const loadNames = async () => {
    try {
      const presence = await call('/api/v1/presence');
      for (const u of presence.online) if (u.name) names.set(u.user, u.name);
      messages.setOnline(presence.online.map((u) => u.user));
    } catch {
      // Names are a nicety; ids stand in.
    }
  };
  let loadedOnce = false;
  let panicTimer = null;
  // PANIC and the lone-worker alarms sound and flash when they are raised; a duress alarm
  // has its own banner (showDuress), which stays while it is not resolved.
  const cuePanic = (alert) => {
    if (!ALARM_TYPES.has(alert.type) || alert.state !== 'open') return;
    alerts.sounded.add(alert.id);
    if (alert.type !== 'DURESS') {
      $('#panic').textContent = `${typeLabel(alert.type).toUpperCase()} — ${names.get(alert.user) ?? alert.user}`;
      $('#panic').hidden = false;
      clearTimeout(panicTimer);
      panicTimer = setTimeout(() => {
        $('#panic').hidden = true;
      }, 15000);
    }
    beep(alert.type);
  };
  let duressOpen = false;
  function showDuress(all) {
    const unresolved = all.filter((a) => a.type === 'DURESS' && a.state !== 'resolved').sort((a, b) => a.created_at - b.created_at);
    duressOpen = unresolved.some((a) => a.state === 'open');
    const banner = $('#duress');
    banner.hidden = unresolved.length === 0;
    const text = unresolved.length
      ? `DURESS — ${unresolved.map((a) => `${names.get(a.user) ?? a.user}${a.state === 'acknowledged' ? ' (acknowledged)' : ''}`).join(', ')}: silent alarm, send help; do not call or message the guard about it.`
      : '';
    if (banner.textContent !== text) banner.textContent = text;
    banner.dataset.open = String(duressOpen);
  }
  // Until someone acknowledges it, a duress alarm sounds again every 15 s.
  setInterval(() => {
    if (duressOpen) beep('DURESS');
  }, 15000);
  const loadAlerts = async () => {
    try {
      for (const a of await call('/api/v1/alerts')) {
        // What was already there when the page opened is listed, not announced.
        if (alerts.upsert(a) && loadedOnce) cuePanic(a);
      }
      loadedOnce = true;
      alerts.render();
    } catch (e) {
      console.warn('alerts', e);
    }
  };

  await loadNames();
  welfare.start();
  try {
    const { plan } = await call('/api/v1/site');
    if (plan) {
      // Fetched with the token (an <image> cannot send it) and shown from a blob: URL.
      const image = await fetch(plan.url, { headers: { authorization: `Bearer ${token}` } });
      if (image.ok) site.setPlan(URL.createObjectURL(await image.blob()), plan.bounds);
    }
  } catch (e) {
    console.warn('site plan', e);
  }
  try {
    site.setFences(await call('/api/v1/geofences'));
    fences.renderFences();
    for (const last of await call('/api/v1/locations')) {
      site.update(last.user, { ...last.location, receivedAt: last.received_at });
    }
  } catch (e) {
    console.warn('site', e);
  }
  await loadAlerts();

  const locations = `/topic/org/${me.org}/locations`;
  client.subscribe(locations, (data) => site.update(data.user, data));
  const alertChannel = `/topic/org/${me.org}/alerts`;
  // Loaded again once the subscription is in place (first time and after every reconnect):
  // nothing raised between the load and the subscription is missed, and upserts by id keep
  // every alert listed once.
  const onSubscribed = () => loadAlerts();
  client.subscribe(alertChannel, (data, message) => {
    if (alerts.upsert(data.alert)) cuePanic(data.alert);
    alerts.render();
    // Creations and escalations need this supervisor's acknowledgement of the message.
    if (message.ack_required) client.ack(alertChannel, message.seq).catch(() => {});
  }, { onSubscribed });
  messages.start();
  client.connect();
  tabs.select('messages');

  devices.refresh();
  setInterval(() => devices.refresh(), 10000);

  let ops = await refreshOps(call, null);
  setInterval(async () => {
    ops = await refreshOps(call, ops);
  }, 5000);
  setInterval(() => site.tick(), 1000);
  setInterval(loadNames, 30000);
  loadShifts();
  setInterval(loadShifts, 30000);
}

const { token, error } = await takeToken();
if (token) start(token);
else showSignIn(error);
