//! The native protocol's reader: client messages (`subscribe`, `publish`, `ack`, `refresh`,
//! alert actions, …) turned into hub and field requests, and their replies queued for the
//! writer. Nothing here writes to the transport.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::context::{next_message, Flow, SessionContext, Source};
use super::pipeline::Pipeline;
use super::positions::{answer_shed, Fix, MAX_FIX_BYTES};
use super::subscriptions::Subscriptions;
use crate::channel::names::{self, is_video};
use crate::channel::Target;
use crate::failure::{ErrorCode, Failure, Report};
use crate::hub::{ConnHandle, HubError, Outbound, Publish, Turn, View};
use crate::protocol::{
    ClientMsg, Encoding, ErrorFrame, IdOnly, Reply, ReplyFields, RequestId, Simple,
};

/// The reader half of a native session.
pub struct Reader {
    ctx: SessionContext,
    conn: Arc<ConnHandle>,
    /// Public channel name → hub entry.
    subscriptions: Subscriptions,
    /// Publishes awaiting their commit.
    pipeline: Pipeline,
    /// The one location channel this connection hands fixes over for (its first).
    fix_channel: Option<String>,
}

impl Reader {
    /// A reader for `conn`.
    pub fn new(ctx: SessionContext, conn: Arc<ConnHandle>) -> Self {
        let depth = ctx.hub.limits().max_publishes_in_flight;
        Reader {
            ctx,
            conn,
            subscriptions: Subscriptions::default(),
            pipeline: Pipeline::new(depth),
            fix_channel: None,
        }
    }

    /// Reads until the peer is gone or the writer stops the reader.
    pub async fn run<S: Source>(&mut self, source: &mut S, stop: &CancellationToken) {
        while let Some((text, bytes)) = next_message(source, &self.conn, stop).await {
            // Boxed: handling a message is a large future (subscribe with replay, publish,
            // alert actions) that would otherwise be part of every idle connection's task.
            if let Flow::Stop = Box::pin(self.message(text, &bytes)).await {
                return;
            }
        }
    }

    /// Drops the session's subscriptions from the hub.
    pub fn finish(&mut self) {
        self.subscriptions.clear(&self.ctx.hub, &self.conn);
    }

    async fn message(&mut self, text: bool, bytes: &[u8]) -> Flow {
        let encoding = self.conn.encoding;
        self.ctx.hub.stats.received.fetch_add(1, Ordering::Relaxed);
        let framed_right = text == (encoding == Encoding::Json);
        // Decoded once; a frame of the wrong type is refused below whatever it holds.
        let decoded = encoding.decode::<ClientMsg>(bytes);
        // Publishes pipeline; a guard's plain fix goes to the position pipeline without
        // waiting for anything.
        if !(framed_right && matches!(decoded, Ok(ClientMsg::Publish { .. }))) {
            // Its reply (or error) comes after those of the publishes before it.
            self.pipeline.barrier().await;
        }
        if !framed_right {
            let msg = match encoding {
                Encoding::Json => "lookout.json takes text frames",
                Encoding::MsgPack => "lookout.msgpack takes binary frames",
            };
            return self.error(None, ErrorCode::BadRequest, msg).await;
        }
        let msg: ClientMsg = match decoded {
            Ok(msg) => msg,
            Err(e) => {
                let id = encoding.decode::<IdOnly>(bytes).unwrap_or_default().id;
                return self
                    .error(id.as_ref(), ErrorCode::BadRequest, &e.to_string())
                    .await;
            }
        };
        let limits = self.ctx.hub.limits();
        let video = matches!(&msg, ClientMsg::Publish { channel, .. } if is_video(channel));
        if bytes.len() > limits.max_message_size && !video {
            self.conn
                .close(crate::protocol::close::TOO_BIG, "message too large");
            return Flow::Stop;
        }
        let exempt = matches!(msg, ClientMsg::Ping { .. } | ClientMsg::Refresh { .. });
        if !exempt && !self.ctx.hub.allow_message(&self.conn.identity.key, video) {
            self.pipeline.barrier().await;
            let id = request_id(&msg);
            return self
                .error(
                    id,
                    ErrorCode::RateLimited,
                    "message rate exceeded; slow down",
                )
                .await;
        }
        self.dispatch(msg, bytes.len()).await
    }

