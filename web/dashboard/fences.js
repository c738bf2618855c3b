// Fences and shifts: draw a fence on the plan (polygon by clicking its corners or typing them,
// circle by its centre and radius; required or forbidden), move one (drag on the plan, or the
// arrow buttons, 5 m a step) or delete it; and the shift planner (guard, site, start, end),
// whose on-shift guards are ringed on the map.
import { $, el, svg, localInput, saveBlob, when } from './dom.js';

const STEP_M = 5;
const M_PER_DEG = 111320;

/** "lat, lon" lines → [[lon, lat], …]; throws on anything else. */
export function parsePoints(text) {
  return text.split(/[\n;]+/).map((l) => l.trim()).filter(Boolean).map((line) => {
    const [lat, lon] = line.split(/[\s,]+/).map(Number);
    if (!Number.isFinite(lat) || !Number.isFinite(lon) || Math.abs(lat) > 90 || Math.abs(lon) > 180) {
      throw new Error(`"${line}" is not "latitude, longitude"`);
    }
    return [lon, lat];
  });
}

function shift(shape, dx, dy) {
  const lat = shape.type === 'Circle' ? shape.center[1] : shape.coordinates[0][0][1];
  const dLon = dx / (M_PER_DEG * Math.cos((lat * Math.PI) / 180));
  const dLat = dy / M_PER_DEG;
  const move = ([lon, la]) => [lon + dLon, la + dLat];
  return shape.type === 'Circle'
    ? { ...shape, center: move(shape.center) }
    : { ...shape, coordinates: shape.coordinates.map((ring) => ring.map(move)) };
}

