//! Counters the hub and the transport update on their hot paths (relaxed atomics, no locks),
//! read by `/api/v1/websocket/stats` and, in the Prometheus text format, by `/metrics`
//! ([`Exporter`], a prometheus-client collector that reads them at scrape time).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;

use serde::Serialize;

use crate::hub::ChannelKind;
use crate::protocol::Encoding;

/// What a connection speaks, for connection counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Native, `lookout.json`.
    Json,
    /// Native, `lookout.msgpack`.
    MsgPack,
    /// STOMP over WebSocket.
    Stomp,
    /// STOMP over SockJS.
    SockJsStomp,
    /// Native JSON over SockJS.
    SockJsJson,
}

impl Protocol {
    /// Every protocol, in label order.
    pub const ALL: [Protocol; 5] = [
        Protocol::Json,
        Protocol::MsgPack,
        Protocol::Stomp,
        Protocol::SockJsStomp,
        Protocol::SockJsJson,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Json => "lookout.json",
            Protocol::MsgPack => "lookout.msgpack",
            Protocol::Stomp => "stomp",
            Protocol::SockJsStomp => "sockjs+stomp",
            Protocol::SockJsJson => "sockjs+lookout.json",
        }
    }

    /// The native protocol in `encoding`.
    pub fn native(encoding: Encoding) -> Protocol {
        match encoding {
            Encoding::Json => Protocol::Json,
            Encoding::MsgPack => Protocol::MsgPack,
        }
    }
}

/// A latency histogram in seconds, 0.1 ms to about 3 s.
#[derive(Debug, Clone)]
pub struct Latency(pub Histogram);

impl Default for Latency {
    fn default() -> Self {
        Latency(Histogram::new(exponential_buckets(0.0001, 2.0, 16)))
    }
}

impl Latency {
    /// Records one duration.
    pub fn observe(&self, d: std::time::Duration) {
        self.0.observe(d.as_secs_f64());
    }
}

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Open connections per protocol ([`Protocol::ALL`] order).
    pub open: [AtomicU64; 5],
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Subscriptions held now.
    pub subscriptions: AtomicU64,
    /// Messages received from clients.
    pub received: AtomicU64,
    /// Messages published (all sources).
    pub published_total: AtomicU64,
    /// Published per channel kind.
    pub published_by_kind: [AtomicU64; 12],
    /// Deliveries queued to subscribers.
    pub delivered: AtomicU64,
    /// Delivered per channel kind.
    pub delivered_by_kind: [AtomicU64; 12],
    /// Live-only deliveries dropped because a queue was full.
    pub dropped_live: AtomicU64,
    /// Connections closed as slow consumers.
    pub slow_disconnects: AtomicU64,
    /// Messages refused by the rate limiter.
    pub rate_limited: AtomicU64,
    /// Upgrade or REST requests refused for bad credentials.
    pub auth_failures: AtomicU64,
    /// From a publish request to its durability (logged channels).
    pub publish_latency: Latency,
}

/// A point-in-time copy for JSON.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Open connections.
    pub connections: u64,
    /// Open connections by subprotocol.
    pub connections_by_protocol: std::collections::BTreeMap<&'static str, u64>,
    /// Accepted since start.
    pub connections_accepted: u64,
    /// Users with a connection.
    pub users_online: usize,
    /// Channels with subscribers.
    pub channels_active: usize,
    /// Subscriptions held.
    pub subscriptions: u64,
    /// Messages received from clients.
    pub messages_received: u64,
    /// Messages published.
    pub messages_published: u64,
    /// Deliveries queued.
    pub messages_delivered: u64,
    /// Live deliveries dropped for full queues.
    pub dropped_live: u64,
    /// Slow-consumer disconnects.
    pub slow_consumer_disconnects: u64,
    /// Rate-limit refusals.
    pub rate_limited: u64,
    /// Authentication failures.
    pub auth_failures: u64,
}

impl Stats {
    /// A connection opened.
    pub fn connected(&self, protocol: Protocol) {
        self.open[protocol as usize].fetch_add(1, Ordering::Relaxed);
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection closed.
    pub fn disconnected(&self, protocol: Protocol) {
        self.open[protocol as usize].fetch_sub(1, Ordering::Relaxed);
    }

    /// A request or connection was refused for bad credentials.
    pub fn auth_failed(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A delivery was queued on a channel of `kind`.
    pub fn delivered(&self, kind: ChannelKind) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.delivered_by_kind[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A message was published on a channel of `kind`.
    pub fn published(&self, kind: ChannelKind) {
        self.published_total.fetch_add(1, Ordering::Relaxed);
        self.published_by_kind[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Copies the counters.
    pub fn snapshot(&self, users_online: usize, channels_active: usize) -> Snapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let by_protocol: std::collections::BTreeMap<&'static str, u64> = Protocol::ALL
            .iter()
            .map(|p| (p.name(), get(&self.open[*p as usize])))
            .collect();
        Snapshot {
            connections: by_protocol.values().sum(),
            connections_by_protocol: by_protocol,
            connections_accepted: get(&self.accepted),
            users_online,
            channels_active,
            subscriptions: get(&self.subscriptions),
            messages_received: get(&self.received),
            messages_published: get(&self.published_total),
            messages_delivered: get(&self.delivered),
            dropped_live: get(&self.dropped_live),
            slow_consumer_disconnects: get(&self.slow_disconnects),
            rate_limited: get(&self.rate_limited),
            auth_failures: get(&self.auth_failures),
        }
    }
}

/// The `/metrics` collector: reads the hub's counters, the store and the alert records at
/// scrape time, so the hot paths keep their plain atomics.
pub struct Exporter {
    hub: Arc<crate::hub::Hub>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Exporter {
    /// A collector for `hub` (and its store).
    pub fn new(hub: Arc<crate::hub::Hub>) -> Self {
        Exporter { hub }
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
        let by_kind = |counts: &[AtomicU64; 12]| -> Vec<_> {
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
            "Deliveries dropped: live-only messages for a full queue, or slow consumers disconnected.",
            MetricType::Counter,
            [
                ("queue_full", get(&s.dropped_live)),
                ("slow_consumer", get(&s.slow_disconnects)),
            ]
            .map(|(reason, v)| (vec![("reason", reason.to_string())], ConstCounter::new(v))),
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
        let store = hub.store();
        gauge(
            &mut encoder,
            "lookout_store_size_bytes",
            "Size of the sled store on disk.",
            signed(store.size_on_disk()),
        )?;
        let mut by_state: std::collections::BTreeMap<(&'static str, u8), i64> = Default::default();
        for state in ["open", "acknowledged", "resolved"] {
            for level in 1..=3u8 {
                by_state.insert((state, level), 0);
            }
        }
        for alert in store
            .records::<crate::alerts::Alert>(crate::store::keys::Records::Alerts)
            .unwrap_or_default()
        {
            let state = match alert.state {
                crate::alerts::AlertState::Open => "open",
                crate::alerts::AlertState::Acknowledged => "acknowledged",
                crate::alerts::AlertState::Resolved => "resolved",
            };
            *by_state.entry((state, alert.level)).or_default() += 1;
        }
        labelled(
            &mut encoder,
            "lookout_alerts",
            "Alerts kept, by state and escalation level.",
            MetricType::Gauge,
            by_state.into_iter().map(|((state, level), n)| {
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
            &store.flush_latency.0,
        )
    }
}
