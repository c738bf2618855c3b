//! The writer task of a session: the only one that writes to the transport. It drains the
//! connection's bounded queues in order, flushing the transport when they are empty, and keeps
//! the connection's clocks: pings, the dead peer, the idle timeout, the token's expiry and
//! STOMP heart-beats. A close request wins over
//! anything queued; [`Outbound::Close`] closes after what was queued before it.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;

use super::autoack::AutoAcks;
use super::context::Sink;
use super::stomp::{Rendered, Shared};
use crate::clock::{now_millis, now_secs};
use crate::counters::Budget;
use crate::hub::{ConnHandle, Hub, Outbound};
use crate::protocol::{close, Encoding, Simple};

/// How long the writer waits for the peer's answer to its close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(1);
/// Close reasons are limited to 123 bytes by RFC 6455.
const MAX_CLOSE_REASON: usize = 123;

/// The protocol state the writer needs.
#[derive(Clone)]
pub enum Wire {
    /// The native protocol: deliveries are rendered by the hub's [`crate::hub::Delivery`].
    Native,
    /// STOMP: deliveries become `MESSAGE` frames of the session's subscriptions.
    Stomp(Arc<Shared>),
}

enum End {
    Close(u16, String),
    Broken,
}

/// The writer task: the only one that writes to the transport.
pub struct Writer {
    /// The connection.
    pub conn: Arc<ConnHandle>,
    /// The hub, for STOMP auto acknowledgements.
    pub hub: Arc<Hub>,
    /// The protocol spoken.
    pub wire: Wire,
    /// Its clocks.
    pub limits: ConnLimits,
    /// Server shutdown.
    pub shutdown: CancellationToken,
    /// Fires when the reader has finished.
    pub reader_done: CancellationToken,
    /// Fired by the writer when the connection is over, to stop the reader.
    pub stop_reader: CancellationToken,
    /// STOMP `auto` acknowledgements waiting to be recorded.
    pub auto_acks: Arc<AutoAcks>,
}

/// Queued items one writer turn sends before it looks at its clocks again.
const DRAIN_BATCH: usize = 64;

