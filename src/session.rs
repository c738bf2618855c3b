//! One session: a reader task that turns client messages into hub requests, and a writer task
//! that owns the transport's write half and the connection's clocks (pings, dead peer, idle,
//! token expiry, STOMP heart-beats).
//!
//! Two layers meet here. The transport ([`Source`]/[`Sink`]) moves whole messages: a plain
//! WebSocket, or SockJS framing over a WebSocket or over HTTP requests. The wire protocol
//! ([`Wire`]) gives them meaning: the native protocol, or STOMP ([`crate::stomp::session`]).
//!
//! The reader never writes to the transport and the hub never waits on it: everything reaches
//! the writer through the connection's single bounded queue, and close requests through
//! [`ConnHandle::close`] (at once) or [`Outbound::Close`] (after what is queued).
//! fastwebsockets' `read_frame` is not cancel-safe, so the reader is only ever interrupted when
//! the connection ends anyway.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{
    Frame, OpCode, Payload, WebSocket, WebSocketError, WebSocketRead, WebSocketWrite,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;

use crate::auth::{now_secs, Authenticator};
use crate::hub::{Admission, ConnHandle, Hub, HubError, Outbound, Publish, Target, View};
use crate::protocol::{
    close, now_millis, ClientMsg, Encoding, ErrorCode, ErrorFrame, Established, IdOnly, Reply,
    ReplyFields, RequestId, Simple,
};
use crate::stomp::frame::Parser;
use crate::stomp::session::{Rendered, Shared, StompSession};

/// How long the writer waits for the peer's answer to its close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(1);
/// Close reasons are limited to 123 bytes by RFC 6455.
const MAX_CLOSE_REASON: usize = 123;

/// What a session needs from the server.
#[derive(Clone)]
pub struct SessionContext {
    /// The hub.
    pub hub: Arc<Hub>,
    /// Field operations: every publish goes through it.
    pub field: Arc<crate::field::Field>,
    /// Token verification, for `refresh`.
    pub auth: Arc<Authenticator>,
    /// Fires once on server shutdown.
    pub shutdown: CancellationToken,
}

/// The application protocol a connection speaks.
pub enum Speaks {
    /// The native protocol, in the connection's encoding.
    Native,
    /// STOMP; with the `CONNECT` frame and parser state when the frame was read before
    /// admission (its token authenticated the connection).
    Stomp(Parser, Option<crate::stomp::frame::Frame>),
}

/// The protocol state the writer needs.
#[derive(Clone)]
enum Wire {
    Native,
    Stomp(Arc<Shared>),
}

/// A transport's read half: whole client messages, text or binary.
pub trait Source: Send {
    /// The next message (`true` = text), or `None` when the peer is gone or the transport
    /// asked for a close (through the connection handle).
    fn next(&mut self, conn: &ConnHandle) -> impl Future<Output = Option<(bool, Vec<u8>)>> + Send;
}

