//! The hub: channels, their subscribers, connection admission and fan-out.
//!
//! Data path of a publish on a logged channel: check the rights table ([`channel`]) → under the
//! channel's lock, take the next seq and append to the [`Store`] (one atomic batch) and queue the
//! message as pending → wait for the group-commit flush → deliver the channel's durable prefix,
//! in seq order, to every subscriber's bounded queue with `try_send` → acknowledge the publisher.
//! Live-only channels (video, org locations, presence) skip the store.
//!
//! The hub never writes to a socket and never waits on a client, so a slow client can only hurt
//! itself. When a queue is full: live-only channels drop the message for that subscriber;
//! logged channels close that connection with 4002 (`slow consumer`) so the client resumes
//! with `since` and loses nothing.
//!
//! Lock order, never reversed: the channel registry, then one channel's state. Both are
//! synchronous locks held for short sections and never across an await.

pub mod channel;
pub mod conn;

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::watch;

use crate::auth::{Identity, Role};
use crate::config::Limits;
use crate::metrics::Stats;
use crate::protocol::{close, now_millis, Encoding, ErrorCode};
use crate::store::{Remembered, Store, StoreError, StoredMessage, Ticket};

pub use channel::{ChannelKind, Target};
pub use conn::{ConnHandle, Delivery, Outbound, View};

/// Replay reads the log in pages of this many messages, waiting for the client between pages.
const REPLAY_PAGE: usize = 256;
/// A subscribe switches to live delivery once fewer than this many messages remain to replay;
/// those are queued without waiting, under the channel lock.
const SWITCH_TAIL: u64 = 64;