    async fn dispatch(&mut self, msg: ClientMsg, size: usize) -> Flow {
        match msg {
            ClientMsg::Subscribe {
                id,
                channel,
                since,
                epoch,
            } => {
                self.subscribe(id.as_ref(), &channel, View::Native, since, epoch.as_deref())
                    .await
            }
            ClientMsg::SubscribeChannel { id, channel } => {
                self.subscribe(id.as_ref(), &channel, View::JobStatus, None, None)
                    .await
            }
            ClientMsg::SubscribeJob { id, job_id } => {
                let channel = names::job(&job_id);
                self.subscribe(id.as_ref(), &channel, View::JobStatus, None, None)
                    .await
            }
            ClientMsg::Unsubscribe { id, channel } => self.unsubscribe(id.as_ref(), &channel).await,
            ClientMsg::UnsubscribeJob { id, job_id } => {
                self.unsubscribe(id.as_ref(), &names::job(&job_id)).await
            }
            ClientMsg::Publish {
                id,
                channel,
                data,
                ack,
                to,
                owner,
                idempotency_key,
            } => {
                let decoded = Decoded {
                    id,
                    channel,
                    data,
                    ack,
                    to,
                    owner,
                    idempotency_key,
                };
                // Fixes for the connection's first location channel only (see positions).
                if decoded.is_plain_fix(size)
                    && *self
                        .fix_channel
                        .get_or_insert_with(|| decoded.channel.clone())
                        == decoded.channel
                {
                    return self.hand_over(decoded).await;
                }
                let encoding = self.conn.encoding;
                if names::emergency_user(&decoded.channel).is_some() {
                    // An emergency is handled by the reader itself, on its way to the urgent
                    // lane at once: a task of its own would first wait its turn in the busy
                    // run queue (PANIC latency tripled under 10,000 guards: the compare bench's field load).
                    self.pipeline.barrier().await;
                    let reply = publish(
                        &self.ctx.field,
                        &self.conn.identity,
                        encoding,
                        decoded,
                        None,
                    )
                    .await;
                    if let Some(bytes) = reply {
                        if !self.conn.send(Outbound::frame(bytes)).await {
                            return Flow::Stop;
                        }
                    }
                    return Flow::Continue;
                }
                let field = self.ctx.field.clone();
                let who = self.conn.identity.clone();
                self.pipeline
                    .start(&self.conn, move |turn| async move {
                        publish(&field, &who, encoding, decoded, turn).await
                    })
                    .await;
                Flow::Continue
            }
            ClientMsg::Ack { id, channel, seq } => {
                match self
                    .ctx
                    .hub
                    .acknowledge(&self.conn.identity, &channel, seq)
                    .await
                {
                    Ok(()) => {
                        let fields = ReplyFields {
                            channel: Some(&channel),
                            seq: Some(seq),
                            ..Default::default()
                        };
                        self.reply(id.as_ref(), fields).await
                    }
                    Err(e) => self.hub_error(id.as_ref(), e).await,
                }
            }
            ClientMsg::Ping { id } => {
                let pong = Simple {
                    kind: "pong",
                    id: id.as_ref(),
                    code: None,
                    message: None,
                };
                self.send_encoded(&pong).await
            }
            ClientMsg::Refresh { id, token } => self.refresh(id.as_ref(), &token).await,
            ClientMsg::AlertAck { id, alert_id, note } => {
                let alerts = self.ctx.field.alerts();
                let result = alerts
                    .acknowledge(&self.conn.identity, &alert_id, note)
                    .await;
                self.alert_reply(id.as_ref(), result).await
            }
            ClientMsg::AlertResolve { id, alert_id, note } => {
                let who = &self.conn.identity;
                let alerts = self.ctx.field.alerts();
                let result = alerts
                    .resolve(Some(who), &alert_id, &who.user, note, Vec::new())
                    .await;
                self.alert_reply(id.as_ref(), result).await
            }
            ClientMsg::Typing { id, room, active } => {
                let mut extra = vec![("active", rmpv::Value::from(active))];
                if let Some(room) = room {
                    extra.push(("room", rmpv::Value::from(room)));
                }
                self.ctx
                    .hub
                    .presence_event(&self.conn.identity, "typing", extra);
                self.reply(id.as_ref(), ReplyFields::default()).await
            }
        }
    }

