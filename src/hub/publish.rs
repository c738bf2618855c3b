//! Publishing: the rights check, the append to the store, the wait for the commit, and the
//! delivery of each channel's durable messages in seq order to every subscriber's queue.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::conn::{Delivery, Outbound};
use super::error::HubError;
use super::facts::Facts;
use super::lane::Offered;
use super::registry::{Channel, ChannelState};
use super::requests::{Publish, Published, Turn};
use super::Hub;
use crate::auth::Identity;
use crate::channel::{self, ChannelKind, Target};
use crate::clock::now_millis;
use crate::counters::Budget;
use crate::store::{Appended, Draft, StoredMessage, Ticket};

/// Whether a video message is a keyframe (what a late viewer must get first).
pub fn is_keyframe(data: &rmpv::Value) -> bool {
    data.as_map().is_some_and(|m| {
        m.iter()
            .any(|(k, v)| k.as_str() == Some("keyframe") && v.as_bool() == Some(true))
    })
}

/// The store's key for a publish's idempotency key: scoped to the publisher, so one user's
/// keys never answer for another's. Only logged channels keep keys.
fn idempotency_key(who: &Identity, target: &Target, key: &str) -> Result<String, HubError> {
    let bad = |why: &str| {
        Err(HubError::Denied(channel::Denied::BadRequest(format!(
            "idempotency_key {why}"
        ))))
    };
    if key.is_empty() || key.len() > super::requests::MAX_IDEMPOTENCY_KEY {
        return bad(&format!(
            "must be 1 to {} bytes",
            super::requests::MAX_IDEMPOTENCY_KEY
        ));
    }
    if key.chars().any(char::is_control) {
        return bad("must not contain control characters");
    }
    if !target.kind().is_logged() {
        return bad(
            "needs a logged channel: live-only channels keep nothing to answer a retry from",
        );
    }
    Ok(format!("{}\0{key}", who.key))
}

/// A private message (`/user/queue/messages`) says who sent it: the server sets a map's
/// `from` to the publisher, whatever the client put there, so a reply goes to the real sender.
fn stamp_sender(data: &mut rmpv::Value, user: &str) {
    if let rmpv::Value::Map(entries) = data {
        entries.retain(|(k, _)| k.as_str() != Some("from"));
        entries.push(("from".into(), user.into()));
    }
}

/// What a live message supersedes in a connection's live lane: on an org's locations, the
/// guard's previous position still waiting there.
fn supersedes(kind: ChannelKind, message: &StoredMessage) -> Option<Arc<str>> {
    if kind != ChannelKind::OrgLocations {
        return None;
    }
    let user = message
        .data
        .as_map()?
        .iter()
        .find_map(|(k, v)| (k.as_str() == Some("user")).then(|| v.as_str()).flatten())?;
    Some(Arc::from(user))
}

/// A publish that asked the store for a seq: keeps its channel entry alive until the message
/// is queued as pending (or the append failed), whatever happens to the publisher.
pub(super) struct InFlight<'a> {
    pub(super) hub: &'a Hub,
    pub(super) channel: Arc<Channel>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.channel.state.lock().in_flight -= 1;
        self.hub.registry.maybe_remove(&self.channel);
    }
}

/// A message appended and waiting for its commit: if the publisher goes away first (a REST
/// client that hung up, a shutdown), a task of the hub delivers it once it is durable, so it
/// never waits for the next publish on its channel.
struct Releasing<'a> {
    hub: &'a Hub,
    channel: Arc<Channel>,
    ticket: Ticket,
    armed: bool,
}

impl Drop for Releasing<'_> {
    fn drop(&mut self) {
        if !self.armed || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let Some(hub) = self.hub.me.upgrade() else {
            return;
        };
        let (channel, ticket) = (self.channel.clone(), self.ticket);
        self.hub.tasks.spawn(async move {
            // A failed commit stops the process; what is durable is delivered either way.
            let _ = hub.store.durable(ticket).await;
            hub.release(&channel);
        });
    }
}