/// A transport's write half.
pub trait Sink: Send {
    /// One server message (`text` = a text frame where the transport distinguishes).
    fn send(
        &mut self,
        text: bool,
        bytes: &[u8],
    ) -> impl Future<Output = std::io::Result<()>> + Send;
    /// The transport's keep-alive (WebSocket ping, SockJS `h`).
    fn keepalive(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;
    /// Answers the peer's WebSocket ping.
    fn pong(&mut self, payload: &[u8]) -> impl Future<Output = std::io::Result<()>> + Send;
    /// The transport's close, with a code and reason.
    fn close(
        &mut self,
        code: u16,
        reason: &str,
    ) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// How messages are framed on a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One message per WebSocket message.
    Plain,
    /// SockJS: `o`, `a[…]`, `h`, `c[…]` from the server; JSON arrays of strings from the client.
    SockJs,
}

/// Runs a session on a WebSocket to its end: both tasks finished, subscriptions dropped, slot
/// released.
pub async fn run<S>(
    ctx: SessionContext,
    conn: Arc<ConnHandle>,
    rx: mpsc::Receiver<Outbound>,
    admission: Admission,
    speaks: Speaks,
    framing: Framing,
    ws: WebSocket<S>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = ctx.hub.limits().clone();
    let (mut read, write) = ws.split(tokio::io::split);
    read.set_auto_close(false);
    read.set_auto_pong(false);
    // fastwebsockets refuses frames of `>= max`; our limit is inclusive. SockJS wraps each
    // message in a JSON string: allow for its escapes.
    let mut max = frame_limit(conn.encoding, &limits);
    if let Speaks::Stomp(..) = speaks {
        // Room above the STOMP frame limit, so a frame somewhat too large gets a STOMP ERROR
        // that says so rather than a bare 1009.
        max = max.saturating_mul(2);
    }
    if framing == Framing::SockJs {
        max = max.saturating_mul(2).saturating_add(16);
    }
    read.set_max_message_size(max + 1);
    let mut sink = WsSink { ws: write, framing };
    if framing == Framing::SockJs && sink.open().await.is_err() {
        return;
    }
    let source = WsSource {
        ws: read,
        framing,
        fragments: None,
        max,
        queued: VecDeque::new(),
    };
    drive(ctx, conn, rx, admission, speaks, source, sink).await;
}

/// Runs a session on any transport.
pub async fn drive<Src, Snk>(
    ctx: SessionContext,
    conn: Arc<ConnHandle>,
    rx: mpsc::Receiver<Outbound>,
    admission: Admission,
    speaks: Speaks,
    mut source: Src,
    sink: Snk,
) where
    Src: Source,
    Snk: Sink + 'static,
{
    let limits = ctx.hub.limits().clone();
    let (wire, stomp) = match speaks {
        Speaks::Native => {
            let established = Established {
                kind: "connection_established",
                user_id: &conn.identity.user,
                session_id: &conn.session_id,
                epoch: ctx.hub.epoch(),
                timestamp: now_millis(),
            };
            match conn.encoding.encode(&established) {
                Ok(bytes) => {
                    let _ = conn.try_send(Outbound::Frame(bytes));
                }
                Err(e) => {
                    conn.close(close::INTERNAL, e.to_string());
                }
            }
            (Wire::Native, None)
        }
        Speaks::Stomp(parser, connect) => {
            let shared = Shared::new(ctx.hub.epoch(), limits.outbound_queue);
            let session =
                StompSession::new(ctx.clone(), conn.clone(), shared.clone(), parser, connect);
            (Wire::Stomp(shared), Some(session))
        }
    };

    let reader_done = CancellationToken::new();
    let stop_reader = CancellationToken::new();
    let writer = Writer {
        conn: conn.clone(),
        hub: ctx.hub.clone(),
        wire,
        limits: ConnLimits::from(&*limits),
        shutdown: ctx.shutdown.clone(),
        reader_done: reader_done.clone(),
        stop_reader: stop_reader.clone(),
    };
    let writer = tokio::spawn(writer.run(sink, rx));

    let mut reader = Reader {
        ctx: &ctx,
        conn: &conn,
        subscriptions: HashMap::new(),
        stomp,
    };
    reader.run(&mut source, &stop_reader).await;
    reader_done.cancel();
    for (_, channel) in reader.subscriptions.drain() {
        ctx.hub.unsubscribe(&conn, &channel);
    }
    if let Some(stomp) = reader.stomp.as_mut() {
        stomp.finish();
    }
    if conn.close_requested().is_none() {
        conn.close(close::NORMAL, "");
    }
    if let Err(e) = writer.await {
        tracing::error!(error = %e, "writer task failed");
    }
    drop(admission);
    tracing::debug!("session ended");
}

/// Largest single message accepted on a connection of this encoding.
pub fn frame_limit(encoding: Encoding, limits: &crate::config::Limits) -> usize {
    match encoding {
        Encoding::Json => limits.max_message_size,
        // Video frames travel as MessagePack: room for the frame plus its envelope.
        Encoding::MsgPack => limits.max_message_size + limits.max_video_frame,
    }
}

/// A WebSocket's write half.
struct WsSink<W> {
    ws: WebSocketWrite<W>,
    framing: Framing,
}

impl<W: AsyncWrite + Unpin + Send> WsSink<W> {
    async fn open(&mut self) -> std::io::Result<()> {
        self.frame(OpCode::Text, b"o").await
    }

    async fn frame(&mut self, opcode: OpCode, payload: &[u8]) -> std::io::Result<()> {
        let frame = Frame::new(true, opcode, None, Payload::Borrowed(payload));
        self.ws
            .write_frame(frame)
            .await
            .map_err(std::io::Error::other)
    }
}

impl<W: AsyncWrite + Unpin + Send> Sink for WsSink<W> {
    async fn send(&mut self, text: bool, bytes: &[u8]) -> std::io::Result<()> {
        match self.framing {
            Framing::Plain => {
                let opcode = if text { OpCode::Text } else { OpCode::Binary };
                self.frame(opcode, bytes).await
            }
            Framing::SockJs => {
                let framed = crate::transport::sockjs::message_frame(bytes)?;
                self.frame(OpCode::Text, &framed).await
            }
        }
    }

