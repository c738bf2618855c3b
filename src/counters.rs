//! Counters the hub, the sessions and the transport update on their hot paths (relaxed atomics,
//! no locks) and latency histograms: read by `/api/v1/websocket/stats` and, in the Prometheus
//! text format, by `/metrics`.
//!
//! A leaf: counters know the channel kinds and protocols they count, nothing that updates or
//! exports them.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use serde::Serialize;

use crate::channel::ChannelKind;
use crate::protocol::Protocol;

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

/// A budget: something a client can make the server hold, with a limit of its own. Each
/// refusal is counted by budget (`lookout_budget_refusals{budget}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// `limits.max_connections`: connections of every transport, server-wide.
    Connections,
    /// `limits.max_connections_per_user`: connections of every transport, per user.
    ConnectionsPerUser,
    /// `limits.max_subscriptions_per_connection`.
    Subscriptions,
    /// `limits.stomp_transactions`: open STOMP transactions per connection.
    StompTransactions,
    /// `limits.stomp_transaction_frames`: frames held in a connection's open transactions.
    StompTransactionFrames,
    /// `limits.stomp_transaction_bytes`: bytes held in a connection's open transactions.
    StompTransactionBytes,
    /// `limits.max_unacked_per_connection`: messages delivered and awaiting a client ACK.
    Unacked,
    /// `limits.max_rooms_per_org`: rooms an org's clients have created.
    Rooms,
    /// `limits.max_devices_per_org`: an org's enrolled, unrevoked guard devices.
    Devices,
    /// `limits.socketio_handshakes`: Socket.IO sessions handshaken, not yet connected.
    SocketIoHandshakes,
    /// `limits.max_response_bytes`: a history or poll response cut short at its byte budget.
    ResponseBytes,
    /// `limits.max_requests_per_user`: REST reads of one principal at once.
    RequestsPerUser,
    /// `limits.outbound_queue_bytes`: bytes queued for one connection.
    OutboundBytes,
    /// `limits.max_pending_per_peer`: connections from one address before their first
    /// request. (At `limits.max_pending_connections` new connections wait instead: see
    /// `lookout_accept_waits`.)
    PendingPerPeer,
}

impl Budget {
    /// Every budget, in label order.
    pub const ALL: [Budget; 14] = [
        Budget::Connections,
        Budget::ConnectionsPerUser,
        Budget::Subscriptions,
        Budget::StompTransactions,
        Budget::StompTransactionFrames,
        Budget::StompTransactionBytes,
        Budget::Unacked,
        Budget::Rooms,
        Budget::Devices,
        Budget::SocketIoHandshakes,
        Budget::ResponseBytes,
        Budget::RequestsPerUser,
        Budget::OutboundBytes,
        Budget::PendingPerPeer,
    ];

    /// The label value: the configuration key that sets it.
    pub fn name(self) -> &'static str {
        match self {
            Budget::Connections => "limits.max_connections",
            Budget::ConnectionsPerUser => "limits.max_connections_per_user",
            Budget::Subscriptions => "limits.max_subscriptions_per_connection",
            Budget::StompTransactions => "limits.stomp_transactions",
            Budget::StompTransactionFrames => "limits.stomp_transaction_frames",
            Budget::StompTransactionBytes => "limits.stomp_transaction_bytes",
            Budget::Unacked => "limits.max_unacked_per_connection",
            Budget::Rooms => "limits.max_rooms_per_org",
            Budget::Devices => "limits.max_devices_per_org",
            Budget::SocketIoHandshakes => "limits.socketio_handshakes",
            Budget::ResponseBytes => "limits.max_response_bytes",
            Budget::RequestsPerUser => "limits.max_requests_per_user",
            Budget::OutboundBytes => "limits.outbound_queue_bytes",
            Budget::PendingPerPeer => "limits.max_pending_per_peer",
        }
    }
}

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Open connections per protocol ([`Protocol::ALL`] order).
    pub open: [AtomicU64; Protocol::ALL.len()],
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Times the accept loop waited for a place (`limits.max_pending_connections` reached):
    /// new connections waited in the listen backlog meanwhile.
    pub accept_waits: AtomicU64,
    /// Subscriptions held now.
    pub subscriptions: AtomicU64,
    /// Messages received from clients.
    pub received: AtomicU64,
    /// Messages published (all sources).
    pub published_total: AtomicU64,
    /// Publishes answered from an idempotency key: retries, stored and delivered once.
    pub idempotent_repeats: AtomicU64,
    /// Published per channel kind.
    pub published_by_kind: [AtomicU64; ChannelKind::ALL.len()],
    /// Deliveries queued to subscribers.
    pub delivered: AtomicU64,
    /// Delivered per channel kind.
    pub delivered_by_kind: [AtomicU64; ChannelKind::ALL.len()],
    /// Live-only deliveries dropped because a queue was full.
    pub dropped_live: AtomicU64,
    /// Live-only deliveries that replaced an older one still waiting (a guard's position).
    pub coalesced: AtomicU64,
    /// Connections closed as slow consumers.
    pub slow_disconnects: AtomicU64,
    /// Cluster mode: messages of other nodes read from the log because this node missed them
    /// on the cluster's pub/sub.
    pub cluster_filled: AtomicU64,
    /// Messages refused by the rate limiter.
    pub rate_limited: AtomicU64,
    /// Upgrade or REST requests refused for bad credentials.
    pub auth_failures: AtomicU64,
    /// Refusals by budget ([`Budget::ALL`] order).
    pub refused: [AtomicU64; Budget::ALL.len()],
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

    /// A client hit `budget`.
    pub fn refused(&self, budget: Budget) {
        self.refused[budget as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals so far of `budget`.
    pub fn refusals(&self, budget: Budget) -> u64 {
        self.refused[budget as usize].load(Ordering::Relaxed)
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

    /// A publish was a retry of one already stored (same idempotency key).
    pub fn idempotent_repeat(&self) {
        self.idempotent_repeats.fetch_add(1, Ordering::Relaxed);
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
