// Patrols on the dashboard: checkpoints (placed by clicking the plan or typed, drawn on the plan
// while this tab is shown, written to an NFC tag where the browser has Web NFC), the printable
// sheet of their QR codes, and tours (checkpoints, schedule, guards) with each one's round as
// it stands: what was scanned in it and what is still missing.
import { $, el, svg } from './dom.js';

// A tour's round is read again this often while the tab is shown.
const ROUND_EVERY_MS = 10000;

/** "lat, lon" → { lat, lon }; throws on anything else. */
function parsePosition(text) {
  const [lat, lon] = text.trim().split(/[\s,;]+/).map(Number);
  if (!Number.isFinite(lat) || !Number.isFinite(lon) || Math.abs(lat) > 90 || Math.abs(lon) > 180) {
    throw new Error('Position must be "latitude, longitude" (or click on the plan).');
  }
  return { lat, lon };
}

/** `HH:MM` of a time, UTC (tours are scheduled in UTC). */
const utc = (ms) => new Date(ms).toISOString().slice(11, 16);

export class PatrolPanel {
  /** `ctx`: { call, token, site, names, guards(), visible() }. */
  constructor(ctx) {
    Object.assign(this, ctx);
    this.checkpoints = [];
    this.tours = [];
    this.rounds = new Map();
    this.placing = false;
    this.timer = null;
    // Fences take a click on the plan while they are drawn; otherwise a checkpoint being
    // placed does.
    const before = this.site.onMapClick;
    this.site.onMapClick = (lon, lat) => before(lon, lat) || this.mapClick(lon, lat);
    $('#cp-place').addEventListener('click', () => this.togglePlacing());
    $('#cp-position').addEventListener('input', () => this.draw());
    $('#cp-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.saveCheckpoint();
    });
    $('#cp-print').addEventListener('click', () => this.printSheet());
    $('#tour-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.saveTour();
    });
    $('#tour-guards').addEventListener('focus', () => this.offerGuards());
  }

  /** The tab is shown: everything loaded afresh, rounds kept up to date while it stays. */
  async show() {
    await this.load();
    clearInterval(this.timer);
    this.timer = setInterval(() => {
      if (this.visible()) this.loadRounds();
      else {
        clearInterval(this.timer);
        this.timer = null;
        this.site.root.querySelector('#checkpoints').replaceChildren();
      }
    }, ROUND_EVERY_MS);
  }

  async load() {
    try {
      [this.checkpoints, this.tours] = await Promise.all([this.call('/api/v1/checkpoints'), this.call('/api/v1/tours')]);
    } catch (e) {
      $('#cp-status').textContent = `Could not load the patrols: ${e.message}`;
      return;
    }
    this.renderCheckpoints();
    await this.loadRounds();
  }

  async loadRounds() {
    const rounds = await Promise.all(this.tours.map((t) => this.call(`/api/v1/tours/${encodeURIComponent(t.id)}/round`).catch(() => null)));
    this.rounds = new Map(this.tours.map((t, i) => [t.id, rounds[i]]));
    this.renderTours();
    this.draw();
  }

  // ---- Checkpoints ----

  togglePlacing(on = !this.placing) {
    this.placing = on;
    $('#cp-place').setAttribute('aria-pressed', String(on));
    $('#cp-place').textContent = on ? 'Stop clicking on the plan' : 'Click on the plan';
    this.site.root.classList.toggle('drawing', on);
  }

  mapClick(lon, lat) {
    if (!this.placing) return false;
    $('#cp-position').value = `${lat.toFixed(6)}, ${lon.toFixed(6)}`;
    this.togglePlacing(false);
    this.draw();
    return true;
  }

  async saveCheckpoint() {
    $('#cp-error').hidden = true;
    try {
      const name = $('#cp-name').value.trim();
      if (!name) throw new Error('A checkpoint needs a name.');
      const body = { name, ...parsePosition($('#cp-position').value) };
      const site = $('#cp-site').value.trim();
      if (site) body.site = site;
      const radius = Number($('#cp-radius').value);
      if (radius) body.radius_m = radius;
      const instructions = $('#cp-instructions').value.trim();
      if (instructions) body.instructions = instructions;
      await this.call('/api/v1/checkpoints', { method: 'POST', body });
      $('#cp-name').value = '';
      $('#cp-instructions').value = '';
      $('#cp-status').textContent = `Checkpoint "${name}" saved: print its QR code with the sheet.`;
      await this.load();
    } catch (e) {
      $('#cp-error').textContent = e.message;
      $('#cp-error').hidden = false;
    }
  }

  renderCheckpoints() {
    const nfc = 'NDEFReader' in window;
    $('#cp-list').replaceChildren(...this.checkpoints.map((c) => el('li', { 'data-id': c.id },
      el('span', {}, el('strong', {}, c.name), c.site ? ` · ${c.site}` : '', ` · ${c.lat.toFixed(5)}, ${c.lon.toFixed(5)} ±${c.radius_m} m`),
      nfc ? el('button', { type: 'button', class: 'secondary', onclick: () => this.writeTag(c) }, 'Write NFC tag') : '',
      el('button', { type: 'button', class: 'secondary', 'aria-label': `Delete checkpoint ${c.name}`, onclick: (e) => this.removeCheckpoint(c, e.target) }, 'Delete'))));
    const sites = [...new Set(this.checkpoints.map((c) => c.site).filter(Boolean))].sort();
    const chosen = $('#cp-sheet-site').value;
    $('#cp-sheet-site').replaceChildren(el('option', { value: '' }, 'all sites'), ...sites.map((s) => el('option', { value: s, selected: s === chosen }, s)));
    const picked = new Set([...document.querySelectorAll('#tour-checkpoints input:checked')].map((i) => i.value));
    $('#tour-checkpoints').replaceChildren(...this.checkpoints.map((c) => el('label', { class: 'check' },
      el('input', { type: 'checkbox', value: c.id, checked: picked.has(c.id) }), ` ${c.name}${c.site ? ` (${c.site})` : ''}`)));
    $('#cp-summary').textContent = `${this.checkpoints.length} checkpoint${this.checkpoints.length === 1 ? '' : 's'}`;
  }

  async removeCheckpoint(c, button) {
    button.disabled = true;
    try {
      await this.call(`/api/v1/checkpoints/${encodeURIComponent(c.id)}`, { method: 'DELETE' });
      $('#cp-status').textContent = `Checkpoint "${c.name}" deleted.`;
      await this.load();
    } catch (e) {
      $('#cp-status').textContent = `"${c.name}" not deleted: ${e.message}`;
      button.disabled = false;
    }
  }

  /** Writes the checkpoint's signed code to an NFC tag held to the phone (Android Chrome). */
  async writeTag(c) {
    try {
      $('#cp-status').textContent = `Hold an NFC tag to the phone for "${c.name}"…`;
      // eslint-disable-next-line no-undef
      await new NDEFReader().write({ records: [{ recordType: 'text', data: c.code }] });
      $('#cp-status').textContent = `NFC tag written for "${c.name}".`;
    } catch (e) {
      $('#cp-status').textContent = `NFC tag not written: ${e.message}`;
    }
  }

  /**
   * The sheet needs the session's token, so it is fetched here and opened from a blob: URL;
   * its stylesheet's link is made absolute (a blob: page has no path to resolve it against,
   * and the pages' policy allows no <base>).
   */
  async printSheet() {
    const site = $('#cp-sheet-site').value;
    const response = await fetch(`/api/v1/checkpoints/sheet${site ? `?site=${encodeURIComponent(site)}` : ''}`, {
      headers: { authorization: `Bearer ${this.token}` },
    });
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      $('#cp-status').textContent = `No sheet: ${data?.error?.message ?? `HTTP ${response.status}`}`;
      return;
    }
    const html = (await response.text()).replaceAll('href="/', `href="${location.origin}/`);
    const url = URL.createObjectURL(new Blob([html], { type: 'text/html' }));
    window.open(url, '_blank');
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  // ---- Tours ----

  offerGuards() {
    $('#known-guards-tour').replaceChildren(...[...this.guards()].sort().map((g) => el('option', { value: g }, this.names.get(g) ?? g)));
  }

  async saveTour() {
    $('#tour-error').hidden = true;
    try {
      const name = $('#tour-name').value.trim();
      if (!name) throw new Error('A tour needs a name.');
      const checkpoints = [...document.querySelectorAll('#tour-checkpoints input:checked')].map((i) => i.value);
      if (!checkpoints.length) throw new Error('Pick the checkpoints of the tour.');
      const guards = $('#tour-guards').value.split(/[\s,]+/).filter(Boolean);
      if (!guards.length) throw new Error('Name the guards the tour is for.');
      const body = {
        name,
        checkpoints,
        ordered: $('#tour-ordered').checked,
        guards,
        schedule: {
          start: $('#tour-start').value,
          every_minutes: Number($('#tour-every').value),
          rounds: Number($('#tour-rounds').value),
          window_minutes: Number($('#tour-window').value),
        },
      };
      const site = $('#tour-site').value.trim();
      if (site) body.site = site;
      await this.call('/api/v1/tours', { method: 'POST', body });
      $('#tour-name').value = '';
      $('#tour-status').textContent = `Tour "${name}" saved; its first round is armed.`;
      await this.load();
    } catch (e) {
      $('#tour-error').textContent = e.message;
      $('#tour-error').hidden = false;
    }
  }

  renderTours() {
    const names = new Map(this.checkpoints.map((c) => [c.id, c.name]));
    const now = Date.now();
    $('#tour-list').replaceChildren(...this.tours.map((t) => {
      const round = this.rounds.get(t.id);
      const s = t.schedule;
      let state = 'no round';
      let missing = [];
      if (round) {
        const scanned = t.checkpoints.filter((c) => round.scanned?.[c]).length;
        missing = t.checkpoints.filter((c) => !round.scanned?.[c]).map((c) => names.get(c) ?? c);
        const open = round.round_start <= now;
        state = `${open ? 'open' : 'next'} ${utc(round.round_start)}–${utc(round.window_end)} UTC: ${scanned}/${t.checkpoints.length} scanned`;
      }
      return el('tr', { 'data-id': t.id },
        el('td', {}, el('strong', {}, t.name), t.site ? el('div', { class: 'hint' }, t.site) : ''),
        el('td', {}, `${s.rounds}× from ${s.start} UTC, every ${s.every_minutes} min, ${s.window_minutes} min to finish${t.ordered ? ', in order' : ''}`),
        el('td', {}, t.guards.map((g) => this.names.get(g) ?? g).join(', ')),
        el('td', { class: 'round' }, state, missing.length && round ? el('div', { class: 'hint' }, `to scan: ${missing.join(', ')}`) : ''),
        el('td', {}, el('button', { type: 'button', class: 'secondary', 'aria-label': `Delete tour ${t.name}`, onclick: (e) => this.removeTour(t, e.target) }, 'Delete')));
    }));
  }

  async removeTour(t, button) {
    button.disabled = true;
    try {
      await this.call(`/api/v1/tours/${encodeURIComponent(t.id)}`, { method: 'DELETE' });
      $('#tour-status').textContent = `Tour "${t.name}" deleted.`;
      await this.load();
    } catch (e) {
      $('#tour-status').textContent = `"${t.name}" not deleted: ${e.message}`;
      button.disabled = false;
    }
  }

  // ---- The plan ----

  /** Checkpoints on the plan while the tab is shown: scanned in an open round, or not. */
  draw() {
    const layer = this.site.root.querySelector('#checkpoints');
    if (!this.site.bounds || !this.visible()) {
      layer.replaceChildren();
      return;
    }
    const now = Date.now();
    const scanned = new Set();
    for (const t of this.tours) {
      const round = this.rounds.get(t.id);
      if (round && round.round_start <= now) for (const c of Object.keys(round.scanned ?? {})) scanned.add(c);
    }
    const marks = this.checkpoints.map((c) => {
      const [x, y] = this.site.project(c.lon, c.lat);
      const mark = svg('g', { class: `checkpoint${scanned.has(c.id) ? ' scanned' : ''}`, transform: `translate(${x.toFixed(1)},${y.toFixed(1)})`, 'data-id': c.id });
      mark.append(svg('path', { d: 'M0 0V-16h10l-3 4 3 4H0' }), svg('circle', { r: 3 }));
      const title = svg('title', {});
      title.textContent = `${c.name}${scanned.has(c.id) ? ' (scanned this round)' : ''}`;
      mark.append(title);
      return mark;
    });
    const position = $('#cp-position').value;
    if (this.placing || position) {
      try {
        const { lat, lon } = parsePosition(position);
        const [x, y] = this.site.project(lon, lat);
        marks.push(svg('circle', { class: 'checkpoint-draft', cx: x.toFixed(1), cy: y.toFixed(1), r: 6 }));
      } catch {
        // Nothing typed yet.
      }
    }
    layer.replaceChildren(...marks);
  }
}
