// The guard table: every guard with its state (connection, on shift, battery, accuracy, last
// seen), sortable by any column (header buttons, keyboard too). Drawn only while shown, at
// most every 2 s, and at most ROWS_MAX rows (a search narrows them).
import { $, el, age, coalesce } from './dom.js';

const ROWS_MAX = 200;
const COLUMNS = [
  ['name', 'Guard'],
  ['online', 'Connection'],
  ['shift', 'On shift'],
  ['battery', 'Battery'],
  ['accuracy', 'Accuracy'],
  ['seen', 'Last seen'],
];

export class GuardTable {
  /** `ctx`: { site, names, online() → Set, onShift() → Set, visible(), select(user) }. */
  constructor(ctx) {
    Object.assign(this, ctx);
    this.sort = { key: 'name', dir: 1 };
    this.later = coalesce(() => this.render(), 2000);
    $('#table-search').addEventListener('input', () => this.render(true));
    $('#table-head').replaceChildren(el('tr', {}, ...COLUMNS.map(([key, label]) => el('th', { scope: 'col', 'data-key': key },
      el('button', { type: 'button', class: 'sort', onclick: () => this.sortBy(key) }, label)))));
  }

  sortBy(key) {
    this.sort = { key, dir: this.sort.key === key ? -this.sort.dir : 1 };
    this.render(true);
  }

  schedule() {
    if (this.visible()) this.later();
  }

  rows() {
    const online = this.online();
    const onShift = this.onShift();
    const query = $('#table-search').value.trim().toLowerCase();
    const rows = [];
    for (const [user, g] of this.site.guards) {
      const name = this.names.get(user) ?? user;
      if (query && !name.toLowerCase().includes(query) && !user.toLowerCase().includes(query)) continue;
      rows.push({
        user,
        name,
        online: online.has(user) ? 1 : 0,
        shift: onShift.has(user) ? 1 : 0,
        battery: typeof g.battery === 'number' ? g.battery : -1,
        accuracy: typeof g.accuracy === 'number' ? g.accuracy : Infinity,
        seen: g.seenAt ?? 0,
      });
    }
    const { key, dir } = this.sort;
    rows.sort((a, b) => (key === 'name' ? a.name.localeCompare(b.name) : a[key] - b[key]) * dir || a.name.localeCompare(b.name));
    return rows;
  }

  render(force = false) {
    if (!this.visible()) return;
    const rows = this.rows();
    for (const th of document.querySelectorAll('#table-head th')) {
      th.setAttribute('aria-sort', th.dataset.key === this.sort.key ? (this.sort.dir > 0 ? 'ascending' : 'descending') : 'none');
    }
    const shown = rows.slice(0, ROWS_MAX);
    const signature = shown.map((r) => `${r.user}${r.online}${r.shift}${Math.round(r.battery)}${Math.round(r.accuracy)}${Math.round((Date.now() - r.seen) / 5000)}`).join(',');
    if (!force && signature === this.shown) return;
    this.shown = signature;
    $('#table-count').textContent = rows.length > ROWS_MAX ? `${ROWS_MAX} of ${rows.length} — refine the search` : `${rows.length} guards`;
    $('#table-rows').replaceChildren(...shown.map((r) => el('tr', { 'data-user': r.user, class: r.battery >= 0 && r.battery < 20 ? 'low' : '' },
      el('td', {}, el('button', { type: 'button', class: 'link', onclick: () => this.select(r.user) }, r.name)),
      el('td', { class: r.online ? 'online' : 'offline' }, r.online ? 'online' : 'offline'),
      el('td', {}, r.shift ? 'on shift' : '–'),
      el('td', {}, r.battery >= 0 ? `${Math.round(r.battery)} %` : '–'),
      el('td', {}, Number.isFinite(r.accuracy) ? `±${Math.round(r.accuracy)} m` : '–'),
      el('td', {}, r.seen ? `${age(r.seen)} ago` : '–'))));
  }
}
