//! The reader half of a STOMP session ([`StompSession`]): frames in, hub requests out; the
//! frame dispatch, transactions (held frames within the session's budget), and the `ERROR`
//! that ends a session.
//!
//! What each command does is in `commands.rs`, which sits above this file.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::frames::{receipt, required, Fatal};
use super::shared::Shared;
use crate::counters::Budget;
use crate::failure::ErrorCode;
use crate::hub::{ConnHandle, Outbound};
use crate::protocol::close;
use crate::session::context::{next_message, Flow, SessionContext, Source};
use crate::session::subscriptions::Subscriptions;
use crate::stomp::error_frame;
use crate::stomp::frame::{Event, Frame, Parser};

/// The reader half of a STOMP session.
pub struct StompSession {
    pub(super) ctx: SessionContext,
    pub(super) conn: Arc<ConnHandle>,
    pub(super) shared: Arc<Shared>,
    parser: Parser,
    /// A `CONNECT` read before admission, handled first.
    connect: Option<Frame>,
    pub(super) version: Option<&'static str>,
    /// Subscription id → hub entry.
    pub(super) subscriptions: Subscriptions,
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
}