    /// Gives a plain fix to the position pipeline; answers the one it replaced as shed.
    async fn hand_over(&mut self, decoded: Decoded) -> Flow {
        let fix = Fix {
            conn: self.conn.clone(),
            id: decoded.id,
            channel: decoded.channel,
            data: decoded.data,
        };
        if let Some(replaced) = self.ctx.positions.hand_over(fix) {
            answer_shed(replaced).await;
        }
        Flow::Continue
    }

    async fn subscribe(
        &mut self,
        id: Option<&RequestId>,
        channel: &str,
        view: View,
        since: Option<u64>,
        epoch: Option<&str>,
    ) -> Flow {
        let target = match Target::parse(
            channel,
            self.conn.identity.org.as_deref(),
            Some(&self.conn.identity.user),
        ) {
            Ok(t) => t,
            Err(e) => return self.hub_error(id, e.into()).await,
        };
        let public = target.public_name();
        if self.subscriptions.contains(&public) {
            return self
                .hub_error(id, HubError::AlreadySubscribed(public))
                .await;
        }
        if let Err(e) = self.subscriptions.room_for_one(&self.ctx.hub) {
            return self.hub_error(id, e).await;
        }
        let encoding = self.conn.encoding;
        let hub_epoch = self.ctx.hub.epoch().to_string();
        let result = self
            .ctx
            .hub
            .subscribe(&self.conn, &target, view, since, epoch, |info| {
                let fields = ReplyFields {
                    channel: Some(&public),
                    epoch: Some(&hub_epoch),
                    head: Some(info.head),
                    recovered: info.recovered,
                    reset: info.reset,
                    first: info.first,
                    ..Default::default()
                };
                encoding.encode(&Reply::new(id, fields)).ok()
            })
            .await;
        match result {
            Ok(sub) => {
                self.subscriptions.add(&self.conn, public, sub.channel);
                Flow::Continue
            }
            Err(e) => self.hub_error(id, e).await,
        }
    }

    async fn unsubscribe(&mut self, id: Option<&RequestId>, channel: &str) -> Flow {
        let public = match Target::parse(
            channel,
            self.conn.identity.org.as_deref(),
            Some(&self.conn.identity.user),
        ) {
            Ok(t) => t.public_name(),
            Err(e) => return self.hub_error(id, e.into()).await,
        };
        if !self
            .subscriptions
            .remove(&self.ctx.hub, &self.conn, &public)
        {
            return self.hub_error(id, HubError::NotSubscribed(public)).await;
        }
        let fields = ReplyFields {
            channel: Some(&public),
            ..Default::default()
        };
        self.reply(id, fields).await
    }

    async fn refresh(&mut self, id: Option<&RequestId>, token: &str) -> Flow {
        match self.ctx.auth.verify_fresh(token).await {
            // The session is extended only for the same principal with the same roles on the
            // same device: a refresh never changes what the session may do, and a session whose
            // device was revoked is not kept alive by a token from elsewhere.
            Ok(new)
                if new.key == self.conn.identity.key
                    && new.roles == self.conn.identity.roles
                    && new.device == self.conn.identity.device =>
            {
                self.conn.exp.store(new.exp, Ordering::Relaxed);
                self.conn.wake.notify_one();
                let fields = ReplyFields {
                    exp: Some(new.exp),
                    ..Default::default()
                };
                self.reply(id, fields).await
            }
            Ok(_) => {
                self.error(
                    id,
                    ErrorCode::Forbidden,
                    "a refresh token must be for the same user, org, roles and device",
                )
                .await
            }
            Err(e) => {
                self.error(id, ErrorCode::Unauthorized, &e.to_string())
                    .await
            }
        }
    }

