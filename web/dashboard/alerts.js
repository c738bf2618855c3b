// The alert log: every alert the server keeps (open, acknowledged, resolved), filtered by
// state, type, guard and time, each with its audit trail (created, escalated, acknowledged by
// whom with what note, resolved), and the filtered log exported as CSV.
import { $, el, coalesce, csvCell, download, localInput, when } from './dom.js';
import { ALERT_TYPES, typeIcon, typeLabel } from './welfare.js';

// Rows drawn at most; the filters narrow the rest.
const ROWS_MAX = 200;
// Alerts of the chosen period asked of the server at once (its most per request).
const LOAD_MAX = 1000;

export class AlertLog {
  /** `ctx`: { call, names, fenceName(id), visible() }. */
  constructor(ctx) {
    Object.assign(this, ctx);
    this.alerts = new Map();
    this.selected = null;
    this.schedule = coalesce(() => this.render(), 500);
    $('#log-from').value = localInput(Date.now() - 24 * 3600 * 1000);
    for (const id of ['#log-state', '#log-type', '#log-guard']) {
      $(id).addEventListener('input', () => this.render(true));
    }
    // The period is asked of the server, which answers at most LOAD_MAX alerts of it.
    for (const id of ['#log-from', '#log-to']) {
      $(id).addEventListener('change', () => this.load());
    }
    $('#log-export').addEventListener('click', () => this.exportCsv());
    $('#log-reload').addEventListener('click', () => this.load());
  }

  async load() {
    const query = new URLSearchParams({ limit: String(LOAD_MAX) });
    const { from, to } = this.period();
    if (from > 0) query.set('from', String(from));
    if (to < Infinity) query.set('to', String(to));
    try {
      const listed = await this.call(`/api/v1/alerts?${query}`);
      for (const a of listed) this.upsert(a);
      $('#log-status').textContent = listed.length >= LOAD_MAX
        ? `The newest ${LOAD_MAX} alerts of this period are shown: choose a shorter period for older ones.`
        : '';
    } catch (e) {
      $('#log-status').textContent = `Could not load the alerts: ${e.message}`;
    }
    this.render(true);
  }

  upsert(a) {
    const known = this.alerts.get(a.id);
    if (!known || known.updated_at <= a.updated_at) this.alerts.set(a.id, a);
  }

  /** Live alerts from the dashboard's alert list. */
  update(all) {
    for (const a of all) this.upsert(a);
    this.schedule();
  }

  /** The chosen period, ms (0 and Infinity when open). */
  period() {
    const from = $('#log-from').value ? new Date($('#log-from').value).getTime() : 0;
    const to = $('#log-to').value ? new Date($('#log-to').value).getTime() : Infinity;
    return { from, to };
  }

  filtered() {
    const state = $('#log-state').value;
    const type = $('#log-type').value;
    const guard = $('#log-guard').value.trim().toLowerCase();
    const { from, to } = this.period();
    return [...this.alerts.values()]
      .filter((a) => (!state || a.state === state)
        && (!type || a.type === type)
        && (!guard || a.user.toLowerCase().includes(guard) || (this.names.get(a.user) ?? '').toLowerCase().includes(guard))
        && a.created_at >= from && a.created_at <= to)
      .sort((a, b) => b.created_at - a.created_at);
  }

  render(force = false) {
    if (!this.visible()) return;
    const rows = this.filtered();
    const signature = `${this.selected}|${rows.slice(0, ROWS_MAX).map((a) => `${a.id}:${a.updated_at}`).join(',')}`;
    if (!force && signature === this.shown) return;
    this.shown = signature;
    // Every type the server raises is offered, whether or not one is listed yet.
    const types = new Set([...ALERT_TYPES, ...[...this.alerts.values()].map((a) => a.type)]);
    const typeSelect = $('#log-type');
    if (typeSelect.options.length !== types.size + 1) {
      const keep = typeSelect.value;
      typeSelect.replaceChildren(el('option', { value: '' }, 'any type'), ...[...types].sort().map((t) => el('option', { value: t }, typeLabel(t))));
      typeSelect.value = keep;
    }
    $('#log-count').textContent = rows.length > ROWS_MAX ? `${ROWS_MAX} of ${rows.length}` : `${rows.length}`;
    $('#log-rows').replaceChildren(...rows.slice(0, ROWS_MAX).map((a) => el('tr', {
      class: `s-${a.state}${a.id === this.selected ? ' selected' : ''}`,
      'data-id': a.id,
    },
    el('td', {}, el('button', { type: 'button', class: 'link', 'aria-expanded': String(a.id === this.selected), onclick: () => this.show(a.id) }, when(a.created_at))),
    el('td', { class: 'type' }, ...[typeIcon(a.type), typeLabel(a.type)].filter(Boolean)),
    el('td', {}, this.names.get(a.user) ?? a.user),
    el('td', {}, a.state),
    el('td', {}, `L${a.level}`),
    el('td', {}, a.fence ? this.fenceName(a.fence) : a.message ?? ''))));
    this.renderTrail();
  }

  show(id) {
    this.selected = this.selected === id ? null : id;
    this.render(true);
    if (this.selected) $('#log-trail').focus();
  }

  renderTrail() {
    const a = this.selected && this.alerts.get(this.selected);
    const box = $('#log-trail');
    if (!a) {
      box.replaceChildren(el('p', { class: 'hint' }, 'Choose an alert for its audit trail.'));
      return;
    }
    box.replaceChildren(
      el('h3', {}, `${a.type} · ${this.names.get(a.user) ?? a.user} · ${a.state}`),
      el('p', { class: 'hint' }, `${a.id}${a.position ? ` · at ${a.position.lat.toFixed(5)}, ${a.position.lon.toFixed(5)}` : ''}`),
      el('ol', { class: 'trail' }, ...a.audit.map((e) => el('li', { 'data-action': e.action },
        el('strong', {}, e.action), ` ${when(e.at)} by ${this.names.get(e.by) ?? e.by} (L${e.level})`,
        e.note ? el('q', {}, e.note) : ''))),
    );
  }

  exportCsv() {
    const header = ['id', 'type', 'priority', 'guard', 'state', 'level', 'created', 'updated', 'lat', 'lon', 'fence', 'message', 'audit'];
    const lines = [header.join(',')];
    for (const a of this.filtered()) {
      const audit = a.audit.map((e) => `${new Date(e.at).toISOString()} ${e.action} by ${e.by}${e.note ? `: ${e.note}` : ''}`).join(' | ');
      lines.push([a.id, a.type, a.priority, a.user, a.state, a.level, new Date(a.created_at).toISOString(), new Date(a.updated_at).toISOString(),
        a.position?.lat, a.position?.lon, a.fence ? this.fenceName(a.fence) : '', a.message, audit].map(csvCell).join(','));
    }
    download(`alerts-${new Date().toISOString().slice(0, 10)}.csv`, `${lines.join('\r\n')}\r\n`, 'text/csv');
  }
}
