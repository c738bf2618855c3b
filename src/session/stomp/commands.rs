//! What each STOMP command does on the hub: `CONNECT` negotiation, `SUBSCRIBE` with its ack
//! mode, `UNSUBSCRIBE`, `SEND` (within the publish budget) and `ACK`/`NACK`.
//!
//! The frame dispatch and transactions are in `reader.rs`, below this file.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::frames::{decode_body, parse_heartbeat, receipt, required, strip_app, Fatal};
use super::reader::StompSession;
use super::shared::{records_acks, AckMode, Subscription};
use crate::channel::{is_video, ChannelKind, Target};
use crate::failure::ErrorCode;
use crate::hub::{Delivery, HubError, Outbound, Publish, View};
use crate::stomp::connect_token;
use crate::stomp::frame::Frame;

/// Versions spoken, best first.
pub const VERSIONS: [&str; 3] = ["1.2", "1.1", "1.0"];
/// How long a `SEND` over the rate limit waits for budget before the session is ended: STOMP
/// has no non-fatal error, so a fast sender is slowed down rather than refused.
const RATE_WAIT: Duration = Duration::from_secs(2);

impl StompSession {
    pub(super) fn connect(&mut self, frame: &Frame) -> Result<Bytes, Fatal> {
        let offered = frame.get("accept-version").unwrap_or("1.0");
        let version = VERSIONS
            .iter()
            .find(|v| offered.split(',').any(|o| o.trim() == **v))
            .ok_or_else(|| {
                Fatal::new(
                    "unsupported version",
                    format!("supported versions are {}", VERSIONS.join(",")),
                )
            })?;
        if let Some(token) = connect_token(frame) {
            let who = self.ctx.auth.verify(token).map_err(|e| {
                self.ctx.hub.stats.auth_failed();
                Fatal::new("unauthorized", e.to_string())
            })?;
            // As a native refresh: the same principal, roles and device, or the session would
            // become someone it was not admitted as.
            let me = &self.conn.identity;
            if who.key != me.key || who.roles != me.roles || who.device != me.device {
                return Err(Fatal::new(
                    "unauthorized",
                    "the CONNECT token is for another user, org, roles or device than the connection's",
                ));
            }
            if who.exp > self.conn.exp.load(Ordering::Relaxed) {
                self.conn.exp.store(who.exp, Ordering::Relaxed);
            }
        }
        let (cx, cy) = match frame.get("heart-beat") {
            None => (0, 0),
            Some(hb) => parse_heartbeat(hb)
                .ok_or_else(|| Fatal::new("malformed heart-beat", hb.to_string()))?,
        };
        // We can send at the ping interval and want to hear from the client as often.
        let ours = self.ctx.hub.limits().ping_interval.as_millis() as u64;
        let out = if cy == 0 { 0 } else { ours.max(cy) };
        self.shared.heartbeat_out_ms.store(out, Ordering::Relaxed);
        let _ = cx;
        self.conn.wake.notify_one();
        self.version = Some(version);
        let connected = Frame::new("CONNECTED")
            .header("version", *version)
            .header("heart-beat", format!("{ours},{ours}"))
            .header("server", format!("lookout/{}", crate::version::VERSION))
            .header("session", self.conn.session_id.clone())
            .header("user-name", self.conn.identity.user.to_string());
        Ok(Bytes::from(connected.to_bytes()))
    }

