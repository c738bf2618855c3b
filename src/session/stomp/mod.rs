//! The STOMP reader: one STOMP session on a connection: `CONNECT` negotiation, subscriptions with their ack modes,
//! `SEND`, `ACK`/`NACK`, transactions and receipts — all on the hub's channels, rights and logs,
//! so a STOMP client and a native client on one channel see the same messages and seqs.
//!
//! [`StompSession`] is the reader half: frames in, hub requests out. [`Shared`] is what the
//! writer half needs to turn a delivery into a `MESSAGE` frame: the subscription table (id, ack
//! mode, messages awaiting `ACK`). Nothing here touches a socket; frames leave through the
//! connection's queue, and an `ERROR` is followed by [`Outbound::Close`] so it is written first.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use tokio_util::sync::CancellationToken;

use super::context::{next_message, Flow, SessionContext, Source};
use super::subscriptions::Subscriptions;
use crate::channel::{is_video, ChannelKind, Target};
use crate::counters::Budget;
use crate::failure::{ErrorCode, Failure, Report};
use crate::hub::{ConnHandle, Delivery, HubError, Outbound, Publish, View};
use crate::protocol::close;
use crate::stomp::frame::{Event, Frame, Parser};
use crate::stomp::{connect_token, error_frame, error_message};

/// Versions spoken, best first.
pub const VERSIONS: [&str; 3] = ["1.2", "1.1", "1.0"];
/// How long a `SEND` over the rate limit waits for budget before the session is ended: STOMP
/// has no non-fatal error, so a fast sender is slowed down rather than refused.
const RATE_WAIT: Duration = Duration::from_secs(2);

/// How a subscription acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Delivered means consumed.
    Auto,
    /// `ACK` is cumulative.
    Client,
    /// `ACK` covers one message.
    ClientIndividual,
}

impl AckMode {
    fn parse(value: Option<&str>) -> Option<AckMode> {
        match value {
            None | Some("auto") => Some(AckMode::Auto),
            Some("client") => Some(AckMode::Client),
            Some("client-individual") => Some(AckMode::ClientIndividual),
            Some(_) => None,
        }
    }
}

struct Subscription {
    id: String,
    ack: AckMode,
    /// Delivered and not yet acknowledged, by seq (client modes only).
    pending: BTreeMap<u64, Arc<Delivery>>,
}

#[derive(Default)]
struct Table {
    /// Public channel name → subscription.
    by_channel: HashMap<Arc<str>, Subscription>,
    /// Subscription id → public channel name.
    channel_of: HashMap<String, Arc<str>>,
    /// Messages awaiting `ACK`, over every subscription.
    unacked: usize,
}

impl Table {
    /// Drops the subscription on `channel` with whatever it awaited.
    fn remove(&mut self, channel: &str) {
        if let Some(sub) = self.by_channel.remove(channel) {
            self.unacked -= sub.pending.len();
        }
    }
}

/// The part of a STOMP session the writer reads: subscriptions and the negotiated heart-beat.
pub struct Shared {
    table: Mutex<Table>,
    heartbeat_out_ms: AtomicU64,
    epoch: String,
    /// `limits.max_unacked_per_connection`.
    max_unacked: usize,
}

/// What the writer does with a delivery.
pub enum Rendered {
    /// Write this `MESSAGE` frame.
    Frame(Bytes),
    /// Nothing to write (unsubscribed meanwhile, or not renderable).
    Skip,
    /// Write this `ERROR` frame and close: too many messages await `ACK`.
    Overflow(Bytes),
}

impl Shared {
    /// A table for a connection on a store with `epoch`, holding at most `max_unacked`
    /// messages awaiting `ACK`.
    pub fn new(epoch: &str, max_unacked: usize) -> Arc<Self> {
        Arc::new(Shared {
            table: Mutex::new(Table::default()),
            heartbeat_out_ms: AtomicU64::new(0),
            epoch: epoch.to_string(),
            max_unacked,
        })
    }

