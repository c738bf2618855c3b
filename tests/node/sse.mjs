// A real EventSource (the `eventsource` package, which follows the browser's reconnect rules:
// `retry`, `Last-Event-ID`) against GET /api/v1/events, for tests/durability.rs. Reports each
// (re)connection, then every message once LOOKOUT_EXPECT of them arrived.
import fs from 'node:fs';
import EventSource from 'eventsource';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const emit = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const expect = Number(env('LOOKOUT_EXPECT'));

const source = new EventSource(env('LOOKOUT_EVENTS'), {
  headers: { Authorization: `Bearer ${env('SUP_TOKEN')}` },
  https: { ca: fs.readFileSync(env('LOOKOUT_CA')) },
});
const received = [];
let opens = 0;
source.onopen = () => {
  opens += 1;
  emit({ event: 'open', opens });
};
source.addEventListener('message', (e) => {
  const m = JSON.parse(e.data);
  received.push({ i: m.data.i, seq: m.seq, id: e.lastEventId });
  if (received.length === expect) {
    // Anything more (a duplicate) would show up meanwhile.
    setTimeout(() => {
      source.close();
      emit({ event: 'received', received, opens });
      process.exit(0);
    }, 500);
  }
});
setTimeout(() => {
  emit({ event: 'fail', error: `only ${received.length} of ${expect} messages`, opens });
  process.exit(1);
}, 60000);
