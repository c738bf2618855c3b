//! What callers hand the hub and what it hands back: publish and subscribe requests and
//! their results, history pages and connection status. Plain data, no behaviour.

use std::sync::Arc;

use serde::Serialize;

use super::registry::Channel;

/// A publish request, from the socket or REST.
#[derive(Debug)]
pub struct Publish<'a> {
    /// Channel name as given.
    pub channel: &'a str,
    /// Recipient for `/user/queue/*`.
    pub to: Option<&'a str>,
    /// Job owner for a job's first publish.
    pub owner: Option<&'a str>,
    /// Payload.
    pub data: rmpv::Value,
    /// Recipients must acknowledge.
    pub ack_required: bool,
    /// The client's key for this publish: a retry with the same key (by the same user, on the
    /// same channel) gets the first reply and is stored and delivered once.
    pub idempotency_key: Option<&'a str>,
}

/// Held by a publish until its seq is taken (or it failed before): dropping it lets the next
/// publish of the same connection take its seq. Pipelined publishes use it so that their seqs
/// follow the order the client sent them in while their commits overlap.
pub type Turn = Option<tokio::sync::oneshot::Sender<()>>;

/// The longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// What a successful publish reports.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    /// The channel as the publisher named it.
    pub channel: String,
    /// Seq given.
    pub seq: u64,
    /// Store epoch.
    pub epoch: String,
}

/// What a subscriber is told before any message: where the channel stands and whether the
/// resume it asked for is complete.
#[derive(Debug, Clone, Serialize)]
pub struct SubscribeInfo {
    /// The channel's durable head when the subscription started.
    pub head: u64,
    /// With `since` (or an offline queue): whether every message after it is replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// When not recovered, why: `epoch` (the seqs belong to another data directory: reload
    /// state, e.g. from history, and subscribe without `since`) or `trimmed` (retention removed
    /// messages after `since`: what is still in the log is replayed, from `first`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset: Option<&'static str>,
    /// The oldest seq still in the log, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<u64>,
}

/// What a successful subscribe returns.
#[derive(Clone)]
pub struct Subscribed {
    /// The channel entry, to unsubscribe later.
    pub channel: Arc<Channel>,
    /// What the subscriber was told.
    pub info: SubscribeInfo,
}

/// A read of a channel's log: history and long-poll.
#[derive(Debug, Serialize)]
pub struct History {
    /// Channel as the caller named it.
    pub channel: String,
    /// Store epoch.
    pub epoch: String,
    /// Durable head.
    pub head: u64,
    /// Whether nothing after `since` was trimmed.
    pub recovered: bool,
    /// The messages, oldest first.
    pub messages: Vec<HistoryMessage>,
}

/// One message in a [`History`]: the stored message itself, shared with the store's cache
/// and every delivery, never copied; rendered once, into the response.
#[derive(Debug, Clone)]
pub struct HistoryMessage(pub std::sync::Arc<crate::store::StoredMessage>);

impl std::ops::Deref for HistoryMessage {
    type Target = crate::store::StoredMessage;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Serialize for HistoryMessage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let m = &self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("seq", &m.seq)?;
        map.serialize_entry("timestamp", &m.timestamp)?;
        map.serialize_entry("data", &m.data)?;
        if m.ack_required {
            map.serialize_entry("ack_required", &true)?;
        }
        map.end()
    }
}

/// The bytes a history or long-poll response may still carry (`limits.max_response_bytes`),
/// counted as each message would be written in JSON. The response's first message always
/// fits: a page is never empty for want of room.
#[derive(Debug)]
pub struct ResponseBudget {
    left: usize,
    first: bool,
    /// Whether a message was left out for want of room.
    pub cut: bool,
}

impl ResponseBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        ResponseBudget {
            left: bytes,
            first: true,
            cut: false,
        }
    }

    /// No budget: for readers inside the server, which keep one page at a time.
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// Takes room for `message`; false (and `cut`) when it does not fit.
    pub fn take(&mut self, message: &crate::store::StoredMessage) -> bool {
        if self.left == usize::MAX {
            return true;
        }
        let size = response_size(message);
        if size > self.left && !self.first {
            self.cut = true;
            return false;
        }
        self.first = false;
        self.left = self.left.saturating_sub(size);
        true
    }
}

/// The bytes `message` takes in a response: its data in JSON and room for its envelope.
pub fn response_size(message: &crate::store::StoredMessage) -> usize {
    json_size(&message.data).saturating_add(80)
}

/// The bytes `value` takes in JSON, counted by writing it nowhere.
fn json_size(value: &rmpv::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// Per-user status as reported by REST.
#[derive(Debug, Serialize)]
pub struct UserStatus {
    /// User id.
    #[serde(rename = "userId")]
    pub user_id: String,
    /// Whether any connection is open.
    pub online: bool,
    /// Open connections.
    pub connections: Vec<ConnStatus>,
    /// Last connection or disconnection, ms since the Unix epoch.
    #[serde(rename = "lastSeen", skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<u64>,
}

/// One connection in a [`UserStatus`].
#[derive(Debug, Serialize)]
pub struct ConnStatus {
    /// Session id.
    #[serde(rename = "sessionId")]
    pub session_id: String,
    /// Subprotocol.
    pub protocol: &'static str,
    /// Connect time.
    #[serde(rename = "connectedAt")]
    pub connected_at: u64,
    /// Subscriptions held.
    pub subscriptions: usize,
    /// Messages queued for it.
    pub queued: usize,
}