    /// How often the server must send something (a heart-beat if nothing else); 0 = never.
    pub fn heartbeat_out(&self) -> Option<Duration> {
        match self.heartbeat_out_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Renders `delivery` for the subscription on its channel. Returns whether the message must
    /// be acknowledged durably now (auto mode, on a message that records acknowledgements).
    pub fn render(&self, delivery: &Arc<Delivery>) -> (Rendered, bool) {
        let body = match delivery.body() {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(channel = %delivery.channel, seq = delivery.message.seq, error = e, "message has no STOMP body");
                return (Rendered::Skip, false);
            }
        };
        let mut table = self.table.lock();
        let Table {
            by_channel,
            unacked,
            ..
        } = &mut *table;
        let Some(sub) = by_channel.get_mut(&*delivery.channel) else {
            return (Rendered::Skip, false);
        };
        let seq = delivery.message.seq;
        let ack_id = format!("{}@{seq}", sub.id);
        let mut frame = Frame::new("MESSAGE")
            .header("subscription", sub.id.clone())
            .header("message-id", ack_id.clone())
            .header("destination", delivery.channel.to_string())
            .header("content-type", body.content_type)
            .header("seq", seq.to_string())
            .header("epoch", self.epoch.clone())
            .header("timestamp", delivery.message.timestamp.to_string());
        if delivery.message.ack_required {
            frame = frame.header("ack-required", "true");
        }
        let mut durable_ack = false;
        match sub.ack {
            AckMode::Auto => durable_ack = records_acks(delivery),
            AckMode::Client | AckMode::ClientIndividual => {
                let again = sub.pending.contains_key(&seq);
                if *unacked >= self.max_unacked && !again {
                    let error = error_frame(
                        None,
                        "too many unacknowledged messages",
                        &format!(
                            "{} messages await ACK on this connection (limits.max_unacked_per_connection); resubscribe with `since` to resume",
                            self.max_unacked
                        ),
                    );
                    return (Rendered::Overflow(error), false);
                }
                frame = frame.header("ack", ack_id);
                sub.pending.insert(seq, delivery.clone());
                if !again {
                    *unacked += 1;
                }
            }
        }
        let frame = frame
            .header("content-length", body.bytes.len().to_string())
            .body(body.bytes.clone());
        (Rendered::Frame(Bytes::from(frame.to_bytes())), durable_ack)
    }
}

/// Messages whose acknowledgement the store records: a user's own queue (its offline cursor)
/// and `ack_required` messages.
fn records_acks(delivery: &Delivery) -> bool {
    delivery.message.ack_required || delivery.kind == ChannelKind::UserQueue
}

/// A STOMP `ERROR` as the session sees it: what to tell the client before closing.
struct Fatal {
    message: String,
    detail: String,
    code: u16,
}

impl Fatal {
    fn new(message: impl Into<String>, detail: impl Into<String>) -> Self {
        Fatal {
            message: message.into(),
            detail: detail.into(),
            code: close::NORMAL,
        }
    }

    /// Names the destination the error is about.
    fn about(mut self, destination: &str) -> Self {
        self.detail = if self.detail.is_empty() {
            destination.to_string()
        } else {
            format!("{destination}: {}", self.detail)
        };
        self
    }

    /// The `ERROR` for a failure: its code as the `message` header, what a client may read
    /// as the body (a fault of ours is logged and says only "internal error").
    fn of(e: &dyn Failure) -> Self {
        let report = Report::of(e);
        let detail = match report.code {
            ErrorCode::Internal => String::new(),
            _ => report.message,
        };
        Fatal::new(error_message(report.code), detail)
    }
}

