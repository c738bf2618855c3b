//! One WebSocket session: a reader task that turns frames into hub requests, and a writer task
//! that owns the socket's write half and the connection's clocks (pings, dead peer, idle, token
//! expiry).
//!
//! The reader never writes to the socket and the hub never waits on it: everything reaches the
//! writer through the connection's single bounded queue, and close requests through
//! [`ConnHandle::close`]. fastwebsockets' `read_frame` is not cancel-safe, so the reader is only
//! ever interrupted when the connection ends anyway.

use std::collections::HashMap;
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

/// Runs a session to its end: both tasks finished, subscriptions dropped, slot released.
pub async fn run<S>(
    ctx: SessionContext,
    conn: Arc<ConnHandle>,
    rx: mpsc::Receiver<Outbound>,
    admission: Admission,
    ws: WebSocket<S>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = ctx.hub.limits().clone();
    let (mut read, write) = ws.split(tokio::io::split);
    read.set_auto_close(false);
    read.set_auto_pong(false);
    // fastwebsockets refuses frames of `>= max`; our limit is inclusive.
    read.set_max_message_size(frame_limit(conn.encoding, &limits) + 1);

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

    let reader_done = CancellationToken::new();
    let stop_reader = CancellationToken::new();
    let writer = tokio::spawn(write_loop(
        write,
        rx,
        conn.clone(),
        ConnLimits::from(&limits),
        ctx.shutdown.clone(),
        reader_done.clone(),
        stop_reader.clone(),
    ));

    let mut reader = Reader {
        ctx: &ctx,
        conn: &conn,
        subscriptions: HashMap::new(),
        fragments: None,
    };
    reader.run(&mut read, &stop_reader).await;
    reader_done.cancel();
    for (_, channel) in reader.subscriptions.drain() {
        ctx.hub.unsubscribe(&conn, &channel);
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
fn frame_limit(encoding: Encoding, limits: &crate::config::Limits) -> usize {
    match encoding {
        Encoding::Json => limits.max_message_size,
        // Video frames travel as MessagePack: room for the frame plus its envelope.
        Encoding::MsgPack => limits.max_message_size + limits.max_video_frame,
    }
}

enum End {
    Close(u16, String),
    Broken,
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut ws: WebSocketWrite<W>,
    mut rx: mpsc::Receiver<Outbound>,
    conn: Arc<ConnHandle>,
    limits: ConnLimits,
    shutdown: CancellationToken,
    reader_done: CancellationToken,
    stop_reader: CancellationToken,
) {
    let mut next_ping = Instant::now() + limits.ping_interval;
    let mut idle_noticed = false;
    let end = loop {
        if let Some((code, reason)) = conn.close_requested() {
            break End::Close(*code, reason.clone());
        }
        let deadline = next_deadline(&conn, &limits, next_ping, idle_noticed);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break End::Close(close::GOING_AWAY, "server shutting down".into()),
            _ = conn.wake.notified() => continue,
            _ = sleep_until(deadline) => {
                match check_clocks(&conn, &limits, &mut idle_noticed) {
                    Clock::Close(code, reason) => break End::Close(code, reason.into()),
                    Clock::Notice(bytes) => {
                        if write_timed(&mut ws, data_opcode(conn.encoding), &bytes, limits.write_timeout).await.is_err() {
                            break End::Broken;
                        }
                    }
                    Clock::Nothing => {}
                }
                if Instant::now() >= next_ping {
                    next_ping = Instant::now() + limits.ping_interval;
                    if write_timed(&mut ws, OpCode::Ping, b"", limits.write_timeout).await.is_err() {
                        break End::Broken;
                    }
                }
            }
            item = rx.recv() => {
                let Some(item) = item else { break End::Broken };
                if write_item(&mut ws, &conn, item, limits.write_timeout).await.is_err() {
                    break End::Broken;
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
        let sent = timeout(CLOSE_HANDSHAKE, async {
            ws.write_frame(Frame::close(code, reason.as_bytes()))
                .await?;
            ws.flush().await
        })
        .await;
        if matches!(sent, Ok(Ok(()))) {
            // Let the peer answer; dropping the socket with its reply unread would reset the
            // connection and could destroy our close frame in the peer's receive buffer.
            let _ = timeout(CLOSE_HANDSHAKE, reader_done.cancelled()).await;
        }
    }
    stop_reader.cancel();
}

/// The opcode of data frames in an encoding.
fn data_opcode(encoding: Encoding) -> OpCode {
    match encoding {
        Encoding::Json => OpCode::Text,
        Encoding::MsgPack => OpCode::Binary,
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

async fn write_timed<W: AsyncWrite + Unpin>(
    ws: &mut WebSocketWrite<W>,
    opcode: OpCode,
    payload: &[u8],
    limit: Duration,
) -> Result<(), ()> {
    let frame = Frame::new(true, opcode, None, Payload::Borrowed(payload));
    match timeout(limit, ws.write_frame(frame)).await {
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

async fn write_item<W: AsyncWrite + Unpin>(
    ws: &mut WebSocketWrite<W>,
    conn: &ConnHandle,
    item: Outbound,
    limit: Duration,
) -> Result<(), ()> {
    let data_op = data_opcode(conn.encoding);
    match item {
        Outbound::Frame(bytes) => write_timed(ws, data_op, &bytes, limit).await,
        Outbound::Pong(bytes) => write_timed(ws, OpCode::Pong, &bytes, limit).await,
        Outbound::Deliver(delivery, view) => match delivery.frames(conn.encoding, view) {
            Ok(frames) => {
                for bytes in frames {
                    write_timed(ws, data_op, bytes, limit).await?;
                }
                Ok(())
            }
            Err(e) => {
                // Not the client's fault and not fatal: this message cannot be rendered in
                // this encoding (e.g. MessagePack map keys that JSON cannot express).
                tracing::warn!(channel = %delivery.channel, seq = delivery.message.seq, error = e, "message not deliverable in this encoding");
                Ok(())
            }
        },
    }
}

enum Clock {
    Close(u16, &'static str),
    Notice(Bytes),
    Nothing,
}

fn check_clocks(conn: &ConnHandle, limits: &ConnLimits, idle_noticed: &mut bool) -> Clock {
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
    /// Public channel name → hub entry.
    subscriptions: HashMap<String, Arc<crate::hub::Channel>>,
    /// A fragmented message being reassembled: its opcode and bytes so far.
    fragments: Option<(OpCode, Vec<u8>)>,
}

enum Flow {
    Continue,
    Stop,
}

impl Reader<'_> {
    async fn run<R: AsyncRead + Unpin>(
        &mut self,
        ws: &mut WebSocketRead<R>,
        stop: &CancellationToken,
    ) {
        let mut no_obligations = |_: Frame<'_>| async { Ok::<(), std::convert::Infallible>(()) };
        loop {
            let frame = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                frame = ws.read_frame(&mut no_obligations) => frame,
            };
            self.conn.touch();
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    self.read_error(e);
                    return;
                }
            };
            let flow = match frame.opcode {
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
                    self.conn.close(echo, "");
                    Flow::Stop
                }
                OpCode::Ping => {
                    let _ = self
                        .conn
                        .try_send(Outbound::Pong(Bytes::copy_from_slice(&frame.payload)));
                    Flow::Continue
                }
                OpCode::Pong => Flow::Continue,
                OpCode::Text | OpCode::Binary => {
                    if self.fragments.is_some() {
                        self.conn.close(
                            close::PROTOCOL_ERROR,
                            "new message before the last one finished",
                        );
                        Flow::Stop
                    } else if frame.fin {
                        self.message(frame.opcode, &frame.payload).await
                    } else {
                        self.fragments = Some((frame.opcode, frame.payload.to_vec()));
                        Flow::Continue
                    }
                }
                OpCode::Continuation => self.continuation(frame.fin, &frame.payload).await,
            };
            if let Flow::Stop = flow {
                return;
            }
        }
    }

    fn read_error(&self, e: WebSocketError) {
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
        self.conn.close(code, reason);
    }

    /// Reassembles fragments, enforcing the message limit across all of them (fastwebsockets
    /// only limits each frame).
    async fn continuation(&mut self, fin: bool, payload: &[u8]) -> Flow {
        let limit = frame_limit(self.conn.encoding, self.ctx.hub.limits());
        let Some((opcode, buf)) = self.fragments.as_mut() else {
            self.conn
                .close(close::PROTOCOL_ERROR, "continuation without a message");
            return Flow::Stop;
        };
        if buf.len() + payload.len() > limit {
            self.conn.close(close::TOO_BIG, "message too large");
            return Flow::Stop;
        }
        buf.extend_from_slice(payload);
        if !fin {
            return Flow::Continue;
        }
        let opcode = *opcode;
        let Some((_, buf)) = self.fragments.take() else {
            return Flow::Continue;
        };
        if opcode == OpCode::Text && std::str::from_utf8(&buf).is_err() {
            self.conn
                .close(close::INVALID_PAYLOAD, "text message is not valid UTF-8");
            return Flow::Stop;
        }
        self.message(opcode, &buf).await
    }

    async fn message(&mut self, opcode: OpCode, bytes: &[u8]) -> Flow {
        let encoding = self.conn.encoding;
        self.ctx.hub.stats.received.fetch_add(1, Ordering::Relaxed);
        let expected = data_opcode(encoding);
        if opcode != expected {
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
