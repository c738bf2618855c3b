// lookout-client.js — the client for Lookout's native protocol, for browsers and Node.js.
//
// A dependency-free ES module. It connects with a token, subscribes, publishes and acks, and
// keeps going when the network does not:
// - a heartbeat watchdog notices a dead connection the browser has not noticed yet;
// - reconnection backs off exponentially with jitter, up to a cap;
// - every subscription resumes from the last seq it saw (`since` + `epoch`), and duplicates
//   are dropped, so a reconnect loses nothing and repeats nothing;
// - when WebSocket cannot connect at all (a proxy that blocks upgrades), it falls back to the
//   long-poll endpoint, and it keeps trying WebSocket and goes back to it when it can.
// Publishes made while offline wait in a bounded outbox and go out on the next connection.
// MessagePack (`encoding: 'msgpack'`) loads the vendored @msgpack/msgpack from ./vendor/.
// The npm package `lookout-client` is this folder (types in index.d.ts); the server serves this
// file at /lookout-client.js and ./vendor/ at /vendor/.
//
//   import { LookoutClient } from 'lookout-client';   // or '/lookout-client.js' in a page
//   const client = new LookoutClient({ url: 'wss://site:8443/ws', token: () => getToken() });
//   client.on('state', (s) => console.log(s));      // connecting, open, polling, offline, closed
//   client.subscribe('/topic/org/acme/alerts', (data, message) => { … });
//   client.connect();
//   await client.publish('/topic/location/me', { lat, lon, ts: Date.now() });

const DEFAULTS = {
  encoding: 'json',
  backoff: { initial: 500, max: 10000, factor: 2, jitter: 0.5 },
  heartbeat: { interval: 15000, timeout: 40000 },
  requestTimeout: 15000,
  // Connection attempts that never opened before falling back to long-poll.
  failuresBeforePolling: 2,
  // While long-polling, how often WebSocket is tried again.
  retryWebSocketEvery: 15000,
  pollTimeout: 25,
  outboxLimit: 256,
};

const SUBPROTOCOL = { json: 'lookout.json', msgpack: 'lookout.msgpack' };

export class LookoutError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'LookoutError';
    this.code = code;
  }
}

export class LookoutClient {
  /**
   * @param {object} options
   * @param {string} options.url WebSocket endpoint, e.g. `wss://host:8443/ws`.
   * @param {string|(() => string|Promise<string>)} options.token JWT, or a function giving a
   *   fresh one (called before every connection attempt).
   * @param {string} [options.pollUrl] Long-poll endpoint; defaults to `/api/v1/poll` on the
   *   same host.
   * @param {'json'|'msgpack'} [options.encoding]
   * @param {Function} [options.WebSocket] WebSocket constructor (Node: the `ws` package).
   * @param {Function} [options.fetch] fetch implementation.
   */
  constructor(options) {
    if (!options || !options.url) throw new TypeError('LookoutClient needs { url, token }');
    this.options = {
      ...DEFAULTS,
      ...options,
      backoff: { ...DEFAULTS.backoff, ...options.backoff },
      heartbeat: { ...DEFAULTS.heartbeat, ...options.heartbeat },
    };
    if (!SUBPROTOCOL[this.options.encoding]) {
      throw new TypeError(`unknown encoding ${this.options.encoding}`);
    }
    const base = new URL(options.url);
    base.protocol = base.protocol === 'ws:' ? 'http:' : 'https:';
    this.pollUrl = options.pollUrl ?? new URL('/api/v1/poll', base).toString();
    this.historyUrl = new URL('/api/v1/channels/history', base).toString();
    this.WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    this.fetchImpl = options.fetch ?? globalThis.fetch?.bind(globalThis);
    this.state = 'idle';
    this.subs = new Map();
    this.pending = new Map();
    this.outbox = [];
    this.listeners = new Map();
    this.nextId = 1;
    this.attempt = 0;
    this.failures = 0;
    this.socket = null;
    this.timers = new Set();
    this.polling = null;
    this.closed = true;
    this.epoch = null;
    this.sessionId = null;
    this.codecInUse = null;
    this.watchdog = null;
    this.lastFrameAt = 0;
  }

