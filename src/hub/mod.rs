//! The hub: channels, their subscribers, connection admission and fan-out.
//!
//! Data path: a session asks the hub to publish → the hub checks the rights table
//! ([`channel`]), takes the next seq from the [`Store`] and hands one shared [`Delivery`] to
//! every subscriber's bounded queue with `try_send`. The hub never awaits and never writes to a
//! socket, so a slow client can only hurt itself. When a queue is full the policy is:
//! live-only channels drop the message for that subscriber; logged channels close that
//! connection with 4002 (`slow consumer`) so the client resumes with `since` and loses nothing.
//!
//! Lock order, never reversed: the channel registry, then one channel's subscriber list.
//! Both are synchronous locks held for short, non-blocking sections.

pub mod channel;
pub mod conn;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::auth::{Identity, Role};
use crate::config::Limits;
use crate::metrics::Stats;
use crate::protocol::{close, now_millis, Encoding, ErrorCode};
use crate::store::{Remembered, Store, StoreError};

pub use channel::{ChannelKind, Target};
pub use conn::{ConnHandle, Delivery, Outbound, View};

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
            HubError::NotSubscribed(_) => ErrorCode::NotFound,
            HubError::TooManySubscriptions(_) => ErrorCode::RateLimited,
            HubError::Store(_) => ErrorCode::Internal,
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

/// One channel with live subscribers.
pub struct Channel {
    /// Stored (unique) name.
    pub name: Arc<str>,
    /// Name as subscribers see it.
    pub public: Arc<str>,
    /// Kind.
    pub kind: ChannelKind,
    subscribers: Mutex<Subscribers>,
}

#[derive(Default)]
struct Subscribers {
    by_conn: HashMap<u64, (Arc<ConnHandle>, View)>,
    // Set when the registry dropped this entry; holders must look the channel up again.
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
    /// Whether the channel is logged.
    #[serde(skip)]
    pub logged: bool,
}

/// What a successful subscribe reports.
#[derive(Clone)]
pub struct Subscribed {
    /// The channel entry, to unsubscribe later.
    pub channel: Arc<Channel>,
    /// Head at subscribe time.
    pub head: u64,
    /// With `since`: whether every missed message was replayed.
    pub recovered: Option<bool>,
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
    store: Arc<dyn Store>,
    limits: Limits,
    channels: RwLock<HashMap<Arc<str>, Arc<Channel>>>,
    users: Mutex<HashMap<Arc<str>, UserEntry>>,
    total: AtomicUsize,
    next_id: AtomicU64,
    messages: DefaultKeyedRateLimiter<Arc<str>>,
    video: DefaultKeyedRateLimiter<Arc<str>>,
    /// Counters for stats and metrics.
    pub stats: Stats,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate))
}

impl Hub {
    /// A hub over `store` with `limits`.
    pub fn new(store: Arc<dyn Store>, limits: Limits) -> Arc<Self> {
        let messages = RateLimiter::keyed(quota(limits.messages_per_second, limits.message_burst));
        let video = RateLimiter::keyed(quota(
            limits.video_frames_per_second,
            limits.video_frames_per_second,
        ));
        Arc::new(Hub {
            store,
            limits,
            channels: RwLock::default(),
            users: Mutex::default(),
            total: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            messages,
            video,
            stats: Stats::default(),
        })
    }

    /// The store's epoch.
    pub fn epoch(&self) -> &str {
        self.store.epoch()
    }