    async fn keepalive(&mut self) -> std::io::Result<()> {
        if self.framing == Framing::SockJs {
            self.frame(OpCode::Text, b"h").await?;
        }
        self.frame(OpCode::Ping, b"").await
    }

    async fn pong(&mut self, payload: &[u8]) -> std::io::Result<()> {
        self.frame(OpCode::Pong, payload).await
    }

    async fn close(&mut self, code: u16, reason: &str) -> std::io::Result<()> {
        if self.framing == Framing::SockJs {
            let framed = crate::transport::sockjs::close_frame(code, reason);
            self.frame(OpCode::Text, framed.as_bytes()).await?;
        }
        self.ws
            .write_frame(Frame::close(code, reason.as_bytes()))
            .await
            .map_err(std::io::Error::other)?;
        self.ws.flush().await.map_err(std::io::Error::other)
    }
}

/// A WebSocket's read half: control frames, fragments and SockJS framing handled here.
struct WsSource<R> {
    ws: WebSocketRead<R>,
    framing: Framing,
    /// A fragmented message being reassembled: its opcode and bytes so far.
    fragments: Option<(OpCode, Vec<u8>)>,
    max: usize,
    /// SockJS: messages of an array not yet handed out.
    queued: VecDeque<Vec<u8>>,
}

impl<R: AsyncRead + Unpin + Send> Source for WsSource<R> {
    async fn next(&mut self, conn: &ConnHandle) -> Option<(bool, Vec<u8>)> {
        let mut no_obligations = |_: Frame<'_>| async { Ok::<(), std::convert::Infallible>(()) };
        loop {
            if let Some(message) = self.queued.pop_front() {
                return Some((true, message));
            }
            let frame = self.ws.read_frame(&mut no_obligations).await;
            conn.touch();
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    read_error(conn, e);
                    return None;
                }
            };
            let (opcode, message) = match frame.opcode {
                OpCode::Close => {
                    let code = match frame.payload.len() {
                        0 => close::NORMAL,
                        1 => close::PROTOCOL_ERROR,
                        _ => u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
                    };
                    let echo = if (1000..5000).contains(&code) {
                        code
                    } else {
                        close::PROTOCOL_ERROR
                    };
                    conn.close(echo, "");
                    return None;
                }
                OpCode::Ping => {
                    let _ = conn.try_send(Outbound::Pong(Bytes::copy_from_slice(&frame.payload)));
                    continue;
                }
                OpCode::Pong => continue,
                OpCode::Text | OpCode::Binary => {
                    if self.fragments.is_some() {
                        conn.close(
                            close::PROTOCOL_ERROR,
                            "new message before the last one finished",
                        );
                        return None;
                    }
                    if !frame.fin {
                        self.fragments = Some((frame.opcode, frame.payload.to_vec()));
                        continue;
                    }
                    (frame.opcode, frame.payload.to_vec())
                }
                OpCode::Continuation => {
                    // Reassembly enforces the message limit across all fragments
                    // (fastwebsockets only limits each frame).
                    let Some((_, buf)) = self.fragments.as_mut() else {
                        conn.close(close::PROTOCOL_ERROR, "continuation without a message");
                        return None;
                    };
                    if buf.len() + frame.payload.len() > self.max {
                        conn.close(close::TOO_BIG, "message too large");
                        return None;
                    }
                    buf.extend_from_slice(&frame.payload);
                    if !frame.fin {
                        continue;
                    }
                    let Some((opcode, buf)) = self.fragments.take() else {
                        continue;
                    };
                    if opcode == OpCode::Text && std::str::from_utf8(&buf).is_err() {
                        conn.close(close::INVALID_PAYLOAD, "text message is not valid UTF-8");
                        return None;
                    }
                    (opcode, buf)
                }
            };
            match self.framing {
                Framing::Plain => return Some((opcode == OpCode::Text, message)),
                Framing::SockJs => match crate::transport::sockjs::client_messages(&message) {
                    Ok(messages) => self.queued.extend(messages),
                    Err(e) => {
                        conn.close(close::PROTOCOL_ERROR, e);
                        return None;
                    }
                },
            }
        }
    }
}