export class FencePanel {
  /** `ctx`: { call, fetchFile(path), site, names, guards(), onShiftChange(set) }. */
  constructor(ctx) {
    Object.assign(this, ctx);
    this.drawing = false;
    this.points = [];
    this.moving = null;
    this.shifts = [];
    $('#fence-draw').addEventListener('click', () => this.toggleDrawing());
    $('#fence-shape').addEventListener('input', () => this.syncShape());
    $('#fence-points').addEventListener('input', () => this.fromText());
    $('#fence-radius').addEventListener('input', () => this.drawDraft());
    $('#fence-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.save();
    });
    $('#fence-clear').addEventListener('click', () => this.clearDraft());
    $('#shift-guard').addEventListener('focus', () => this.offerGuards());
    $('#shift-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.addShift();
    });
    $('#shift-start').value = localInput(Date.now());
    $('#shift-end').value = localInput(Date.now() + 8 * 3600 * 1000);
    this.site.onMapClick = (lon, lat) => this.mapClick(lon, lat);
    this.site.onMapDrag = (dxm, dym, done) => this.drag(dxm, dym, done);
    this.syncShape();
  }

  syncShape() {
    const circle = $('#fence-shape').value === 'circle';
    $('#fence-radius-label').hidden = !circle;
    $('#fence-points-label').firstChild.textContent = circle ? 'Centre (latitude, longitude)' : 'Corners (latitude, longitude; one a line)';
    this.drawDraft();
  }

  toggleDrawing(on = !this.drawing) {
    this.drawing = on;
    $('#fence-draw').setAttribute('aria-pressed', String(on));
    $('#fence-draw').textContent = on ? 'Stop clicking on the plan' : 'Click on the plan';
    this.site.root.classList.toggle('drawing', on);
  }

  mapClick(lon, lat) {
    if (!this.drawing) return false;
    if ($('#fence-shape').value === 'circle') this.points = [[lon, lat]];
    else this.points.push([lon, lat]);
    $('#fence-points').value = this.points.map(([x, y]) => `${y.toFixed(6)}, ${x.toFixed(6)}`).join('\n');
    this.drawDraft();
    return true;
  }

  fromText() {
    try {
      this.points = parsePoints($('#fence-points').value);
      $('#fence-error').hidden = true;
    } catch (e) {
      $('#fence-error').textContent = e.message;
      $('#fence-error').hidden = false;
    }
    this.drawDraft();
  }

  clearDraft() {
    this.points = [];
    $('#fence-points').value = '';
    this.drawDraft();
  }

  shape() {
    if ($('#fence-shape').value === 'circle') {
      const radius = Number($('#fence-radius').value);
      if (this.points.length !== 1) throw new Error('A circle needs its centre: one point.');
      if (!(radius > 0)) throw new Error('A circle needs a radius in metres.');
      return { type: 'Circle', center: this.points[0], radius };
    }
    if (this.points.length < 3) throw new Error('A polygon needs at least three corners.');
    return { type: 'Polygon', coordinates: [[...this.points, this.points[0]]] };
  }

  drawDraft() {
    const layer = this.site.root.querySelector('#draft');
    // Called at every redraw of the fences (each alert): an empty layer is left alone.
    if (!this.site.bounds || !this.points.length) {
      if (layer.firstChild) layer.replaceChildren();
      return;
    }
    layer.replaceChildren();
    const pts = this.points.map(([lon, lat]) => this.site.project(lon, lat));
    const kind = $('#fence-kind').value;
    if ($('#fence-shape').value === 'circle') {
      const [cx, cy] = pts[0];
      const r = Number($('#fence-radius').value) || 0;
      const [ex] = this.site.project(this.points[0][0] + r / (M_PER_DEG * Math.cos((this.points[0][1] * Math.PI) / 180)), this.points[0][1]);
      layer.append(svg('circle', { class: `draft ${kind}`, cx, cy, r: Math.abs(ex - cx) }));
    } else {
      layer.append(svg('polygon', { class: `draft ${kind}`, points: pts.map((p) => p.join(',')).join(' ') }));
    }
    for (const [x, y] of pts) layer.append(svg('circle', { class: 'vertex', cx: x, cy: y, r: 5 }));
  }

  async save() {
    $('#fence-error').hidden = true;
    try {
      const name = $('#fence-name').value.trim();
      if (!name) throw new Error('A fence needs a name.');
      const body = { name, kind: $('#fence-kind').value, shape: this.shape() };
      const site = $('#fence-site').value.trim();
      if (site) body.site = site;
      await this.call('/api/v1/geofences', { method: 'POST', body });
      $('#fence-name').value = '';
      this.clearDraft();
      this.toggleDrawing(false);
      await this.loadFences();
      $('#fence-status').textContent = `Fence "${name}" saved.`;
    } catch (e) {
      $('#fence-error').textContent = e.message;
      $('#fence-error').hidden = false;
    }
  }

  async loadFences() {
    try {
      this.site.setFences(await this.call('/api/v1/geofences'));
    } catch (e) {
      $('#fence-status').textContent = `Could not load the fences: ${e.message}`;
    }
    this.renderFences();
  }

  renderFences() {
    const site = this.site.fences.find((f) => f.site)?.site;
    if (site && !$('#shift-site').value) $('#shift-site').value = site;
    $('#fence-list').replaceChildren(...this.site.fences.map((f) => {
      const arrows = [['←', -STEP_M, 0, 'west'], ['↑', 0, STEP_M, 'north'], ['↓', 0, -STEP_M, 'south'], ['→', STEP_M, 0, 'east']];
      return el('li', { 'data-id': f.id, class: this.moving === f.id ? 'moving' : '' },
        el('span', { class: `kind ${f.kind}` }, f.kind),
        el('span', { class: 'who' }, `${f.name} (${f.shape.type === 'Circle' ? `circle ${Math.round(f.shape.radius)} m` : `${f.shape.coordinates[0].length - 1} corners`})`),
        el('button', { type: 'button', class: 'secondary do-move', 'aria-pressed': String(this.moving === f.id), onclick: () => this.toggleMove(f.id) }, this.moving === f.id ? 'Done' : 'Move'),
        ...(this.moving === f.id ? arrows.map(([t, dx, dy, dir]) => el('button', { type: 'button', class: 'secondary', 'aria-label': `Move ${STEP_M} m ${dir}`, onclick: () => this.nudge(f.id, dx, dy) }, t)) : []),
        el('button', { type: 'button', class: 'secondary do-delete', onclick: (e) => this.remove(f, e.currentTarget) }, 'Delete'));
    }));
  }

  toggleMove(id) {
    this.moving = this.moving === id ? null : id;
    this.site.root.classList.toggle('moving', Boolean(this.moving));
    this.renderFences();
  }

  async replace(id, shape) {
    const f = this.site.fences.find((x) => x.id === id);
    if (!f) return;
    const body = { name: f.name, kind: f.kind, shape };
    if (f.guards) body.guards = f.guards;
    if (f.site) body.site = f.site;
    try {
      await this.call(`/api/v1/geofences/${encodeURIComponent(id)}`, { method: 'PUT', body });
      $('#fence-status').textContent = `Fence "${f.name}" moved.`;
    } catch (e) {
      $('#fence-status').textContent = `Could not move the fence: ${e.message}`;
    }
    await this.loadFences();
  }

  nudge(id, dx, dy) {
    const f = this.site.fences.find((x) => x.id === id);
    if (f) this.replace(id, shift(f.shape, dx, dy));
  }

  /** Dragging on the plan while a fence is being moved: shown as it goes, saved at the end. */
  drag(dxm, dym, done) {
    if (!this.moving) return false;
    const f = this.site.fences.find((x) => x.id === this.moving);
    if (!f) return false;
    if (!this.dragFrom) this.dragFrom = f.shape;
    f.shape = shift(this.dragFrom, dxm, dym);
    this.site.drawStatic();
    if (done) {
      const shape = f.shape;
      this.dragFrom = null;
      this.replace(f.id, shape);
    }
    return true;
  }

  async remove(f, button) {
    if (!button.classList.contains('danger')) {
      button.classList.add('danger');
      button.textContent = 'Confirm delete';
      return;
    }
    try {
      await this.call(`/api/v1/geofences/${encodeURIComponent(f.id)}`, { method: 'DELETE' });
      $('#fence-status').textContent = `Fence "${f.name}" deleted.`;
    } catch (e) {
      $('#fence-status').textContent = `Could not delete: ${e.message}`;
    }
    await this.loadFences();
  }

  // ---- Shifts ----

  async loadShifts() {
    try {
      this.shifts = await this.call('/api/v1/shifts');
    } catch (e) {
      $('#shift-status').textContent = `Could not load the shifts: ${e.message}`;
    }
    const now = Date.now();
    this.onShiftChange(new Set(this.shifts.filter((s) => s.start <= now && now < s.end).map((s) => s.user)));
    this.renderShifts();
  }

  async addShift() {
    const user = $('#shift-guard').value.trim();
    const body = {
      user,
      site: $('#shift-site').value.trim(),
      start: new Date($('#shift-start').value).getTime(),
      end: new Date($('#shift-end').value).getTime(),
    };
    try {
      if (!user || !body.site) throw new Error('A shift needs a guard and a site.');
      if (!(body.end > body.start)) throw new Error('A shift ends after it starts.');
      await this.call('/api/v1/shifts', { method: 'POST', body });
      $('#shift-status').textContent = `${this.names.get(user) ?? user} is on shift at ${body.site} from ${when(body.start)}.`;
    } catch (e) {
      $('#shift-status').textContent = `Could not plan the shift: ${e.message}`;
    }
    await this.loadShifts();
  }

  /** The guards the shift form offers: filled while the panel is shown, not every 30 s. */
  offerGuards() {
    const guards = [...this.guards()].sort().slice(0, 2000);
    const key = guards.map((u) => `${u}:${this.names.get(u) ?? ''}`).join(',');
    if (key === this.offered) return;
    this.offered = key;
    $('#known-guards-shift').replaceChildren(...guards.map((u) => el('option', { value: u }, this.names.get(u) ?? u)));
  }

  /** A shift's report: fetched with the token (a link cannot send it), saved from a blob: URL. */
  async saveReport(shift, ext) {
    const who = this.names.get(shift.user) ?? shift.user;
    try {
      const response = await this.fetchFile(`/api/v1/shifts/${encodeURIComponent(shift.id)}/report.${ext}`);
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error(body?.error?.message ?? `HTTP ${response.status}`);
      }
      const named = /filename="([^"]+)"/.exec(response.headers.get('content-disposition') ?? '');
      saveBlob(named ? named[1] : `shift-${shift.id}.${ext}`, await response.blob());
      $('#shift-status').textContent = `The shift report of ${who} (${ext.toUpperCase()}) is downloaded.`;
    } catch (e) {
      $('#shift-status').textContent = `Could not make the shift report: ${e.message}`;
    }
  }

  renderShifts() {
    const now = Date.now();
    if (!$('#panel-fences').hidden) this.offerGuards();
    const sorted = [...this.shifts].sort((a, b) => a.start - b.start);
    $('#shift-list').replaceChildren(...sorted.map((s) => el('tr', { 'data-id': s.id, 'data-user': s.user, class: s.start <= now && now < s.end ? 'current' : '' },
      el('td', {}, this.names.get(s.user) ?? s.user),
      el('td', {}, s.site),
      el('td', {}, when(s.start)),
      el('td', {}, when(s.end)),
      el('td', {}, s.start <= now && now < s.end ? 'on shift' : s.end <= now ? 'over' : 'planned'),
      el('td', {}, ...['pdf', 'csv'].map((ext) => el('button', {
        type: 'button',
        class: 'secondary',
        'aria-label': `Shift report of ${this.names.get(s.user) ?? s.user} (${ext.toUpperCase()})`,
        onclick: () => this.saveReport(s, ext),
      }, ext.toUpperCase())), el('button', {
        type: 'button',
        class: 'secondary',
        'aria-label': `Delete the shift of ${this.names.get(s.user) ?? s.user}`,
        onclick: async () => {
          try {
            await this.call(`/api/v1/shifts/${encodeURIComponent(s.id)}`, { method: 'DELETE' });
          } catch (e) {
            $('#shift-status').textContent = `Could not delete: ${e.message}`;
          }
          this.loadShifts();
        },
      }, 'Delete')))));
  }
}
