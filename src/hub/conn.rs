//! What the hub knows of one connection ([`ConnHandle`]) and what it hands to it ([`Outbound`],
//! [`Delivery`]).
//!
//! A delivery is one published message shared by every subscriber: its frames are encoded at
//! most once per (encoding, view) and the bytes are shared. The handle never blocks: the hub only
//! `try_send`s into the connection's bounded queue (logged traffic and replies) or offers to its
//! live lane ([`super::lane`]: live-only traffic, shed and coalesced first).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use crate::auth::Identity;
use crate::protocol::{DialectFrame, Encoding, MessageFrame};
use crate::store::StoredMessage;

use super::lane::{LiveLane, Offered};
use crate::channel::ChannelKind;

/// How a subscription wants its messages rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// `{"type":"message",…}` frames.
    Native,
    /// The job-status dialect: `job_status_update`, `job_completed`, `system_notification`.
    JobStatus,
}

impl View {
    const COUNT: usize = 2;
    fn index(self) -> usize {
        self as usize
    }
}

/// The frames of one delivery in one (encoding, view), rendered by the first writer that needs
/// them; an error is kept too so it is not retried per subscriber.
type RenderedOnce = OnceLock<Result<Vec<Bytes>, String>>;

/// One message on its way to subscribers.
pub struct Delivery {
    /// The channel as subscribers name it.
    pub channel: Arc<str>,
    /// The channel's kind.
    pub kind: ChannelKind,
    /// The message.
    pub message: Arc<StoredMessage>,
    /// What a later delivery with the same key supersedes in a connection's live lane (a
    /// guard's position on an org's locations).
    pub supersedes: Option<Arc<str>>,
    frames: [[RenderedOnce; Encoding::COUNT]; View::COUNT],
    body: OnceLock<Result<DataBody, String>>,
    /// What the message's data holds in bytes, about: what a queue that keeps it is charged.
    pub size: usize,
}

/// About how many bytes `value` holds: binary and strings by their length, the rest a few
/// bytes each. What a connection's live lane is charged for a delivery.
pub fn data_size(value: &rmpv::Value) -> usize {
    match value {
        rmpv::Value::Binary(b) => b.len() + 8,
        rmpv::Value::String(s) => s.as_bytes().len() + 8,
        rmpv::Value::Array(items) => 8 + items.iter().map(data_size).sum::<usize>(),
        rmpv::Value::Map(entries) => {
            8 + entries
                .iter()
                .map(|(k, v)| data_size(k) + data_size(v))
                .sum::<usize>()
        }
        rmpv::Value::Ext(_, b) => b.len() + 8,
        _ => 8,
    }
}

/// A message's data as a body of its own (STOMP `MESSAGE`, SSE): JSON, or the raw bytes when the
/// data is binary.
#[derive(Debug, Clone)]
pub struct DataBody {
    /// The bytes.
    pub bytes: Bytes,
    /// Their content type.
    pub content_type: &'static str,
}

impl Delivery {
    /// Wraps a stored message for delivery on `channel`.
    pub fn new(channel: Arc<str>, kind: ChannelKind, message: Arc<StoredMessage>) -> Self {
        Delivery {
            size: data_size(&message.data),
            channel,
            kind,
            message,
            supersedes: None,
            frames: Default::default(),
            body: OnceLock::new(),
        }
    }

    /// The same delivery, superseding waiting ones with `key` in a live lane.
    pub fn superseding(mut self, key: Option<Arc<str>>) -> Self {
        self.supersedes = key;
        self
    }

