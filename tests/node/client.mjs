// Drives the lookout-client package (web/lookout-client/) under Node.js for tests/client.rs.
//
// LOOKOUT_MODE=resume: subscribe, then report every message until LOOKOUT_EXPECT of them
//   arrived, across whatever the server goes through (the test kills and restarts it).
// LOOKOUT_MODE=fallback: WebSocket is blocked (as by a proxy that refuses upgrades) until the
//   first LOOKOUT_EXPECT/2 messages arrived over long-poll; then it is let through and the rest
//   must arrive over WebSocket.
// Steps are JSON lines on stdout; the Rust test makes the assertions.
import fs from 'node:fs';
import WebSocket from 'ws';
import { LookoutClient } from 'lookout-client';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const ca = fs.readFileSync(env('LOOKOUT_CA'));
const mode = env('LOOKOUT_MODE');
const expect = Number(env('LOOKOUT_EXPECT'));
const channel = env('LOOKOUT_CHANNEL');
const cap = Number(env('LOOKOUT_BACKOFF_CAP'));

let blocked = mode === 'fallback';
let attemptsBlocked = 0;

/** The `ws` client trusting the test server's certificate, or a blocked upgrade. */
class TestWebSocket extends WebSocket {
  constructor(url, protocols) {
    if (blocked) {
      attemptsBlocked += 1;
      // A proxy that refuses upgrades: aim at a path that answers 426 instead of 101.
      const refused = new URL(url);
      refused.pathname = '/api/v1/websocket/stats';
      super(refused.toString(), protocols, { ca });
    } else {
      super(url, protocols, { ca });
    }
  }
}

const client = new LookoutClient({
  url: env('LOOKOUT_WS'),
  token: env('SUP_TOKEN'),
  WebSocket: TestWebSocket,
  backoff: { initial: 200, max: cap, factor: 2, jitter: 0.5 },
  heartbeat: { interval: 2000, timeout: 6000 },
  retryWebSocketEvery: 1000,
  pollTimeout: 5,
});

const states = [];
let wentOffline = null;
const reconnects = [];
client.on('state', (state) => {
  states.push(state);
  const now = Date.now();
  if (state === 'offline' && wentOffline == null) wentOffline = now;
  if (state === 'open' && wentOffline != null) {
    reconnects.push({ offlineAt: wentOffline, openAt: now });
    wentOffline = null;
  }
  emit({ event: 'state', state, at: now });
});
client.on('error', () => {});

const received = [];
let resolveDone;
const done = new Promise((resolve) => {
  resolveDone = resolve;
});
let halfway;
const half = new Promise((resolve) => {
  halfway = resolve;
});
const sub = client.subscribe(channel, (data, message) => {
  received.push({ i: data.i, seq: message.seq, via: client.state });
  if (received.length === expect / 2) halfway();
  if (received.length >= expect) resolveDone();
});
client.connect();

async function waitFor(check, what, ms = 30000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function main() {
  if (mode === 'resume') {
    await waitFor(() => client.state === 'open' && sub.lastSeq != null, 'the subscription');
    emit({ event: 'ready' });
  } else {
    await waitFor(() => client.state === 'polling' && sub.lastSeq != null, 'long-poll');
    emit({ event: 'ready' });
    await half;
    blocked = false;
    await waitFor(() => client.state === 'open', 'WebSocket again');
    // The subscription is back on the socket once its reply came.
    await new Promise((r) => setTimeout(r, 300));
    emit({ event: 'websocket-again', attemptsBlocked });
  }
  await Promise.race([
    done,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`only ${received.length} of ${expect} messages`)), 60000)),
  ]);
  // Anything more (a duplicate) would show up here.
  await new Promise((r) => setTimeout(r, 500));
  client.close();
  emit({ event: 'received', received, states, reconnects });
}

main().then(
  () => process.exit(0),
  (e) => {
    emit({ event: 'fail', error: String(e?.stack ?? e), received: received.length, states });
    process.exit(1);
  },
);
