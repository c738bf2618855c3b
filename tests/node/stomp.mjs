// Drives the real @stomp/stompjs client against Lookout for tests/stomp.rs.
//
// Reports each step as one JSON line on stdout; the Rust test makes the assertions and, when
// this script prints {"event":"ready"}, publishes from a native client. Any failure exits 1
// with {"event":"fail"}.
import fs from 'node:fs';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env('LOOKOUT_WS');
const ca = fs.readFileSync(env('LOOKOUT_CA'));
// Unset: a plain WebSocket; else the one SockJS transport to use (websocket, xhr-streaming, …).
const sockjsTransport = process.env.LOOKOUT_SOCKJS_TRANSPORT;
const location = () => ({ ...JSON.parse(env('LOOKOUT_LOCATION')), ts: Date.now() });
const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const PATIENCE = 15000;

function within(ms, promise, what) {
  return Promise.race([
    promise,
    sleep(ms).then(() => {
      throw new Error(`timed out waiting for ${what}`);
    }),
  ]);
}

/** Messages of one subscription, awaited one at a time. */
class Inbox {
  constructor() {
    this.items = [];
    this.waiters = [];
  }
  push(item) {
    const waiter = this.waiters.shift();
    if (waiter) waiter(item);
    else this.items.push(item);
  }
  next(what) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return within(PATIENCE, new Promise((resolve) => this.waiters.push(resolve)), what);
  }
}

async function socketFactory() {
  if (!sockjsTransport) {
    return () => () => new WebSocket(url, ['v12.stomp', 'v11.stomp', 'v10.stomp'], { ca });
  }
  // SockJS: the token travels in the query string. sockjs-client trusts the server's
  // certificate through NODE_EXTRA_CA_CERTS.
  const { default: SockJS } = await import('sockjs-client');
  return (token) => () =>
    new SockJS(`${env('LOOKOUT_SOCKJS')}?token=${encodeURIComponent(token)}`, null, {
      transports: [sockjsTransport],
    });
}

const factory = await socketFactory();

function stomp(token, { heartbeat = 0, headerToken = true } = {}) {
  const debug = [];
  const client = new Client({
    webSocketFactory: factory(token),
    connectHeaders: headerToken ? { Authorization: `Bearer ${token}`, host: 'lookout' } : {},
    reconnectDelay: 0,
    heartbeatIncoming: heartbeat,
    heartbeatOutgoing: heartbeat,
    debug: (line) => debug.push(line),
  });
  client.debugLines = debug;
  return client;
}

function connect(client) {
  return within(
    PATIENCE,
    new Promise((resolve, reject) => {
      client.onConnect = (frame) => resolve(frame);
      client.onStompError = (frame) => reject(new Error(`ERROR ${frame.headers.message}: ${frame.body}`));
      client.onWebSocketClose = (event) => reject(new Error(`closed before CONNECTED (${event.code})`));
      client.activate();
    }),
    'CONNECTED',
  );
}

function receipt(client, id) {
  return within(PATIENCE, new Promise((resolve) => client.watchForReceipt(id, resolve)), `receipt ${id}`);
}

const summary = (m) => ({
  destination: m.headers.destination,
  subscription: m.headers.subscription,
  seq: Number(m.headers.seq),
  epoch: m.headers.epoch,
  ack: m.headers.ack,
  body: JSON.parse(m.body),
});

async function main() {
  const supToken = env('SUP_TOKEN');
  const guardToken = env('GUARD_TOKEN');
  const guard2Token = env('GUARD2_TOKEN');

  // 1. A supervisor connects with its JWT in CONNECT and asks for 1 s heart-beats.
  const sup = stomp(supToken, { heartbeat: 1000 });
  const connected = await connect(sup);
  emit({
    event: 'connected',
    version: connected.headers.version,
    heartBeat: connected.headers['heart-beat'],
    // SockJS reports the transport it settled on.
    transport: sup.webSocket?.transport ?? 'plain',
  });
  let supClosed = null;
  sup.onWebSocketClose = (event) => {
    supClosed = event.code;
  };

  // 2. It follows guard1's location; the receipt says the subscription is in place.
  const loc1 = new Inbox();
  const subscribed = receipt(sup, 'sub-1');
  sup.subscribe('/topic/location/guard1', (m) => loc1.push(m), { receipt: 'sub-1' });
  await subscribed;
  emit({ event: 'ready' });

  // 3. What a native client publishes arrives here.
  emit({ event: 'message', ...summary(await loc1.next('the native publish')) });

  // 4. guard1 sends over STOMP (through Spring's /app prefix) with a receipt.
  const guard = stomp(guardToken);
  await connect(guard);
  const sent = receipt(guard, 'send-1');
  guard.publish({
    destination: '/app/topic/location/guard1',
    body: JSON.stringify(location()),
    headers: { receipt: 'send-1', 'content-type': 'application/json' },
  });
  const sendReceipt = await sent;
  emit({ event: 'receipt', headers: sendReceipt.headers });
  emit({ event: 'message', ...summary(await loc1.next('the STOMP send')) });

  // 5. Client-individual acks: NACK the first message, get it again, then ACK both.
  const loc2 = new Inbox();
  const subscribed2 = receipt(sup, 'sub-2');
  sup.subscribe('/topic/location/guard2', (m) => loc2.push(m), { ack: 'client-individual', receipt: 'sub-2' });
  await subscribed2;
  const guard2 = stomp(guard2Token);
  await connect(guard2);
  for (const n of [1, 2]) {
    const r = receipt(guard2, `g2-${n}`);
    guard2.publish({
      destination: '/topic/location/guard2',
      body: JSON.stringify({ ...location(), note: `m${n}` }),
      headers: { receipt: `g2-${n}` },
    });
    await r;
  }
  const first = await loc2.next('guard2 message 1');
  const second = await loc2.next('guard2 message 2');
  emit({ event: 'client-ack', first: summary(first), second: summary(second) });
  first.nack();
  const again = await loc2.next('the redelivery');
  emit({ event: 'redelivered', message: summary(again) });
  const acked = receipt(sup, 'ack-2');
  again.ack();
  second.ack({ receipt: 'ack-2' });
  await acked;
  emit({ event: 'acked' });

  // 6. Heart-beats flow both ways while the connection stays up.
  await sleep(3500);
  const count = (line) => sup.debugLines.filter((l) => l === line).length;
  emit({ event: 'heartbeats', received: count('<<< PONG'), sent: count('>>> PING'), connected: sup.connected, closed: supClosed });

  // 7. A guard subscribing to another guard's location gets an ERROR and is disconnected.
  const nosy = stomp(guardToken);
  await connect(nosy);
  const refused = within(
    PATIENCE,
    new Promise((resolve) => {
      let error = null;
      nosy.onStompError = (frame) => {
        error = { message: frame.headers.message, body: frame.body };
      };
      nosy.onWebSocketClose = (event) => resolve({ error, code: event.code });
    }),
    'ERROR and close',
  );
  nosy.subscribe('/topic/location/guard2', () => {});
  emit({ event: 'forbidden', ...(await refused) });

  // 8. DISCONNECT with a receipt (stompjs waits for it).
  await within(PATIENCE, sup.deactivate(), 'DISCONNECT receipt');
  await guard.deactivate();
  await guard2.deactivate();
  emit({ event: 'done' });
}

main().then(
  () => process.exit(0),
  (e) => {
    emit({ event: 'fail', error: String(e && e.stack ? e.stack : e) });
    process.exit(1);
  },
);
