//! The hub: channels, their subscribers, connection admission and fan-out.
//!
//! Data path of a publish on a logged channel ([`publish`]): check the rights table
//! ([`crate::channel`]) on the facts the store knows ([`facts`]) → append to the [`Store`]
//! (the engine gives the seq) and queue the message as pending on its channel ([`registry`]) →
//! wait for the commit → deliver the channel's durable prefix, in seq order, to every
//! subscriber's bounded queue with `try_send` ([`conn`]) → acknowledge the publisher.
//! Live-only channels (video, org locations, presence) skip the store. In cluster mode
//! [`remote`] delivers what the other nodes publish the same way. Subscribing, with the
//! replay of what a client missed, is [`subscribe`]; history and long-poll are [`history`];
//! connections, their limits and presence are [`admission`] over [`users`].
//!
//! The hub never writes to a socket and never waits on a client, so a slow client can only hurt
//! itself. When a queue is full: live-only channels drop the message for that subscriber;
//! logged channels close that connection with 4002 (`slow consumer`) so the client resumes
//! with `since` and loses nothing.
//!
//! Lock order, never reversed: the channel registry, then one channel's state, then the
//! keyframe cache or the users map ([`viewers`] tells a guard's devices under the channel's lock). All are synchronous locks held for short sections and never across an
//! await; the store is called with no lock held.

pub mod admission;
pub mod conn;
pub mod conversation;
pub mod error;
pub mod facts;
pub mod history;
pub mod lane;
pub mod publish;
pub mod registry;
pub mod remote;
pub mod requests;
pub mod subscribe;
pub mod users;
pub mod viewers;

#[cfg(test)]
mod tests;

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::clock::now_millis;
use crate::config::Limits;
use crate::counters::Stats;
use crate::protocol::close;
use crate::store::Store;

pub use self::conn::{ConnHandle, Delivery, Outbound, View};
pub use self::error::{HubError, Refusal};
pub use self::registry::Channel;
pub use self::requests::{
    ConnStatus, History, HistoryMessage, Publish, Published, ResponseBudget, SubscribeInfo,
    Subscribed, Turn, UserStatus,
};
pub use self::users::Joined;
pub use crate::channel::{ChannelKind, Target};

/// The channel hub.
pub struct Hub {
    /// This hub, for the tasks it starts on its own (a release after its publisher left).
    me: Weak<Hub>,
    store: Arc<dyn Store>,
    /// Replaced whole by a reload (SIGHUP); connections copy what they need when they start.
    limits: arc_swap::ArcSwap<Limits>,
    registry: registry::Registry,
    users: users::Users,
    /// REST reads running now, per principal (`limits.max_requests_per_user`); an entry
    /// lives while its count is above zero.
    reads: parking_lot::Mutex<std::collections::HashMap<Arc<str>, usize>>,
    /// Principals and roles whose membership this process has recorded (`Record::Member`).
    members_seen: parking_lot::Mutex<std::collections::HashSet<(Arc<str>, crate::auth::Roles)>>,
    /// Per-user rates, rebuilt when a reload changes them.
    rates: arc_swap::ArcSwap<Rates>,
    /// Bumped whenever messages become readable; long-poll requests wait on it.
    released: watch::Sender<u64>,
    /// Tasks the hub starts (releases, STOMP auto-acks), so shutdown can wait for them
    /// before the final flush.
    tasks: TaskTracker,
    /// Counters for stats and metrics.
    pub stats: Stats,
}

/// The per-user rate limiters of one set of limits.
struct Rates {
    messages: DefaultKeyedRateLimiter<Arc<str>>,
    video: DefaultKeyedRateLimiter<Arc<str>>,
    alerts: DefaultKeyedRateLimiter<Arc<str>>,
}

impl Rates {
    fn new(limits: &Limits) -> Self {
        Rates {
            messages: RateLimiter::keyed(quota(limits.messages_per_second, limits.message_burst)),
            video: RateLimiter::keyed(quota(
                limits.video_frames_per_second,
                limits.video_frames_per_second,
            )),
            alerts: RateLimiter::keyed({
                let per_minute =
                    NonZeroU32::new(limits.alerts_per_minute).unwrap_or(NonZeroU32::MIN);
                Quota::per_minute(per_minute).allow_burst(per_minute)
            }),
        }
    }
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate))
}

impl Hub {
    /// A hub over `store` with `limits`.
    pub fn new(store: Arc<dyn Store>, limits: Limits) -> Arc<Self> {
        let rates = Rates::new(&limits);
        let registry = registry::Registry::default();
        if store.cluster().is_some() {
            let watching = store.clone();
            registry.set_watcher(Box::new(move |channel, watch| {
                if let Some(cluster) = watching.cluster() {
                    cluster.watch(channel, watch);
                }
            }));
        }
        Arc::new_cyclic(|me| Hub {
            me: me.clone(),
            store,
            limits: arc_swap::ArcSwap::from_pointee(limits),
            registry,
            users: users::Users::default(),
            reads: Default::default(),
            members_seen: Default::default(),
            rates: arc_swap::ArcSwap::from_pointee(rates),
            released: watch::channel(0).0,
            tasks: TaskTracker::new(),
            stats: Stats::default(),
        })
    }

    /// The tasks the hub started; shutdown closes and waits for them before the last flush.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// The store's epoch.
    pub fn epoch(&self) -> &str {
        self.store.epoch()
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

    /// Checks the principal's rate of emergencies (`limits.alerts_per_minute`), whatever
    /// transport raised them.
    pub fn allow_alert(&self, key: &Arc<str>) -> bool {
        let ok = self.rates.load().alerts.check_key(key).is_ok();
        if !ok {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        ok
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

    /// Forgets what nobody needs any more, called periodically: rate-limiter state of users
    /// not seen recently, users gone for longer than `limits.idle_timeout`, keyframes older
    /// than `limits.keyframe_ttl`. (Live-only seqs stay: clients drop a seq they saw before.)
    pub fn housekeeping(&self) {
        let rates = self.rates.load();
        rates.messages.retain_recent();
        rates.video.retain_recent();
        rates.alerts.retain_recent();
        let now = now_millis();
        let idle = self.limits().idle_timeout.as_millis() as u64;
        self.users.forget_gone(now.saturating_sub(idle));
        self.registry
            .forget_keyframes(now.saturating_sub(self.keyframe_ttl_ms()));
    }

    /// `limits.keyframe_ttl`, in ms.
    fn keyframe_ttl_ms(&self) -> u64 {
        u64::try_from(self.limits().keyframe_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Channel entries (with subscribers or pending messages).
    pub fn active_channels(&self) -> usize {
        self.registry.len()
    }

    /// Closes `conn` as a slow consumer: it resumes with `since` and loses nothing.
    fn slow(&self, conn: &ConnHandle, reason: &str) {
        if conn.close(close::SLOW_CONSUMER, reason) {
            self.stats.slow_disconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The last seq readers may see on a stored channel: what its entry delivered, else the
    /// store's head (as it is now: other nodes may have appended since this one heard).
    async fn durable_head(&self, stored: &str) -> Result<u64, crate::store::StoreError> {
        match self.registry.delivered(stored) {
            Some(delivered) => Ok(delivered),
            None => self.store.fresh_head(stored).await,
        }
    }
}
