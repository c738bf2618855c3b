// Types for lookout-client.js: the client of Lookout's native protocol (see the protocol in the
// repository's README: client requests, server frames, error and close codes).
//
// Every method of the JavaScript classes is declared here: the public ones with their types,
// the internal ones as `private` (tests/client_package.rs fails on a method declared nowhere).

// ---- Options --------------------------------------------------------------------------------

/** Exponential backoff between reconnection attempts, in ms. */
export interface BackoffOptions {
  /** First delay (default 500). */
  initial: number;
  /** Cap (default 10000). */
  max: number;
  /** Growth per attempt (default 2). */
  factor: number;
  /** Fraction of the delay taken off at random, 0–1 (default 0.5). */
  jitter: number;
}

/** The watchdog: a ping every `interval`; nothing received for `timeout` means a dead link. */
export interface HeartbeatOptions {
  /** ms between pings (default 15000). */
  interval: number;
  /** ms of silence before the connection is given up (default 40000). */
  timeout: number;
}

/**
 * What the client needs of a WebSocket: the browser's, or the `ws` package's in Node.js. The
 * client sets `binaryType`, `onopen`, `onmessage`, `onerror` and `onclose` itself.
 */
export interface WebSocketLike {
  binaryType: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor, called with the URL (token in its query) and one subprotocol. */
export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;

/** What the client reads of a fetch response. */
export interface FetchResponseLike {
  readonly ok: boolean;
  readonly status: number;
  text(): Promise<string>;
  json(): Promise<any>;
}

/** What the client needs of `fetch` (long-poll, history heads, reachability). */
export type FetchLike = (
  url: string,
  init?: { headers?: Record<string, string>; signal?: AbortSignal },
) => Promise<FetchResponseLike>;

/** The wire encoding: subprotocol `lookout.json` (text frames) or `lookout.msgpack` (binary). */
export type Encoding = 'json' | 'msgpack';

export interface LookoutClientOptions {
  /** WebSocket endpoint, e.g. `wss://host:8443/ws`. */
  url: string;
  /** A JWT, or a function giving a fresh one (called before every connection attempt). */
  token: string | (() => string | Promise<string>);
  /** Long-poll endpoint; defaults to `/api/v1/poll` on the same host. */
  pollUrl?: string;
  /** Default `json`. `msgpack` keeps binary `data` as `Uint8Array`. */
  encoding?: Encoding;
  /** WebSocket constructor; defaults to `globalThis.WebSocket` (Node.js: pass `ws`). */
  WebSocket?: WebSocketConstructor;
  /** fetch implementation; defaults to `globalThis.fetch`. */
  fetch?: FetchLike;
  backoff?: Partial<BackoffOptions>;
  heartbeat?: Partial<HeartbeatOptions>;
  /** ms a request waits for its reply before failing with `timeout` (default 15000). */
  requestTimeout?: number;
  /** Connection attempts that never opened before falling back to long-poll (default 2). */
  failuresBeforePolling?: number;
  /** ms between WebSocket attempts while long-polling (default 15000). */
  retryWebSocketEvery?: number;
  /** Seconds a long-poll waits on the server (default 25, the server caps it at 60). */
  pollTimeout?: number;
  /** Requests kept while offline (default 256); past it `send` fails with `offline`. */
  outboxLimit?: number;
}

// ---- Client → server --------------------------------------------------------------------------
// The client adds `id` itself.

export interface SubscribeRequest {
  type: 'subscribe';
  channel: string;
  /** Replay what came after this seq. */
  since?: number;
  /** The epoch `since` belongs to. */
  epoch?: string;
}

export interface UnsubscribeRequest {
  type: 'unsubscribe';
  channel: string;
}

export interface PublishRequest {
  type: 'publish';
  channel: string;
  data?: unknown;
  /** Recipients must acknowledge it. */
  ack?: boolean;
  /** Recipient user, for `/user/queue/*`. */
  to?: string;
  /** A job's owner, on its first publish. */
  owner?: string;
  /** 1–200 bytes: a retry with the same key gets the first reply. */
  idempotency_key?: string;
}

export interface AckRequest {
  type: 'ack';
  channel: string;
  seq: number;
}

export interface PingRequest {
  type: 'ping';
}

/** A new token for the same user and org; otherwise the connection closes with 4001 at `exp`. */
export interface RefreshRequest {
  type: 'refresh';
  token: string;
}

/** Job-status dialect: `job_status_update` and `job_completed` frames. */
export interface JobRequest {
  type: 'subscribe_job' | 'unsubscribe_job';
  jobId: string;
}

/** Acknowledge (it stops escalating) or resolve an alert: supervisors of its org, admins. */
export interface AlertRequest {
  type: 'alert_ack' | 'alert_resolve';
  alertId: string;
  /** For the alert's audit trail. */
  note?: string;
}

/** A typing indicator, relayed on the org's presence channel. */
export interface TypingRequest {
  type: 'typing';
  room?: string;
  active?: boolean;
}

/** Job-status dialect: any channel, with dialect frames. */
export interface SubscribeChannelRequest {
  type: 'subscribe_channel';
  channel: string;
}

/** Every request of the native protocol. */
export type LookoutRequest =
  | SubscribeRequest
  | UnsubscribeRequest
  | PublishRequest
  | AckRequest
  | PingRequest
  | RefreshRequest
  | JobRequest
  | AlertRequest
  | TypingRequest
  | SubscribeChannelRequest;

// ---- Server → client --------------------------------------------------------------------------

/** The stable error codes of the server. */
export type ServerErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'rate_limited'
  | 'too_large'
  | 'conflict'
  | 'internal';

/** Codes of errors made by the client itself (`http_<status>`: a long-poll or history request). */
export type ClientErrorCode =
  | 'closed'
  | 'offline'
  | 'timeout'
  | 'disconnected'
  | 'already_subscribed'
  | `http_${number}`;

/** A channel message (over WebSocket, or from a long-poll answer). */
export interface MessageFrame<T = unknown> {
  type: 'message';
  channel: string;
  /** Per-channel sequence number. */
  seq: number;
  /** Publish time, ms since the Unix epoch. */
  timestamp: number;
  data: T;
  /** The recipient must acknowledge it (`ack(channel, seq)`). */
  ack_required?: boolean;
}

/** The successful answer to a request; the fields present depend on the request. */
export interface Reply {
  type: 'reply';
  id: number | null;
  ok: true;
  channel?: string;
  /** The seq a publish was given. */
  seq?: number;
  /** The store's epoch. */
  epoch?: string;
  /** The channel's head at subscribe time. */
  head?: number;
  /** With `since`: whether every missed message was replayed. */
  recovered?: boolean;
  /** When not recovered: the data directory changed (`epoch`), or retention trimmed the log. */
  reset?: 'epoch' | 'trimmed';
  /** The oldest seq still in the log. */
  first?: number;
  /** The alert a publish (to `/topic/emergency/…`) or an alert request concerns. */
  alertId?: string;
  /** The alert's state after an alert request. */
  state?: string;
  /** The new expiry after a refresh. */
  exp?: number;
  /** A location fix superseded by a newer one before the server processed it. */
  shed?: boolean;
}

export interface PongFrame {
  type: 'pong';
  id?: number;
}

/** E.g. `idle_timeout`, before an idle close. */
export interface NoticeFrame {
  type: 'notice';
  code?: string;
  message?: string;
}

/** How many subscribe to the user's own `/topic/video/{user}`. */
export interface ViewersFrame {
  type: 'viewers';
  channel: string;
  viewers: number;
}

/** Job-status dialect frames. */
export interface DialectFrame {
  type: 'job_status_update' | 'job_completed' | 'system_notification';
  jobId?: string;
  status?: string;
  progress?: unknown;
  message?: unknown;
  channel: string;
  seq: number;
  timestamp: number;
  data: unknown;
}

/** A frame type this version of the client does not know. */
export interface OtherFrame {
  type: string;
  [field: string]: unknown;
}

// ---- Events -----------------------------------------------------------------------------------

/** `idle` until `connect()`; `polling` is the long-poll fallback; `closed` after `close()`. */
export type ConnectionState = 'idle' | 'connecting' | 'open' | 'polling' | 'offline' | 'closed';

export interface LookoutEvents {
  state: (state: ConnectionState) => void;
  /** Every message delivered to a subscription, after its handler. */
  message: (message: MessageFrame) => void;
  /** The server's data directory changed: the channel's old seqs mean nothing any more. */
  reset: (event: { channel: string; reason: 'epoch' }) => void;
  /** Retention removed messages after `after`; replay starts at `first`. */
  gap: (event: { channel: string; after: number | null; first?: number }) => void;
  notice: (notice: NoticeFrame) => void;
  /** A WebSocket closed; `code` is the close code (4005: the device was revoked). */
  disconnect: (event: { code: number; reason: string }) => void;
  /** Frames the client does not handle itself: `viewers`, the job-status dialect, newer ones. */
  frame: (frame: ViewersFrame | DialectFrame | OtherFrame) => void;
  /** A LookoutError, or what a token function, a handler or a listener threw. */
  error: (error: unknown) => void;
}

// ---- Classes ----------------------------------------------------------------------------------

export declare class LookoutError extends Error {
  constructor(code: string, message?: string);
  readonly code: ServerErrorCode | ClientErrorCode | (string & {});
}

export interface SubscribeOptions {
  /** Resume after this seq. */
  since?: number | null;
  /** The epoch `since` belongs to. */
  epoch?: string | null;
  /** Each time the (re)subscription is in place: the moment to load state. */
  onSubscribed?: ((reply: Reply) => void) | null;
}

export interface Subscription {
  unsubscribe(): void;
  /** The last seq delivered (or the head at subscribe time); `null` before either. */
  readonly lastSeq: number | null;
}

export interface PublishOptions {
  /** Recipients must acknowledge it. */
  ack?: boolean;
  /** Recipient user, for `/user/queue/*`. */
  to?: string;
  /** A job's owner, on its first publish. */
  owner?: string;
}

export declare class LookoutClient {
  constructor(options: LookoutClientOptions);