/// The reader half of a STOMP session.
pub struct StompSession {
    ctx: SessionContext,
    conn: Arc<ConnHandle>,
    shared: Arc<Shared>,
    parser: Parser,
    /// A `CONNECT` read before admission, handled first.
    connect: Option<Frame>,
    version: Option<&'static str>,
    /// Subscription id → hub entry.
    subscriptions: Subscriptions,
    transactions: HashMap<String, Vec<Frame>>,
    /// What the open transactions hold, against `budget`.
    held: Held,
    budget: TransactionBudget,
    /// An `ERROR` was sent: everything after it is ignored until the socket closes.
    closing: bool,
}

/// Frames and bytes held in a session's open transactions.
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    frames: usize,
    bytes: usize,
}

/// The limits on what open transactions may hold, copied from the config at `CONNECT`.
#[derive(Debug, Clone, Copy)]
struct TransactionBudget {
    transactions: usize,
    frames: usize,
    bytes: usize,
}

impl TransactionBudget {
    fn of(limits: &crate::config::Limits) -> Self {
        TransactionBudget {
            transactions: limits.stomp_transactions,
            frames: limits.stomp_transaction_frames,
            bytes: limits.stomp_transaction_bytes,
        }
    }
}

impl StompSession {
    /// A session before `CONNECT`; `connect` (and what `parser` still holds) arrived before
    /// admission.
    pub fn new(
        ctx: SessionContext,
        conn: Arc<ConnHandle>,
        shared: Arc<Shared>,
        parser: Parser,
        connect: Option<Frame>,
    ) -> Self {
        let ctx_limits = ctx.hub.limits();
        StompSession {
            ctx,
            conn,
            shared,
            parser,
            connect,
            version: None,
            subscriptions: Subscriptions::default(),
            transactions: HashMap::new(),
            held: Held::default(),
            budget: TransactionBudget::of(&ctx_limits),
            closing: false,
        }
    }

    /// Reads until the peer is gone or the writer stops the reader; a `CONNECT` read before
    /// admission is handled first.
    pub async fn run<S: Source>(&mut self, source: &mut S, stop: &CancellationToken) {
        if let Flow::Stop = Box::pin(self.drain()).await {
            return;
        }
        while let Some((_, bytes)) = next_message(source, &self.conn, stop).await {
            // Boxed: handling frames is a large future that would otherwise be part of every
            // idle connection's task.
            if let Flow::Stop = Box::pin(self.receive(&bytes)).await {
                return;
            }
        }
    }

    /// Takes one WebSocket message (any number of frames or parts of one).
    pub async fn receive(&mut self, bytes: &[u8]) -> Flow {
        if self.closing {
            return Flow::Continue;
        }
        self.parser.push(bytes);
        self.drain().await
    }

    /// Handles every complete frame the parser holds.
    pub async fn drain(&mut self) -> Flow {
        loop {
            if self.closing {
                return Flow::Continue;
            }
            let next = match self.connect.take() {
                Some(frame) => Ok(Some(Event::Frame(frame))),
                None => self.parser.next_event(),
            };
            let frame = match next {
                Ok(None) => return Flow::Continue,
                Ok(Some(Event::Heartbeat)) => continue,
                Ok(Some(Event::Frame(frame))) => frame,
                Err(e) => {
                    let mut fatal = Fatal::new("malformed frame", e.to_string());
                    fatal.code = close::PROTOCOL_ERROR;
                    return self.fail(None, fatal).await;
                }
            };
            self.ctx.hub.stats.received.fetch_add(1, Ordering::Relaxed);
            let receipt = frame.get("receipt").map(str::to_string);
            let result = self.frame(frame).await;
            let flow = match result {
                Ok(Some(reply)) => self.queue(reply).await,
                Ok(None) => Flow::Continue,
                Err(fatal) => self.fail(receipt.as_deref(), fatal).await,
            };
            if let Flow::Stop = flow {
                return Flow::Stop;
            }
        }
    }

    /// Drops the session's subscriptions from the hub.
    pub fn finish(&mut self) {
        self.subscriptions.clear(&self.ctx.hub, &self.conn);
        let mut table = self.shared.table.lock();
        table.by_channel.clear();
        table.channel_of.clear();
        table.unacked = 0;
    }

