//! `GET /metrics`: the Prometheus text format of the hub's counters, the store's size and
//! commit latencies, and the alerts by state and level (a census kept as alerts change) — read
//! at scrape time, so the hot paths keep their plain atomics and a scrape costs the same
//! however many alerts are kept.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;

use super::extract::Call;
use crate::auth::Role;
use crate::channel::ChannelKind;
use crate::counters::Budget;
use crate::failure::ErrorCode;
use crate::http::{full, Body, HttpError};
use crate::hub::Hub;
use crate::protocol::Protocol;
use crate::store::Store;

/// A scraper with `metrics.token`, or an admin or a supervisor with their own token.
fn may_scrape(call: &Call) -> Result<(), HttpError> {
    let offered = crate::http::token_from(&call.req);
    if let (Some(offered), Some(expected)) = (&offered, &call.state.config.metrics.token) {
        // Compared by digest: equal lengths, no early exit on the first differing byte.
        let digest = |t: &str| ring::digest::digest(&ring::digest::SHA256, t.as_bytes());
        if digest(offered).as_ref() == digest(expected).as_ref() {
            return Ok(());
        }
    }
    call.who_is(
        &[Role::Admin, Role::Supervisor],
        "metrics are for admins, supervisors and the configured scraper",
    )
    .map(drop)
}

