//! Subscribing: the rights check, where the channel stands, the replay of what the client
//! missed (its `since`, its offline queue, unacknowledged messages), the switch to live
//! delivery without a gap or a double, and acknowledgements.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::conn::{ConnHandle, Delivery, Outbound, View};
use super::error::HubError;
use super::facts::Facts;
use super::publish::InFlight;
use super::registry::Channel;
use super::requests::{SubscribeInfo, Subscribed};
use super::Hub;
use crate::auth::Identity;
use crate::channel::{self, ChannelKind, Target};
use crate::clock::now_millis;
use crate::store::Cluster;

/// Replay reads the log in pages of this many messages, waiting for the client between pages.
const REPLAY_PAGE: usize = 256;
/// Why a subscriber is closed when its queue overflows while it resumes.
const REPLAY_OVERFLOW: &str = "outbound queue full during replay; resubscribe with since";
/// How long a subscribe waits for the cluster's pub/sub to hear of its channel.
const WATCH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);
/// A subscribe switches to live delivery once fewer than this many messages remain to replay;
/// those are queued without waiting, under the channel lock.
const SWITCH_TAIL: u64 = 64;

impl Hub {
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
        let facts = Facts::about(&*self.store, target).await?;
        channel::can_subscribe(&conn.identity, target, &facts)?;
        let stored = target.stored_name();
        let kind = target.kind();
        // Acknowledgements and cursors are the principal's: (org, user), never the id alone.
        let user = &*conn.identity.key;
        // In cluster mode the node hears of the channel before it says where it stands.
        let _watched = match self.store.cluster() {
            Some(cluster) => Some(self.watch_for(cluster, target, &stored).await?),
            None => None,
        };
        let head = self.durable_head(&stored).await?;

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
                None if kind == ChannelKind::UserQueue => {
                    Some(self.store.cursor(user, &stored).await?)
                }
                None => None,
            };
            info.first = self.store.first_retained(&stored).await?;
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
                redeliver = self.store.unacknowledged(user, &stored, upto).await?;
            }
        }

        if let Some(frame) = reply(&info) {
            if !conn.send(Outbound::frame(frame)).await {
                return Err(HubError::Gone);
            }
        }
        let public: Arc<str> = Arc::from(target.public_name());
        for seq in redeliver {
            if let Some(message) = self.store.get(&stored, seq).await? {
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
                let upto = self.durable_head(&stored).await?;
                if upto.saturating_sub(after) < SWITCH_TAIL {
                    break;
                }
                let page = self.store.read(&stored, after, upto, REPLAY_PAGE).await?;
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
        if kind == ChannelKind::Video {
            if let Some(cluster) = self.store.cluster() {
                // A late viewer on any node gets the latest keyframe, wherever it was sent.
                if let Some(keyframe) = cluster.keyframe(&stored).await? {
                    self.registry.offer_keyframe(&stored, keyframe);
                }
            }
        }
        // Phase 2: the tail and the switch to live delivery, atomically under the channel's
        // lock. The tail comes from the channel's in-memory recent messages; when more was
        // published meanwhile than those hold, it is read from the store first, unlocked, and
        // the switch is tried again.
        loop {
            let channel = self
                .registry
                .entry(target, &stored, || self.store.head(&stored));
            let behind = {
                let mut st = channel.state.lock();
                if st.removed {
                    continue;
                }
                if st.subscribers.contains_key(&conn.id) {
                    return Err(HubError::AlreadySubscribed(target.public_name()));
                }
                let tail = match last {
                    Some(after) => st.tail_after(after).ok_or((after, st.delivered)),
                    None => Ok(Vec::new()),
                };
                match tail {
                    Ok(tail) => {
                        if kind == ChannelKind::Video {
                            let fresh = now_millis().saturating_sub(self.keyframe_ttl_ms());
                            if let Some(message) = self.registry.keyframe(&stored, fresh) {
                                let d =
                                    Arc::new(Delivery::new(channel.public.clone(), kind, message));
                                conn.offer_live(d, view);
                            }
                        }
                        for message in tail {
                            let d = Arc::new(Delivery::new(channel.public.clone(), kind, message));
                            if conn.try_send(Outbound::Deliver(d, view)).is_err() {
                                self.slow(conn, REPLAY_OVERFLOW);
                                break;
                            }
                        }
                        st.subscribers.insert(conn.id, (conn.clone(), view));
                        self.viewers_changed(&channel, &st);
                        drop(st);
                        self.stats.subscriptions.fetch_add(1, Ordering::Relaxed);
                        return Ok(Subscribed { channel, info });
                    }
                    Err(behind) => behind,
                }
            };
            let (after, upto) = behind;
            for message in self.store.read(&stored, after, upto, usize::MAX).await? {
                last = Some(message.seq);
                let d = Arc::new(Delivery::new(public.clone(), kind, message));
                if conn.try_send(Outbound::Deliver(d, view)).is_err() {
                    self.slow(conn, REPLAY_OVERFLOW);
                    return Err(HubError::Gone);
                }
            }
            if last == Some(after) {
                // Nothing could be read up to `upto`: retention removed it meanwhile. The
                // client was told where the log starts; go on from what was delivered.
                last = Some(upto);
            }
        }
    }

    /// Cluster mode: the channel's entry, kept while the subscribe goes on, once this node
    /// hears of its messages. What was appended elsewhere before that is read from the log.
    async fn watch_for(
        &self,
        cluster: &dyn Cluster,
        target: &Target,
        stored: &str,
    ) -> Result<InFlight<'_>, HubError> {
        let pin = self.hold_entry(target, stored).await?;
        if !cluster.until_watched(stored, WATCH_PATIENCE).await {
            tracing::warn!(
                channel = stored,
                "the cluster's pub/sub is slow to subscribe; gaps are filled from the log"
            );
        }
        if target.kind().is_logged() {
            let head = self.store.fresh_head(stored).await?;
            let mut st = pin.channel.state.lock();
            // A new entry (nobody else here needs it) starts from the head as it is now that
            // the node hears of the channel: the messages before are in the log.
            if st.subscribers.is_empty()
                && st.pending.is_empty()
                && st.in_flight == 1
                && st.delivered < head
            {
                st.delivered = head;
                st.recent.clear();
            }
        }
        Ok(pin)
    }

    /// Removes `conn`'s subscription; drops the channel entry when nobody is left.
    pub fn unsubscribe(&self, conn: &ConnHandle, channel: &Arc<Channel>) {
        let mut st = channel.state.lock();
        if st.subscribers.remove(&conn.id).is_some() {
            self.viewers_changed(channel, &st);
            drop(st);
            self.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
        } else {
            drop(st);
        }
        self.registry.maybe_remove(channel);
    }

    /// Records `who`'s acknowledgement of `seq` on `channel`, durably. On the user's own queue it
    /// acknowledges everything up to `seq`; elsewhere the one `ack_required` message.
    pub async fn acknowledge(
        &self,
        who: &Identity,
        channel: &str,
        seq: u64,
    ) -> Result<(), HubError> {
        let target = Target::parse(channel, who.org.as_deref(), Some(&who.user))?;
        let facts = Facts::about(&*self.store, &target).await?;
        channel::can_subscribe(who, &target, &facts)?;
        let stored = target.stored_name();
        let cumulative = target.kind() == ChannelKind::UserQueue;
        let missing = || HubError::NoSuchMessage {
            channel: target.public_name(),
            seq,
        };
        if seq > self.durable_head(&stored).await? {
            return Err(missing());
        }
        if !cumulative
            && !self
                .store
                .get(&stored, seq)
                .await?
                .is_some_and(|m| m.ack_required)
        {
            return Err(missing());
        }
        let ticket = if cumulative {
            self.store.advance_cursor(&who.key, &stored, seq).await?
        } else {
            self.store.acknowledge(&who.key, &stored, seq).await?
        };
        let ticket = ticket.ok_or_else(missing)?;
        self.store.durable(ticket).await?;
        Ok(())
    }
}