fn read_error(conn: &ConnHandle, e: WebSocketError) {
    let (code, reason) = match e {
        WebSocketError::FrameTooLarge => (close::TOO_BIG, "message too large".to_string()),
        WebSocketError::InvalidUTF8 => (
            close::INVALID_PAYLOAD,
            "text frame is not valid UTF-8".to_string(),
        ),
        WebSocketError::UnexpectedEOF
        | WebSocketError::IoError(_)
        | WebSocketError::ConnectionClosed => {
            tracing::debug!(error = %e, "peer went away");
            return;
        }
        other => (close::PROTOCOL_ERROR, other.to_string()),
    };
    conn.close(code, reason);
}

enum End {
    Close(u16, String),
    Broken,
}

/// The writer task: the only one that writes to the transport.
struct Writer {
    conn: Arc<ConnHandle>,
    hub: Arc<Hub>,
    wire: Wire,
    limits: ConnLimits,
    shutdown: CancellationToken,
    reader_done: CancellationToken,
    stop_reader: CancellationToken,
}

impl Writer {
    async fn run<S: Sink>(self, mut sink: S, mut rx: mpsc::Receiver<Outbound>) {
        let conn = &self.conn;
        let limits = &self.limits;
        let mut next_ping = Instant::now() + limits.ping_interval;
        let mut last_write = Instant::now();
        let mut idle_noticed = false;
        let end = loop {
            if let Some((code, reason)) = conn.close_requested() {
                break End::Close(*code, reason.clone());
            }
            let heartbeat = self.heartbeat().map(|every| last_write + every);
            let mut deadline = next_deadline(conn, limits, next_ping, idle_noticed);
            if let Some(at) = heartbeat {
                deadline = deadline.min(at);
            }
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break End::Close(close::GOING_AWAY, "server shutting down".into()),
                _ = conn.wake.notified() => continue,
                _ = sleep_until(deadline) => {
                    let notice = matches!(self.wire, Wire::Native);
                    match check_clocks(conn, limits, &mut idle_noticed, notice) {
                        Clock::Close(code, reason) => break End::Close(code, reason.into()),
                        Clock::Notice(bytes) => {
                            if self.timed(sink.send(conn.encoding == Encoding::Json, &bytes)).await.is_err() {
                                break End::Broken;
                            }
                        }
                        Clock::Nothing => {}
                    }
                    if Instant::now() >= next_ping {
                        next_ping = Instant::now() + limits.ping_interval;
                        if self.timed(sink.keepalive()).await.is_err() {
                            break End::Broken;
                        }
                    }
                    if heartbeat.is_some_and(|at| Instant::now() >= at) {
                        // STOMP heart-beat: an end-of-line when nothing else went out.
                        if self.timed(sink.send(true, b"\n")).await.is_err() {
                            break End::Broken;
                        }
                        last_write = Instant::now();
                    }
                }
                item = rx.recv() => {
                    let Some(item) = item else { break End::Broken };
                    match self.write_item(&mut sink, item).await {
                        Ok(None) => last_write = Instant::now(),
                        Ok(Some(end)) => break end,
                        Err(()) => break End::Broken,
                    }
                }
            }
        };
        // Nothing more will be sent; release queued deliveries now rather than at drop.
        rx.close();
        if let End::Close(code, reason) = end {
            let mut reason = reason;
            if reason.len() > MAX_CLOSE_REASON {
                let mut cut = MAX_CLOSE_REASON;
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                reason.truncate(cut);
            }
            tracing::debug!(code, %reason, "closing");
            let sent = timeout(CLOSE_HANDSHAKE, sink.close(code, &reason)).await;
            if matches!(sent, Ok(Ok(()))) {
                // Let the peer answer; dropping the socket with its reply unread would reset
                // the connection and could destroy our close frame in the peer's receive buffer.
                let _ = timeout(CLOSE_HANDSHAKE, self.reader_done.cancelled()).await;
            }
        }
        self.stop_reader.cancel();
    }

    fn heartbeat(&self) -> Option<Duration> {
        match &self.wire {
            Wire::Native => None,
            Wire::Stomp(shared) => shared.heartbeat_out(),
        }
    }

    async fn timed(&self, write: impl Future<Output = std::io::Result<()>>) -> Result<(), ()> {
        match timeout(self.limits.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "write failed");
                Err(())
            }
            Err(_) => {
                tracing::info!("peer did not take a frame within write_timeout; dropping it");
                Err(())
            }
        }
    }

    /// Writes one queued item; `Ok(Some)` ends the connection after it.
    async fn write_item<S: Sink>(&self, sink: &mut S, item: Outbound) -> Result<Option<End>, ()> {
        let conn = &self.conn;
        let native_text = conn.encoding == Encoding::Json;
        match item {
            Outbound::Frame(bytes) => {
                let text = match self.wire {
                    Wire::Native => native_text,
                    Wire::Stomp(_) => std::str::from_utf8(&bytes).is_ok(),
                };
                self.timed(sink.send(text, &bytes)).await?;
            }
            Outbound::Pong(bytes) => self.timed(sink.pong(&bytes)).await?,
            Outbound::Close(code, reason) => return Ok(Some(End::Close(code, reason))),
            Outbound::Deliver(delivery, view) => match &self.wire {
                Wire::Native => match delivery.frames(conn.encoding, view) {
                    Ok(frames) => {
                        for bytes in frames {
                            self.timed(sink.send(native_text, bytes)).await?;
                        }
                    }
                    Err(e) => {
                        // Not the client's fault and not fatal: this message cannot be rendered
                        // in this encoding (e.g. MessagePack map keys that JSON cannot express).
                        tracing::warn!(channel = %delivery.channel, seq = delivery.message.seq, error = e, "message not deliverable in this encoding");
                    }
                },
                Wire::Stomp(shared) => {
                    let (rendered, durable_ack) = shared.render(&delivery);
                    match rendered {
                        Rendered::Frame(bytes) => {
                            let text = std::str::from_utf8(&bytes).is_ok();
                            self.timed(sink.send(text, &bytes)).await?;
                        }
                        Rendered::Skip => {}
                        Rendered::Overflow(error) => {
                            self.timed(sink.send(true, &error)).await?;
                            return Ok(Some(End::Close(
                                close::POLICY,
                                "too many unacknowledged messages".into(),
                            )));
                        }
                    }
                    if durable_ack {
                        // Auto mode: written counts as consumed. Off the write path, since
                        // the store write must not hold up this connection's queue.
                        let hub = self.hub.clone();
                        let conn = conn.clone();
                        tokio::spawn(async move {
                            let seq = delivery.message.seq;
                            if let Err(e) = hub
                                .acknowledge(&conn.identity, &delivery.channel, seq)
                                .await
                            {
                                tracing::warn!(channel = %delivery.channel, seq, error = %e, "auto acknowledgement failed");
                            }
                        });
                    }
                }
            },
        }
        Ok(None)
    }
}

