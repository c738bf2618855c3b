// Messages: a conversation per guard on /user/queue/messages (both ways, in order, loaded from
// GET /api/v1/messages and kept live), read state (the recipient's queue cursor), typing on the
// org's presence channel, unread counts, presence, and a message to every guard of a role.
import { $, el, coalesce, textOf } from './dom.js';

const QUEUE = '/user/queue/messages';
// Correspondents listed at most; a search narrows them.
const LIST_MAX = 100;
const TYPING_MS = 6000;
const READ_KEY = 'lookout.read.';

export class Messages {
  /**
   * `ctx`: { call, client, me, names, guards() → ids known to the page, visible() → whether
   * the panel is shown }.
   */
  constructor(ctx) {
    Object.assign(this, ctx);
    this.byKey = new Map(); // `${to}#${seq}` → message
    this.peer = null;
    this.online = new Set();
    this.typing = new Map(); // user → until ms
    this.lastTyping = 0;
    this.schedule = coalesce(() => this.render(), 0);
    $('#msg-search').addEventListener('input', () => this.renderList());
    $('#msg-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.send();
    });
    $('#msg-text').addEventListener('input', () => this.typingNow());
    $('#msg-text').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        this.send();
      }
    });
    $('#broadcast-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.broadcast();
    });
  }

  key(m) {
    return `${m.to}#${m.seq}`;
  }

  add(m) {
    const k = this.key(m);
    const known = this.byKey.get(k);
    this.byKey.set(k, known ? { ...known, ...m } : m);
  }

  async load(peer) {
    try {
      const page = await this.call(`/api/v1/messages${peer ? `?with=${encodeURIComponent(peer)}` : ''}`);
      for (const m of page.messages) this.add(m);
    } catch (e) {
      $('#msg-status').textContent = `Could not load messages: ${e.message}`;
    }
    this.schedule();
  }

  start() {
    this.client.subscribe(QUEUE, (data, message) => {
      if (!data?.from) return;
      this.add({ from: data.from, to: this.me.sub, seq: message.seq, timestamp: message.timestamp ?? Date.now(), read: false, data });
      this.typing.delete(data.from);
      this.schedule();
    });
    this.client.subscribe(`/topic/org/${this.me.org}/presence`, (p) => {
      if (!p?.user) return;
      if (p.event === 'join') this.online.add(p.user);
      if (p.event === 'leave') this.online.delete(p.user);
      if (p.event === 'typing' && p.room === `dm:${this.me.sub}`) {
        if (p.active === false) this.typing.delete(p.user);
        else this.typing.set(p.user, Date.now() + TYPING_MS);
        setTimeout(() => this.schedule(), TYPING_MS + 50);
      }
      this.schedule();
    });
    this.load(null);
    // The recipients' read state changes without a message: looked at again while open.
    setInterval(() => {
      if (this.peer && this.visible()) this.load(this.peer);
    }, 10000);
  }

  setOnline(users) {
    this.online = new Set(users);
    this.schedule();
  }

  seenUntil(peer) {
    return Number(localStorage.getItem(READ_KEY + peer) ?? 0);
  }

  /** Unread messages in all, for the tab. */
  unreadTotal() {
    let n = 0;
    const seen = new Map();
    for (const m of this.byKey.values()) {
      if (m.to !== this.me.sub) continue;
      if (!seen.has(m.from)) seen.set(m.from, this.seenUntil(m.from));
      if (m.timestamp > seen.get(m.from)) n += 1;
    }
    return n;
  }

  conversation(peer) {
    return [...this.byKey.values()]
      .filter((m) => (m.from === peer && m.to === this.me.sub) || (m.from === this.me.sub && m.to === peer))
      .sort((a, b) => a.timestamp - b.timestamp || a.seq - b.seq);
  }

  open(peer) {
    this.peer = peer;
    $('#msg-peer').textContent = this.names.get(peer) ?? peer;
    $('#msg-form').hidden = false;
    this.load(peer);
    this.render();
    $('#msg-text').focus();
  }

  /** The conversation shown is read: remembered here, and acknowledged on the queue as far
   * as every earlier message is read too (the queue's cursor is one for all senders). */
  markRead() {
    if (!this.peer || !this.visible()) return;
    const mine = this.conversation(this.peer).filter((m) => m.to === this.me.sub);
    const last = mine.at(-1);
    if (last && last.timestamp > this.seenUntil(this.peer)) localStorage.setItem(READ_KEY + this.peer, String(last.timestamp));
    const incoming = [...this.byKey.values()].filter((m) => m.to === this.me.sub && !m.read);
    const unseen = incoming.filter((m) => m.timestamp > this.seenUntil(m.from)).map((m) => m.seq);
    const upto = Math.max(0, ...incoming.map((m) => m.seq).filter((s) => !unseen.length || s < Math.min(...unseen)));
    if (upto > (this.acked ?? 0)) {
      this.acked = upto;
      this.client.ack(QUEUE, upto).then(() => {
        for (const m of incoming) if (m.seq <= upto) m.read = true;
      }).catch(() => {});
    }
  }

  typingNow() {
    if (!this.peer || Date.now() - this.lastTyping < 3000) return;
    this.lastTyping = Date.now();
    this.client.send({ type: 'typing', room: `dm:${this.peer}`, active: true }).catch(() => {});
  }

  async send() {
    const text = $('#msg-text').value.trim();
    if (!text || !this.peer) return;
    const to = this.peer;
    try {
      const reply = await this.client.publish(QUEUE, { text }, { to });
      $('#msg-text').value = '';
      $('#msg-status').textContent = '';
      this.lastTyping = 0;
      this.add({ from: this.me.sub, to, seq: reply.seq, timestamp: Date.now(), read: false, data: { text, from: this.me.sub } });
      this.render();
    } catch (e) {
      $('#msg-status').textContent = `Not sent: ${e.message}`;
    }
  }

  async broadcast() {
    const text = $('#broadcast-text').value.trim();
    const role = $('#broadcast-role').value;
    if (!text) return;
    try {
      await this.client.publish(`/topic/org/${this.me.org}/role/${role}`, { text, from: this.me.sub });
      $('#broadcast-text').value = '';
      $('#broadcast-status').textContent = `Sent to every ${role} at ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      $('#broadcast-status').textContent = `Not sent: ${e.message}`;
    }
  }

  render() {
    const total = this.unreadTotal();
    // Written only when it changes: the tab strip is not restyled for every presence event.
    const label = total ? `Messages (${total})` : 'Messages';
    if ($('#tab-messages').textContent !== label) $('#tab-messages').textContent = label;
    if (!this.visible()) return;
    this.renderList();
    this.renderConversation();
    this.markRead();
  }

  renderList() {
    const query = $('#msg-search').value.trim().toLowerCase();
    // One pass over the messages for every correspondent's last time and unread count.
    const last = new Map();
    const unread = new Map();
    for (const m of this.byKey.values()) {
      const peer = m.from === this.me.sub ? m.to : m.from;
      last.set(peer, Math.max(last.get(peer) ?? 0, m.timestamp));
      if (m.to === this.me.sub && m.from === peer && m.timestamp > this.seenUntil(peer)) unread.set(peer, (unread.get(peer) ?? 0) + 1);
    }
    const people = new Set([...last.keys(), ...this.guards()]);
    people.delete(this.me.sub);
    const rows = [...people]
      .map((user) => ({ user, name: this.names.get(user) ?? user, last: last.get(user) ?? 0, unread: unread.get(user) ?? 0 }))
      .filter((r) => !query || r.name.toLowerCase().includes(query) || r.user.toLowerCase().includes(query))
      .sort((a, b) => b.unread - a.unread || b.last - a.last || a.name.localeCompare(b.name));
    const signature = `${this.peer}|${rows.slice(0, LIST_MAX).map((r) => `${r.user}:${r.unread}:${r.last}:${+this.online.has(r.user)}:${+this.isTyping(r.user)}`).join(',')}`;
    if (signature === this.listed) return;
    this.listed = signature;
    $('#msg-people').replaceChildren(...rows.slice(0, LIST_MAX).map((r) => el('li', {},
      el('button', {
        type: 'button',
        class: `person${r.user === this.peer ? ' selected' : ''}`,
        'data-user': r.user,
        'aria-current': r.user === this.peer ? 'true' : null,
        onclick: () => this.open(r.user),
      },
      el('span', { class: `dot${this.online.has(r.user) ? ' online' : ''}`, title: this.online.has(r.user) ? 'online' : 'offline' }),
      el('span', { class: 'who' }, r.name),
      this.isTyping(r.user) ? el('span', { class: 'typing' }, 'typing…') : '',
      r.unread ? el('span', { class: 'badge unread', 'aria-label': `${r.unread} unread` }, String(r.unread)) : ''))));
  }

  isTyping(user) {
    return (this.typing.get(user) ?? 0) > Date.now();
  }

  renderConversation() {
    if (!this.peer) return;
    const list = this.conversation(this.peer);
    const signature = `${this.peer}|${list.map((m) => `${this.key(m)}${+m.read}`).join(',')}|${+this.isTyping(this.peer)}`;
    if (signature === this.shown) return;
    this.shown = signature;
    const box = $('#msg-thread');
    const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 20;
    box.replaceChildren(...list.map((m) => {
      const mine = m.from === this.me.sub;
      return el('li', { class: `msg ${mine ? 'out' : 'in'}`, 'data-key': this.key(m) },
        el('span', { class: 'text' }, textOf(m.data)),
        el('span', { class: 'meta' }, `${mine ? 'you' : this.names.get(m.from) ?? m.from} · ${new Date(m.timestamp).toLocaleTimeString()}${mine ? (m.read ? ' · read' : ' · sent') : ''}`));
    }));
    $('#msg-typing').textContent = this.isTyping(this.peer) ? `${this.names.get(this.peer) ?? this.peer} is typing…` : '';
    if (atEnd || list.length < 30) box.scrollTop = box.scrollHeight;
  }
}
