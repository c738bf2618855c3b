//! What the reader and the writer of a STOMP session share: the subscription table (id, ack
//! mode, messages awaiting `ACK`) and the negotiated heart-beat, and how the writer renders a
//! delivery as a `MESSAGE` frame.
//!
//! The reader's side of the table (subscribing, acknowledging) is in `commands.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::channel::ChannelKind;
use crate::hub::Delivery;
use crate::stomp::error_frame;
use crate::stomp::frame::Frame;

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
    pub(super) fn parse(value: Option<&str>) -> Option<AckMode> {
        match value {
            None | Some("auto") => Some(AckMode::Auto),
            Some("client") => Some(AckMode::Client),
            Some("client-individual") => Some(AckMode::ClientIndividual),
            Some(_) => None,
        }
    }
}

pub(super) struct Subscription {
    pub(super) id: String,
    pub(super) ack: AckMode,
    /// Delivered and not yet acknowledged, by seq (client modes only).
    pub(super) pending: BTreeMap<u64, Arc<Delivery>>,
}

#[derive(Default)]
pub(super) struct Table {
    /// Public channel name → subscription.
    pub(super) by_channel: HashMap<Arc<str>, Subscription>,
    /// Subscription id → public channel name.
    pub(super) channel_of: HashMap<String, Arc<str>>,
    /// Messages awaiting `ACK`, over every subscription.
    pub(super) unacked: usize,
}

impl Table {
    /// Drops the subscription on `channel` with whatever it awaited.
    pub(super) fn remove(&mut self, channel: &str) {
        if let Some(sub) = self.by_channel.remove(channel) {
            self.unacked -= sub.pending.len();
        }
    }
}

/// The part of a STOMP session the writer reads: subscriptions and the negotiated heart-beat.
pub struct Shared {
    pub(super) table: Mutex<Table>,
    pub(super) heartbeat_out_ms: AtomicU64,
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
pub(super) fn records_acks(delivery: &Delivery) -> bool {
    delivery.message.ack_required || delivery.kind == ChannelKind::UserQueue
}
