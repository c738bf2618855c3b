// The Incidents tab: the org's incident reports from the guards' phones, open ones first. One
// opened shows its text, its photos, its comments, a comment box and Close (with an optional
// note). Photos are fetched with the session's token and shown from blob: URLs (an <img src>
// cannot send the token), made again each time a report is opened and released when another
// one is.

import { $, el, when } from './dom.js';
import { INCIDENT_CATEGORIES as LABELS } from '../incident-categories.js';

export class IncidentPanel {
  /**
   * `call`: the dashboard's JSON fetch; `token()`: the session token (for the photos);
   * `names`: guard ids to names.
   */
  constructor({ call, token, names }) {
    this.call = call;
    this.token = token;
    this.names = names;
    this.incidents = [];
    this.openId = null;
    this.urls = [];
    $('#inc-state').addEventListener('change', () => this.load());
    $('#inc-refresh').addEventListener('click', () => this.load());
    $('#inc-comment').addEventListener('submit', (e) => {
      e.preventDefault();
      this.act('comments', { text: $('#inc-comment-text').value }, () => {
        $('#inc-comment-text').value = '';
      });
    });
    $('#inc-close').addEventListener('click', () => {
      const note = $('#inc-close-note').value.trim();
      this.act('close', note ? { note } : {}, () => {
        $('#inc-close-note').value = '';
      });
    });
  }

  name(user) {
    return this.names.get(user) ?? user;
  }

  async load() {
    const state = $('#inc-state').value;
    try {
      this.incidents = await this.call(`/api/v1/incidents${state ? `?state=${state}` : ''}`);
      $('#inc-status').textContent = `${this.incidents.length} report${this.incidents.length === 1 ? '' : 's'}`;
    } catch (e) {
      $('#inc-status').textContent = `Cannot load the reports: ${e.message}`;
      return;
    }
    // Open ones first, each group newest first (the server answers newest first).
    const order = (i) => (i.state === 'open' ? 0 : 1);
    this.incidents.sort((a, b) => order(a) - order(b));
    this.renderList();
  }

  renderList() {
    $('#inc-rows').replaceChildren(
      ...this.incidents.map((i) =>
        el(
          'tr',
          { 'data-id': i.id, 'data-state': i.state, class: i.id === this.openId ? 'selected' : undefined },
          el('td', {}, when(i.created_at)),
          el('td', {}, this.name(i.author)),
          el('td', {}, LABELS[i.category] ?? i.category),
          el('td', {}, i.state),
          el('td', {}, String(i.photos.length)),
          el('td', {}, el('button', { type: 'button', class: 'secondary', onclick: () => this.open(i.id) }, 'Open')),
        ),
      ),
    );
  }

  async open(id) {
    try {
      const incident = await this.call(`/api/v1/incidents/${encodeURIComponent(id)}`);
      this.openId = id;
      this.show(incident);
      this.renderList();
    } catch (e) {
      $('#inc-error').hidden = false;
      $('#inc-error').textContent = e.message;
    }
  }

  show(i) {
    $('#inc-detail').hidden = false;
    $('#inc-error').hidden = true;
    $('#inc-detail').dataset.state = i.state;
    $('#inc-title').textContent = `${LABELS[i.category] ?? i.category} · ${this.name(i.author)} · ${when(i.created_at)}`;
    $('#inc-text').textContent = i.text;
    $('#inc-alert').textContent = i.alert ? `About alert ${i.alert}` : '';
    const closed = i.state !== 'open';
    $('#inc-closed').textContent = closed
      ? `Closed by ${this.name(i.closed_by)} ${when(i.closed_at)}${i.close_note ? `: ${i.close_note}` : ''}`
      : '';
    $('#inc-comments').replaceChildren(
      ...i.comments.map((c) => el('li', {}, el('span', { class: 'from' }, `${this.name(c.by)} · ${when(c.at)}`), ` ${c.text}`)),
    );
    $('#inc-comment').hidden = closed;
    $('#inc-close-row').hidden = closed;
    this.showPhotos(i);
  }

  async showPhotos(i) {
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
    const box = $('#inc-photos');
    box.replaceChildren();
    for (const p of i.photos) {
      try {
        const response = await fetch(`/api/v1/incidents/${encodeURIComponent(i.id)}/photos/${p.n}`, {
          headers: { authorization: `Bearer ${this.token()}` },
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        // Another report was opened meanwhile: this one's photos are no longer wanted.
        if (this.openId !== i.id) return;
        const url = URL.createObjectURL(await response.blob());
        this.urls.push(url);
        box.append(el('a', { href: url, target: '_blank', rel: 'noopener' }, el('img', { src: url, alt: `Photo ${p.n}` })));
      } catch (e) {
        box.append(el('p', { class: 'error' }, `Photo ${p.n}: ${e.message}`));
      }
    }
  }

  /** A comment or the close of the open report; `done` after it was taken. */
  async act(what, body, done) {
    if (!this.openId) return;
    try {
      const incident = await this.call(`/api/v1/incidents/${encodeURIComponent(this.openId)}/${what}`, { method: 'POST', body });
      done();
      this.show(incident);
      await this.load();
    } catch (e) {
      $('#inc-error').hidden = false;
      $('#inc-error').textContent = e.message;
    }
  }
}
