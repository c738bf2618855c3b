// The guard table: every guard with its state (connection, on shift, lone-worker check-in and
// alarms, battery, accuracy, last seen), sortable by any column (header buttons, keyboard
// too). Drawn only while shown, at most every 2 s, and at most ROWS_MAX rows (a search narrows
// them); rows are kept per guard and updated in place.
import { $, el, age, coalesce } from './dom.js';

const ROWS_MAX = 200;
const COLUMNS = [
  ['name', 'Guard'],
  ['online', 'Connection'],
  ['shift', 'On shift'],
  ['checkin', 'Check-in'],
  ['lone', 'Lone worker'],
  ['battery', 'Battery'],
  ['accuracy', 'Accuracy'],
  ['seen', 'Last seen'],
];
const CHECK_IN = COLUMNS.findIndex(([key]) => key === 'checkin');
const LONE = COLUMNS.findIndex(([key]) => key === 'lone');

export class GuardTable {
  /**
   * `ctx`: { site, names, online() → Set, onShift() → Set, visible(), select(user), welfare }
   * (welfare: the org's lone-worker state, web/dashboard/welfare.js).
   */
  constructor(ctx) {
    Object.assign(this, ctx);
    this.sort = { key: 'name', dir: 1 };
    this.later = coalesce(() => this.render(), 2000);
    this.kept = new Map(); // user → { tr, cells, name, text }
    this.collator = new Intl.Collator();
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
    const add = (user, g) => {
      const name = this.names.get(user) ?? user;
      if (query && !name.toLowerCase().includes(query) && !user.toLowerCase().includes(query)) return;
      const wf = this.welfare.state(user);
      rows.push({
        user,
        name,
        online: online.has(user) ? 1 : 0,
        shift: onShift.has(user) ? 1 : 0,
        checkin: wf ? wf.rank : 99,
        lone: wf ? -(wf.duress * 8 + wf.manDown * 4 + wf.lost * 2 + wf.loneWork) : 0,
        wf,
        battery: typeof g.battery === 'number' ? g.battery : -1,
        accuracy: typeof g.accuracy === 'number' ? g.accuracy : Infinity,
        seen: g.seenAt ?? 0,
      });
    };
    for (const [user, g] of this.site.guards) add(user, g);
    // Guards with lone-worker state but no position yet are listed too.
    for (const user of this.welfare.users()) if (!this.site.guards.has(user)) add(user, {});
    const { key, dir } = this.sort;
    // One collator for the sort: localeCompare builds one per call, a thousand guards a render.
    const byName = this.collator.compare;
    rows.sort((a, b) => (key === 'name' ? byName(a.name, b.name) : a[key] - b[key]) * dir || byName(a.name, b.name));
    return rows;
  }

  render(force = false) {
    if (!this.visible()) return;
    const rows = this.rows();
    for (const th of document.querySelectorAll('#table-head th')) {
      const sort = th.dataset.key === this.sort.key ? (this.sort.dir > 0 ? 'ascending' : 'descending') : 'none';
      if (th.getAttribute('aria-sort') !== sort) th.setAttribute('aria-sort', sort);
    }
    const shown = rows.slice(0, ROWS_MAX);
    const count = rows.length > ROWS_MAX ? `${ROWS_MAX} of ${rows.length} — refine the search` : `${rows.length} guards`;
    if ($('#table-count').textContent !== count) $('#table-count').textContent = count;
    // Rows are kept per guard and only the cells whose text changed are written: a table
    // rebuilt every 2 s is a style, layout and paint pass over all of its rows.
    const body = $('#table-rows');
    const trs = shown.map((r) => this.row(r));
    const order = shown.map((r) => r.user).join(',');
    if (force || order !== this.order || body.childElementCount !== trs.length) {
      this.order = order;
      body.replaceChildren(...trs);
      const keep = new Set(shown.map((r) => r.user));
      for (const user of this.kept.keys()) if (!keep.has(user)) this.kept.delete(user);
    }
  }

  /** The row of `r`, made once per guard and brought up to date. */
  row(r) {
    let row = this.kept.get(r.user);
    if (!row) {
      const cells = COLUMNS.map(([key]) => el('td', { 'data-col': key }));
      const name = el('button', { type: 'button', class: 'link', onclick: () => this.select(r.user) });
      cells[0].append(name);
      row = { tr: el('tr', { 'data-user': r.user }, ...cells), cells, name, text: [] };
      this.kept.set(r.user, row);
    }
    const wf = r.wf;
    const lone = wf ? [wf.duress && 'duress', wf.manDown && 'man down', wf.lost && 'lost contact', wf.loneWork && 'lone work'].filter(Boolean) : [];
    const text = [
      r.name,
      r.online ? 'online' : 'offline',
      r.shift ? 'on shift' : '–',
      wf?.text ?? '–',
      lone.join(' · ') || '–',
      r.battery >= 0 ? `${Math.round(r.battery)} %` : '–',
      Number.isFinite(r.accuracy) ? `±${Math.round(r.accuracy)} m` : '–',
      r.seen ? `${age(r.seen)} ago` : '–',
    ];
    for (const [i, t] of text.entries()) {
      if (row.text[i] === t) continue;
      row.text[i] = t;
      if (i === LONE && lone.length) {
        row.cells[i].replaceChildren(...lone.map((b) => el('span', { class: `badge ${b.replace(' ', '-')}` }, b)));
      } else {
        (i === 0 ? row.name : row.cells[i]).textContent = t;
      }
    }
    const checkIn = wf?.checkIn ?? '';
    if (row.cells[CHECK_IN].dataset.state !== checkIn) row.cells[CHECK_IN].dataset.state = checkIn;
    const low = r.battery >= 0 && r.battery < 20 ? 'low' : '';
    if (row.tr.className !== low) row.tr.className = low;
    const state = r.online ? 'online' : 'offline';
    if (row.cells[1].className !== state) row.cells[1].className = state;
    return row.tr;
  }
}
