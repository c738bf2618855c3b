// Lone-worker settings for supervisors and admins: the org's check-ins and man-down watch, a
// site's own (sites are those of the planned shifts) and a guard's own; where the settings of
// a site or a guard come from (its own, its shift's site, the org), reverting a site or a guard
// to the org's, and the server's refusal (400) shown as it says it.
import { $, el } from './dom.js';
import { span } from './welfare.js';

// Durations of the form: input id → the settings' field.
const DURATIONS = [
  ['#wf-interval', 'interval_ms'],
  ['#wf-pre-alarm', 'pre_alarm_ms'],
  ['#wf-grace', 'grace_ms'],
  ['#wf-man-down-after', 'man_down_after_ms'],
  ['#wf-countdown', 'man_down_countdown_ms'],
];
const FLAGS = [
  ['#wf-enabled', 'enabled'],
  ['#wf-activity', 'activity_resets'],
  ['#wf-man-down', 'man_down'],
];
const UNITS = [3600000, 60000, 1000];

function setDuration(id, ms) {
  const unit = UNITS.find((u) => ms >= u && ms % u === 0) ?? 1000;
  $(id).value = String(ms / unit);
  $(`${id}-unit`).value = String(unit);
}

/** The duration a field says, ms; throws with what is wrong. */
function duration(id) {
  const raw = $(id).value.trim();
  const label = document.querySelector(`label[for="${id.slice(1)}"]`).textContent;
  const value = Number(raw);
  if (raw === '' || !Number.isFinite(value) || value < 0) throw new Error(`"${label}" needs a number of seconds, minutes or hours, 0 or more.`);
  return Math.round(value * Number($(`${id}-unit`).value));
}

export function summary(s) {
  if (!s) return '';
  const checkIns = s.enabled ? `every ${span(s.interval_ms ?? s.intervalMs)}` : 'off';
  const manDown = (s.man_down ?? s.manDown) ? ' · man-down watch' : '';
  return `${checkIns}${manDown}`;
}