    pub(super) async fn subscribe(&mut self, frame: &Frame) -> Result<Option<Bytes>, Fatal> {
        let destination = required(frame, "destination")?;
        let id = match frame.get("id") {
            Some(id) => id.to_string(),
            // 1.0 made `id` optional: the destination names the subscription.
            None if self.version == Some("1.0") => destination.to_string(),
            None => return Err(Fatal::new("missing header", "SUBSCRIBE needs `id`")),
        };
        let ack = AckMode::parse(frame.get("ack"))
            .ok_or_else(|| Fatal::new("bad ack mode", "use auto, client or client-individual"))?;
        let since = match frame.get("since") {
            None => None,
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| Fatal::new("bad since", "`since` must be a seq"))?,
            ),
        };
        let epoch = frame.get("epoch");
        let channel = strip_app(destination);
        let target = Target::parse(
            channel,
            self.conn.identity.org.as_deref(),
            Some(&self.conn.identity.user),
        )
        .map_err(|e| Fatal::of(&HubError::from(e)).about(destination))?;
        let public: Arc<str> = target.public_name().into();
        if self.subscriptions.contains(&id) {
            return Err(Fatal::new("duplicate subscription id", id));
        }
        self.subscriptions
            .room_for_one(&self.ctx.hub)
            .map_err(|e| Fatal::of(&e))?;
        {
            let mut table = self.shared.table.lock();
            if table.by_channel.contains_key(&public) {
                return Err(Fatal::of(&HubError::AlreadySubscribed(public.to_string())));
            }
            // Registered before the hub replays, so the writer can render the replay.
            table.by_channel.insert(
                public.clone(),
                Subscription {
                    id: id.clone(),
                    ack,
                    pending: BTreeMap::new(),
                },
            );
            table.channel_of.insert(id.clone(), public.clone());
        }
        let receipt_id = frame.get("receipt").map(str::to_string);
        let result = self
            .ctx
            .hub
            .subscribe(&self.conn, &target, View::Native, since, epoch, |info| {
                let r = receipt_id.as_ref()?;
                let mut f = Frame::new("RECEIPT")
                    .header("receipt-id", r.clone())
                    .header("head", info.head.to_string());
                if let Some(recovered) = info.recovered {
                    f = f.header("recovered", recovered.to_string());
                }
                if let Some(reset) = info.reset {
                    f = f.header("reset", reset);
                }
                if let Some(first) = info.first {
                    f = f.header("first", first.to_string());
                }
                Some(Bytes::from(f.to_bytes()))
            })
            .await;
        match result {
            Ok(sub) => {
                self.subscriptions.add(&self.conn, id, sub.channel);
                Ok(None)
            }
            Err(e) => {
                let mut table = self.shared.table.lock();
                table.remove(&public);
                table.channel_of.remove(&id);
                Err(Fatal::of(&e).about(destination))
            }
        }
    }

    pub(super) fn unsubscribe(&mut self, frame: &Frame) -> Result<Option<Bytes>, Fatal> {
        let id = match frame.get("id") {
            Some(id) => id,
            None if self.version == Some("1.0") => required(frame, "destination")?,
            None => return Err(Fatal::new("missing header", "UNSUBSCRIBE needs `id`")),
        };
        if !self.subscriptions.contains(id) {
            return Err(Fatal::new("no such subscription", id.to_string()));
        }
        {
            let mut table = self.shared.table.lock();
            if let Some(channel) = table.channel_of.remove(id) {
                table.remove(&channel);
            }
        }
        self.subscriptions.remove(&self.ctx.hub, &self.conn, id);
        Ok(receipt(frame, &[]))
    }

    pub(super) async fn send(&mut self, frame: &Frame) -> Result<Option<Bytes>, Fatal> {
        let destination = required(frame, "destination")?;
        let channel = strip_app(destination);
        let data = decode_body(frame)?;
        let video = is_video(channel);
        let user = &self.conn.identity.key;
        let deadline = tokio::time::Instant::now() + RATE_WAIT;
        while !self.ctx.hub.allow_message(user, video) {
            if tokio::time::Instant::now() >= deadline {
                return Err(Fatal::new(
                    ErrorCode::RateLimited.as_str(),
                    "message rate exceeded; slow down",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let request = Publish {
            channel,
            to: frame.get("to"),
            owner: frame.get("owner"),
            data,
            ack_required: frame.get("ack-required") == Some("true"),
            idempotency_key: frame.get("idempotency-key"),
        };
        match self.ctx.field.publish(&self.conn.identity, request).await {
            Ok(p) => {
                let seq = p.published.seq.to_string();
                let mut extra = vec![("seq", seq.as_str()), ("epoch", p.published.epoch.as_str())];
                if let Some(alert) = p.alert_id.as_deref() {
                    extra.push(("alert-id", alert));
                }
                Ok(receipt(frame, &extra))
            }
            Err(e) => Err(Fatal::of(&e).about(destination)),
        }
    }

    pub(super) async fn ack(&mut self, frame: &Frame, nack: bool) -> Result<Option<Bytes>, Fatal> {
        // 1.2 names the message by `id` (our `ack` header); 1.1 and 1.0 by `message-id`.
        let ack_id = frame
            .get("id")
            .or(frame.get("message-id"))
            .ok_or_else(|| Fatal::new("missing header", "ACK/NACK needs `id`"))?;
        let (sub_id, seq) = ack_id
            .rsplit_once('@')
            .and_then(|(s, q)| Some((s, q.parse::<u64>().ok()?)))
            .ok_or_else(|| Fatal::new("no such message", ack_id.to_string()))?;
        let (channel, taken) = {
            let mut table = self.shared.table.lock();
            let channel = table
                .channel_of
                .get(sub_id)
                .cloned()
                .ok_or_else(|| Fatal::new("no such subscription", sub_id.to_string()))?;
            let sub = table
                .by_channel
                .get_mut(&channel)
                .ok_or_else(|| Fatal::new("no such subscription", sub_id.to_string()))?;
            if !sub.pending.contains_key(&seq) {
                return Err(Fatal::new(
                    "no such message",
                    format!("{ack_id} is not awaiting acknowledgement"),
                ));
            }
            let taken: Vec<Arc<Delivery>> = if sub.ack == AckMode::Client && !nack {
                let rest = sub.pending.split_off(&(seq + 1));
                std::mem::replace(&mut sub.pending, rest)
                    .into_values()
                    .collect()
            } else {
                sub.pending.remove(&seq).into_iter().collect()
            };
            table.unacked -= taken.len();
            (channel, taken)
        };
        if nack {
            // Redelivered at once, to the same subscription, with the same ack id.
            for delivery in taken {
                if !self
                    .conn
                    .send(Outbound::Deliver(delivery, View::Native))
                    .await
                {
                    return Ok(None);
                }
            }
            return Ok(receipt(frame, &[]));
        }
        let recorded: Vec<&Arc<Delivery>> = taken.iter().filter(|d| records_acks(d)).collect();
        let cumulative = taken.first().map(|d| d.kind) == Some(ChannelKind::UserQueue);
        let seqs: Vec<u64> = if cumulative {
            recorded
                .iter()
                .map(|d| d.message.seq)
                .max()
                .into_iter()
                .collect()
        } else {
            recorded.iter().map(|d| d.message.seq).collect()
        };
        for seq in seqs {
            self.ctx
                .hub
                .acknowledge(&self.conn.identity, &channel, seq)
                .await
                .map_err(|e| Fatal::of(&e))?;
        }
        Ok(receipt(frame, &[]))
    }
}