    /// The data alone, rendered on first use and shared by every subscriber.
    pub fn body(&self) -> Result<&DataBody, &str> {
        self.body
            .get_or_init(|| match &self.message.data {
                rmpv::Value::Binary(bytes) => Ok(DataBody {
                    bytes: Bytes::copy_from_slice(bytes),
                    content_type: "application/octet-stream",
                }),
                data => serde_json::to_vec(data)
                    .map(|json| DataBody {
                        bytes: Bytes::from(json),
                        content_type: "application/json",
                    })
                    .map_err(|e| e.to_string()),
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// The frames for one encoding and view, encoded on first use and shared afterwards.
    pub fn frames(&self, encoding: Encoding, view: View) -> Result<&[Bytes], &str> {
        self.frames[view.index()][encoding.index()]
            .get_or_init(|| self.encode(encoding, view).map_err(|e| e.to_string()))
            .as_deref()
            .map_err(String::as_str)
    }

    fn encode(
        &self,
        encoding: Encoding,
        view: View,
    ) -> Result<Vec<Bytes>, crate::protocol::EncodeError> {
        let m = &self.message;
        let native = || {
            encoding.encode(&MessageFrame {
                kind: "message",
                channel: &self.channel,
                seq: m.seq,
                timestamp: m.timestamp,
                data: &m.data,
                ack_required: m.ack_required,
            })
        };
        if view == View::Native {
            return Ok(vec![native()?]);
        }
        let field = |name: &str| -> Option<&rmpv::Value> {
            m.data.as_map().and_then(|entries| {
                entries
                    .iter()
                    .find(|(k, _)| k.as_str() == Some(name))
                    .map(|(_, v)| v)
            })
        };
        let dialect = |kind: &'static str, job_id: Option<&str>, status: Option<&str>| {
            encoding.encode(&DialectFrame {
                kind,
                job_id,
                status,
                progress: field("progress"),
                message: field("message"),
                channel: &self.channel,
                seq: m.seq,
                timestamp: m.timestamp,
                data: &m.data,
            })
        };
        match self.kind {
            ChannelKind::Job => {
                let job = crate::channel::names::job_of(&self.channel);
                match field("status").and_then(|s| s.as_str()) {
                    Some(status) => {
                        let mut frames = vec![dialect("job_status_update", job, Some(status))?];
                        if matches!(status, "completed" | "failed") {
                            frames.push(dialect("job_completed", job, Some(status))?);
                        }
                        Ok(frames)
                    }
                    None => Ok(vec![native()?]),
                }
            }
            ChannelKind::System => Ok(vec![dialect("system_notification", None, None)?]),
            _ => Ok(vec![native()?]),
        }
    }
}

/// What a connection's writer task receives.
///
/// Two words: every connection's queue holds a block of 32 of them from its first message on,
/// so the rarer variants keep their payload behind a box.
pub enum Outbound {
    /// A channel message, rendered for `View`.
    Deliver(Arc<Delivery>, View),
    /// A frame already encoded for this connection (reply, error, notice).
    Frame(Box<Bytes>),
    /// A WebSocket pong answering the peer's ping.
    Pong(Box<Bytes>),
    /// Close once everything queued before it is written (e.g. after a STOMP `ERROR`): the
    /// code and the reason.
    Close(Box<(u16, String)>),
}

impl Outbound {
    /// A frame already encoded for this connection.
    pub fn frame(bytes: Bytes) -> Outbound {
        Outbound::Frame(Box::new(bytes))
    }

    /// A pong with `payload`.
    pub fn pong(payload: Bytes) -> Outbound {
        Outbound::Pong(Box::new(payload))
    }

    /// A close with `code` and `reason` once what is queued before it is written.
    pub fn close(code: u16, reason: String) -> Outbound {
        Outbound::Close(Box::new((code, reason)))
    }
}

const _: () = assert!(std::mem::size_of::<Outbound>() == 16);

/// The shared state of one connection: its queue, its close request and its liveness clocks.
pub struct ConnHandle {
    /// Process-unique id.
    pub id: u64,
    /// Session id sent to the client.
    pub session_id: String,
    /// The identity the connection authenticated with.
    pub identity: Identity,
    /// The encoding it speaks.
    pub encoding: Encoding,
    /// The protocol it speaks, for connection counts.
    pub protocol: crate::protocol::Protocol,
    /// Peer address, for logs and status.
    pub peer: std::net::SocketAddr,
    /// When it connected, ms since the Unix epoch.
    pub connected_at: u64,
    tx: mpsc::Sender<Outbound>,
    /// Live-only deliveries, apart from the queue of logged traffic and replies.
    pub live: LiveLane<(Arc<Delivery>, View)>,
    closing: OnceLock<(u16, String)>,
    /// Woken when a close is requested or a deadline moves.
    pub wake: Notify,
    /// Last time a frame arrived from the peer, ms since the Unix epoch.
    pub last_seen: AtomicU64,
    /// Where the socket notes the last time the peer made room for a write that had to
    /// wait (ms since the Unix epoch), once the transport has one.
    drains: OnceLock<Arc<AtomicU64>>,
    /// Token expiry, seconds since the Unix epoch; moved forward by a refresh.
    pub exp: AtomicU64,
    /// Number of subscriptions held.
    pub subscriptions: AtomicUsize,
    /// Since when the connection has had no subscription, ms since the Unix epoch.
    pub idle_since: AtomicU64,
}

impl ConnHandle {
    /// A handle and the receiving end of its queue (`capacity` messages; the live lane holds as
    /// many, of at most `live_bytes` together).
    pub fn new(
        id: u64,
        identity: Identity,
        encoding: Encoding,
        protocol: crate::protocol::Protocol,
        peer: std::net::SocketAddr,
        (capacity, live_bytes): (usize, usize),
    ) -> (Arc<Self>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(capacity);
        let now = crate::clock::now_millis();
        let exp = identity.exp;
        let handle = Arc::new(ConnHandle {
            id,
            session_id: uuid::Uuid::new_v4().to_string(),
            identity,
            encoding,
            protocol,
            peer,
            connected_at: now,
            tx,
            live: LiveLane::new(capacity, live_bytes),
            closing: OnceLock::new(),
            wake: Notify::new(),
            last_seen: AtomicU64::new(now),
            drains: OnceLock::new(),
            exp: AtomicU64::new(exp),
            subscriptions: AtomicUsize::new(0),
            idle_since: AtomicU64::new(now),
        });
        (handle, rx)
    }

    /// Offers a live-only delivery to the live lane.
    pub fn offer_live(&self, delivery: Arc<Delivery>, view: View) -> Offered {
        let key = delivery.supersedes.clone();
        let size = delivery.size;
        self.live.offer((delivery, view), key, size)
    }

    /// Queues without waiting. `Err` hands the item back when the queue is full or closed.
    pub fn try_send(&self, item: Outbound) -> Result<(), mpsc::error::TrySendError<Outbound>> {
        self.tx.try_send(item)
    }

    /// Queues, waiting for room: only the connection's own reader uses this (its replies), so
    /// a full queue slows down only the client that caused it.
    pub async fn send(&self, item: Outbound) -> bool {
        self.tx.send(item).await.is_ok()
    }

    /// Asks the writer to close the connection with `code`; the first request wins and is the
    /// only one that returns true.
    pub fn close(&self, code: u16, reason: impl Into<String>) -> bool {
        let first = self.closing.set((code, reason.into())).is_ok();
        if first {
            self.wake.notify_one();
        }
        first
    }

    /// The close requested, if any.
    pub fn close_requested(&self) -> Option<&(u16, String)> {
        self.closing.get()
    }

    /// Resolves with the close once one is requested: for connections that have no writer
    /// task to notice it (an event stream, a waiting long-poll).
    pub async fn close_wanted(&self) -> (u16, String) {
        loop {
            let notified = self.wake.notified();
            if let Some(close) = self.closing.get() {
                return close.clone();
            }
            notified.await;
        }
    }

    /// Records that a frame arrived from the peer.
    pub fn touch(&self) {
        self.last_seen
            .store(crate::clock::now_millis(), Ordering::Relaxed);
    }

    /// Follows the socket's note of room the peer made (see [`Self::last_drained`]).
    pub fn watch_drains(&self, stamp: Arc<AtomicU64>) {
        let _ = self.drains.set(stamp);
    }

    /// The last time the peer made room for a write that had to wait: it reads, however
    /// slowly (0: not known for this transport).
    pub fn last_drained(&self) -> u64 {
        self.drains
            .get()
            .map_or(0, |stamp| stamp.load(Ordering::Relaxed))
    }

    /// The last sign of life: a frame, or room made for a write (a slow reader's pongs can
    /// wait behind its backlog, while the room it makes shows it is there).
    pub fn last_alive(&self) -> u64 {
        self.last_seen
            .load(Ordering::Relaxed)
            .max(self.last_drained())
    }

    /// Messages waiting in the queue and the live lane.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity() + self.live.len()
    }
}