/// Why the hub refused a request; each maps to one stable error code.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The channel name is not in the table.
    #[error(transparent)]
    Name(#[from] channel::NameError),
    /// The rights table says no.
    #[error(transparent)]
    Denied(#[from] channel::Denied),
    /// The connection already holds this subscription.
    #[error("already subscribed to {0}")]
    AlreadySubscribed(String),
    /// The connection holds no such subscription.
    #[error("not subscribed to {0}")]
    NotSubscribed(String),
    /// Too many subscriptions on one connection.
    #[error("subscription limit ({0}) reached")]
    TooManySubscriptions(usize),
    /// No such message to acknowledge.
    #[error("no message {seq} on {channel}")]
    NoSuchMessage {
        /// Channel named.
        channel: String,
        /// Seq named.
        seq: u64,
    },
    /// The connection went away while the request was served.
    #[error("connection closed")]
    Gone,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HubError {
    /// The stable error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            HubError::Name(_) => ErrorCode::BadRequest,
            HubError::Denied(channel::Denied::Forbidden(_)) => ErrorCode::Forbidden,
            HubError::Denied(channel::Denied::BadRequest(_)) => ErrorCode::BadRequest,
            HubError::Denied(channel::Denied::Conflict(_)) => ErrorCode::Conflict,
            HubError::AlreadySubscribed(_) => ErrorCode::Conflict,
            HubError::NotSubscribed(_) | HubError::NoSuchMessage { .. } => ErrorCode::NotFound,
            HubError::TooManySubscriptions(_) => ErrorCode::RateLimited,
            HubError::Gone | HubError::Store(_) => ErrorCode::Internal,
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The user is at `limits.max_connections_per_user`.
    #[error("connection limit per user ({0}) reached")]
    PerUser(usize),
    /// The server is at `limits.max_connections`.
    #[error("server connection limit ({0}) reached")]
    Total(usize),
    /// The token's org differs from the one the user is registered to.
    #[error("user is registered to another organization")]
    OrgConflict,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One channel that has subscribers or messages on their way to durability.
pub struct Channel {
    /// Stored (unique) name.
    pub name: Arc<str>,
    /// Name as subscribers see it.
    pub public: Arc<str>,
    /// Kind.
    pub kind: ChannelKind,
    state: Mutex<ChannelState>,
}

struct ChannelState {
    subscribers: HashMap<u64, (Arc<ConnHandle>, View)>,
    /// Appended to the log, waiting for a flush; in seq order.
    pending: VecDeque<(Ticket, Arc<StoredMessage>)>,
    /// The last seq handed to subscribers: the durable head as far as readers are concerned.
    delivered: u64,
    /// Set when the registry dropped this entry; holders must look the channel up again.
    removed: bool,
}

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
}

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

/// One message in a [`History`].
#[derive(Debug, Serialize)]
pub struct HistoryMessage {
    /// Seq.
    pub seq: u64,
    /// Publish time.
    pub timestamp: u64,
    /// Payload.
    pub data: rmpv::Value,
    /// Whether recipients must acknowledge it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ack_required: bool,
}

/// A user's live connections, for limits and status.
#[derive(Default)]
struct UserEntry {
    conns: Vec<Arc<ConnHandle>>,
    last_seen: u64,
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

/// Releases a connection's slot when dropped.
pub struct Admission {
    hub: Arc<Hub>,
    conn: Arc<ConnHandle>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.hub.leave(&self.conn);
    }
}

/// The channel hub.
pub struct Hub {
    store: Arc<Store>,
    /// Replaced whole by a reload (SIGHUP); connections copy what they need when they start.
    limits: arc_swap::ArcSwap<Limits>,
    channels: RwLock<HashMap<Arc<str>, Arc<Channel>>>,
    /// Seqs of live-only channels, which the store does not keep.
    live_heads: Mutex<HashMap<Arc<str>, u64>>,
    /// The latest keyframe of each video channel, sent first to a late viewer.
    keyframes: Mutex<HashMap<Arc<str>, Arc<StoredMessage>>>,
    users: Mutex<HashMap<Arc<str>, UserEntry>>,
    total: AtomicUsize,
    next_id: AtomicU64,
    /// Per-user rates, rebuilt when a reload changes them.
    rates: arc_swap::ArcSwap<Rates>,
    /// Bumped whenever messages become readable; long-poll requests wait on it.
    released: watch::Sender<u64>,
    /// Counters for stats and metrics.
    pub stats: Stats,
}

fn is_keyframe(data: &rmpv::Value) -> bool {
    data.as_map().is_some_and(|m| {
        m.iter()
            .any(|(k, v)| k.as_str() == Some("keyframe") && v.as_bool() == Some(true))
    })
}

/// The per-user rate limiters of one set of limits.
struct Rates {
    messages: DefaultKeyedRateLimiter<Arc<str>>,
    video: DefaultKeyedRateLimiter<Arc<str>>,
}

impl Rates {
    fn new(limits: &Limits) -> Self {
        Rates {
            messages: RateLimiter::keyed(quota(limits.messages_per_second, limits.message_burst)),
            video: RateLimiter::keyed(quota(
                limits.video_frames_per_second,
                limits.video_frames_per_second,
            )),
        }
    }
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate))
}

impl Hub {
    /// A hub over `store` with `limits`.
    pub fn new(store: Arc<Store>, limits: Limits) -> Arc<Self> {
        let rates = Rates::new(&limits);
        Arc::new(Hub {
            store,
            limits: arc_swap::ArcSwap::from_pointee(limits),
            channels: RwLock::default(),
            live_heads: Mutex::default(),
            keyframes: Mutex::default(),
            users: Mutex::default(),
            total: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            rates: arc_swap::ArcSwap::from_pointee(rates),
            released: watch::channel(0).0,
            stats: Stats::default(),
        })
    }