    async fn queue(&self, bytes: Bytes) -> Flow {
        if self.conn.send(Outbound::frame(bytes)).await {
            Flow::Continue
        } else {
            Flow::Stop
        }
    }

    async fn fail(&mut self, receipt: Option<&str>, fatal: Fatal) -> Flow {
        tracing::debug!(message = %fatal.message, detail = %fatal.detail, "STOMP error");
        self.closing = true;
        let frame = error_frame(receipt, &fatal.message, &fatal.detail);
        if let Flow::Stop = self.queue(frame).await {
            return Flow::Stop;
        }
        let mut reason = fatal.message;
        if !fatal.detail.is_empty() {
            reason = format!("{reason}: {}", fatal.detail);
        }
        if self.conn.send(Outbound::close(fatal.code, reason)).await {
            Flow::Continue
        } else {
            Flow::Stop
        }
    }

    /// One frame; `Ok(Some)` is a reply to queue (a receipt, `CONNECTED`).
    async fn frame(&mut self, frame: Frame) -> Result<Option<Bytes>, Fatal> {
        let command = frame.command.as_str();
        if self.version.is_none() {
            return match command {
                "CONNECT" | "STOMP" => self.connect(&frame).map(Some),
                _ => Err(Fatal::new(
                    "not connected",
                    format!("expected CONNECT, got {command}"),
                )),
            };
        }
        if let Some(tx) = frame.get("transaction") {
            if matches!(command, "SEND" | "ACK" | "NACK") {
                let tx = tx.to_string();
                return self.hold(&tx, frame);
            }
        }
        match command {
            "CONNECT" | "STOMP" => Err(Fatal::new("already connected", "")),
            "SUBSCRIBE" => self.subscribe(&frame).await,
            "UNSUBSCRIBE" => self.unsubscribe(&frame),
            "SEND" => self.send(&frame).await,
            "ACK" => self.ack(&frame, false).await,
            "NACK" => self.ack(&frame, true).await,
            "BEGIN" => {
                let tx = required(&frame, "transaction")?;
                if self.transactions.contains_key(tx) {
                    return Err(Fatal::new("transaction already begun", tx.to_string()));
                }
                if self.transactions.len() >= self.budget.transactions {
                    self.ctx.hub.stats.refused(Budget::StompTransactions);
                    return Err(Fatal::new(
                        ErrorCode::RateLimited.as_str(),
                        format!(
                            "at most {} open transactions (limits.stomp_transactions)",
                            self.budget.transactions
                        ),
                    ));
                }
                self.transactions.insert(tx.to_string(), Vec::new());
                Ok(receipt(&frame, &[]))
            }
            "COMMIT" => {
                let tx = required(&frame, "transaction")?;
                let held = self.settle(tx)?;
                for inner in held {
                    let done = match inner.command.as_str() {
                        "SEND" => self.send(&inner).await?,
                        "ACK" => self.ack(&inner, false).await?,
                        _ => self.ack(&inner, true).await?,
                    };
                    if let Some(r) = done {
                        if let Flow::Stop = self.queue(r).await {
                            return Ok(None);
                        }
                    }
                }
                Ok(receipt(&frame, &[]))
            }
            "ABORT" => {
                let tx = required(&frame, "transaction")?;
                let held = self.settle(tx)?;
                // Discarded is settled too: receipts asked for inside are answered.
                for r in held.iter().filter_map(|inner| receipt(inner, &[])) {
                    if let Flow::Stop = self.queue(r).await {
                        return Ok(None);
                    }
                }
                Ok(receipt(&frame, &[]))
            }
            "DISCONNECT" => {
                self.closing = true;
                if let Some(r) = receipt(&frame, &[]) {
                    if let Flow::Stop = self.queue(r).await {
                        return Ok(None);
                    }
                }
                let _ = self
                    .conn
                    .send(Outbound::close(close::NORMAL, String::new()))
                    .await;
                Ok(None)
            }
            other => Err(Fatal::new("unknown command", other.to_string())),
        }
    }