impl Hub {
    /// The channel's entry, kept alive until the returned guard drops. In cluster mode an
    /// entry created now starts from the head as it is now: other nodes may have appended
    /// since this one last heard of the channel.
    pub(super) async fn hold_entry(
        &self,
        target: &Target,
        stored: &str,
    ) -> Result<InFlight<'_>, HubError> {
        if self.store.cluster().is_some() && self.registry.get(stored).is_none() {
            self.store.fresh_head(stored).await?;
        }
        Ok(loop {
            let channel = self
                .registry
                .entry(target, stored, || self.store.head(stored));
            let mut st = channel.state.lock();
            if st.removed {
                continue;
            }
            st.in_flight += 1;
            drop(st);
            break InFlight { hub: self, channel };
        })
    }

    /// Publishes on behalf of `who`, after checking the rights table. Returns once the message
    /// is durable (logged channels) and queued to every subscriber.
    pub async fn publish(&self, who: &Identity, req: Publish<'_>) -> Result<Published, HubError> {
        self.publish_in_turn(who, req, None).await
    }

    /// [`Hub::publish`], letting the connection's next publish go ahead once this one has
    /// its seq (`turn` is dropped then).
    pub async fn publish_in_turn(
        &self,
        who: &Identity,
        req: Publish<'_>,
        turn: Turn,
    ) -> Result<Published, HubError> {
        let (target, job_owner) = self.authorize_publish(who, &req).await?;
        crate::protocol::check_portable(&req.data).map_err(|why| {
            HubError::Denied(channel::Denied::BadRequest(format!("data holds {why}")))
        })?;
        if let Target::Room { org, .. } = &target {
            self.room_quota(org, &target.stored_name()).await?;
        }
        if let channel::JobOwner::Set(owner) = job_owner {
            if let Target::Job { org, job } = &target {
                let stored_owner = self
                    .store
                    .claim_job(&super::facts::job_key(org, job), &owner)
                    .await?;
                // Lost a race with another first publish naming someone else.
                if *stored_owner != *owner {
                    return Err(channel::Denied::Conflict(format!(
                        "job {job} already belongs to another owner"
                    ))
                    .into());
                }
            }
        }
        let key = match req.idempotency_key {
            None => None,
            Some(key) => Some(idempotency_key(who, &target, key)?),
        };
        let mut data = req.data;
        if matches!(&target, Target::UserQueue { name, .. } if name == "messages") {
            stamp_sender(&mut data, &who.user);
        }
        let started = std::time::Instant::now();
        let seq = if target.kind().is_logged() {
            self.publish_logged(&target, data, req.ack_required, key.as_deref(), turn)
                .await?
        } else {
            self.publish_live(&target, &target.stored_name(), data)
                .await?
        };
        if target.kind().is_logged() {
            self.stats.publish_latency.observe(started.elapsed());
        }
        Ok(Published {
            channel: target.public_name(),
            seq,
            epoch: self.store.epoch().to_string(),
        })
    }

    /// Refuses the first message of a new room when the org has `limits.max_rooms_per_org`
    /// rooms already. Two first publishes racing may both pass: the quota bounds what one
    /// client can create, it is not a count to the unit.
    async fn room_quota(&self, org: &str, stored: &str) -> Result<(), HubError> {
        if self.store.head(stored) > 0 {
            return Ok(());
        }
        let max = self.limits().max_rooms_per_org;
        let rooms = self
            .store
            .count_channels(&channel::names::org_rooms(org))
            .await?;
        if rooms >= max {
            self.stats.refused(Budget::Rooms);
            return Err(HubError::OverBudget(format!(
                "org {org} has {max} rooms already (limits.max_rooms_per_org)"
            )));
        }
        Ok(())
    }

    /// Checks a publish against the rights table without publishing.
    pub async fn authorize_publish(
        &self,
        who: &Identity,
        req: &Publish<'_>,
    ) -> Result<(Target, channel::JobOwner), HubError> {
        let addressee = match req.to {
            Some(to) => Some(to),
            None if channel::names::is_user_queue(req.channel) => None,
            None => Some(&*who.user),
        };
        let target = Target::parse(req.channel, who.org.as_deref(), addressee)?;
        let facts = Facts::about(&*self.store, &target).await?;
        let owner = channel::can_publish(who, &target, req.owner, &facts)?;
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
        if !target.kind().is_logged() {
            return self.publish_live(target, &target.stored_name(), data).await;
        }
        self.publish_logged(target, data, ack_required, None, None)
            .await
    }

    /// [`Hub::publish_as_lookout`] on a logged channel, once per `key`: a message arriving
    /// again under the same key (a broker's redelivery) is stored once, and answered with the
    /// seq it was stored under.
    pub async fn publish_as_lookout_once(
        &self,
        target: &Target,
        data: rmpv::Value,
        key: &str,
    ) -> Result<u64, HubError> {
        if !target.kind().is_logged() {
            return Err(HubError::Denied(channel::Denied::BadRequest(format!(
                "{} is live-only: nothing to store once",
                target.stored_name()
            ))));
        }
        self.publish_logged(target, data, false, Some(key), None)
            .await
    }

    /// Publishes on a logged channel, once per `key` when there is one. Returns the seq once
    /// the message is durable.
    async fn publish_logged(
        &self,
        target: &Target,
        data: rmpv::Value,
        ack_required: bool,
        key: Option<&str>,
        turn: Turn,
    ) -> Result<u64, HubError> {
        let stored = target.stored_name();
        let kind = target.kind();
        let in_flight = self.hold_entry(target, &stored).await?;
        let draft = Draft {
            timestamp: now_millis(),
            data,
            ack_required,
        };
        let (message, ticket) = match key {
            None => self.store.append(&stored, draft).await?,
            Some(key) => match self.store.append_once(&stored, draft, key).await? {
                Appended::New(message, ticket) => (message, ticket),
                // A retry: the first publish delivers; this one only waits for it to be
                // durable, then gets the same reply.
                Appended::Repeat(seq, ticket) => {
                    drop(in_flight);
                    drop(turn);
                    self.stats.idempotent_repeat();
                    self.store.durable(ticket).await?;
                    return Ok(seq);
                }
            },
        };
        let seq = message.seq;
        let channel = in_flight.channel.clone();
        {
            let mut st = channel.state.lock();
            // In cluster mode another node's gap filling may have delivered it already.
            if seq > st.delivered {
                st.pending.insert(seq, (ticket, message));
            }
        }
        drop(in_flight);
        // The seq is taken: the connection's next publish may take its own.
        drop(turn);
        self.stats.published(kind);
        let mut releasing = Releasing {
            hub: self,
            channel: channel.clone(),
            ticket,
            armed: true,
        };
        let durable = self.store.durable(ticket).await;
        releasing.armed = false;
        self.release(&channel);
        durable?;
        Ok(seq)
    }

    /// Publishes on a live-only channel: no log. On one node, a seq of the channel's own and
    /// fan-out at once; in cluster mode, the cluster numbers it and every node watching the
    /// channel (this one too) delivers it as it hears it.
    pub(super) async fn publish_live(
        &self,
        target: &Target,
        stored: &str,
        data: rmpv::Value,
    ) -> Result<u64, HubError> {
        let kind = target.kind();
        let Some(cluster) = self.store.cluster() else {
            return Ok(self.publish_live_here(kind, stored, data));
        };
        self.stats.published(kind);
        let keyframe = kind == ChannelKind::Video && is_keyframe(&data);
        let draft = Draft {
            timestamp: now_millis(),
            data,
            ack_required: false,
        };
        let ttl = keyframe.then(|| self.limits().keyframe_ttl);
        Ok(cluster.broadcast(stored, &draft, ttl).await?)
    }

    /// [`Hub::publish_live`] on one node: numbered and delivered at once.
    pub(super) fn publish_live_here(
        &self,
        kind: ChannelKind,
        stored: &str,
        data: rmpv::Value,
    ) -> u64 {
        self.stats.published(kind);
        let seq = self.registry.next_live_seq(stored);
        let message = Arc::new(StoredMessage {
            seq,
            timestamp: now_millis(),
            data,
            ack_required: false,
        });
        let keyframe = kind == ChannelKind::Video && is_keyframe(&message.data);
        self.deliver_live(stored, message, keyframe);
        seq
    }

    /// Hands a live-only message to the channel's subscribers' live lanes, keeping it as the
    /// channel's latest keyframe when it is one.
    pub(super) fn deliver_live(&self, stored: &str, message: Arc<StoredMessage>, keyframe: bool) {
        let Some(channel) = self.registry.get(stored) else {
            if keyframe {
                self.registry.keep_keyframe(stored, message);
            }
            return;
        };
        let st = channel.state.lock();
        // Under the channel lock, so a viewer joining now gets this keyframe either from the
        // cache or live, never neither.
        if keyframe {
            self.registry.keep_keyframe(stored, message.clone());
        }
        let supersedes = supersedes(channel.kind, &message);
        let d = Delivery::new(channel.public.clone(), channel.kind, message);
        self.fan_out(&st, &Arc::new(d.superseding(supersedes)), false);
    }

    /// Delivers the durable run of `channel`'s pending messages that follows what was
    /// delivered, in seq order.
    pub(super) fn release(&self, channel: &Arc<Channel>) {
        let mut released = false;
        {
            let mut st = channel.state.lock();
            loop {
                let next = st.delivered + 1;
                let Some(entry) = st.pending.first_entry() else {
                    break;
                };
                if *entry.key() < next {
                    // Delivered already (a remote copy or a gap filled from the log).
                    entry.remove();
                    continue;
                }
                if *entry.key() != next || !self.store.is_durable(entry.get().0) {
                    break;
                }
                let (_, message) = entry.remove();
                st.mark_delivered(&message);
                let d = Arc::new(Delivery::new(channel.public.clone(), channel.kind, message));
                self.fan_out(&st, &d, true);
                released = true;
            }
        }
        if released {
            self.released.send_modify(|n| *n = n.wrapping_add(1));
        }
        self.registry.maybe_remove(channel);
    }

    fn fan_out(&self, st: &ChannelState, delivery: &Arc<Delivery>, logged: bool) {
        use tokio::sync::mpsc::error::TrySendError;
        for (conn, view) in st.subscribers.values() {
            if !logged {
                // The live lane: never ahead of an alert, shed or superseded when behind.
                match conn.offer_live(delivery.clone(), *view) {
                    Offered::Queued => self.stats.delivered(delivery.kind),
                    Offered::Replaced => {
                        self.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                    }
                    Offered::Dropped => {
                        self.stats.dropped_live.fetch_add(1, Ordering::Relaxed);
                    }
                    Offered::OverBytes => {
                        self.stats.dropped_live.fetch_add(1, Ordering::Relaxed);
                        self.stats.refused(crate::counters::Budget::OutboundBytes);
                    }
                }
                continue;
            }
            match conn.try_send(Outbound::Deliver(delivery.clone(), *view)) {
                Ok(()) => self.stats.delivered(delivery.kind),
                // Only logged traffic and replies fill this queue: the backlog is the client's.
                Err(TrySendError::Full(_)) => {
                    self.slow(
                        conn,
                        "slow consumer: outbound queue full; resubscribe with since",
                    );
                }
                // The connection is going away; its reader will unsubscribe.
                Err(TrySendError::Closed(_)) => {}
            }
        }
    }
}
