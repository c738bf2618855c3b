// The real socket.io-client (npm), driven line by line by tests/socketio.rs: each JSON line on
// stdin is a command, each JSON line on stdout a step. Sockets are named so that one script
// holds several clients. Binary data travels as {"$binary": hex} in both directions.
//
// Commands:
//   {cmd: "connect", name, url?, transports?, auth?, query?, headers?, reconnection?}
//       -> {event: "connected", name, transport} | {event: "connect_error", name, message}
//   {cmd: "emit", name, event, data, ack?: true, tag?}   -> {event: "ack", name, tag, reply}
//   {cmd: "transport", name}                            -> {event: "transport", name, transport}
//   {cmd: "burst", name, event, data, count}  (no acks)   -> {event: "burst_sent", name}
//   {cmd: "pause", name}   (WebSocket transport: stop reading) -> {event: "paused", name}
//   {cmd: "close", name}                                -> {event: "closed", name}
// Events: {event: "message", name, message}, {event: <server event>, name, data},
//   {event: "disconnect", name, reason}, {event: "reconnected", name, transport}.
import fs from 'node:fs';
import readline from 'node:readline';
import { io } from 'socket.io-client';
import { env, emit } from './harness.mjs';

const ca = fs.readFileSync(env('LOOKOUT_CA'));
const base = env('LOOKOUT_URL');
const sockets = new Map();

/** Buffers (and typed arrays) as {"$binary": hex}, for the JSON lines. */
const plain = (value) => {
  if (value instanceof ArrayBuffer) return { $binary: Buffer.from(value).toString('hex') };
  if (ArrayBuffer.isView(value)) {
    return { $binary: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex') };
  }
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
};

/** {"$binary": hex} back to Buffers, for what the test sends. */
const binary = (value) => {
  if (Array.isArray(value)) return value.map(binary);
  if (value && typeof value === 'object') {
    if (typeof value.$binary === 'string') return Buffer.from(value.$binary, 'hex');
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, binary(v)]));
  }
  return value;
};

const connect = (c) => {
  const socket = io(c.url ?? base, {
    ca,
    transports: c.transports ?? ['websocket'],
    auth: c.auth,
    query: c.query,
    extraHeaders: c.headers,
    forceNew: true, // each named socket on a connection of its own
    reconnection: c.reconnection ?? false,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    timeout: 10000,
  });
  sockets.set(c.name, socket);
  const name = c.name;
  let connects = 0;
  socket.on('connect', () => {
    connects += 1;
    const transport = socket.io.engine.transport.name;
    emit({ event: connects === 1 ? 'connected' : 'reconnected', name, transport });
  });
  socket.on('connect_error', (err) => emit({ event: 'connect_error', name, message: err.message }));
  socket.on('disconnect', (reason) => emit({ event: 'disconnect', name, reason }));
  // Each (re)connection has an engine of its own.
  socket.io.on('open', () => {
    socket.io.engine.on('upgrade', (t) => emit({ event: 'upgraded', name, transport: t.name }));
  });
  socket.onAny((event, data) => {
    if (event === 'message') emit({ event: 'message', name, message: plain(data) });
    else emit({ event, name, data: plain(data) });
  });
};

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const c = JSON.parse(line);
  try {
    switch (c.cmd) {
      case 'connect':
        connect(c);
        break;
      case 'emit': {
        const socket = sockets.get(c.name);
        const data = binary(c.data);
        if (c.ack) {
          socket.timeout(10000).emit(c.event, data, (err, reply) => {
            emit({ event: 'ack', name: c.name, tag: c.tag, reply: err ? { timeout: true } : plain(reply) });
          });
        } else {
          socket.emit(c.event, data);
        }
        break;
      }
      case 'transport': {
        const socket = sockets.get(c.name);
        emit({ event: 'transport', name: c.name, transport: socket.io.engine?.transport?.name });
        break;
      }
      case 'burst': {
        // `count` events at once, without acknowledgements; `data.data.n` numbers them.
        const socket = sockets.get(c.name);
        for (let n = 1; n <= c.count; n += 1) {
          socket.emit(c.event, { ...c.data, data: { ...c.data.data, n } });
        }
        emit({ event: 'burst_sent', name: c.name });
        break;
      }
      case 'pause': {
        // Stops reading the WebSocket's TLS socket: the server's writes back up, as with a
        // phone that stopped reading.
        const socket = sockets.get(c.name);
        socket.io.engine.transport.ws._socket.pause();
        emit({ event: 'paused', name: c.name });
        break;
      }
      case 'close':
        sockets.get(c.name).close();
        emit({ event: 'closed', name: c.name });
        break;
      case 'exit':
        for (const socket of sockets.values()) socket.close();
        process.exit(0);
        break;
      default:
        emit({ event: 'fail', error: `unknown command ${c.cmd}` });
    }
  } catch (e) {
    emit({ event: 'fail', error: String(e?.stack ?? e) });
  }
});
lines.on('close', () => process.exit(0));