  /** Where the connection is; each change is a `state` event. */
  readonly state: ConnectionState;
  /** The store's epoch, from the last `connection_established`. */
  readonly epoch: string | null;
  /** The session id of the last connection; `null` before one opened. */
  readonly sessionId: string | null;

  /** Listens to an event; returns the function that stops listening. */
  on<E extends keyof LookoutEvents>(event: E, listener: LookoutEvents[E]): () => void;
  /** Starts connecting, and reconnecting until `close()`. */
  connect(): void;
  /** Stops for good: closes the connection, stops polling, fails what is pending. */
  close(): void;
  /**
   * `handler(data, message)` for each message on `channel`, resumed across reconnects from the
   * last seq seen (or from `since`). Throws `already_subscribed` for a channel subscribed twice.
   */
  subscribe<T = unknown>(
    channel: string,
    handler: (data: T, message: MessageFrame<T>) => void,
    options?: SubscribeOptions,
  ): Subscription;
  unsubscribe(channel: string): void;
  /** Resolves with the reply (`seq`, `epoch`; `alertId` for an emergency). Offline, waits in the outbox. */
  publish(channel: string, data: unknown, options?: PublishOptions): Promise<Reply>;
  /** Acknowledges everything up to `seq` on `channel`. */
  ack(channel: string, seq: number): Promise<Reply>;
  /** Any request; offline, it waits in the outbox (bounded by `outboxLimit`). */
  send(msg: PingRequest): Promise<PongFrame>;
  send(msg: LookoutRequest): Promise<Reply>;
  /** Any request, now: fails with `offline` unless the WebSocket is open (nothing is queued). */
  request(msg: PingRequest): Promise<PongFrame>;
  request(msg: LookoutRequest): Promise<Reply>;

  private options;
  private pollUrl;
  private historyUrl;
  private WebSocketImpl;
  private fetchImpl;
  private subs;
  private pending;
  private outbox;
  private listeners;
  private nextId;
  private attempt;
  private failures;
  private socket;
  private timers;
  private polling;
  private closed;
  private codecInUse;
  private watchdog;
  private lastFrameAt;
  private emit;
  private openSocket;
  private socketEnded;
  private onFrame;
  private sendSubscribe;
  private deliver;
  private failPending;
  private startWatchdog;
  private stopWatchdog;
  private startPolling;
  private stopPolling;
  private restartPoll;
  private pollLoop;
  private head;
  private httpReachable;
  private token;
  private codec;
  private later;
  private setState;
}