/// `GET /metrics`.
pub async fn metrics(call: Call) -> Result<Response<Body>, HttpError> {
    may_scrape(&call)?;
    let state = &call.state;
    let mut alerts = BTreeMap::new();
    for (alert_state, level, n) in state.field.alerts().census.counts() {
        alerts.insert((alert_state.as_str(), level), n);
    }
    let exporter = Exporter {
        hub: state.hub.clone(),
        store: state.store.clone(),
        store_size: state.store.size().await,
        alerts,
        key_set: state.auth.key_set().cloned(),
        hooks: state.field.alerts().hooks().clone(),
        arc: state.arc.clone(),
        amqp: state.amqp.get().cloned(),
        positions: state.positions.clone(),
        field: state.field.clone(),
        patrols: state.patrols.clone(),
    };
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(exporter));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .map_err(|_| HttpError::new(ErrorCode::Internal, "cannot encode metrics"))?;
    let mut response = Response::new(full(Bytes::from(out)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}

/// The `/metrics` collector of one scrape: the hub's counters and the store's latencies as
/// they are now, the store's size and the alert census read just before.
struct Exporter {
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    store_size: u64,
    alerts: BTreeMap<(&'static str, u8), i64>,
    key_set: Option<Arc<crate::auth::jwks::KeySet>>,
    hooks: Arc<crate::notify::Hooks>,
    arc: Arc<crate::arc::Transmitter>,
    amqp: Option<Arc<crate::amqp::Bridge>>,
    positions: Arc<crate::session::positions::Positions>,
    field: Arc<crate::field::Field>,
    patrols: Arc<crate::patrol::Patrols>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

fn labelled<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (Vec<(&'static str, String)>, M)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in rows {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl prometheus_client::collector::Collector for Exporter {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let hub = &self.hub;
        let s = &hub.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (delivered, failed) = self.hooks.totals();
        labelled(
            &mut encoder,
            "lookout_build_info",
            "The running release, as `lookout --version` says it (always 1).",
            MetricType::Gauge,
            [(
                vec![("version", crate::version::VERSION.to_string())],
                ConstGauge::new(1i64),
            )],
        )?;
        // Overload: positions come faster than they are processed.
        gauge(
            &mut encoder,
            "lookout_positions_waiting",
            "Guards whose latest location fix waits for a worker (limits.positions_in_flight busy).",
            i64::try_from(self.positions.waiting()).unwrap_or(i64::MAX),
        )?;
        counter(
            &mut encoder,
            "lookout_positions_processed",
            "Location fixes processed through the position pipeline.",
            get(&self.positions.processed),
        )?;
        counter(
            &mut encoder,
            "lookout_positions_shed",
            "Location fixes answered shed: superseded by a newer fix of the same guard before a worker took them.",
            get(&self.positions.shed),
        )?;
        // Lone-worker safety.
        let w = &self.field.welfare_stats;
        for (name, help, value) in [
            (
                "lookout_welfare_check_ins",
                "Welfare check-ins (\"I'm OK\") made by guards.",
                &w.check_ins,
            ),
            (
                "lookout_welfare_pre_alarms",
                "Welfare pre-alarms sent to guards' phones before their deadline.",
                &w.pre_alarms,
            ),
            (
                "lookout_welfare_missed",
                "CHECK_IN_MISSED alerts raised (deadline plus grace passed without a check-in).",
                &w.missed,
            ),
            (
                "lookout_duress_alarms",
                "DURESS alerts raised by a duress PIN.",
                &w.duress,
            ),
            (
                "lookout_lost_contact",
                "LOST_CONTACT alerts raised for guards on shift gone silent.",
                &w.lost_contact,
            ),
        ] {
            counter(&mut encoder, name, help, get(value))?;
        }
        // Patrols.
        let p = &self.patrols.stats;
        for (name, help, value) in [
            (
                "lookout_patrol_checkpoints_created",
                "Patrol checkpoints created.",
                &p.checkpoints_created,
            ),
            (
                "lookout_patrol_tours_created",
                "Patrol tours created.",
                &p.tours_created,
            ),
            (
                "lookout_patrol_scans",
                "Checkpoint scans recorded (repeats of a scan not counted).",
                &p.scans,
            ),
            (
                "lookout_patrol_scans_far",
                "Checkpoint scans flagged far from their checkpoint.",
                &p.scans_far,
            ),
            (
                "lookout_tour_missed",
                "TOUR_MISSED alerts raised (a round's window ended with checkpoints unscanned).",
                &p.missed,
            ),
            (
                "lookout_patrol_incidents_filed",
                "Incident reports filed (resends of a report not counted).",
                &p.incidents_filed,
            ),
            (
                "lookout_patrol_incident_photos",
                "Incident report photos stored.",
                &p.incident_photos,
            ),
            (
                "lookout_patrol_incidents_closed",
                "Incident reports closed.",
                &p.incidents_closed,
            ),
            (
                "lookout_patrol_incidents_purged",
                "Closed incident reports purged with their photos (patrol.incident_retention).",
                &p.incidents_purged,
            ),
            (
                "lookout_patrol_refused",
                "Patrol requests refused over a budget (patrol.max_*).",
                &p.refused,
            ),
        ] {
            counter(&mut encoder, name, help, get(value))?;
        }
        gauge(
            &mut encoder,
            "lookout_notify_outbox",
            "Alert notifications waiting in the outbox for their webhooks.",
            i64::try_from(self.hooks.depth()).unwrap_or(i64::MAX),
        )?;
        counter(
            &mut encoder,
            "lookout_notify_delivered",
            "Alert notifications a webhook accepted (2xx).",
            delivered,
        )?;
        counter(
            &mut encoder,
            "lookout_notify_failures",
            "Webhook delivery attempts that failed (retried with backoff).",
            failed,
        )?;
        counter(
            &mut encoder,
            "lookout_notify_dropped",
            "Alert notifications not written because notify.max_outbox was reached.",
            get(&self.hooks.dropped),
        )?;
        if !self.arc.is_empty() {
            let links = self.arc.links();
            labelled(
                &mut encoder,
                "lookout_arc_receiver_up",
                "1 while an alarm receiving centre's receiver path acknowledges messages (0: down or not tried yet).",
                MetricType::Gauge,
                links.iter().flat_map(|r| {
                    r.paths.iter().map(|p| {
                        (
                            vec![("receiver", r.name.clone()), ("path", p.role.to_string())],
                            ConstGauge::new(i64::from(p.state == "up")),
                        )
                    })
                }),
            )?;
            labelled(
                &mut encoder,
                "lookout_arc_delivered",
                "Alarms and restorals an alarm receiving centre acknowledged.",
                MetricType::Counter,
                links.iter().map(|r| {
                    (
                        vec![("receiver", r.name.clone())],
                        ConstCounter::new(r.delivered),
                    )
                }),
            )?;
            labelled(
                &mut encoder,
                "lookout_arc_failures",
                "Alarm deliveries to an alarm receiving centre that were not acknowledged (retried with backoff).",
                MetricType::Counter,
                links
                    .iter()
                    .map(|r| (vec![("receiver", r.name.clone())], ConstCounter::new(r.failures))),
            )?;
            labelled(
                &mut encoder,
                "lookout_arc_supervision_acks",
                "Link supervision (NULL) messages an alarm receiving centre acknowledged.",
                MetricType::Counter,
                links.iter().map(|r| {
                    (
                        vec![("receiver", r.name.clone())],
                        ConstCounter::new(r.supervision_acks),
                    )
                }),
            )?;
            labelled(
                &mut encoder,
                "lookout_arc_ack_latency_ms",
                "Alert change to the receiver's ACK, ms, over the latest 1024 deliveries (quantile 0.5 and 0.99).",
                MetricType::Gauge,
                links.iter().flat_map(|r| {
                    let (p50, p99) = r.latency_ms.unwrap_or((0, 0));
                    [("0.5", p50), ("0.99", p99)].map(|(q, v)| {
                        (
                            vec![("receiver", r.name.clone()), ("quantile", q.to_string())],
                            ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)),
                        )
                    })
                }),
            )?;
            gauge(
                &mut encoder,
                "lookout_arc_outbox",
                "Alarms waiting in the outbox for their alarm receiving centres (refused ones included).",
                i64::try_from(self.arc.depth()).unwrap_or(i64::MAX),
            )?;
            counter(
                &mut encoder,
                "lookout_arc_dropped",
                "Alarms to an alarm receiving centre not written because arc.max_outbox was reached.",
                get(&self.arc.dropped),
            )?;
        }
        if let Some(amqp) = &self.amqp {
            gauge(
                &mut encoder,
                "lookout_amqp_connected",
                "1 while the RabbitMQ consumer is connected.",
                i64::from(amqp.connected.load(Ordering::Relaxed)),
            )?;
            counter(
                &mut encoder,
                "lookout_amqp_consumed",
                "Task events from RabbitMQ stored (and acknowledged to the broker).",
                get(&amqp.consumed),
            )?;
            counter(
                &mut encoder,
                "lookout_amqp_rejected",
                "RabbitMQ deliveries dead-lettered (not JSON, no org, no channel).",
                get(&amqp.rejected),
            )?;
            counter(
                &mut encoder,
                "lookout_amqp_connections",
                "Connections made to RabbitMQ (the first and every reconnect).",
                get(&amqp.connections),
            )?;
        }
        if let Some(set) = &self.key_set {
            gauge(
                &mut encoder,
                "lookout_jwks_keys",
                "Keys of the identity provider's key set tokens are verified with.",
                set.len() as i64,
            )?;
            counter(
                &mut encoder,
                "lookout_jwks_refreshes",
                "Fetches of the identity provider's key set that replaced it.",
                get(&set.refreshes),
            )?;
            counter(
                &mut encoder,
                "lookout_jwks_failures",
                "Fetches of the identity provider's key set that failed (the last good set stays).",
                get(&set.failures),
            )?;
        }
        let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        labelled(
            &mut encoder,
            "lookout_connections",
            "Open connections by protocol.",
            MetricType::Gauge,
            Protocol::ALL.iter().map(|p| {
                (
                    vec![("protocol", p.name().to_string())],
                    ConstGauge::new(signed(get(&s.open[*p as usize]))),
                )
            }),
        )?;
        counter(
            &mut encoder,
            "lookout_connections_accepted",
            "Connections accepted since start.",
            get(&s.accepted),
        )?;
        counter(
            &mut encoder,
            "lookout_accept_waits",
            "Times new connections waited in the listen backlog because limits.max_pending_connections were before their first request.",
            get(&s.accept_waits),
        )?;
        gauge(
            &mut encoder,
            "lookout_subscriptions",
            "Subscriptions held.",
            signed(get(&s.subscriptions)),
        )?;
        gauge(
            &mut encoder,
            "lookout_users_online",
            "Users with at least one connection.",
            signed(hub.users_online() as u64),
        )?;
        counter(
            &mut encoder,
            "lookout_messages_received",
            "Messages received from clients (all protocols).",
            get(&s.received),
        )?;
        let by_kind = |counts: &[AtomicU64; ChannelKind::ALL.len()]| -> Vec<_> {
            ChannelKind::ALL
                .iter()
                .zip(counts)
                .map(|(k, n)| {
                    (
                        vec![("kind", k.name().to_string())],
                        ConstCounter::new(n.load(Ordering::Relaxed)),
                    )
                })
                .collect()
        };
        labelled(
            &mut encoder,
            "lookout_messages_published",
            "Messages published, by channel kind.",
            MetricType::Counter,
            by_kind(&s.published_by_kind),
        )?;
        counter(
            &mut encoder,
            "lookout_idempotent_repeats",
            "Publishes answered from their idempotency key: retries of a message stored once.",
            s.idempotent_repeats.load(Ordering::Relaxed),
        )?;
        labelled(
            &mut encoder,
            "lookout_messages_delivered",
            "Deliveries queued to subscribers, by channel kind.",
            MetricType::Counter,
            by_kind(&s.delivered_by_kind),
        )?;
        labelled(
            &mut encoder,
            "lookout_deliveries_dropped",
            "Deliveries dropped: live-only messages for a full queue or superseded by a newer position, or slow consumers disconnected.",
            MetricType::Counter,
            [
                ("queue_full", get(&s.dropped_live)),
                ("slow_consumer", get(&s.slow_disconnects)),
                ("superseded", get(&s.coalesced)),
            ]
            .map(|(reason, v)| (vec![("reason", reason.to_string())], ConstCounter::new(v))),
        )?;
        counter(
            &mut encoder,
            "lookout_cluster_gap_fills",
            "Cluster mode: messages of other nodes this node missed on the pub/sub and read from the log.",
            s.cluster_filled.load(Ordering::Relaxed),
        )?;
        labelled(
            &mut encoder,
            "lookout_budget_refusals",
            "Requests refused because a client reached a budget, by the key that sets it.",
            MetricType::Counter,
            Budget::ALL.iter().map(|b| {
                (
                    vec![("budget", b.name().to_string())],
                    ConstCounter::new(s.refusals(*b)),
                )
            }),
        )?;
        counter(
            &mut encoder,
            "lookout_rate_limited",
            "Messages refused by the per-user rate limit.",
            get(&s.rate_limited),
        )?;
        counter(
            &mut encoder,
            "lookout_auth_failures",
            "Requests and connections refused for bad credentials.",
            get(&s.auth_failures),
        )?;
        gauge(
            &mut encoder,
            "lookout_store_size_bytes",
            "Size of the store on disk.",
            signed(self.store_size),
        )?;
        labelled(
            &mut encoder,
            "lookout_alerts",
            "Alerts kept, by state and escalation level.",
            MetricType::Gauge,
            self.alerts.iter().map(|(&(state, level), &n)| {
                (
                    vec![("state", state.to_string()), ("level", level.to_string())],
                    ConstGauge::new(n),
                )
            }),
        )?;
        let histogram = |encoder: &mut DescriptorEncoder, name: &str, help: &str, h: &Histogram| {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            h.encode(metric)
        };
        histogram(
            &mut encoder,
            "lookout_publish_latency_seconds",
            "From a publish request to its durability in the log.",
            &s.publish_latency.0,
        )?;
        histogram(
            &mut encoder,
            "lookout_flush_latency_seconds",
            "Duration of the store's group-commit flushes.",
            &self.store.commit_latency().0,
        )
    }
}