impl Writer {
    /// Writes until the connection ends, then closes the transport.
    ///
    /// Not an `async fn`, whose arguments would be kept twice in its state for the
    /// connection's life; the rare large steps (opening, closing, writing an item) are boxed
    /// for the same reason: the task is as large as its largest state, idle or not.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    pub fn run<S: Sink + 'static>(
        self,
        sink: S,
        rx: mpsc::Receiver<Outbound>,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            let mut sink = sink;
            let mut rx = rx;
            if Box::pin(sink.open()).await.is_err() {
                self.stop_reader.cancel();
                return;
            }
            let end = self.write_until_end(&mut sink, &mut rx).await;
            // Nothing more will be sent; release queued deliveries now rather than at drop.
            rx.close();
            self.conn.live.close();
            if let End::Close(code, reason) = end {
                Box::pin(self.close(&mut sink, code, reason)).await;
            }
            self.stop_reader.cancel();
        }
    }

    /// Closes the transport with `code`, and lets the peer answer.
    async fn close<S: Sink>(&self, sink: &mut S, code: u16, reason: String) {
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

    /// Writes what comes until the connection is to end, and says how.
    async fn write_until_end<S: Sink>(
        &self,
        sink: &mut S,
        rx: &mut mpsc::Receiver<Outbound>,
    ) -> End {
        let conn = &self.conn;
        let limits = &self.limits;
        let mut next_ping = Instant::now() + limits.ping_interval;
        let mut last_write = Instant::now();
        let mut idle_noticed = false;
        // Written but maybe not sent: frames gather in the transport until nothing else waits.
        let mut unflushed = false;
        // One timer, one wake-up and one shutdown registration for the connection's life, not
        // one of each per frame (they showed in the fan-out profile).
        let clock = sleep_until(next_ping);
        let woken = conn.wake.notified();
        let shutdown = self.shutdown.cancelled();
        tokio::pin!(clock, woken, shutdown);
        loop {
            if let Some((code, reason)) = conn.close_requested() {
                break End::Close(*code, reason.clone());
            }
            if unflushed && rx.is_empty() && conn.live.is_empty() {
                if self.timed(sink.flush()).await.is_err() {
                    break End::Broken;
                }
                unflushed = false;
            }
            let heartbeat = self.heartbeat().map(|every| last_write + every);
            let mut deadline = next_deadline(conn, limits, next_ping, idle_noticed);
            if let Some(at) = heartbeat {
                deadline = deadline.min(at);
            }
            // Moved only when a check is due earlier than it is set for, or it went off: a
            // check that comes early finds nothing due and sets it again (a peer's signs of
            // life move the dead-peer deadline later with every frame).
            if deadline < clock.deadline() || clock.is_elapsed() {
                clock.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                _ = &mut shutdown => break End::Close(close::GOING_AWAY, "server shutting down".into()),
                _ = &mut woken => {
                    woken.set(conn.wake.notified());
                    continue;
                }
                _ = &mut clock => {
                    unflushed = true;
                    let notice = matches!(self.wire, Wire::Native);
                    match check_clocks(conn, limits, &mut idle_noticed, notice) {
                        Clock::Close(code, reason) => break End::Close(code, reason.into()),
                        Clock::Notice(bytes) => {
                            let text = conn.encoding == Encoding::Json;
                            if Box::pin(self.timed(sink.send(text, &bytes))).await.is_err() {
                                break End::Broken;
                            }
                        }
                        Clock::Nothing => {}
                    }
                    if Instant::now() >= next_ping {
                        next_ping = Instant::now() + limits.ping_interval;
                        if Box::pin(self.timed(sink.keepalive())).await.is_err() {
                            break End::Broken;
                        }
                    }
                    if heartbeat.is_some_and(|at| Instant::now() >= at) {
                        // STOMP heart-beat: an end-of-line when nothing else went out.
                        if Box::pin(self.timed(sink.send(true, b"\n"))).await.is_err() {
                            break End::Broken;
                        }
                        last_write = Instant::now();
                    }
                }
                item = rx.recv() => {
                    let Some(item) = item else { break End::Broken };
                    unflushed = true;
                    // Boxed, like every write: see `run`.
                    let ended = Box::pin(self.write_batch(sink, rx, item)).await;
                    last_write = Instant::now();
                    if let Some(end) = ended {
                        break end;
                    }
                }
                // Live traffic only when nothing logged waits: an alert never queues behind it.
                (delivery, view) = conn.live.next() => {
                    unflushed = true;
                    match Box::pin(self.write_item(sink, Outbound::Deliver(delivery, view))).await {
                        Ok(None) => last_write = Instant::now(),
                        Ok(Some(end)) => break end,
                        Err(()) => break End::Broken,
                    }
                }
            }
        }
    }

    /// Writes `item` and what else is queued behind it, up to a bound, so the clocks are read
    /// once per batch instead of once per frame; `Some` ends the connection.
    async fn write_batch<S: Sink>(
        &self,
        sink: &mut S,
        rx: &mut mpsc::Receiver<Outbound>,
        mut item: Outbound,
    ) -> Option<End> {
        let mut written = 0;
        loop {
            match self.write_item(sink, item).await {
                Ok(None) => {}
                Ok(Some(end)) => return Some(end),
                Err(()) => return Some(End::Broken),
            }
            written += 1;
            if written == DRAIN_BATCH || self.conn.close_requested().is_some() {
                return None;
            }
            match rx.try_recv() {
                Ok(next) => item = next,
                Err(_) => return None,
            }
        }
    }

    fn heartbeat(&self) -> Option<Duration> {
        match &self.wire {
            Wire::Native => None,
            Wire::Stomp(shared) => shared.heartbeat_out(),
        }
    }

    /// A write (or flush) that may wait for the peer as long as the peer keeps making room: it
    /// fails once `write_timeout` passes without any (a flush of a record's worth to a slow
    /// reader may take longer than that in all, and that reader is not stuck).
    async fn timed(&self, write: impl Future<Output = std::io::Result<()>>) -> Result<(), ()> {
        tokio::pin!(write);
        // Most writes land in the gathering buffer and finish at once: no timer for those
        // (arming one per frame showed in the profile).
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx)));
        if let std::task::Poll::Ready(written) = first.await {
            return written.map_err(|e| tracing::debug!(error = %e, "write failed"));
        }
        let conn = &self.conn;
        let started = now_millis();
        let limit = self.limits.write_timeout.as_millis() as u64;
        loop {
            let progress = started.max(conn.last_drained());
            let stuck_at = Instant::now()
                + Duration::from_millis((progress + limit).saturating_sub(now_millis()));
            tokio::select! {
                written = &mut write => {
                    return written.map_err(|e| tracing::debug!(error = %e, "write failed"));
                }
                _ = sleep_until(stuck_at) => {
                    if conn.last_drained() <= progress {
                        tracing::info!("peer took nothing within write_timeout; dropping it");
                        return Err(());
                    }
                }
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
            Outbound::Close(close) => {
                let (code, reason) = *close;
                return Ok(Some(End::Close(code, reason)));
            }
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
                            self.hub.stats.refused(Budget::Unacked);
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
                        self.auto_acks.consumed(
                            &self.hub,
                            conn,
                            &delivery.channel,
                            delivery.kind,
                            delivery.message.seq,
                        );
                    }
                }
            },
        }
        Ok(None)
    }
}

/// The clocks and timeouts the writer needs, copied out of the config once per connection.
pub struct ConnLimits {
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
    let silent = now.saturating_sub(conn.last_alive());
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
    let dead = conn.last_alive() + limits.dead_peer_timeout.as_millis() as u64;
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
