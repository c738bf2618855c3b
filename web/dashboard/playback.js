// Track playback: a guard's track for a time range from its location history
// (GET /api/v1/locations/{user}/history), drawn on the plan, with a time slider (and Play) that
// moves a marker along it, and the guard's alerts of that time placed on the track.
import { $, el, svg, localInput, when } from './dom.js';

const MAX_POINTS = 10000;

export class Playback {
  /** `ctx`: { call, site, names, guards(), alerts() → every alert known, fenceName(id) }. */
  constructor(ctx) {
    Object.assign(this, ctx);
    this.points = [];
    this.events = [];
    this.timer = null;
    $('#play-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.load();
    });
    $('#play-last5').addEventListener('click', () => {
      $('#play-from').value = localInput(Date.now() - 5 * 60 * 1000);
      $('#play-to').value = localInput(Date.now() + 60 * 1000);
      this.load();
    });
    $('#play-slider').addEventListener('input', () => this.seek(Number($('#play-slider').value)));
    $('#play-toggle').addEventListener('click', () => this.toggle());
    $('#play-clear').addEventListener('click', () => this.clear());
    $('#play-from').value = localInput(Date.now() - 5 * 60 * 1000);
    $('#play-to').value = localInput(Date.now() + 60 * 1000);
  }

  options() {
    $('#known-guards-play').replaceChildren(...[...this.guards()].sort().slice(0, 2000).map((u) => el('option', { value: u }, this.names.get(u) ?? u)));
  }

  async load() {
    const user = $('#play-guard').value.trim();
    const from = new Date($('#play-from').value).getTime();
    const to = new Date($('#play-to').value).getTime();
    $('#play-status').textContent = '';
    if (!user || !(to > from)) {
      $('#play-status').textContent = 'Choose a guard and a time range that ends after it starts.';
      return;
    }
    try {
      const h = await this.call(`/api/v1/locations/${encodeURIComponent(user)}/history?from=${from}&to=${to}&limit=${MAX_POINTS}`);
      this.user = user;
      this.points = h.points.map((p) => p.location).sort((a, b) => a.ts - b.ts);
    } catch (e) {
      $('#play-status').textContent = `Could not load the track: ${e.message}`;
      return;
    }
    this.events = this.alerts().filter((a) => a.user === user && a.created_at >= from && a.created_at <= to)
      .sort((a, b) => a.created_at - b.created_at);
    $('#play-slider').max = String(Math.max(0, this.points.length - 1));
    $('#play-slider').value = '0';
    $('#play-slider').disabled = !this.points.length;
    $('#play-toggle').disabled = !this.points.length;
    $('#play-summary').textContent = this.points.length
      ? `${this.points.length} positions of ${this.names.get(user) ?? user}, ${when(this.points[0].ts)} – ${when(this.points.at(-1).ts)}`
      : 'No positions in that time.';
    if (this.points.length >= MAX_POINTS) $('#play-summary').textContent += ` (the first ${MAX_POINTS}: narrow the range)`;
    $('#play-events').replaceChildren(...this.events.map((a) => el('li', {}, el('button', {
      type: 'button',
      class: 'link',
      onclick: () => this.seekTime(a.created_at),
    }, `${new Date(a.created_at).toLocaleTimeString()} ${a.type} (${a.state})${a.fence ? ` · ${this.fenceName(a.fence)}` : ''}`))));
    this.draw();
    this.seek(this.points.length - 1);
    $('#play-slider').value = String(Math.max(0, this.points.length - 1));
  }

  draw() {
    const layer = this.site.root.querySelector('#track');
    if (!this.points.length || !this.site.bounds) {
      if (layer.firstChild) layer.replaceChildren();
      return;
    }
    layer.replaceChildren();
    const pts = this.points.map((p) => this.site.project(p.lon, p.lat));
    layer.append(svg('polyline', { class: 'track', points: pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ') }));
    for (const a of this.events) {
      if (!a.position) continue;
      const [x, y] = this.site.project(a.position.lon, a.position.lat);
      const mark = svg('g', { class: 'track-alert', transform: `translate(${x.toFixed(1)},${y.toFixed(1)})`, 'data-id': a.id });
      mark.append(svg('rect', { x: -7, y: -7, width: 14, height: 14 }));
      const t = svg('title', {});
      t.textContent = `${a.type} at ${new Date(a.created_at).toLocaleTimeString()}`;
      mark.append(t);
      layer.append(mark);
    }
    this.marker = svg('circle', { class: 'track-now', r: 9 });
    layer.append(this.marker);
  }

  seekTime(ts) {
    let i = this.points.findIndex((p) => p.ts >= ts);
    if (i < 0) i = this.points.length - 1;
    $('#play-slider').value = String(i);
    this.seek(i);
  }

  seek(i) {
    const p = this.points[i];
    if (!p || !this.marker) return;
    const [x, y] = this.site.project(p.lon, p.lat);
    this.marker.setAttribute('cx', x.toFixed(1));
    this.marker.setAttribute('cy', y.toFixed(1));
    const battery = typeof p.battery === 'number' ? ` · battery ${Math.round(p.battery)}%` : '';
    $('#play-time').textContent = `${new Date(p.ts).toLocaleTimeString()} · ±${Math.round(p.accuracy ?? 0)} m${battery}`;
  }

  toggle() {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = null;
      $('#play-toggle').textContent = 'Play';
      return;
    }
    if (Number($('#play-slider').value) >= this.points.length - 1) $('#play-slider').value = '0';
    $('#play-toggle').textContent = 'Pause';
    this.timer = setInterval(() => {
      const i = Number($('#play-slider').value) + 1;
      if (i >= this.points.length) {
        this.toggle();
        return;
      }
      $('#play-slider').value = String(i);
      this.seek(i);
    }, 100);
  }

  clear() {
    if (this.timer) this.toggle();
    this.points = [];
    this.marker = null;
    this.site.root.querySelector('#track').replaceChildren();
    $('#play-summary').textContent = '';
    $('#play-time').textContent = '';
    $('#play-events').replaceChildren();
  }
}
