//! A session's subscriptions, as both readers keep them: each hub entry under the session's
//! own key (the channel for the native protocol, the subscription id for STOMP), the limit per
//! connection, and the connection's idle clock, which runs while it holds none.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::clock::now_millis;
use crate::counters::Budget;
use crate::hub::{Channel, ConnHandle, Hub, HubError};

/// The hub entries a session holds, by the session's key for them.
#[derive(Default)]
pub struct Subscriptions {
    held: HashMap<String, Arc<Channel>>,
}

impl Subscriptions {
    /// Whether `key` is held.
    pub fn contains(&self, key: &str) -> bool {
        self.held.contains_key(key)
    }

    /// Refuses another subscription when the connection holds the hub's limit already.
    pub fn room_for_one(&self, hub: &Hub) -> Result<(), HubError> {
        let max = hub.limits().max_subscriptions_per_connection;
        if self.held.len() >= max {
            hub.stats.refused(Budget::Subscriptions);
            return Err(HubError::TooManySubscriptions(max));
        }
        Ok(())
    }

    /// Keeps a subscription the hub granted; the idle clock stops.
    pub fn add(&mut self, conn: &ConnHandle, key: String, channel: Arc<Channel>) {
        self.held.insert(key, channel);
        conn.subscriptions.fetch_add(1, Ordering::Relaxed);
        conn.wake.notify_one();
    }

    /// Drops one subscription from the hub; the idle clock starts when it was the last. Says
    /// whether `key` was held.
    pub fn remove(&mut self, hub: &Hub, conn: &ConnHandle, key: &str) -> bool {
        let Some(channel) = self.held.remove(key) else {
            return false;
        };
        hub.unsubscribe(conn, &channel);
        if conn.subscriptions.fetch_sub(1, Ordering::Relaxed) == 1 {
            conn.idle_since.store(now_millis(), Ordering::Relaxed);
            conn.wake.notify_one();
        }
        true
    }

    /// Drops every subscription from the hub, when the session ends.
    pub fn clear(&mut self, hub: &Hub, conn: &ConnHandle) {
        for (_, channel) in self.held.drain() {
            hub.unsubscribe(conn, &channel);
        }
    }
}