  /** Listens to `state`, `message`, `reset`, `gap`, `notice`, `error`; returns an unsubscriber. */
  on(event, listener) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(listener);
    return () => this.listeners.get(event)?.delete(listener);
  }

  emit(event, ...args) {
    for (const listener of this.listeners.get(event) ?? []) {
      try {
        listener(...args);
      } catch (e) {
        if (event !== 'error') this.emit('error', e);
      }
    }
  }

  /** Starts connecting (and reconnecting until `close()`). */
  connect() {
    if (!this.closed) return;
    this.closed = false;
    this.openSocket();
  }

  /** Stops for good: closes the connection, stops polling, fails what is pending. */
  close() {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.stopPolling();
    if (this.socket) this.socket.close(1000, 'client closed');
    this.failPending(new LookoutError('closed', 'client closed'));
    for (const item of this.outbox.splice(0)) item.reject(new LookoutError('closed', 'client closed'));
    this.setState('closed');
  }

  /**
   * Subscribes `handler(data, message)` to `channel`. With `since` (and `epoch`), resumes after
   * that seq. `onSubscribed(reply)` runs each time the (re)subscription is in place: the moment
   * to load state that live messages will keep up to date. Returns `{ unsubscribe(), lastSeq }`.
   */
  subscribe(channel, handler, { since = null, epoch = null, onSubscribed = null } = {}) {
    if (this.subs.has(channel)) throw new LookoutError('already_subscribed', channel);
    const sub = { channel, handler, lastSeq: since, epoch, onSubscribed };
    this.subs.set(channel, sub);
    if (this.state === 'open') this.sendSubscribe(sub);
    if (this.state === 'polling') this.restartPoll();
    return {
      unsubscribe: () => this.unsubscribe(channel),
      get lastSeq() {
        return sub.lastSeq;
      },
    };
  }

  unsubscribe(channel) {
    if (!this.subs.delete(channel)) return;
    if (this.state === 'open') {
      this.request({ type: 'unsubscribe', channel }).catch((e) => this.emit('error', e));
    }
    if (this.state === 'polling') this.restartPoll();
  }

  /** Publishes; resolves with the reply (`seq`, `epoch`). Offline, waits in the outbox. */
  publish(channel, data, { ack = false, to, owner } = {}) {
    const msg = { type: 'publish', channel, data };
    if (ack) msg.ack = true;
    if (to) msg.to = to;
    if (owner) msg.owner = owner;
    return this.send(msg);
  }

  /** Acknowledges `seq` on `channel` (ack_required messages and the user's own queues). */
  ack(channel, seq) {
    return this.send({ type: 'ack', channel, seq });
  }

  /** Any request of the native protocol, e.g. `{ type: 'alert_ack', alertId, note }`. */
  send(msg) {
    if (this.state === 'open') return this.request(msg);
    if (this.closed) return Promise.reject(new LookoutError('closed', 'client closed'));
    if (this.outbox.length >= this.options.outboxLimit) {
      return Promise.reject(new LookoutError('offline', 'offline and the outbox is full'));
    }
    return new Promise((resolve, reject) => this.outbox.push({ msg, resolve, reject }));
  }

  // ---- WebSocket -------------------------------------------------------------------------

  async openSocket() {
    if (this.closed) return;
    if (this.state !== 'polling') this.setState('connecting');
    let token;
    try {
      token = await this.token();
    } catch (e) {
      this.emit('error', e);
      this.socketEnded(false);
      return;
    }
    if (this.closed) return;
    // Browsers cannot set headers on a WebSocket: the token goes in the query string.
    const url = new URL(this.options.url);
    url.searchParams.set('token', token);
    // Loaded before the socket exists, so no event can arrive before its handlers.
    const codec = await this.codec();
    if (this.closed) return;
    let ws;
    try {
      ws = new this.WebSocketImpl(url.toString(), [SUBPROTOCOL[this.options.encoding]]);
    } catch (e) {
      this.emit('error', e);
      this.socketEnded(false);
      return;
    }
    ws.binaryType = 'arraybuffer';
    let opened = false;
    this.socket = ws;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (event) => {
      let msg;
      try {
        msg = codec.decode(event.data);
      } catch (e) {
        this.emit('error', e);
        return;
      }
      this.lastFrameAt = Date.now();
      this.onFrame(msg);
    };
    ws.onerror = () => {
      // A close event follows.
    };
    ws.onclose = (event) => {
      if (this.socket !== ws) return;
      this.socket = null;
      this.stopWatchdog();
      this.failPending(new LookoutError('disconnected', `connection closed (${event.code})`));
      this.emit('disconnect', { code: event.code, reason: event.reason });
      this.socketEnded(opened);
    };
    this.codecInUse = codec;
  }

  async socketEnded(opened) {
    if (this.closed) return;
    if (opened) {
      this.failures = 0;
    } else {
      this.failures += 1;
    }
    if (this.state === 'polling') {
      this.later(() => this.openSocket(), this.options.retryWebSocketEvery);
      return;
    }
    // WebSocket keeps failing: if plain HTTP gets through (a proxy blocking upgrades, not a
    // server that is down), long-poll meanwhile.
    if (
      !opened &&
      this.failures >= this.options.failuresBeforePolling &&
      this.fetchImpl &&
      (await this.httpReachable())
    ) {
      if (this.closed) return;
      this.startPolling();
      this.later(() => this.openSocket(), this.options.retryWebSocketEvery);
      return;
    }
    if (this.closed) return;
    this.setState('offline');
    const { initial, max, factor, jitter } = this.options.backoff;
    const ceiling = Math.min(max, initial * factor ** this.attempt);
    const delay = ceiling * (1 - jitter * Math.random());
    this.attempt += 1;
    this.later(() => this.openSocket(), delay);
  }

  onFrame(msg) {
    switch (msg.type) {
      case 'connection_established':
        this.sessionId = msg.sessionId;
        this.epoch = msg.epoch;
        this.attempt = 0;
        this.failures = 0;
        this.stopPolling();
        this.setState('open');
        this.startWatchdog();
        for (const sub of this.subs.values()) this.sendSubscribe(sub);
        for (const item of this.outbox.splice(0)) this.request(item.msg).then(item.resolve, item.reject);
        break;
      case 'message':
        this.deliver(msg.channel, msg, this.epoch);
        break;
      case 'reply':
      case 'error':
      case 'pong': {
        const waiter = msg.id != null ? this.pending.get(msg.id) : undefined;
        if (waiter) {
          this.pending.delete(msg.id);
          clearTimeout(waiter.timer);
          if (msg.type === 'error') waiter.reject(new LookoutError(msg.code, msg.message));
          else waiter.resolve(msg);
        } else if (msg.type === 'error') {
          this.emit('error', new LookoutError(msg.code, msg.message));
        }
        break;
      }
      case 'notice':
        this.emit('notice', msg);
        break;
      default:
        // The job-status dialect and future frame types.
        this.emit('frame', msg);
    }
  }

  sendSubscribe(sub) {
    const msg = { type: 'subscribe', channel: sub.channel };
    if (sub.lastSeq != null) {
      msg.since = sub.lastSeq;
      if (sub.epoch) msg.epoch = sub.epoch;
    }
    this.request(msg).then(
      (reply) => {
        if (reply.reset === 'epoch') {
          // The server's data directory changed: old seqs mean nothing any more.
          sub.lastSeq = null;
          this.emit('reset', { channel: sub.channel, reason: 'epoch' });
        } else if (reply.reset === 'trimmed') {
          this.emit('gap', { channel: sub.channel, after: sub.lastSeq, first: reply.first });
        }
        sub.epoch = reply.epoch ?? this.epoch;
        if (sub.lastSeq == null) sub.lastSeq = reply.head ?? null;
        // A head below what was seen: the channel keeps no log (live only) and a restarted
        // server numbers it afresh. Take its numbering, or every new message would look old.
        if (typeof reply.head === 'number' && sub.lastSeq != null && reply.head < sub.lastSeq) {
          sub.lastSeq = reply.head;
        }
        sub.onSubscribed?.(reply);
      },
      (e) => this.emit('error', e),
    );
  }

  deliver(channel, msg, epoch) {
    const sub = this.subs.get(channel);
    if (!sub) return;
    if (typeof msg.seq === 'number' && msg.seq > 0) {
      // Resume and the WebSocket/long-poll switch can overlap: a seq seen is never repeated.
      if (sub.lastSeq != null && msg.seq <= sub.lastSeq) return;
      sub.lastSeq = msg.seq;
      sub.epoch = epoch ?? sub.epoch;
    }
    try {
      sub.handler(msg.data, msg);
    } catch (e) {
      this.emit('error', e);
    }
    this.emit('message', msg);
  }

  request(msg) {
    const ws = this.socket;
    if (!ws || this.state !== 'open') {
      return Promise.reject(new LookoutError('offline', 'not connected'));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new LookoutError('timeout', `no reply to ${msg.type} in time`));
      }, this.options.requestTimeout);
      this.pending.set(id, { resolve, reject, timer });
      try {
        ws.send(this.codecInUse.encode({ ...msg, id }));
      } catch (e) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(e);
      }
    });
  }

  failPending(error) {
    for (const [id, waiter] of this.pending) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
      this.pending.delete(id);
    }
  }

  startWatchdog() {
    this.stopWatchdog();
    this.lastFrameAt = Date.now();
    const { interval, timeout } = this.options.heartbeat;
    this.watchdog = setInterval(() => {
      if (Date.now() - this.lastFrameAt > timeout) {
        // Silent for too long: the connection is dead even if the socket has not noticed.
        const ws = this.socket;
        this.socket = null;
        this.stopWatchdog();
        if (ws) {
          ws.onclose = null;
          ws.close(4000, 'heartbeat timeout');
        }
        this.failPending(new LookoutError('disconnected', 'heartbeat timeout'));
        this.socketEnded(true);
        return;
      }
      this.request({ type: 'ping' }).catch(() => {});
    }, interval);
  }

  stopWatchdog() {
    clearInterval(this.watchdog);
    this.watchdog = null;
  }

  // ---- Long-poll fallback ----------------------------------------------------------------

  startPolling() {
    if (this.polling) return;
    this.setState('polling');
    const run = { stopped: false, abort: null };
    this.polling = run;
    this.pollLoop(run);
  }

  stopPolling() {
    if (!this.polling) return;
    this.polling.stopped = true;
    this.polling.abort?.abort();
    this.polling = null;
  }

  restartPoll() {
    this.polling?.abort?.abort();
  }

  async pollLoop(run) {
    let errors = 0;
    while (!run.stopped && !this.closed) {
      const subs = [...this.subs.values()];
      try {
        if (subs.length === 0) {
          await sleep(1000);
          continue;
        }
        const token = await this.token();
        for (const sub of subs) {
          // A new subscription starts at the channel's head, as over WebSocket.
          if (sub.lastSeq == null) sub.lastSeq = await this.head(sub.channel, token);
        }
        const url = new URL(this.pollUrl);
        url.searchParams.set('channels', subs.map((s) => s.channel).join(','));
        url.searchParams.set('since', subs.map((s) => s.lastSeq).join(','));
        url.searchParams.set('timeout', String(this.options.pollTimeout));
        run.abort = new AbortController();
        const response = await this.fetchImpl(url.toString(), {
          headers: { authorization: `Bearer ${token}` },
          signal: run.abort.signal,
        });
        if (!response.ok) throw new LookoutError(`http_${response.status}`, await response.text());
        const body = await response.json();
        if (run.stopped) return;
        errors = 0;
        for (const history of body.channels) {
          for (const m of history.messages) {
            this.deliver(
              history.channel,
              { type: 'message', channel: history.channel, ...m },
              history.epoch,
            );
          }
        }
      } catch (e) {
        if (run.stopped) return;
        if (e?.name === 'AbortError') continue;
        this.emit('error', e);
        errors += 1;
        const { initial, max, factor } = this.options.backoff;
        await sleep(Math.min(max, initial * factor ** errors) * (1 - Math.random() / 2));
      }
    }
  }

  async head(channel, token) {
    const url = new URL(this.historyUrl);
    url.searchParams.set('channel', channel);
    url.searchParams.set('since', '0');
    url.searchParams.set('limit', '1');
    const response = await this.fetchImpl(url.toString(), {
      headers: { authorization: `Bearer ${token}` },
    });
    if (!response.ok) throw new LookoutError(`http_${response.status}`, await response.text());
    return (await response.json()).head;
  }

  async httpReachable() {
    try {
      const url = new URL('/healthz', this.pollUrl);
      await this.fetchImpl(url.toString(), { signal: AbortSignal.timeout(3000) });
      return true;
    } catch {
      return false;
    }
  }

  // ---- Helpers ---------------------------------------------------------------------------

  async token() {
    const t = this.options.token;
    return typeof t === 'function' ? await t() : t;
  }

  async codec() {
    if (this.options.encoding === 'json') {
      return {
        encode: (v) => JSON.stringify(v),
        decode: (d) => JSON.parse(typeof d === 'string' ? d : new TextDecoder().decode(d)),
      };
    }
    const msgpack = await import('./vendor/msgpack/index.mjs');
    return { encode: (v) => msgpack.encode(v), decode: (d) => msgpack.decode(new Uint8Array(d)) };
  }

  later(fn, ms) {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', state);
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