    /// Holds a frame in transaction `tx` until its COMMIT or ABORT (its receipt waits too),
    /// within the session's transaction budget.
    fn hold(&mut self, tx: &str, frame: Frame) -> Result<Option<Bytes>, Fatal> {
        let size = frame.size();
        let budget = self.budget;
        let refuse = |hub: &crate::hub::Hub, which: Budget, what: String| {
            hub.stats.refused(which);
            Err(Fatal::new(ErrorCode::TooLarge.as_str(), what))
        };
        if self.held.frames >= budget.frames {
            return refuse(
                &self.ctx.hub,
                Budget::StompTransactionFrames,
                format!(
                    "at most {} frames held in open transactions (limits.stomp_transaction_frames)",
                    budget.frames
                ),
            );
        }
        if self.held.bytes + size > budget.bytes {
            return refuse(
                &self.ctx.hub,
                Budget::StompTransactionBytes,
                format!(
                    "at most {} bytes held in open transactions (limits.stomp_transaction_bytes)",
                    budget.bytes
                ),
            );
        }
        let held = self
            .transactions
            .get_mut(tx)
            .ok_or_else(|| Fatal::new("no such transaction", tx.to_string()))?;
        held.push(frame);
        self.held.frames += 1;
        self.held.bytes += size;
        Ok(None)
    }

    /// Ends transaction `tx`, handing back what it held.
    fn settle(&mut self, tx: &str) -> Result<Vec<Frame>, Fatal> {
        let held = self
            .transactions
            .remove(tx)
            .ok_or_else(|| Fatal::new("no such transaction", tx.to_string()))?;
        self.held.frames -= held.len();
        self.held.bytes -= held.iter().map(Frame::size).sum::<usize>();
        Ok(held)
    }

    fn connect(&mut self, frame: &Frame) -> Result<Bytes, Fatal> {
        let offered = frame.get("accept-version").unwrap_or("1.0");
        let version = VERSIONS
            .iter()
            .find(|v| offered.split(',').any(|o| o.trim() == **v))
            .ok_or_else(|| {
                Fatal::new(
                    "unsupported version",
                    format!("supported versions are {}", VERSIONS.join(",")),
                )
            })?;
        if let Some(token) = connect_token(frame) {
            let who = self.ctx.auth.verify(token).map_err(|e| {
                self.ctx.hub.stats.auth_failed();
                Fatal::new("unauthorized", e.to_string())
            })?;
            // As a native refresh: the same principal, roles and device, or the session would
            // become someone it was not admitted as.
            let me = &self.conn.identity;
            if who.key != me.key || who.roles != me.roles || who.device != me.device {
                return Err(Fatal::new(
                    "unauthorized",
                    "the CONNECT token is for another user, org, roles or device than the connection's",
                ));
            }
            if who.exp > self.conn.exp.load(Ordering::Relaxed) {
                self.conn.exp.store(who.exp, Ordering::Relaxed);
            }
        }
        let (cx, cy) = match frame.get("heart-beat") {
            None => (0, 0),
            Some(hb) => parse_heartbeat(hb)
                .ok_or_else(|| Fatal::new("malformed heart-beat", hb.to_string()))?,
        };
        // We can send at the ping interval and want to hear from the client as often.
        let ours = self.ctx.hub.limits().ping_interval.as_millis() as u64;
        let out = if cy == 0 { 0 } else { ours.max(cy) };
        self.shared.heartbeat_out_ms.store(out, Ordering::Relaxed);
        let _ = cx;
        self.conn.wake.notify_one();
        self.version = Some(version);
        let connected = Frame::new("CONNECTED")
            .header("version", *version)
            .header("heart-beat", format!("{ours},{ours}"))
            .header("server", concat!("lookout/", env!("CARGO_PKG_VERSION")))
            .header("session", self.conn.session_id.clone())
            .header("user-name", self.conn.identity.user.to_string());
        Ok(Bytes::from(connected.to_bytes()))
    }