export class WelfareSettings {
  /** `ctx`: { call, names, guards() → ids, sites() → site names, board, visible() }. */
  constructor(ctx) {
    Object.assign(this, ctx);
    for (const radio of document.querySelectorAll('input[name="wf-scope"]')) {
      radio.addEventListener('change', () => this.scopeChanged());
    }
    $('#wf-site').addEventListener('change', () => this.load());
    $('#wf-guard').addEventListener('change', () => this.load());
    $('#wf-guard').addEventListener('focus', () => this.offerGuards());
    $('#wf-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.save();
    });
    $('#wf-revert').addEventListener('click', () => this.revert());
  }

  /** The panel is shown: sites and guards offered, the chosen scope's settings and the overview. */
  show() {
    this.offerSites();
    this.offerGuards();
    this.load();
    this.overview();
  }

  scope() {
    const kind = document.querySelector('input[name="wf-scope"]:checked').value;
    const name = kind === 'site' ? $('#wf-site').value : kind === 'guard' ? $('#wf-guard').value.trim() : '';
    return { kind, name };
  }

  query({ kind, name }) {
    return kind === 'org' ? '' : `?${kind === 'site' ? 'site' : 'user'}=${encodeURIComponent(name)}`;
  }

  scopeChanged() {
    const { kind } = this.scope();
    $('#wf-site-label').hidden = kind !== 'site';
    $('#wf-guard-label').hidden = kind !== 'guard';
    if (kind === 'site') this.offerSites();
    this.load();
    if (kind === 'guard' && !$('#wf-guard').value) $('#wf-guard').focus();
  }

  /** Picks a scope (from the overview's Edit buttons). */
  pick(kind, name) {
    document.querySelector(`input[name="wf-scope"][value="${kind}"]`).checked = true;
    if (kind === 'site') {
      this.offerSites();
      $('#wf-site').value = name;
    }
    if (kind === 'guard') $('#wf-guard').value = name;
    this.scopeChanged();
    $('#wf-enabled').focus();
  }

  offerSites() {
    const sites = [...new Set(this.sites())].sort();
    const keep = $('#wf-site').value;
    const key = sites.join('\n');
    if (key !== this.offeredSites) {
      this.offeredSites = key;
      $('#wf-site').replaceChildren(...sites.map((s) => el('option', { value: s }, s)));
      if (sites.includes(keep)) $('#wf-site').value = keep;
    }
    return sites;
  }

  offerGuards() {
    const guards = [...new Set([...this.guards(), ...this.board.users()])].sort().slice(0, 2000);
    const key = guards.map((u) => `${u}:${this.names.get(u) ?? ''}`).join(',');
    if (key === this.offeredGuards) return;
    this.offeredGuards = key;
    $('#known-guards-welfare').replaceChildren(...guards.map((u) => el('option', { value: u }, this.names.get(u) ?? u)));
  }

  error(message) {
    $('#wf-error').textContent = message ?? '';
    $('#wf-error').hidden = !message;
  }

  /**
   * The chosen scope's settings into the form, and where they come from. The fields are
   * disabled meanwhile: nothing typed is overwritten by an answer arriving after it.
   */
  async load() {
    const scope = this.scope();
    this.error(null);
    $('#wf-status').textContent = '';
    $('#wf-fields').disabled = true;
    $('#wf-save').disabled = true;
    // Any answer still on its way is for a scope no longer chosen.
    const ticket = (this.ticket ?? 0) + 1;
    this.ticket = ticket;
    if (scope.kind !== 'org' && !scope.name) {
      this.showFrom(scope, null);
      if (scope.kind === 'site') $('#wf-from').textContent = 'No shifts are planned: a site is named by the shifts planned at it (Fences & shifts).';
      else $('#wf-from').textContent = 'Name a guard.';
      return;
    }
    try {
      const { data, headers } = await this.call(`/api/v1/welfare/settings${this.query(scope)}`, { withHeaders: true });
      // An older answer (the user picked another scope meanwhile) is dropped.
      if (ticket !== this.ticket) return;
      for (const [id, field] of DURATIONS) setDuration(id, data[field]);
      for (const [id, field] of FLAGS) $(id).checked = Boolean(data[field]);
      this.showFrom(scope, headers.get('lookout-settings-from'));
      $('#wf-fields').disabled = false;
      $('#wf-save').disabled = false;
    } catch (e) {
      if (ticket !== this.ticket) return;
      this.showFrom(scope, null);
      this.error(`Could not load the settings: ${e.message}`);
    }
  }

  showFrom(scope, from) {
    const box = $('#wf-from');
    box.dataset.from = from ?? '';
    const who = scope.kind === 'guard' ? this.names.get(scope.name) ?? scope.name : scope.name;
    const site = scope.kind === 'guard' ? this.board.guards.get(scope.name)?.site : null;
    const texts = {
      org: {
        org: 'The org\'s settings: every site and guard without settings of its own follows them.',
      },
      site: {
        site: `${who} has settings of its own (they apply to guards on shift there).`,
        org: `${who} follows the org's settings: saving gives it settings of its own.`,
      },
      guard: {
        guard: `${who} has settings of their own.`,
        site: `${who} follows the settings of the site of their shift${site ? ` (${site})` : ''}: saving gives them settings of their own.`,
        org: `${who} follows the org's settings: saving gives them settings of their own.`,
      },
    };
    if (from) box.textContent = texts[scope.kind][from] ?? `Settings from: ${from}`;
    $('#wf-revert').hidden = !from || scope.kind === 'org' || from !== scope.kind;
  }

  /** The form's settings; throws with what is wrong before anything is sent. */
  settings() {
    const s = {};
    for (const [id, field] of FLAGS) s[field] = $(id).checked;
    for (const [id, field] of DURATIONS) s[field] = duration(id);
    if (s.interval_ms <= 0) throw new Error('Check-ins need an interval longer than zero.');
    if (s.pre_alarm_ms >= s.interval_ms) throw new Error('The reminder must come before the deadline: shorter than the interval.');
    return s;
  }

  async save() {
    const scope = this.scope();
    this.error(null);
    $('#wf-status').textContent = '';
    let body;
    try {
      if (scope.kind !== 'org' && !scope.name) throw new Error(scope.kind === 'site' ? 'Choose a site.' : 'Name a guard.');
      if (scope.kind === 'guard' && !$('#wf-guard').checkValidity()) throw new Error('A guard id is letters, digits and _ . @ : - only.');
      body = this.settings();
    } catch (e) {
      this.error(e.message);
      return;
    }
    try {
      await this.call(`/api/v1/welfare/settings${this.query(scope)}`, { method: 'PUT', body });
    } catch (e) {
      // The server's own words: out-of-bounds values name the bound (e.g. the shortest interval).
      this.error(`Not saved: ${e.message}`);
      return;
    }
    const who = scope.kind === 'org' ? 'The org' : scope.kind === 'guard' ? this.names.get(scope.name) ?? scope.name : scope.name;
    await this.load();
    $('#wf-status').textContent = `Saved: ${who} — check-ins ${summary(body)}.`;
    this.board.refreshSoon();
    this.overview();
  }

  async revert() {
    const scope = this.scope();
    if (scope.kind === 'org' || !scope.name) return;
    this.error(null);
    try {
      await this.call(`/api/v1/welfare/settings${this.query(scope)}`, { method: 'DELETE' });
    } catch (e) {
      this.error(`Could not revert: ${e.message}`);
      return;
    }
    await this.load();
    $('#wf-status').textContent = `${scope.kind === 'guard' ? this.names.get(scope.name) ?? scope.name : scope.name} follows the org's settings again.`;
    this.board.refreshSoon();
    this.overview();
  }

  /**
   * The org and each site of the planned shifts, with where their settings come from: one
   * request each, when the panel is shown and after a change. The guards' rows come from the
   * board's one request for the org (`renderOverview`, at each of its changes).
   */
  async overview() {
    if (!this.visible()) return;
    const sites = this.offerSites();
    try {
      const [org, ...perSite] = await Promise.all([
        this.call('/api/v1/welfare/settings', { withHeaders: true }),
        ...sites.map((s) => this.call(`/api/v1/welfare/settings?site=${encodeURIComponent(s)}`, { withHeaders: true })),
      ]);
      this.places = [
        { kind: 'org', name: '', label: 'The org', from: 'org', text: summary(org.data) },
        ...sites.map((s, i) => ({ kind: 'site', name: s, label: `Site ${s}`, from: perSite[i].headers.get('lookout-settings-from'), text: summary(perSite[i].data) })),
      ];
      $('#wf-overview-status').textContent = '';
    } catch (e) {
      $('#wf-overview-status').textContent = `Could not load the settings: ${e.message}`;
    }
    this.renderOverview();
  }

  renderOverview() {
    if (!this.visible()) return;
    const guards = [...this.board.guards.values()].sort((a, b) => a.user.localeCompare(b.user));
    const rows = [
      ...(this.places ?? []),
      ...guards.map((g) => ({ kind: 'guard', name: g.user, label: this.names.get(g.user) ?? g.user, from: g.settingsFrom, text: summary(g), site: g.site })),
    ];
    // Unchanged (the board's answer every 15 s mostly is), the rows and their buttons stay.
    const key = JSON.stringify(rows);
    if (key === this.shownOverview) return;
    this.shownOverview = key;
    $('#wf-overview').replaceChildren(...rows.map((r) => this.overviewRow(r.kind, r.name, r.label, r.from, r.text, r.site)));
  }

  overviewRow(kind, name, label, from, text, site) {
    const own = kind !== 'org' && from === kind;
    const words = { org: 'the org', site: own ? 'its own' : site ? `site ${site}` : 'its shift\'s site', guard: 'its own' };
    const actions = el('td', { class: 'actions' },
      el('button', { type: 'button', class: 'secondary do-edit', 'aria-label': `Edit the settings of ${label}`, onclick: () => this.pick(kind, name) }, 'Edit'));
    if (own) {
      actions.append(el('button', {
        type: 'button',
        class: 'secondary do-revert',
        'aria-label': `${label}: use the org's settings again`,
        onclick: () => {
          this.pick(kind, name);
          this.revert();
        },
      }, 'Revert'));
    }
    return el('tr', { 'data-scope': kind, 'data-name': name, 'data-from': from ?? '' },
      el('td', {}, label),
      el('td', {}, kind === 'org' ? '–' : words[from] ?? from ?? '–'),
      el('td', {}, text),
      actions);
  }
}