    /// The store's epoch.
    pub fn epoch(&self) -> &str {
        self.store.epoch()
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The limits in force now.
    pub fn limits(&self) -> Arc<Limits> {
        self.limits.load_full()
    }

    /// Replaces the limits (a reload): new connections and requests use them; rates start
    /// afresh if they changed; open connections keep the clocks they started with.
    pub fn set_limits(&self, limits: Limits) {
        let old = self.limits.load();
        if (
            old.messages_per_second,
            old.message_burst,
            old.video_frames_per_second,
        ) != (
            limits.messages_per_second,
            limits.message_burst,
            limits.video_frames_per_second,
        ) {
            self.rates.store(Arc::new(Rates::new(&limits)));
        }
        self.limits.store(Arc::new(limits));
    }

    /// Admits a new connection if the limits allow, registering it under its user.
    pub fn admit(
        self: &Arc<Self>,
        identity: Identity,
        encoding: Encoding,
        protocol: crate::metrics::Protocol,
        peer: std::net::SocketAddr,
    ) -> Result<
        (
            Arc<ConnHandle>,
            tokio::sync::mpsc::Receiver<Outbound>,
            Admission,
        ),
        Refusal,
    > {
        if let Some(org) = &identity.org {
            if let Remembered::Conflict(_) =
                self.store
                    .remember_user(&identity.user, org, now_millis())?
            {
                return Err(Refusal::OrgConflict);
            }
        }
        let limits = self.limits();
        let max_total = limits.max_connections;
        if self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max_total).then_some(n + 1)
            })
            .is_err()
        {
            return Err(Refusal::Total(max_total));
        }
        let mut users = self.users.lock();
        let entry = users.entry(identity.user.clone()).or_default();
        if entry.conns.len() >= limits.max_connections_per_user {
            drop(users);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::PerUser(limits.max_connections_per_user));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (conn, rx) = ConnHandle::new(
            id,
            identity,
            encoding,
            protocol,
            peer,
            limits.outbound_queue,
        );
        let first = entry.conns.is_empty();
        entry.conns.push(conn.clone());
        entry.last_seen = now_millis();
        drop(users);
        self.stats.connected(protocol);
        if first {
            self.presence(&conn.identity, "join");
        }
        Ok((
            conn.clone(),
            rx,
            Admission {
                hub: self.clone(),
                conn,
            },
        ))
    }

    fn leave(&self, conn: &ConnHandle) {
        let mut users = self.users.lock();
        let mut last = false;
        if let Some(entry) = users.get_mut(&conn.identity.user) {
            entry.conns.retain(|c| c.id != conn.id);
            entry.last_seen = now_millis();
            last = entry.conns.is_empty();
        }
        drop(users);
        self.total.fetch_sub(1, Ordering::AcqRel);
        self.stats.disconnected(conn.protocol);
        if last {
            self.presence(&conn.identity, "leave");
        }
    }

    /// Publishes a presence event of `who` on its org's presence channel (live only).
    pub fn presence(&self, who: &Identity, event: &str) {
        self.presence_event(who, event, Vec::new());
    }

    /// A presence event with extra fields (e.g. typing: room, active).
    pub fn presence_event(&self, who: &Identity, event: &str, extra: Vec<(&str, rmpv::Value)>) {
        let Some(org) = &who.org else { return };
        let mut fields = vec![
            (rmpv::Value::from("event"), rmpv::Value::from(event)),
            (rmpv::Value::from("user"), rmpv::Value::from(&*who.user)),
            (rmpv::Value::from("at"), rmpv::Value::from(now_millis())),
        ];
        if let Some(name) = &who.name {
            fields.push((rmpv::Value::from("name"), rmpv::Value::from(name.as_str())));
        }
        for (k, v) in extra {
            fields.push((rmpv::Value::from(k), v));
        }
        let target = Target::Org {
            kind: ChannelKind::OrgPresence,
            org: org.to_string(),
        };
        let stored = target.stored_name();
        self.publish_live(&target, &stored, rmpv::Value::Map(fields));
    }

    /// Users of `org` with at least one connection: (user, name, connections, since).
    pub fn online(&self, org: &str) -> Vec<(String, Option<String>, usize, u64)> {
        self.users
            .lock()
            .iter()
            .filter_map(|(user, e)| {
                let first = e.conns.first()?;
                first.identity.in_org(org).then(|| {
                    let since = e.conns.iter().map(|c| c.connected_at).min().unwrap_or(0);
                    (
                        user.to_string(),
                        first.identity.name.clone(),
                        e.conns.len(),
                        since,
                    )
                })
            })
            .collect()
    }

    /// Checks the user's message rate (`video` selects the video frame budget).
    pub fn allow_message(&self, user: &Arc<str>, video: bool) -> bool {
        let rates = self.rates.load();
        let limiter = if video { &rates.video } else { &rates.messages };
        let ok = limiter.check_key(user).is_ok();
        if !ok {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Forgets rate-limiter state of users not seen recently; called periodically.
    pub fn housekeeping(&self) {
        let rates = self.rates.load();
        rates.messages.retain_recent();
        rates.video.retain_recent();
    }

    fn channel_entry(&self, target: &Target, stored: &str) -> Arc<Channel> {
        if let Some(ch) = self.channels.read().get(stored) {
            return ch.clone();
        }
        let mut channels = self.channels.write();
        channels
            .entry(Arc::from(stored))
            .or_insert_with(|| {
                // No entry means nothing is pending: everything appended so far is durable and
                // was delivered by the entry that existed then, so the head is the durable head.
                Arc::new(Channel {
                    name: Arc::from(stored),
                    public: Arc::from(target.public_name()),
                    kind: target.kind(),
                    state: Mutex::new(ChannelState {
                        subscribers: HashMap::new(),
                        pending: VecDeque::new(),
                        delivered: self.store.head(stored),
                        removed: false,
                    }),
                })
            })
            .clone()
    }

    /// Drops the entry when it has no subscriber and nothing pending.
    fn maybe_remove(&self, channel: &Arc<Channel>) {
        {
            let st = channel.state.lock();
            if !st.subscribers.is_empty() || !st.pending.is_empty() || st.removed {
                return;
            }
        }
        let mut channels = self.channels.write();
        let mut st = channel.state.lock();
        if st.subscribers.is_empty() && st.pending.is_empty() && !st.removed {
            st.removed = true;
            channels.remove(&channel.name);
        }
    }

    /// The last seq readers may see on a stored channel.
    fn durable_head(&self, stored: &str) -> u64 {
        let channels = self.channels.read();
        match channels.get(stored) {
            Some(ch) => ch.state.lock().delivered,
            None => self.store.head(stored),
        }
    }

    /// Subscribes `conn` to `target`.
    ///
    /// First `reply` is queued with where the channel stands; then, waiting for the client
    /// between pages, the messages it asked to resume (`since`, or its offline queue, plus any
    /// `ack_required` message it has not acknowledged); finally, under the channel's lock, the
    /// few messages published meanwhile and the registration for live delivery — so nothing is
    /// missed or doubled at the switch, while publishing goes on.
    pub async fn subscribe(
        &self,
        conn: &Arc<ConnHandle>,
        target: &Target,
        view: View,
        since: Option<u64>,
        epoch: Option<&str>,
        reply: impl FnOnce(&SubscribeInfo) -> Option<Bytes>,
    ) -> Result<Subscribed, HubError> {
        channel::can_subscribe(&conn.identity, target, &*self.store)?;
        let stored = target.stored_name();
        let kind = target.kind();
        let user = &*conn.identity.user;
        let head = self.durable_head(&stored);

        let mut info = SubscribeInfo {
            head,
            recovered: None,
            reset: None,
            first: None,
        };
        let mut replay_from: Option<u64> = None;
        let mut redeliver: Vec<u64> = Vec::new();
        if kind.is_logged() {
            let same_epoch = epoch.is_none_or(|e| e == self.store.epoch());
            let resume = match since {
                Some(_) if !same_epoch => None,
                Some(s) => Some(s),
                // A user's own queue resumes where the user last acknowledged: the offline queue.
                None if kind == ChannelKind::UserQueue => Some(self.store.cursor(user, &stored)?),
                None => None,
            };
            info.first = self.store.first_retained(&stored)?;
            if since.is_some() && !same_epoch {
                info.recovered = Some(false);
                info.reset = Some("epoch");
            } else if let Some(from) = resume {
                let complete = from >= head || info.first.is_some_and(|f| f <= from + 1);
                info.recovered = Some(complete);
                if !complete {
                    info.reset = Some("trimmed");
                }
                replay_from = Some(from.min(head));
            }
            if kind != ChannelKind::UserQueue {
                let upto = replay_from.unwrap_or(head);
                redeliver = self.store.unacknowledged(user, &stored, upto)?;
            }
        }

        if let Some(frame) = reply(&info) {
            if !conn.send(Outbound::Frame(frame)).await {
                return Err(HubError::Gone);
            }
        }
        let public: Arc<str> = Arc::from(target.public_name());
        for seq in redeliver {
            if let Some(message) = self.store.get(&stored, seq)? {
                let d = Arc::new(Delivery::new(public.clone(), kind, message));
                if !conn.send(Outbound::Deliver(d, view)).await {
                    return Err(HubError::Gone);
                }
            }
        }
        // Phase 1: replay page by page, waiting for the client, until little is left. Without a
        // resume point a logged channel still gets everything after the head it was told.
        let mut last = match replay_from {
            None if kind.is_logged() => Some(head),
            other => other,
        };
        if let Some(mut after) = replay_from {
            loop {
                let upto = self.durable_head(&stored);
                if upto.saturating_sub(after) < SWITCH_TAIL {
                    break;
                }
                let page = self.store.read(&stored, after, upto, REPLAY_PAGE)?;
                if page.is_empty() {
                    break;
                }
                for message in page {
                    after = message.seq;
                    let d = Arc::new(Delivery::new(public.clone(), kind, message));
                    if !conn.send(Outbound::Deliver(d, view)).await {
                        return Err(HubError::Gone);
                    }
                }
            }
            last = Some(after);
        }
        // Phase 2: the tail and the switch to live delivery, atomically.
        loop {
            let channel = self.channel_entry(target, &stored);
            let mut st = channel.state.lock();
            if st.removed {
                continue;
            }
            if st.subscribers.contains_key(&conn.id) {
                return Err(HubError::AlreadySubscribed(target.public_name()));
            }
            if kind == ChannelKind::Video {
                let keyframe = self.keyframes.lock().get(&*stored).cloned();
                if let Some(message) = keyframe {
                    let d = Arc::new(Delivery::new(channel.public.clone(), kind, message));
                    let _ = conn.try_send(Outbound::Deliver(d, view));
                }
            }
            if let Some(after) = last {
                for message in self.store.read(&stored, after, st.delivered, usize::MAX)? {
                    let d = Arc::new(Delivery::new(channel.public.clone(), kind, message));
                    if conn.try_send(Outbound::Deliver(d, view)).is_err() {
                        self.slow(
                            conn,
                            "outbound queue full during replay; resubscribe with since",
                        );
                        break;
                    }
                }
            }
            st.subscribers.insert(conn.id, (conn.clone(), view));
            drop(st);
            self.stats.subscriptions.fetch_add(1, Ordering::Relaxed);
            return Ok(Subscribed { channel, info });
        }
    }

    fn slow(&self, conn: &ConnHandle, reason: &str) {
        if conn.close(close::SLOW_CONSUMER, reason) {
            self.stats.slow_disconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes `conn`'s subscription; drops the channel entry when nobody is left.
    pub fn unsubscribe(&self, conn: &ConnHandle, channel: &Arc<Channel>) {
        if channel.state.lock().subscribers.remove(&conn.id).is_some() {
            self.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
        self.maybe_remove(channel);
    }

    /// Publishes on behalf of `who`, after checking the rights table. Returns once the message
    /// is durable (logged channels) and queued to every subscriber.
    pub async fn publish(&self, who: &Identity, req: Publish<'_>) -> Result<Published, HubError> {
        let (target, job_owner) = self.authorize_publish(who, &req)?;
        if let channel::JobOwner::Set(owner) = job_owner {
            if let Target::Job { job } = &target {
                let stored_owner = self.store.claim_job(job, &owner)?;
                // Lost a race with another first publish naming someone else.
                if *stored_owner != *owner {
                    return Err(channel::Denied::Conflict(format!(
                        "job {job} already belongs to another owner"
                    ))
                    .into());
                }
            }
        }
        let started = std::time::Instant::now();
        let seq = self
            .publish_as_lookout(&target, req.data, req.ack_required)
            .await?;
        if target.kind().is_logged() {
            self.stats.publish_latency.observe(started.elapsed());
        }
        Ok(Published {
            channel: target.public_name(),
            seq,
            epoch: self.store.epoch().to_string(),
        })
    }

    /// Checks a publish against the rights table without publishing.
    pub fn authorize_publish(
        &self,
        who: &Identity,
        req: &Publish<'_>,
    ) -> Result<(Target, channel::JobOwner), HubError> {
        let addressee = match req.to {
            Some(to) => Some(to),
            None if req.channel.starts_with("/user/queue/") => None,
            None => Some(&*who.user),
        };
        let target = Target::parse(req.channel, addressee)?;
        let owner = channel::can_publish(who, &target, req.owner, &*self.store)?;
        Ok((target, owner))
    }

    /// Publishes without a rights check: for messages Lookout itself writes (alerts, presence,
    /// fan-in) and for already-authorized requests. Returns the seq once the message is durable.
    pub async fn publish_as_lookout(
        &self,
        target: &Target,
        data: rmpv::Value,
        ack_required: bool,
    ) -> Result<u64, HubError> {
        let stored = target.stored_name();
        let kind = target.kind();
        if !kind.is_logged() {
            return Ok(self.publish_live(target, &stored, data));
        }
        let now = now_millis();
        let (channel, seq, ticket) = loop {
            let channel = self.channel_entry(target, &stored);
            let mut st = channel.state.lock();
            if st.removed {
                continue;
            }
            let (message, ticket) = self.store.append(&stored, now, data, ack_required)?;
            let seq = message.seq;
            st.pending.push_back((ticket, message));
            drop(st);
            break (channel, seq, ticket);
        };
        self.stats.published(kind);
        let durable = self.store.durable(ticket).await;
        self.release(&channel);
        durable?;
        Ok(seq)
    }

    fn publish_live(&self, target: &Target, stored: &str, data: rmpv::Value) -> u64 {
        let seq = {
            let mut heads = self.live_heads.lock();
            let head = heads.entry(Arc::from(stored)).or_insert(0);
            *head += 1;
            *head
        };
        self.stats.published(target.kind());
        let message = Arc::new(StoredMessage {
            seq,
            timestamp: now_millis(),
            data,
            ack_required: false,
        });
        let channels = self.channels.read();
        let entry = channels.get(stored);
        let st = entry.map(|channel| channel.state.lock());
        // Under the channel lock, so a viewer joining now gets this keyframe either from the
        // cache or live, never neither.
        if target.kind() == ChannelKind::Video && is_keyframe(&message.data) {
            self.keyframes
                .lock()
                .insert(Arc::from(stored), message.clone());
        }
        if let (Some(channel), Some(st)) = (entry, st) {
            let d = Arc::new(Delivery::new(channel.public.clone(), channel.kind, message));
            self.fan_out(&st, &d, false);
        }
        seq
    }

    /// Delivers the durable prefix of `channel`'s pending messages, in seq order.
    fn release(&self, channel: &Arc<Channel>) {
        let mut released = false;
        {
            let mut st = channel.state.lock();
            while let Some((ticket, _)) = st.pending.front() {
                if !self.store.is_durable(*ticket) {
                    break;
                }
                let Some((_, message)) = st.pending.pop_front() else {
                    break;
                };
                st.delivered = message.seq;
                let d = Arc::new(Delivery::new(channel.public.clone(), channel.kind, message));
                self.fan_out(&st, &d, true);
                released = true;
            }
        }
        if released {
            self.released.send_modify(|n| *n = n.wrapping_add(1));
        }
        self.maybe_remove(channel);
    }

    fn fan_out(&self, st: &ChannelState, delivery: &Arc<Delivery>, logged: bool) {
        use tokio::sync::mpsc::error::TrySendError;
        for (conn, view) in st.subscribers.values() {
            match conn.try_send(Outbound::Deliver(delivery.clone(), *view)) {
                Ok(()) => self.stats.delivered(delivery.kind),
                Err(TrySendError::Full(_)) if logged => {
                    self.slow(
                        conn,
                        "slow consumer: outbound queue full; resubscribe with since",
                    );
                }
                Err(TrySendError::Full(_)) => {
                    self.stats.dropped_live.fetch_add(1, Ordering::Relaxed);
                }
                // The connection is going away; its reader will unsubscribe.
                Err(TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Records `who`'s acknowledgement of `seq` on `channel`, durably. On the user's own queue it
    /// acknowledges everything up to `seq`; elsewhere the one `ack_required` message.
    pub async fn acknowledge(
        &self,
        who: &Identity,
        channel: &str,
        seq: u64,
    ) -> Result<(), HubError> {
        let target = Target::parse(channel, Some(&who.user))?;
        channel::can_subscribe(who, &target, &*self.store)?;
        let stored = target.stored_name();
        let cumulative = target.kind() == ChannelKind::UserQueue;
        let missing = || HubError::NoSuchMessage {
            channel: target.public_name(),
            seq,
        };
        if seq > self.durable_head(&stored) {
            return Err(missing());
        }
        if !cumulative
            && !self
                .store
                .get(&stored, seq)?
                .is_some_and(|m| m.ack_required)
        {
            return Err(missing());
        }
        let ticket = self
            .store
            .acknowledge(&who.user, &stored, seq, cumulative)?
            .ok_or_else(missing)?;
        self.store.durable(ticket).await?;
        Ok(())
    }

    /// Messages on `channel` after `since`, at most `limit`, with the same rights as subscribe.
    pub fn history(
        &self,
        who: &Identity,
        channel: &str,
        since: u64,
        limit: usize,
    ) -> Result<History, HubError> {
        let target = Target::parse(channel, Some(&who.user))?;
        channel::can_subscribe(who, &target, &*self.store)?;
        let stored = target.stored_name();
        let head = self.durable_head(&stored);
        let first = self.store.first_retained(&stored)?;
        let messages = self
            .store
            .read(&stored, since, head, limit)?
            .into_iter()
            .map(|m| HistoryMessage {
                seq: m.seq,
                timestamp: m.timestamp,
                data: m.data.clone(),
                ack_required: m.ack_required,
            })
            .collect();
        Ok(History {
            channel: target.public_name(),
            epoch: self.store.epoch().to_string(),
            head,
            recovered: since >= head || first.is_some_and(|f| f <= since + 1),
            messages,
        })
    }

    /// Long-poll: waits up to `wait` until any of `channels` (name, since) has messages, then
    /// returns what each has (at most `limit` per channel).
    pub async fn poll(
        &self,
        who: &Identity,
        channels: &[(String, u64)],
        wait: Duration,
        limit: usize,
    ) -> Result<Vec<History>, HubError> {
        for (name, _) in channels {
            let target = Target::parse(name, Some(&who.user))?;
            channel::can_subscribe(who, &target, &*self.store)?;
        }
        let deadline = tokio::time::Instant::now() + wait;
        let mut released = self.released.subscribe();
        loop {
            released.borrow_and_update();
            let mut out = Vec::with_capacity(channels.len());
            for (name, since) in channels {
                out.push(self.history(who, name, *since, limit)?);
            }
            if out.iter().any(|h| !h.messages.is_empty()) {
                return Ok(out);
            }
            match tokio::time::timeout_at(deadline, released.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Ok(out),
            }
        }
    }

    /// Status of one user's connections.
    pub fn user_status(&self, user: &str) -> UserStatus {
        let users = self.users.lock();
        let entry = users.get(user);
        let connections: Vec<ConnStatus> = entry
            .map(|e| {
                e.conns
                    .iter()
                    .map(|c| ConnStatus {
                        session_id: c.session_id.clone(),
                        protocol: c.encoding.subprotocol(),
                        connected_at: c.connected_at,
                        subscriptions: c.subscriptions.load(Ordering::Relaxed),
                        queued: c.queued(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        UserStatus {
            user_id: user.to_string(),
            online: !connections.is_empty(),
            connections,
            last_seen: entry
                .map(|e| e.last_seen)
                .or_else(|| self.store.last_seen(user)),
        }
    }

    /// Users with at least one connection.
    pub fn users_online(&self) -> usize {
        self.users
            .lock()
            .values()
            .filter(|e| !e.conns.is_empty())
            .count()
    }

    /// Channel entries (with subscribers or pending messages).
    pub fn active_channels(&self) -> usize {
        self.channels.read().len()
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Whether `who` may ask for `user`'s status: itself, an admin, or a supervisor or service of
    /// the user's org.
    pub fn may_see_user(&self, who: &Identity, user: &str) -> bool {
        use channel::Directory;
        if *who.user == *user || who.is(Role::Admin) {
            return true;
        }
        (who.is(Role::Supervisor) || who.is(Role::Service))
            && who.org.is_some()
            && self.store.user_org(user) == who.org
    }
}