    async fn reply(&self, id: Option<&RequestId>, fields: ReplyFields<'_>) -> Flow {
        self.send_encoded(&Reply::new(id, fields)).await
    }

    async fn hub_error(&self, id: Option<&RequestId>, e: HubError) -> Flow {
        if let HubError::Gone = e {
            return Flow::Stop;
        }
        self.fail(id, &e).await
    }

    /// Reports a failure to the client (a fault of ours as "internal error", logged).
    async fn fail(&self, id: Option<&RequestId>, e: &dyn Failure) -> Flow {
        let report = Report::of(e);
        self.error(id, report.code, &report.message).await
    }

    async fn alert_reply(
        &self,
        id: Option<&RequestId>,
        result: Result<crate::alerts::Alert, crate::alerts::AlertError>,
    ) -> Flow {
        match result {
            Ok(alert) => {
                let fields = ReplyFields {
                    alert_id: Some(&alert.id),
                    state: Some(alert.state.as_str()),
                    ..Default::default()
                };
                self.reply(id, fields).await
            }
            Err(e) => self.fail(id, &e).await,
        }
    }

    async fn error(&self, id: Option<&RequestId>, code: ErrorCode, message: &str) -> Flow {
        self.send_encoded(&ErrorFrame::new(id, code, message)).await
    }

    async fn send_encoded<T: serde::Serialize>(&self, frame: &T) -> Flow {
        match self.conn.encoding.encode(frame) {
            Ok(bytes) => {
                if self.conn.send(Outbound::frame(bytes)).await {
                    Flow::Continue
                } else {
                    Flow::Stop
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a reply");
                Flow::Continue
            }
        }
    }
}

/// A publish as the client sent it, owned so that it can run in a task of its own.
struct Decoded {
    id: Option<RequestId>,
    channel: String,
    data: rmpv::Value,
    ack: bool,
    to: Option<String>,
    owner: Option<String>,
    idempotency_key: Option<String>,
}

impl Decoded {
    /// A location fix with nothing asked beyond storing it, small enough for a slot.
    fn is_plain_fix(&self, size: usize) -> bool {
        names::location_user(&self.channel).is_some()
            && !self.ack
            && self.to.is_none()
            && self.owner.is_none()
            && self.idempotency_key.is_none()
            && size <= MAX_FIX_BYTES
    }
}

/// Runs one publish; returns its reply, if there is one to send.
async fn publish(
    field: &crate::field::Field,
    who: &crate::auth::Identity,
    encoding: Encoding,
    decoded: Decoded,
    turn: Turn,
) -> Option<bytes::Bytes> {
    let request = Publish {
        channel: &decoded.channel,
        to: decoded.to.as_deref(),
        owner: decoded.owner.as_deref(),
        data: decoded.data,
        ack_required: decoded.ack,
        idempotency_key: decoded.idempotency_key.as_deref(),
    };
    let result = field.publish_in_turn(who, request, turn).await;
    super::reply::publish_reply(encoding, decoded.id.as_ref(), result)
}

fn request_id(msg: &ClientMsg) -> Option<&RequestId> {
    match msg {
        ClientMsg::Subscribe { id, .. }
        | ClientMsg::Unsubscribe { id, .. }
        | ClientMsg::Publish { id, .. }
        | ClientMsg::Ack { id, .. }
        | ClientMsg::Ping { id }
        | ClientMsg::Refresh { id, .. }
        | ClientMsg::SubscribeJob { id, .. }
        | ClientMsg::UnsubscribeJob { id, .. }
        | ClientMsg::SubscribeChannel { id, .. }
        | ClientMsg::AlertAck { id, .. }
        | ClientMsg::AlertResolve { id, .. }
        | ClientMsg::Typing { id, .. } => id.as_ref(),
    }
}