    /// The store, for read-only REST queries.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Admits a new connection if the limits allow, registering it under its user.
    pub fn admit(
        self: &Arc<Self>,
        identity: Identity,
        encoding: Encoding,
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
            if let Remembered::Conflict(_) = self.store.remember_user(&identity.user, org)? {
                return Err(Refusal::OrgConflict);
            }
        }
        let max_total = self.limits.max_connections;
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
        if entry.conns.len() >= self.limits.max_connections_per_user {
            drop(users);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::PerUser(self.limits.max_connections_per_user));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (conn, rx) = ConnHandle::new(id, identity, encoding, peer, self.limits.outbound_queue);
        entry.conns.push(conn.clone());
        entry.last_seen = now_millis();
        drop(users);
        self.stats.connected(encoding);
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
        if let Some(entry) = users.get_mut(&conn.identity.user) {
            entry.conns.retain(|c| c.id != conn.id);
            entry.last_seen = now_millis();
        }
        drop(users);
        self.total.fetch_sub(1, Ordering::AcqRel);
        self.stats.disconnected(conn.encoding);
    }

    /// Checks the user's message rate (`video` selects the video frame budget).
    pub fn allow_message(&self, user: &Arc<str>, video: bool) -> bool {
        let limiter = if video { &self.video } else { &self.messages };
        let ok = limiter.check_key(user).is_ok();
        if !ok {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Forgets rate-limiter state of users not seen recently; called periodically.
    pub fn housekeeping(&self) {
        self.messages.retain_recent();
        self.video.retain_recent();
    }

    /// Subscribes `conn` to `target`. `on_subscribed` builds the reply, which is queued before
    /// any replayed message so the client learns the head first; replay and the switch to live
    /// delivery happen under the channel's lock, so nothing is missed or doubled at the switch.
    pub fn subscribe(
        &self,
        conn: &Arc<ConnHandle>,
        target: &Target,
        view: View,
        since: Option<u64>,
        epoch: Option<&str>,
        on_subscribed: impl FnOnce(u64, Option<bool>) -> Option<bytes::Bytes>,
    ) -> Result<Subscribed, HubError> {
        channel::can_subscribe(&conn.identity, target, &*self.store)?;
        let stored = target.stored_name();
        loop {
            let channel = self.channel_entry(target, &stored);
            let mut subs = channel.subscribers.lock();
            if subs.removed {
                continue;
            }
            if subs.by_conn.contains_key(&conn.id) {
                return Err(HubError::AlreadySubscribed(target.public_name()));
            }
            let same_epoch = epoch.is_none_or(|e| e == self.store.epoch());
            let (head, recovered, replay) = match since {
                Some(since) if channel.kind.is_logged() && same_epoch => {
                    let r = self
                        .store
                        .read_after(&stored, since, self.limits.outbound_queue)?;
                    (r.head, Some(r.complete), r.messages)
                }
                Some(_) => (self.store.head(&stored), Some(false), Vec::new()),
                None => (self.store.head(&stored), None, Vec::new()),
            };
            if let Some(reply) = on_subscribed(head, recovered) {
                if conn.try_send(Outbound::Frame(reply)).is_err()
                    && conn.close(close::SLOW_CONSUMER, "outbound queue full")
                {
                    self.stats.slow_disconnects.fetch_add(1, Ordering::Relaxed);
                }
            }
            for message in replay {
                let d = Arc::new(Delivery::new(channel.public.clone(), channel.kind, message));
                if conn.try_send(Outbound::Deliver(d, view)).is_err() {
                    if conn.close(
                        close::SLOW_CONSUMER,
                        "outbound queue full during replay; resubscribe with since",
                    ) {
                        self.stats.slow_disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
            }
            subs.by_conn.insert(conn.id, (conn.clone(), view));
            drop(subs);
            self.stats.subscriptions.fetch_add(1, Ordering::Relaxed);
            return Ok(Subscribed {
                channel,
                head,
                recovered,
            });
        }
    }

    fn channel_entry(&self, target: &Target, stored: &str) -> Arc<Channel> {
        if let Some(ch) = self.channels.read().get(stored) {
            return ch.clone();
        }
        let mut channels = self.channels.write();
        channels
            .entry(Arc::from(stored))
            .or_insert_with(|| {
                Arc::new(Channel {
                    name: Arc::from(stored),
                    public: Arc::from(target.public_name()),
                    kind: target.kind(),
                    subscribers: Mutex::default(),
                })
            })
            .clone()
    }

    /// Removes `conn`'s subscription; drops the channel entry when nobody is left.
    pub fn unsubscribe(&self, conn: &ConnHandle, channel: &Arc<Channel>) {
        let now_empty = {
            let mut subs = channel.subscribers.lock();
            if subs.by_conn.remove(&conn.id).is_some() {
                self.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
            }
            subs.by_conn.is_empty()
        };
        if now_empty {
            let mut channels = self.channels.write();
            let mut subs = channel.subscribers.lock();
            if subs.by_conn.is_empty() && !subs.removed {
                subs.removed = true;
                channels.remove(&channel.name);
            }
        }
    }

    /// Publishes on behalf of `who`, after checking the rights table.
    pub fn publish(&self, who: &Identity, req: Publish<'_>) -> Result<Published, HubError> {
        let addressee = match req.to {
            Some(to) => Some(to),
            None if req.channel.starts_with("/user/queue/") => None,
            None => Some(&*who.user),
        };
        let target = Target::parse(req.channel, addressee)?;
        if let channel::JobOwner::Set(owner) =
            channel::can_publish(who, &target, req.owner, &*self.store)?
        {
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
        let seq = self.publish_as_lookout(&target, req.data, req.ack_required)?;
        Ok(Published {
            channel: target.public_name(),
            seq,
            epoch: self.store.epoch().to_string(),
            logged: target.kind().is_logged(),
        })
    }

    /// Publishes without a rights check: for messages Lookout itself writes (alerts, presence,
    /// fan-in) and for already-authorized requests. Returns the seq.
    pub fn publish_as_lookout(
        &self,
        target: &Target,
        data: rmpv::Value,
        ack_required: bool,
    ) -> Result<u64, HubError> {
        let stored = target.stored_name();
        let kind = target.kind();
        let logged = kind.is_logged();
        let now = now_millis();
        // The registry read lock is held while the seq is taken so that a subscriber creating
        // the channel entry (under the write lock) sees either this message in the log or the
        // live delivery, never neither.
        let channels = self.channels.read();
        let entry = channels.get(stored.as_str());
        let Some(channel) = entry else {
            let msg = self
                .store
                .append(&stored, logged, now, data, ack_required)?;
            self.stats.published(kind);
            return Ok(msg.seq);
        };
        let subs = channel.subscribers.lock();
        let msg = self
            .store
            .append(&stored, logged, now, data, ack_required)?;
        self.stats.published(kind);
        let seq = msg.seq;
        let delivery = Arc::new(Delivery::new(channel.public.clone(), kind, msg));
        for (conn, view) in subs.by_conn.values() {
            match conn.try_send(Outbound::Deliver(delivery.clone(), *view)) {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) if logged => {
                    if conn.close(
                        close::SLOW_CONSUMER,
                        "slow consumer: outbound queue full; resubscribe with since",
                    ) {
                        self.stats.slow_disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    self.stats.dropped_live.fetch_add(1, Ordering::Relaxed);
                }
                // The connection is going away; its reader will unsubscribe.
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        Ok(seq)
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
            last_seen: entry.map(|e| e.last_seen),
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

    /// Channels with at least one subscriber.
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
        if *who.user == *user || who.is(Role::Admin) {
            return true;
        }
        (who.is(Role::Supervisor) || who.is(Role::Service))
            && who.org.is_some()
            && self.store.user_org(user) == who.org
    }
}