/// The clocks and timeouts the writer needs, copied out of the config once per connection.
struct ConnLimits {
    ping_interval: Duration,
    dead_peer_timeout: Duration,
    idle_timeout: Duration,
    idle_notice: Duration,
    write_timeout: Duration,
}

impl From<&crate::config::Limits> for ConnLimits {
    fn from(l: &crate::config::Limits) -> Self {
        ConnLimits {
            ping_interval: l.ping_interval,
            dead_peer_timeout: l.dead_peer_timeout,
            idle_timeout: l.idle_timeout,
            idle_notice: l.idle_notice,
            write_timeout: l.write_timeout,
        }
    }
}

enum Clock {
    Close(u16, &'static str),
    Notice(Bytes),
    Nothing,
}

fn check_clocks(
    conn: &ConnHandle,
    limits: &ConnLimits,
    idle_noticed: &mut bool,
    notice: bool,
) -> Clock {
    let now = now_millis();
    let silent = now.saturating_sub(conn.last_seen.load(Ordering::Relaxed));
    if silent >= limits.dead_peer_timeout.as_millis() as u64 {
        return Clock::Close(
            close::DEAD_PEER,
            "no frame or pong within dead_peer_timeout",
        );
    }
    if now_secs() >= conn.exp.load(Ordering::Relaxed) {
        return Clock::Close(close::TOKEN_EXPIRED, "token expired");
    }
    if conn.subscriptions.load(Ordering::Relaxed) > 0 {
        *idle_noticed = false;
        return Clock::Nothing;
    }
    let idle = now.saturating_sub(conn.idle_since.load(Ordering::Relaxed));
    let idle_ms = limits.idle_timeout.as_millis() as u64;
    if idle >= idle_ms {
        return Clock::Close(close::IDLE, "no subscription within idle_timeout");
    }
    let notice_at = idle_ms - limits.idle_notice.as_millis() as u64;
    if idle >= notice_at && !*idle_noticed {
        *idle_noticed = true;
        if !notice {
            // STOMP has no notice frame; the close reason says it.
            return Clock::Nothing;
        }
        let message = format!(
            "no subscription: closing in {} s unless you subscribe",
            (idle_ms - idle) / 1000
        );
        let notice = Simple {
            kind: "notice",
            id: None,
            code: Some("idle_timeout"),
            message: Some(&message),
        };
        if let Ok(bytes) = conn.encoding.encode(&notice) {
            return Clock::Notice(bytes);
        }
    }
    Clock::Nothing
}

fn next_deadline(
    conn: &ConnHandle,
    limits: &ConnLimits,
    next_ping: Instant,
    idle_noticed: bool,
) -> Instant {
    let now_ms = now_millis();
    let now = Instant::now();
    let at = |epoch_ms: u64| now + Duration::from_millis(epoch_ms.saturating_sub(now_ms));
    let mut deadline = next_ping;
    let dead = conn.last_seen.load(Ordering::Relaxed) + limits.dead_peer_timeout.as_millis() as u64;
    deadline = deadline.min(at(dead));
    deadline = deadline.min(at(conn.exp.load(Ordering::Relaxed).saturating_mul(1000)));
    if conn.subscriptions.load(Ordering::Relaxed) == 0 {
        let since = conn.idle_since.load(Ordering::Relaxed);
        let close_at = since + limits.idle_timeout.as_millis() as u64;
        let notice_at = close_at - limits.idle_notice.as_millis() as u64;
        deadline = deadline.min(at(if idle_noticed { close_at } else { notice_at }));
    }
    deadline
}

struct Reader<'a> {
    ctx: &'a SessionContext,
    conn: &'a Arc<ConnHandle>,
    /// Native protocol: public channel name → hub entry.
    subscriptions: HashMap<String, Arc<crate::hub::Channel>>,
    /// STOMP: the session, which keeps its own subscriptions.
    stomp: Option<StompSession>,
}

