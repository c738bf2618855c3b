// Type-checked by tests/client_package.rs with `tsc --noEmit --strict` against the
// lookout-client package's index.d.ts: what the dashboard and the guard app do with the client,
// and, marked @ts-expect-error, what the types must refuse (tsc fails if one is accepted).
import {
  LookoutClient,
  LookoutError,
  type ConnectionState,
  type MessageFrame,
  type Reply,
  type Subscription,
} from 'lookout-client';

interface Alert {
  id: string;
  type: 'PANIC' | 'MEDICAL' | 'SECURITY' | 'FIRE' | 'GENERAL';
  state: string;
}

export async function dashboard(token: () => Promise<string>): Promise<number | undefined> {
  const client = new LookoutClient({
    url: 'wss://site:8443/ws',
    token,
    // The browser's own implementations fit the options.
    WebSocket: globalThis.WebSocket,
    fetch: globalThis.fetch,
    backoff: { max: 2000 },
    heartbeat: { interval: 2000, timeout: 6000 },
  });
  const stop: () => void = client.on('state', (state: ConnectionState) => {
    if (state === 'polling') console.log('long-poll');
  });
  stop();
  client.on('gap', ({ channel, after, first }) => console.log(channel, after ?? 0, first));
  client.on('error', (e) => {
    if (e instanceof LookoutError && e.code === 'forbidden') console.log(e.message);
  });
  const alerts: Subscription = client.subscribe<{ alert: Alert }>(
    '/topic/org/acme/alerts',
    (data, message: MessageFrame<{ alert: Alert }>) => {
      const id: string = data.alert.id;
      if (message.ack_required) client.ack(message.channel, message.seq).catch(() => {});
      console.log(id, message.timestamp);
    },
    { onSubscribed: (reply: Reply) => console.log(reply.head, reply.recovered, reply.reset) },
  );
  client.connect();
  const reply = await client.publish('/topic/org/acme/room/ops', { text: 'hi' }, { ack: true });
  await client.send({ type: 'alert_ack', alertId: 'a1', note: 'on my way' });
  const pong = await client.send({ type: 'ping' });
  const isPong: 'pong' = pong.type;
  console.log(isPong, alerts.lastSeq);
  alerts.unsubscribe();
  client.close();
  return reply.seq;
}

export async function guard(frame: Uint8Array): Promise<string | undefined> {
  const client = new LookoutClient({ url: 'wss://site:8443/ws', token: 'jwt', encoding: 'msgpack' });
  client.on('disconnect', ({ code }) => {
    if (code === 4005) console.log('revoked');
  });
  client.on('frame', (f) => {
    if (f.type === 'viewers') console.log(f.channel);
  });
  if (client.state === 'open') {
    await client.request({ type: 'publish', channel: '/topic/video/me', data: { codec: 'jpeg', data: frame } });
  }
  const reply = await client.publish('/topic/emergency/me', { type: 'PANIC' });
  await client.publish('/user/queue/messages', { text: 'ok' }, { to: 'sup1' });
  return reply.alertId;
}

export function refused(client: LookoutClient): void {
  // @ts-expect-error: url and token are required
  new LookoutClient({ url: 'wss://site/ws' });
  // @ts-expect-error: no such encoding
  new LookoutClient({ url: 'wss://site/ws', token: 't', encoding: 'xml' });
  // @ts-expect-error: no such event
  client.on('opened', () => {});
  // @ts-expect-error: a state listener gets a state, not a number
  client.on('state', (s: number) => s);
  // @ts-expect-error: not a request of the protocol
  client.send({ type: 'shutdown' });
  // @ts-expect-error: an ack needs its seq
  client.send({ type: 'ack', channel: '/user/queue/jobs' });
  // @ts-expect-error: seqs are numbers
  client.ack('/user/queue/jobs', '3');
  // @ts-expect-error: internal
  client.openSocket();
  // @ts-expect-error: read-only
  client.state = 'open';
}