    async fn subscribe(&mut self, frame: &Frame) -> Result<Option<Bytes>, Fatal> {
        let destination = required(frame, "destination")?;
        let id = match frame.get("id") {
            Some(id) => id.to_string(),
            // 1.0 made `id` optional: the destination names the subscription.
            None if self.version == Some("1.0") => destination.to_string(),
            None => return Err(Fatal::new("missing header", "SUBSCRIBE needs `id`")),
        };
        let ack = AckMode::parse(frame.get("ack"))
            .ok_or_else(|| Fatal::new("bad ack mode", "use auto, client or client-individual"))?;
        let since = match frame.get("since") {
            None => None,
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| Fatal::new("bad since", "`since` must be a seq"))?,
            ),
        };
        let epoch = frame.get("epoch");
        let channel = strip_app(destination);
        let target = Target::parse(
            channel,
            self.conn.identity.org.as_deref(),
            Some(&self.conn.identity.user),
        )
        .map_err(|e| Fatal::of(&HubError::from(e)).about(destination))?;
        let public: Arc<str> = target.public_name().into();
        if self.subscriptions.contains(&id) {
            return Err(Fatal::new("duplicate subscription id", id));
        }
        self.subscriptions
            .room_for_one(&self.ctx.hub)
            .map_err(|e| Fatal::of(&e))?;
        {
            let mut table = self.shared.table.lock();
            if table.by_channel.contains_key(&public) {
                return Err(Fatal::of(&HubError::AlreadySubscribed(public.to_string())));
            }
            // Registered before the hub replays, so the writer can render the replay.
            table.by_channel.insert(
                public.clone(),
                Subscription {
                    id: id.clone(),
                    ack,
                    pending: BTreeMap::new(),
                },
            );
            table.channel_of.insert(id.clone(), public.clone());
        }
        let receipt_id = frame.get("receipt").map(str::to_string);
        let result = self
            .ctx
            .hub
            .subscribe(&self.conn, &target, View::Native, since, epoch, |info| {
                let r = receipt_id.as_ref()?;
                let mut f = Frame::new("RECEIPT")
                    .header("receipt-id", r.clone())
                    .header("head", info.head.to_string());
                if let Some(recovered) = info.recovered {
                    f = f.header("recovered", recovered.to_string());
                }
                if let Some(reset) = info.reset {
                    f = f.header("reset", reset);
                }
                if let Some(first) = info.first {
                    f = f.header("first", first.to_string());
                }
                Some(Bytes::from(f.to_bytes()))
            })
            .await;
        match result {
            Ok(sub) => {
                self.subscriptions.add(&self.conn, id, sub.channel);
                Ok(None)
            }
            Err(e) => {
                let mut table = self.shared.table.lock();
                table.remove(&public);
                table.channel_of.remove(&id);
                Err(Fatal::of(&e).about(destination))
            }
        }
    }

    fn unsubscribe(&mut self, frame: &Frame) -> Result<Option<Bytes>, Fatal> {
        let id = match frame.get("id") {
            Some(id) => id,
            None if self.version == Some("1.0") => required(frame, "destination")?,
            None => return Err(Fatal::new("missing header", "UNSUBSCRIBE needs `id`")),
        };
        if !self.subscriptions.contains(id) {
            return Err(Fatal::new("no such subscription", id.to_string()));
        }
        {
            let mut table = self.shared.table.lock();
            if let Some(channel) = table.channel_of.remove(id) {
                table.remove(&channel);
            }
        }
        self.subscriptions.remove(&self.ctx.hub, &self.conn, id);
        Ok(receipt(frame, &[]))
    }

    async fn send(&mut self, frame: &Frame) -> Result<Option<Bytes>, Fatal> {
        let destination = required(frame, "destination")?;
        let channel = strip_app(destination);
        let data = decode_body(frame)?;
        let video = is_video(channel);
        let user = &self.conn.identity.key;
        let deadline = tokio::time::Instant::now() + RATE_WAIT;
        while !self.ctx.hub.allow_message(user, video) {
            if tokio::time::Instant::now() >= deadline {
                return Err(Fatal::new(
                    ErrorCode::RateLimited.as_str(),
                    "message rate exceeded; slow down",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let request = Publish {
            channel,
            to: frame.get("to"),
            owner: frame.get("owner"),
            data,
            ack_required: frame.get("ack-required") == Some("true"),
            idempotency_key: frame.get("idempotency-key"),
        };
        match self.ctx.field.publish(&self.conn.identity, request).await {
            Ok(p) => {
                let seq = p.published.seq.to_string();
                let mut extra = vec![("seq", seq.as_str()), ("epoch", p.published.epoch.as_str())];
                if let Some(alert) = p.alert_id.as_deref() {
                    extra.push(("alert-id", alert));
                }
                Ok(receipt(frame, &extra))
            }
            Err(e) => Err(Fatal::of(&e).about(destination)),
        }
    }

    async fn ack(&mut self, frame: &Frame, nack: bool) -> Result<Option<Bytes>, Fatal> {
        // 1.2 names the message by `id` (our `ack` header); 1.1 and 1.0 by `message-id`.
        let ack_id = frame
            .get("id")
            .or(frame.get("message-id"))
            .ok_or_else(|| Fatal::new("missing header", "ACK/NACK needs `id`"))?;
        let (sub_id, seq) = ack_id
            .rsplit_once('@')
            .and_then(|(s, q)| Some((s, q.parse::<u64>().ok()?)))
            .ok_or_else(|| Fatal::new("no such message", ack_id.to_string()))?;
        let (channel, taken) = {
            let mut table = self.shared.table.lock();
            let channel = table
                .channel_of
                .get(sub_id)
                .cloned()
                .ok_or_else(|| Fatal::new("no such subscription", sub_id.to_string()))?;
            let sub = table
                .by_channel
                .get_mut(&channel)
                .ok_or_else(|| Fatal::new("no such subscription", sub_id.to_string()))?;
            if !sub.pending.contains_key(&seq) {
                return Err(Fatal::new(
                    "no such message",
                    format!("{ack_id} is not awaiting acknowledgement"),
                ));
            }
            let taken: Vec<Arc<Delivery>> = if sub.ack == AckMode::Client && !nack {
                let rest = sub.pending.split_off(&(seq + 1));
                std::mem::replace(&mut sub.pending, rest)
                    .into_values()
                    .collect()
            } else {
                sub.pending.remove(&seq).into_iter().collect()
            };
            table.unacked -= taken.len();
            (channel, taken)
        };
        if nack {
            // Redelivered at once, to the same subscription, with the same ack id.
            for delivery in taken {
                if !self
                    .conn
                    .send(Outbound::Deliver(delivery, View::Native))
                    .await
                {
                    return Ok(None);
                }
            }
            return Ok(receipt(frame, &[]));
        }
        let recorded: Vec<&Arc<Delivery>> = taken.iter().filter(|d| records_acks(d)).collect();
        let cumulative = taken.first().map(|d| d.kind) == Some(ChannelKind::UserQueue);
        let seqs: Vec<u64> = if cumulative {
            recorded
                .iter()
                .map(|d| d.message.seq)
                .max()
                .into_iter()
                .collect()
        } else {
            recorded.iter().map(|d| d.message.seq).collect()
        };
        for seq in seqs {
            self.ctx
                .hub
                .acknowledge(&self.conn.identity, &channel, seq)
                .await
                .map_err(|e| Fatal::of(&e))?;
        }
        Ok(receipt(frame, &[]))
    }
}

/// A `RECEIPT` for `frame` if it asked for one.
fn receipt(frame: &Frame, extra: &[(&str, &str)]) -> Option<Bytes> {
    let id = frame.get("receipt")?;
    let mut r = Frame::new("RECEIPT").header("receipt-id", id);
    for (name, value) in extra {
        r = r.header(name, *value);
    }
    Some(Bytes::from(r.to_bytes()))
}

fn required<'f>(frame: &'f Frame, name: &str) -> Result<&'f str, Fatal> {
    frame.get(name).ok_or_else(|| {
        Fatal::new(
            "missing header",
            format!("{} needs `{name}`", frame.command),
        )
    })
}

/// Spring's application prefix: `/app/topic/x` is `/topic/x`.
fn strip_app(destination: &str) -> &str {
    match destination.strip_prefix("/app") {
        Some(rest) if rest.starts_with('/') => rest,
        _ => destination,
    }
}

fn parse_heartbeat(value: &str) -> Option<(u64, u64)> {
    let (x, y) = value.split_once(',')?;
    Some((x.trim().parse().ok()?, y.trim().parse().ok()?))
}

/// A `SEND` body as channel data. Without a content type the body must be JSON; other types
/// are named explicitly, so a typo in JSON is an error rather than a string.
fn decode_body(frame: &Frame) -> Result<rmpv::Value, Fatal> {
    let body = &frame.body;
    let content_type = frame.get("content-type").map(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    let bad = |what: &str| Fatal::new("bad body", what.to_string());
    match content_type.as_deref() {
        None if body.is_empty() => Ok(rmpv::Value::Nil),
        None | Some("application/json") => serde_json::from_slice(body)
            .map_err(|e| bad(&format!("body is not JSON ({e}); set content-type for other bodies"))),
        Some(ct) if ct.ends_with("+json") => {
            serde_json::from_slice(body).map_err(|e| bad(&format!("body is not JSON ({e})")))
        }
        Some("application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack") => {
            rmpv::decode::read_value(&mut &body[..])
                .map_err(|e| bad(&format!("body is not MessagePack ({e})")))
        }
        Some("application/octet-stream") => Ok(rmpv::Value::Binary(body.to_vec())),
        Some(ct) if ct.starts_with("text/") => std::str::from_utf8(body)
            .map(rmpv::Value::from)
            .map_err(|_| bad("text body is not UTF-8")),
        Some(other) => Err(bad(&format!(
            "unsupported content-type {other}; use application/json, text/*, application/msgpack or application/octet-stream"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_prefix_maps_to_the_same_channel() {
        assert_eq!(strip_app("/app/topic/location/u1"), "/topic/location/u1");
        assert_eq!(strip_app("/topic/x"), "/topic/x");
        assert_eq!(strip_app("/apple/x"), "/apple/x");
    }

    #[test]
    fn bodies_need_a_content_type_unless_json() {
        let json = Frame::new("SEND").body(&b"{\"a\":1}"[..]);
        assert!(decode_body(&json).is_ok());
        let text = Frame::new("SEND").body(&b"hello"[..]);
        assert!(decode_body(&text).is_err());
        let text = text.header("content-type", "text/plain;charset=utf-8");
        assert_eq!(decode_body(&text).ok(), Some(rmpv::Value::from("hello")));
        let bin = Frame::new("SEND")
            .header("content-type", "application/octet-stream")
            .body(&[0u8, 1, 2][..]);
        assert_eq!(
            decode_body(&bin).ok(),
            Some(rmpv::Value::Binary(vec![0, 1, 2]))
        );
    }

    #[test]
    fn heartbeats_parse() {
        assert_eq!(parse_heartbeat("10000, 5000"), Some((10000, 5000)));
        assert_eq!(parse_heartbeat("x,1"), None);
    }
}