/// Whether a reader goes on after a message.
pub enum Flow {
    /// Read the next message.
    Continue,
    /// The connection is over.
    Stop,
}

impl Reader<'_> {
    async fn run<S: Source>(&mut self, source: &mut S, stop: &CancellationToken) {
        if let Some(stomp) = self.stomp.as_mut() {
            // A CONNECT read before admission.
            if let Flow::Stop = stomp.drain().await {
                return;
            }
        }
        loop {
            let message = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                message = source.next(self.conn) => message,
            };
            let Some((text, bytes)) = message else {
                return;
            };
            let flow = match self.stomp.as_mut() {
                Some(stomp) => stomp.receive(&bytes).await,
                None => self.message(text, &bytes).await,
            };
            if let Flow::Stop = flow {
                return;
            }
        }
    }

    async fn message(&mut self, text: bool, bytes: &[u8]) -> Flow {
        let encoding = self.conn.encoding;
        self.ctx.hub.stats.received.fetch_add(1, Ordering::Relaxed);
        if text != (encoding == Encoding::Json) {
            let msg = match encoding {
                Encoding::Json => "lookout.json takes text frames",
                Encoding::MsgPack => "lookout.msgpack takes binary frames",
            };
            return self.error(None, ErrorCode::BadRequest, msg).await;
        }
        let msg: ClientMsg = match encoding.decode(bytes) {
            Ok(msg) => msg,
            Err(e) => {
                let id = encoding.decode::<IdOnly>(bytes).unwrap_or_default().id;
                return self
                    .error(id.as_ref(), ErrorCode::BadRequest, &e.to_string())
                    .await;
            }
        };
        let limits = self.ctx.hub.limits();
        let video = matches!(&msg, ClientMsg::Publish { channel, .. } if channel.starts_with("/topic/video/"));
        if bytes.len() > limits.max_message_size && !video {
            self.conn.close(close::TOO_BIG, "message too large");
            return Flow::Stop;
        }
        let exempt = matches!(msg, ClientMsg::Ping { .. } | ClientMsg::Refresh { .. });
        if !exempt && !self.ctx.hub.allow_message(&self.conn.identity.user, video) {
            let id = request_id(&msg);
            return self
                .error(
                    id,
                    ErrorCode::RateLimited,
                    "message rate exceeded; slow down",
                )
                .await;
        }
        self.dispatch(msg).await
    }

    async fn dispatch(&mut self, msg: ClientMsg) -> Flow {
        match msg {
            ClientMsg::Subscribe {
                id,
                channel,
                since,
                epoch,
            } => {
                self.subscribe(id.as_ref(), &channel, View::Native, since, epoch.as_deref())
                    .await
            }
            ClientMsg::SubscribeChannel { id, channel } => {
                self.subscribe(id.as_ref(), &channel, View::JobStatus, None, None)
                    .await
            }
            ClientMsg::SubscribeJob { id, job_id } => {
                let channel = format!("/topic/job/{job_id}");
                self.subscribe(id.as_ref(), &channel, View::JobStatus, None, None)
                    .await
            }
            ClientMsg::Unsubscribe { id, channel } => self.unsubscribe(id.as_ref(), &channel).await,
            ClientMsg::UnsubscribeJob { id, job_id } => {
                self.unsubscribe(id.as_ref(), &format!("/topic/job/{job_id}"))
                    .await
            }
            ClientMsg::Publish {
                id,
                channel,
                data,
                ack,
                to,
                owner,
            } => {
                let request = Publish {
                    channel: &channel,
                    to: to.as_deref(),
                    owner: owner.as_deref(),
                    data,
                    ack_required: ack,
                };
                match self.ctx.field.publish(&self.conn.identity, request).await {
                    Ok(p) => {
                        let fields = ReplyFields {
                            channel: Some(&p.published.channel),
                            seq: Some(p.published.seq),
                            epoch: Some(&p.published.epoch),
                            alert_id: p.alert_id.as_deref(),
                            ..Default::default()
                        };
                        self.reply(id.as_ref(), fields).await
                    }
                    Err(crate::field::FieldError::Hub(e)) => self.hub_error(id.as_ref(), e).await,
                    Err(e) => self.field_error(id.as_ref(), e).await,
                }
            }
            ClientMsg::Ack { id, channel, seq } => {
                match self
                    .ctx
                    .hub
                    .acknowledge(&self.conn.identity, &channel, seq)
                    .await
                {
                    Ok(()) => {
                        let fields = ReplyFields {
                            channel: Some(&channel),
                            seq: Some(seq),
                            ..Default::default()
                        };
                        self.reply(id.as_ref(), fields).await
                    }
                    Err(e) => self.hub_error(id.as_ref(), e).await,
                }
            }
            ClientMsg::Ping { id } => {
                let pong = Simple {
                    kind: "pong",
                    id: id.as_ref(),
                    code: None,
                    message: None,
                };
                self.send_encoded(&pong).await
            }
            ClientMsg::Refresh { id, token } => self.refresh(id.as_ref(), &token).await,
            ClientMsg::AlertAck { id, alert_id, note } => {
                let alerts = self.ctx.field.alerts();
                let result = alerts
                    .acknowledge(&self.conn.identity, &alert_id, note)
                    .await;
                self.alert_reply(id.as_ref(), result).await
            }
            ClientMsg::AlertResolve { id, alert_id, note } => {
                let who = &self.conn.identity;
                let alerts = self.ctx.field.alerts();
                let result = alerts
                    .resolve(Some(who), &alert_id, &who.user, note, Vec::new())
                    .await;
                self.alert_reply(id.as_ref(), result).await
            }
            ClientMsg::Typing { id, room, active } => {
                let mut extra = vec![("active", rmpv::Value::from(active))];
                if let Some(room) = room {
                    extra.push(("room", rmpv::Value::from(room)));
                }
                self.ctx
                    .hub
                    .presence_event(&self.conn.identity, "typing", extra);
                self.reply(id.as_ref(), ReplyFields::default()).await
            }
        }
    }

    async fn subscribe(
        &mut self,
        id: Option<&RequestId>,
        channel: &str,
        view: View,
        since: Option<u64>,
        epoch: Option<&str>,
    ) -> Flow {
        let target = match Target::parse(channel, Some(&self.conn.identity.user)) {
            Ok(t) => t,
            Err(e) => return self.hub_error(id, e.into()).await,
        };
        let public = target.public_name();
        if self.subscriptions.contains_key(&public) {
            return self
                .hub_error(id, HubError::AlreadySubscribed(public))
                .await;
        }
        let max = self.ctx.hub.limits().max_subscriptions_per_connection;
        if self.subscriptions.len() >= max {
            return self
                .hub_error(id, HubError::TooManySubscriptions(max))
                .await;
        }
        let encoding = self.conn.encoding;
        let hub_epoch = self.ctx.hub.epoch().to_string();
        let result = self
            .ctx
            .hub
            .subscribe(self.conn, &target, view, since, epoch, |info| {
                let fields = ReplyFields {
                    channel: Some(&public),
                    epoch: Some(&hub_epoch),
                    head: Some(info.head),
                    recovered: info.recovered,
                    reset: info.reset,
                    first: info.first,
                    ..Default::default()
                };
                encoding.encode(&Reply::new(id, fields)).ok()
            })
            .await;
        match result {
            Ok(sub) => {
                self.subscriptions.insert(public, sub.channel);
                self.conn.subscriptions.fetch_add(1, Ordering::Relaxed);
                self.conn.wake.notify_one();
                Flow::Continue
            }
            Err(e) => self.hub_error(id, e).await,
        }
    }

    async fn unsubscribe(&mut self, id: Option<&RequestId>, channel: &str) -> Flow {
        let public = match Target::parse(channel, Some(&self.conn.identity.user)) {
            Ok(t) => t.public_name(),
            Err(e) => return self.hub_error(id, e.into()).await,
        };
        let Some(entry) = self.subscriptions.remove(&public) else {
            return self.hub_error(id, HubError::NotSubscribed(public)).await;
        };
        self.ctx.hub.unsubscribe(self.conn, &entry);
        if self.conn.subscriptions.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.conn.idle_since.store(now_millis(), Ordering::Relaxed);
            self.conn.wake.notify_one();
        }
        let fields = ReplyFields {
            channel: Some(&public),
            ..Default::default()
        };
        self.reply(id, fields).await
    }

    async fn refresh(&mut self, id: Option<&RequestId>, token: &str) -> Flow {
        match self.ctx.auth.verify(token) {
            Ok(new) if new.user == self.conn.identity.user && new.org == self.conn.identity.org => {
                self.conn.exp.store(new.exp, Ordering::Relaxed);
                self.conn.wake.notify_one();
                let fields = ReplyFields {
                    exp: Some(new.exp),
                    ..Default::default()
                };
                self.reply(id, fields).await
            }
            Ok(_) => {
                self.error(
                    id,
                    ErrorCode::Forbidden,
                    "a refresh token must be for the same user and org",
                )
                .await
            }
            Err(e) => {
                self.error(id, ErrorCode::Unauthorized, &e.to_string())
                    .await
            }
        }
    }

    async fn reply(&self, id: Option<&RequestId>, fields: ReplyFields<'_>) -> Flow {
        self.send_encoded(&Reply::new(id, fields)).await
    }

    async fn hub_error(&self, id: Option<&RequestId>, e: HubError) -> Flow {
        if let HubError::Gone = e {
            return Flow::Stop;
        }
        if let HubError::Store(inner) = &e {
            tracing::error!(error = %inner, "store failure");
            return self.error(id, ErrorCode::Internal, "internal error").await;
        }
        self.error(id, e.code(), &e.to_string()).await
    }

    async fn field_error(&self, id: Option<&RequestId>, e: crate::field::FieldError) -> Flow {
        if e.code() == ErrorCode::Internal {
            tracing::error!(error = %e, "field operation failed");
            return self.error(id, ErrorCode::Internal, "internal error").await;
        }
        self.error(id, e.code(), &e.to_string()).await
    }

    async fn alert_reply(
        &self,
        id: Option<&RequestId>,
        result: Result<crate::alerts::Alert, crate::alerts::AlertError>,
    ) -> Flow {
        match result {
            Ok(alert) => {
                let state = match alert.state {
                    crate::alerts::AlertState::Open => "open",
                    crate::alerts::AlertState::Acknowledged => "acknowledged",
                    crate::alerts::AlertState::Resolved => "resolved",
                };
                let fields = ReplyFields {
                    alert_id: Some(&alert.id),
                    state: Some(state),
                    ..Default::default()
                };
                self.reply(id, fields).await
            }
            Err(e) => self.field_error(id, e.into()).await,
        }
    }

    async fn error(&self, id: Option<&RequestId>, code: ErrorCode, message: &str) -> Flow {
        self.send_encoded(&ErrorFrame::new(id, code, message)).await
    }

    async fn send_encoded<T: serde::Serialize>(&self, frame: &T) -> Flow {
        match self.conn.encoding.encode(frame) {
            Ok(bytes) => {
                if self.conn.send(Outbound::Frame(bytes)).await {
                    Flow::Continue
                } else {
                    Flow::Stop
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a reply");
                Flow::Continue
            }
        }
    }
}

fn request_id(msg: &ClientMsg) -> Option<&RequestId> {
    match msg {
        ClientMsg::Subscribe { id, .. }
        | ClientMsg::Unsubscribe { id, .. }
        | ClientMsg::Publish { id, .. }
        | ClientMsg::Ack { id, .. }
        | ClientMsg::Ping { id }
        | ClientMsg::Refresh { id, .. }
        | ClientMsg::SubscribeJob { id, .. }
        | ClientMsg::UnsubscribeJob { id, .. }
        | ClientMsg::SubscribeChannel { id, .. }
        | ClientMsg::AlertAck { id, .. }
        | ClientMsg::AlertResolve { id, .. }
        | ClientMsg::Typing { id, .. } => id.as_ref(),
    }
}
