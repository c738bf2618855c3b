//! `[limits]`: the timeouts, rates and bounds that keep one client, one org or the network from
//! taking more than its share, each key with its default, documentation and check.
//!
//! Only the limits' values live here; the code that enforces them (admission, the sessions'
//! clocks, the writers' queues) reads them from [`Limits`] and stays in its own module.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::section::{config_section, ConfigError};

/// The message of every key below that must be positive (or, as it says, at least a bound).
const POSITIVE: &str = "must be greater than zero (max_message_size: at least 256; \
                        max_response_bytes: at least 1 MiB; outbound_queue_bytes: at least \
                        max_video_frame and max_message_size)";

/// The check of a key that must be above zero (a count, a size or a duration).
fn positive<T: PartialEq + Default>(value: &T) -> Option<&'static str> {
    (*value == T::default()).then_some(POSITIVE)
}

/// A bound on work held at once server-wide: above zero, at most `max`, for `why`.
fn positive_at_most(value: usize, max: usize, why: &'static str) -> Option<&'static str> {
    match value {
        0 => Some(POSITIVE),
        v if v > max => Some(why),
        _ => None,
    }
}

config_section! {
    /// Limits, all with the defaults of the design.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct Limits in "limits.", cross_checks: problems {
        /// server WebSocket ping interval
        #[serde(with = "humantime_serde")]
        pub ping_interval: Duration = Duration::from_secs(20), check: positive;
        /// close a connection that sent nothing (no pong, no frame) for this long
        ///
        /// Close code 4004. A slow reader whose pongs wait behind its backlog counts as alive
        /// while it takes data.
        #[serde(with = "humantime_serde")]
        pub dead_peer_timeout: Duration = Duration::from_secs(60), check: positive;
        /// close a connection without subscriptions after this long
        ///
        /// Close code 4003.
        #[serde(with = "humantime_serde")]
        pub idle_timeout: Duration = Duration::from_secs(300), check: positive;
        /// send an idle notice this long before the idle close
        #[serde(with = "humantime_serde")]
        pub idle_notice: Duration = Duration::from_secs(30);
        /// TLS handshake + HTTP upgrade request deadline
        #[serde(with = "humantime_serde")]
        pub handshake_timeout: Duration = Duration::from_secs(10), check: positive;
        /// drop a peer that takes nothing of a waiting write for this long
        ///
        /// Such a peer is considered stuck and its connection is dropped.
        #[serde(with = "humantime_serde")]
        pub write_timeout: Duration = Duration::from_secs(10), check: positive;
        /// how long shutdown waits for connections to drain
        ///
        /// Also how long `/healthz` and `/readyz` answer 503 after a store fault before the
        /// process exits.
        #[serde(with = "humantime_serde")]
        pub shutdown_grace: Duration = Duration::from_secs(4);
        /// WebSocket connections per user
        ///
        /// Every transport counts: WebSocket, SockJS session, SSE stream, waiting
        /// long-poll. Beyond it 429. In cluster mode counted over every node.
        pub max_connections_per_user: usize = 5, check: positive;
        /// WebSocket connections in total
        ///
        /// Every transport counts, as for `max_connections_per_user`; beyond it 503. Per node
        /// in cluster mode.
        pub max_connections: usize = 10_000, check: positive;
        /// subscriptions per connection
        pub max_subscriptions_per_connection: usize = 256;
        /// publishes of one native connection awaiting their commit at once (backpressure beyond)
        ///
        /// Their seqs follow the order they were sent in and their replies come in that order;
        /// at the bound the connection's next message is not read until one is answered.
        pub max_publishes_in_flight: usize = 64,
            check: |v| positive_at_most(
                *v,
                4096,
                "at most 4096: each one in flight holds a task and its message",
            );
        /// guards' location fixes processed at once, server-wide (beyond: each guard's latest waits, older ones are shed)
        ///
        /// At most 4096. Each guard's next fix waits in its one slot, a newer one replacing it
        /// (the replaced one answered `shed`): when fixes come faster than this many workers
        /// process them, only each guard's latest is processed, so a backlog is one fix per
        /// guard, and emergencies never wait behind positions.
        pub positions_in_flight: usize = 256,
            check: |v| positive_at_most(
                *v,
                4096,
                "at most 4096: each one in flight holds a task and its fix",
            );
        /// messages per second per user, video excluded
        ///
        /// The sustained rate; `message_burst` above it for a moment. Beyond them:
        /// `rate_limited`.
        pub messages_per_second: u32 = 20, check: positive;
        /// message burst per user
        pub message_burst: u32 = 40, check: positive;
        /// video frames per second per user
        pub video_frames_per_second: u32 = 30, check: positive;
        /// emergencies a user may raise per minute (WebSocket and REST)
        ///
        /// Each is a durable alert with escalation timers and a notification to every webhook.
        /// Beyond it `rate_limited`.
        pub alerts_per_minute: u32 = 30, check: positive;
        /// largest text/JSON message in bytes (larger: close 1009)
        pub max_message_size: usize = 64 * 1024, check: |v| (*v < 256).then_some(POSITIVE);
        /// largest video frame payload in bytes
        ///
        /// Video frames travel on `lookout.msgpack`; larger ones are refused `too_large`.
        pub max_video_frame: usize = 256 * 1024;
        /// messages queued for one connection before the overflow policy applies
        ///
        /// Per connection and lane (logged traffic and replies; live traffic). A full live lane
        /// drops new live messages for that connection; a logged backlog beyond it closes the
        /// connection with 4002, and the client resumes with `since`.
        pub outbound_queue: usize = 1024, check: positive;
        /// connections not yet past their first request's headers, server-wide (beyond: wait in the listen backlog)
        ///
        /// What anyone on the network can make the server hold before presenting a token (TLS
        /// handshake, request line and headers). At the bound the server stops accepting until
        /// a place comes back: new connections wait in the listen backlog
        /// (`lookout_accept_waits_total`).
        pub max_pending_connections: usize = 4096, check: positive;
        /// connections not yet past their first request's headers, from one address (beyond: closed)
        ///
        /// One host cannot take every place; beyond it a new connection from that address is
        /// closed at once. Phones behind one NAT or VPN gateway share its address: raise this
        /// for them.
        pub max_pending_per_peer: usize = 256, check: positive;
        /// how long a REST request's body may take to arrive (beyond: 408)
        ///
        /// Counted from when the request's headers have arrived.
        #[serde(with = "humantime_serde")]
        pub body_timeout: Duration = Duration::from_secs(10), check: positive;
        /// bytes queued for one connection before the overflow policy applies
        ///
        /// The bytes of rendered frames waiting for one slow connection: four slow viewers of
        /// one camera hold 32 MiB, not gigabytes. The policy applies at whichever of this and
        /// `outbound_queue` comes first. At least `max_video_frame` and `max_message_size`.
        pub outbound_queue_bytes: usize = 8 * 1024 * 1024;
        /// bytes of messages in one history or long-poll response (at least 1 MiB)
        ///
        /// The page ends before the message that would pass it (a first message always fits),
        /// and the client reads on from its last seq. What one user's reads hold is at most
        /// (`max_requests_per_user` + `max_connections_per_user`) × (`max_response_bytes` + 32
        /// × `max_message_size`): about 54 MiB with the defaults.
        pub max_response_bytes: usize = 4 * 1024 * 1024,
            check: |v| (*v < 1024 * 1024).then_some(POSITIVE);
        /// REST reads (history, poll, location history, stats) one user may run at once
        ///
        /// Beyond it a request is 429 `rate_limited`.
        pub max_requests_per_user: usize = 4, check: positive;
        /// open STOMP transactions per connection
        ///
        /// Beyond it the client gets `ERROR` `rate_limited`.
        pub stomp_transactions: usize = 16, check: positive;
        /// frames held in all open STOMP transactions of one connection
        ///
        /// Beyond it the client gets `ERROR` `too_large`.
        pub stomp_transaction_frames: usize = 256, check: positive;
        /// bytes held in all open STOMP transactions of one connection
        ///
        /// Headers and bodies; beyond it the client gets `ERROR` `too_large`.
        pub stomp_transaction_bytes: usize = 1024 * 1024, check: positive;
        /// messages awaiting one connection's ACK (STOMP client ack modes)
        ///
        /// Over all the connection's subscriptions; beyond it `ERROR` and close 1008 (the
        /// client resubscribes with `since`).
        pub max_unacked_per_connection: usize = 1024, check: positive;
        /// rooms the clients of one org may create
        ///
        /// Rooms are the channels `/topic/org/{org}/room/*`; beyond it `rate_limited`.
        pub max_rooms_per_org: usize = 1000, check: positive;
        /// guard devices one org may have enrolled and not revoked
        ///
        /// Counting devices whose session has not run out. A guard link's exchange beyond it is
        /// 429 `rate_limited` and leaves the link unused: revoke a device first.
        pub max_devices_per_org: usize = 1000, check: positive;
        /// how long a video channel's latest keyframe is kept for a late viewer
        #[serde(with = "humantime_serde")]
        pub keyframe_ttl: Duration = Duration::from_secs(30), check: positive;
        /// bytes the kernel may hold unsent for one connection (TCP_NOTSENT_LOWAT)
        ///
        /// More waits in the connection's lanes, where live traffic is coalesced and logged
        /// traffic goes first, instead of queueing in a socket buffer behind positions.
        pub unsent_bytes: u32 = 64 * 1024, check: positive;
        /// Socket.IO sessions handshaken and not yet connected with a token
        ///
        /// Engine.IO sessions not yet connected to the namespace with a token; each waits at
        /// most `handshake_timeout`, and one address holds at most `max_pending_per_peer` of
        /// them. At most 100000. Beyond it a handshake is 503 `rate_limited`.
        pub socketio_handshakes: usize = 1024,
            check: |v| positive_at_most(
                *v,
                100_000,
                "at most 100000: each one holds an Engine.IO session before any token is seen",
            );
    }
}

impl Limits {
    /// The checks between limits.
    fn problems(&self, out: &mut Vec<ConfigError>) {
        let mut bad = |key: &'static str, message: &str| {
            out.push(ConfigError::Inconsistent {
                key,
                message: message.to_string(),
            })
        };
        if self.outbound_queue_bytes < self.max_video_frame.max(self.max_message_size) {
            bad("limits.outbound_queue_bytes", POSITIVE);
        }
        if self.idle_notice >= self.idle_timeout {
            bad(
                "limits.idle_notice",
                "must be shorter than limits.idle_timeout",
            );
        }
        if self.dead_peer_timeout <= self.ping_interval {
            bad(
                "limits.dead_peer_timeout",
                "must be longer than limits.ping_interval, or healthy peers are dropped",
            );
        }
    }
}
