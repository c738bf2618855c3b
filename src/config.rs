//! Configuration: every setting Lookout reads, its safe default and its documentation.
//!
//! Sources, later ones winning: built-in defaults, an optional TOML file (`lookout.toml` in the
//! working directory, or `--config FILE`), `LOOKOUT_*` environment variables (nested keys joined
//! with `__`, e.g. `LOOKOUT_LIMITS__MAX_CONNECTIONS_PER_USER=3`), then command-line flags.
//!
//! This module only describes and loads settings; it never opens files other than the config
//! file itself and never creates anything (that is the job of `transport::tls` and `auth`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Where the configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source held a value of the wrong type, an unknown key, or a file could not be read.
    #[error("{0}")]
    Invalid(#[from] Box<figment::Error>),
    /// The values parsed but contradict each other.
    #[error("{key}: {message}")]
    Inconsistent {
        /// The dotted key at fault.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// The whole configuration of one Lookout process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// TLS listener address.
    pub listen: SocketAddr,
    /// Optional plain-HTTP listener, only for use behind a TLS-terminating proxy.
    pub plain_listen: Option<SocketAddr>,
    /// Data directory (certificate, secret and, later, the store).
    pub data_dir: PathBuf,
    /// Browser origins allowed to open a WebSocket.
    pub allowed_origins: Vec<String>,
    /// TLS certificate settings.
    pub tls: TlsConfig,
    /// JWT verification settings.
    pub jwt: JwtConfig,
    /// Limits and timeouts.
    pub limits: Limits,
    /// How long channel logs are kept.
    pub retention: Retention,
    /// The store's memory.
    pub store: StoreSettings,
    /// Cluster mode on Redis.
    pub cluster: ClusterSettings,
    /// Field operations: locations and geofences.
    pub field: FieldSettings,
    /// Alert escalation.
    pub alerts: AlertSettings,
    /// The dashboard.
    pub dashboard: DashboardSettings,
    /// Who may scrape `/metrics`.
    pub metrics: MetricsSettings,
    /// Alert notifications out (webhooks).
    pub notify: NotifySettings,
    /// Task events from the site's RabbitMQ.
    pub amqp: AmqpSettings,
    /// What only test rigs turn on.
    pub testing: TestingSettings,
}

/// Task events consumed from RabbitMQ (AMQP 0-9-1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpSettings {
    /// `amqp://` or `amqps://` URL of the broker; unset: no consumer.
    pub url: Option<String>,
    /// `[[amqp.bindings]]`: what to consume and where it goes.
    pub bindings: Vec<AmqpBinding>,
    /// Names of the queues Lookout declares start with this (`<prefix>.<exchange>.<key>`).
    pub queue_prefix: String,
    /// Deliveries the broker may hand over before they are acknowledged.
    pub prefetch: u16,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        AmqpSettings {
            url: None,
            bindings: Vec::new(),
            queue_prefix: "lookout".into(),
            prefetch: 64,
        }
    }
}

/// One binding: an exchange and a topic pattern, delivered on a channel of each event's org.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AmqpBinding {
    /// The (topic) exchange the events are published to.
    pub exchange: String,
    /// AMQP topic pattern, e.g. `task.event.*`.
    pub routing_key: String,
    /// The channel, with `{org}` for the event's organization, e.g. `/topic/org/{org}/tasks`.
    pub channel: String,
    /// The body's JSON field naming the organization, e.g. `organization_id`.
    pub org: String,
}

/// Alert notifications out: webhooks fed from a durable outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NotifySettings {
    /// `[[notify.webhooks]]`: where alert events are POSTed.
    pub webhooks: Vec<Webhook>,
    /// Most notifications of one org waiting in the outbox, all webhooks together; beyond it
    /// the org's new ones are dropped (counted, logged), never the alert change itself, and
    /// never another org's.
    pub max_outbox: usize,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            webhooks: Vec::new(),
            max_outbox: 10_000,
        }
    }
}

/// One webhook.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// `https://` (or `http://` on the LAN) URL the events are POSTed to.
    pub url: String,
    /// Any of `alert.created`, `alert.escalated`, `alert.acknowledged`, `alert.resolved`.
    pub events: Vec<String>,
    /// Only alerts at this escalation level or above.
    #[serde(default)]
    pub min_level: Option<u8>,
    /// The HMAC-SHA256 key of `X-Lookout-Signature`.
    pub secret: String,
}

/// The alert events a webhook can ask for.
pub const ALERT_EVENTS: [&str; 4] = [
    "alert.created",
    "alert.escalated",
    "alert.acknowledged",
    "alert.resolved",
];

/// Settings for test rigs, never for a site.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TestingSettings {
    /// Serve `/echo`: a WebSocket that echoes every message, unauthenticated, for conformance
    /// suites (Autobahn). Never on a site.
    pub echo_endpoint: bool,
    /// Obey the store's fault triggers (files `FAULT-flush` / `FAULT-write` in the data
    /// directory make flushes or writes fail), for the store-fault tests. Never on a site.
    pub store_faults: bool,
}

/// Cluster mode: with `redis` (or `sentinels` and `master_name`) set, all durable state is in
/// that Redis (shared by every node) and no sled store is opened.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// `redis://`, `rediss://` (TLS) or `redis+unix://` URL of the shared Redis.
    pub redis: Option<String>,
    /// `host:port` of each Redis Sentinel watching the shared Redis (instead of `redis`).
    pub sentinels: Vec<String>,
    /// The name the Sentinels know the shared Redis by.
    pub master_name: Option<String>,
    /// With `sentinels`: TLS to the Sentinels and to the Redis they name (certificates checked
    /// against the system's roots, or the bundle `SSL_CERT_FILE` names).
    pub sentinel_tls: bool,
    /// With `sentinels`: the password of the Sentinels themselves (their `requirepass`).
    pub sentinel_password: Option<String>,
    /// With `sentinels`: the user (ACL) and password Lookout logs in with on the Redis the
    /// Sentinels name (with `redis`, the URL carries them).
    pub username: Option<String>,
    /// See `username`.
    pub password: Option<String>,
    /// This node's name in logs, metrics and the Redis (default: the host name).
    pub node_id: Option<String>,
    /// Replicas a write must reach (Redis `WAIT`) before it is acknowledged.
    pub min_replicas: u32,
    /// How long a write may wait for those replicas before it is an error.
    #[serde(with = "humantime_serde")]
    pub wait_timeout: Duration,
}

impl ClusterSettings {
    /// Whether this node runs in cluster mode (its state in a shared Redis).
    pub fn enabled(&self) -> bool {
        self.redis.is_some() || !self.sentinels.is_empty()
    }

    /// `node_id`, or the host name.
    pub fn node(&self) -> String {
        self.node_id
            .clone()
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned())
    }
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            redis: None,
            sentinels: Vec::new(),
            master_name: None,
            sentinel_tls: false,
            sentinel_password: None,
            username: None,
            password: None,
            node_id: None,
            min_replicas: 1,
            wait_timeout: Duration::from_secs(1),
        }
    }
}

/// The store's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// Bytes of sled's page cache. sled's own default is 1 GiB, more than a small appliance
    /// should give a cache; pages beyond it are read back from the page-cache of the OS.
    pub cache_capacity: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            cache_capacity: 64 << 20,
        }
    }
}

/// Dashboard settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardSettings {
    /// A site-plan image (PNG, JPEG or SVG) drawn under fences and guards.
    pub site_plan: Option<PathBuf>,
    /// Where the image's edges are: `[west, south, east, north]` in degrees.
    pub site_plan_bounds: Option<[f64; 4]>,
}

/// `/metrics` settings. The metrics tell who is connected, how much and to what: never open
/// to anyone on the LAN.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// A bearer token a scraper sends (`Authorization: Bearer …`), for Prometheus; admins' and
    /// supervisors' own tokens are accepted too. Unset: only theirs.
    pub token: Option<String>,
}

/// Field operations settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FieldSettings {
    /// How far in the future a location's `ts` may be.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Vertices a polygon geofence may have.
    pub max_fence_vertices: usize,
    /// How long a guard's session from a sign-in link lasts: a shift.
    #[serde(with = "humantime_serde")]
    pub guard_session: Duration,
}

impl Default for FieldSettings {
    fn default() -> Self {
        FieldSettings {
            max_clock_skew: Duration::from_secs(120),
            max_fence_vertices: 1000,
            guard_session: Duration::from_secs(12 * 3600),
        }
    }
}

/// Alert escalation settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// Escalate to level 2 after this long without acknowledgement.
    #[serde(with = "humantime_serde")]
    pub level2_after: Duration,
    /// Escalate to level 3 (admins, system notice) after this long.
    #[serde(with = "humantime_serde")]
    pub level3_after: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            level2_after: Duration::from_secs(300),
            level3_after: Duration::from_secs(900),
        }
    }
}

/// How many messages, and for how long, one channel's log keeps.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Newest messages kept per channel.
    pub max_messages: usize,
    /// Messages older than this are removed.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

/// Retention of the channel logs, done in the background.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// How often the logs are trimmed.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The rule for every kind not listed in `kinds`.
    pub default: RetentionRule,
    /// Rules per channel kind: location, emergency, alerts, tasks, room, role, queue, job, system.
    pub kinds: std::collections::BTreeMap<String, RetentionRule>,
}

/// Channel kind names as `retention.kinds` knows them (live-only kinds have no log).
pub const RETENTION_KINDS: [&str; 9] = [
    "location",
    "emergency",
    "alerts",
    "tasks",
    "room",
    "role",
    "queue",
    "job",
    "system",
];

const DAY: u64 = 24 * 3600;

impl Default for Retention {
    fn default() -> Self {
        let alerts = RetentionRule {
            max_messages: 100_000,
            max_age: Duration::from_secs(30 * DAY),
        };
        Retention {
            interval: Duration::from_secs(60),
            default: RetentionRule {
                max_messages: 10_000,
                max_age: Duration::from_secs(7 * DAY),
            },
            kinds: [
                ("emergency".to_string(), alerts),
                ("alerts".to_string(), alerts),
            ]
            .into_iter()
            .collect(),
        }
    }
}

impl Retention {
    /// The rule for a kind name.
    pub fn rule(&self, kind: &str) -> RetentionRule {
        self.kinds.get(kind).copied().unwrap_or(self.default)
    }
}

/// TLS certificate and key. Both unset: the appliance's own CA (in the data directory) issues
/// the certificate.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// More DNS names or IP addresses for the issued certificate (e.g. the name a site's DNS
    /// or a port forward gives the appliance), beside the host's own.
    pub names: Vec<String>,
}

/// The JWT signature algorithms Lookout accepts; one is chosen by configuration, never by a token.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

/// How tokens are verified (and minted by `lookout token`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// Signature algorithm.
    pub algorithm: JwtAlgorithm,
    /// HS256 secret given inline.
    pub secret: Option<String>,
    /// File holding the HS256 secret. Neither set: `<data_dir>/jwt.secret`, created on first run.
    pub secret_file: Option<PathBuf>,
    /// RS256/ES256 public key (PEM) used to verify.
    pub public_key: Option<PathBuf>,
    /// RS256/ES256 private key (PEM), only needed by `lookout token`.
    pub private_key: Option<PathBuf>,
    /// Required `iss` claim, when set.
    pub issuer: Option<String>,
    /// Required `aud` claim, when set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`/`nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// `https://` URL of the identity provider's key set (JWKS, e.g. an OIDC issuer's
    /// `jwks_uri`); set: tokens are verified with its keys, chosen by `kid`.
    pub jwks_url: Option<String>,
    /// A JWKS file instead of a URL (read again at each refresh).
    pub jwks_file: Option<PathBuf>,
    /// With a key set: the algorithms accepted (RS256, ES256); a key of another is ignored.
    pub algorithms: Vec<JwtAlgorithm>,
    /// With a key set: how often it is fetched again.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// With a key set: a token naming an unknown `kid` fetches it again, at most this often.
    #[serde(with = "humantime_serde")]
    pub jwks_min_interval: Duration,
    /// Where a token's claims say who it is.
    pub claims: ClaimsConfig,
}

/// Which claims (dotted paths into the token's JSON) carry the user, org and roles, and what
/// an identity provider's role names mean here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimsConfig {
    /// The user id (e.g. `sub`, `preferred_username`).
    pub user: String,
    /// The organization (e.g. `org_id`).
    pub org: String,
    /// The roles: a string or a list of strings (e.g. `realm_access.roles`, `org_role`).
    pub roles: String,
    /// Identity-provider role name → guard, supervisor, admin or service; names not listed
    /// count only when they are one of those four.
    pub role_map: std::collections::BTreeMap<String, String>,
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        ClaimsConfig {
            user: "sub".into(),
            org: "org".into(),
            roles: "roles".into(),
            role_map: Default::default(),
        }
    }
}

/// Limits, all with the defaults of the design.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// How often the server pings each WebSocket.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A connection that sent nothing (no pong, no frame) for this long is closed.
    #[serde(with = "humantime_serde")]
    pub dead_peer_timeout: Duration,
    /// A connection with no subscription is closed after this long.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long before the idle close the client gets a notice.
    #[serde(with = "humantime_serde")]
    pub idle_notice: Duration,
    /// TLS handshake plus the HTTP upgrade request must finish within this.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A waiting write may go this long without the peer taking any of it before the peer is
    /// considered stuck and dropped.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Graceful shutdown waits this long for connections to drain.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// WebSocket connections per user.
    pub max_connections_per_user: usize,
    /// WebSocket connections in total.
    pub max_connections: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions_per_connection: usize,
    /// Publishes of one native connection waiting for their commit at once; at the bound the
    /// connection's next message is not read until one is answered.
    pub max_publishes_in_flight: usize,
    /// Guards' location fixes processed at once, server-wide. Readers hand plain fixes over
    /// without waiting; each guard's next fix waits in its one slot, a newer one replacing it
    /// (the replaced one answered `shed`): when fixes come faster than this many workers
    /// process them, only each guard's latest is processed, and emergencies never wait behind
    /// them.
    pub positions_in_flight: usize,
    /// Messages per second per user (sustained), video excluded.
    pub messages_per_second: u32,
    /// Messages per user allowed in a burst.
    pub message_burst: u32,
    /// Video frames per second per user.
    pub video_frames_per_second: u32,
    /// Emergencies (alerts raised) per user per minute, over WebSocket and REST alike: each
    /// is a durable alert with escalation timers and notifications to every webhook.
    pub alerts_per_minute: u32,
    /// Largest text/JSON message (bytes); larger closes the connection with 1009.
    pub max_message_size: usize,
    /// Largest video frame payload (bytes) on `lookout.msgpack`.
    pub max_video_frame: usize,
    /// Messages waiting for one slow connection before the overflow policy applies.
    pub outbound_queue: usize,
    /// Connections accepted and not yet past their first request's headers (TLS handshake,
    /// request line and headers), server-wide: what anyone on the network can make the
    /// server hold before presenting a token. At the bound the server stops accepting until a
    /// place comes back: new connections wait in the listen backlog.
    pub max_pending_connections: usize,
    /// The same, from one peer address: one host cannot take every place; beyond it a new
    /// connection from that address is closed at once. Phones behind one NAT or VPN gateway
    /// share its address: raise this for them.
    pub max_pending_per_peer: usize,
    /// How long a REST request's body may take to arrive once its headers have.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Bytes waiting for one slow connection (its rendered frames) before the overflow
    /// policy applies, whichever of this and `outbound_queue` comes first.
    pub outbound_queue_bytes: usize,
    /// Bytes of messages one history or long-poll response carries; the page ends before
    /// the message that would pass it (a first message always fits), and the client reads on
    /// from its last seq.
    pub max_response_bytes: usize,
    /// REST reads (history, long-poll, location history and stats) one principal may have
    /// running at once; beyond it a request is 429 `rate_limited`.
    pub max_requests_per_user: usize,
    /// Open STOMP transactions per connection.
    pub stomp_transactions: usize,
    /// Frames held in all open STOMP transactions of one connection.
    pub stomp_transaction_frames: usize,
    /// Bytes (headers and bodies) held in all open STOMP transactions of one connection.
    pub stomp_transaction_bytes: usize,
    /// Messages delivered to one connection and awaiting its `ACK` (STOMP client ack modes).
    pub max_unacked_per_connection: usize,
    /// Rooms (`/topic/org/{org}/room/*`) the clients of one org may create.
    pub max_rooms_per_org: usize,
    /// Guard devices one org may have enrolled and not revoked.
    pub max_devices_per_org: usize,
    /// How long a video channel's latest keyframe is kept for a late viewer.
    #[serde(with = "humantime_serde")]
    pub keyframe_ttl: Duration,
    /// Bytes written to a connection that the kernel may hold unsent (`TCP_NOTSENT_LOWAT`).
    /// More waits in the connection's lanes, where live traffic is coalesced and logged
    /// traffic goes first, instead of queueing in a socket buffer behind positions.
    pub unsent_bytes: u32,
    /// Socket.IO sessions handshaken (Engine.IO) and not yet connected to the namespace with a
    /// token; each waits at most `handshake_timeout`, and one address holds at most
    /// `max_pending_per_peer` of them. Beyond it a handshake is 503 `rate_limited`.
    pub socketio_handshakes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            plain_listen: None,
            data_dir: PathBuf::from("lookout-data"),
            allowed_origins: Vec::new(),
            tls: TlsConfig::default(),
            jwt: JwtConfig::default(),
            limits: Limits::default(),
            retention: Retention::default(),
            store: StoreSettings::default(),
            cluster: ClusterSettings::default(),
            field: FieldSettings::default(),
            alerts: AlertSettings::default(),
            dashboard: DashboardSettings::default(),
            metrics: MetricsSettings::default(),
            notify: NotifySettings::default(),
            amqp: AmqpSettings::default(),
            testing: TestingSettings::default(),
        }
    }
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            algorithm: JwtAlgorithm::HS256,
            secret: None,
            secret_file: None,
            public_key: None,
            private_key: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
            jwks_url: None,
            jwks_file: None,
            algorithms: vec![JwtAlgorithm::RS256, JwtAlgorithm::ES256],
            jwks_refresh: Duration::from_secs(300),
            jwks_min_interval: Duration::from_secs(10),
            claims: ClaimsConfig::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ping_interval: Duration::from_secs(20),
            dead_peer_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(300),
            idle_notice: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(4),
            max_connections_per_user: 5,
            max_connections: 10_000,
            max_subscriptions_per_connection: 256,
            max_publishes_in_flight: 64,
            positions_in_flight: 256,
            messages_per_second: 20,
            message_burst: 40,
            video_frames_per_second: 30,
            alerts_per_minute: 30,
            max_message_size: 64 * 1024,
            max_video_frame: 256 * 1024,
            outbound_queue: 1024,
            max_pending_connections: 4096,
            max_pending_per_peer: 256,
            body_timeout: Duration::from_secs(10),
            outbound_queue_bytes: 8 * 1024 * 1024,
            max_response_bytes: 4 * 1024 * 1024,
            max_requests_per_user: 4,
            stomp_transactions: 16,
            stomp_transaction_frames: 256,
            stomp_transaction_bytes: 1024 * 1024,
            max_unacked_per_connection: 1024,
            max_rooms_per_org: 1000,
            max_devices_per_org: 1000,
            keyframe_ttl: Duration::from_secs(30),
            unsent_bytes: 64 * 1024,
            socketio_handshakes: 1024,
        }
    }
}

/// Each key, with its documentation: the text `lookout serve --help` prints.
/// A unit test keeps this list and the `Config` struct in step.
pub const KEYS: &[(&str, &str)] = &[
    ("listen", "TLS listener address (port 0 picks a free port)"),
    (
        "plain_listen",
        "plain-HTTP listener, only behind a TLS-terminating proxy",
    ),
    ("data_dir", "data directory: certificate, JWT secret, store"),
    (
        "allowed_origins",
        "browser Origins allowed to open a WebSocket; empty: same host only; \"*\": any",
    ),
    (
        "tls.cert",
        "PEM certificate chain; unset: issued by the local CA in data_dir/tls",
    ),
    ("tls.key", "PEM private key for tls.cert"),
    (
        "tls.names",
        "more DNS names or IP addresses for the locally issued certificate",
    ),
    (
        "jwt.algorithm",
        "HS256, RS256 or ES256; tokens signed otherwise are refused",
    ),
    ("jwt.secret", "HS256 secret given inline"),
    (
        "jwt.secret_file",
        "file with the HS256 secret; unset: data_dir/jwt.secret, created on first run",
    ),
    (
        "jwt.public_key",
        "RS256/ES256 public key (PEM) used to verify tokens",
    ),
    (
        "jwt.private_key",
        "RS256/ES256 private key (PEM), only for `lookout token`",
    ),
    ("jwt.issuer", "required `iss` claim, when set"),
    ("jwt.audience", "required `aud` claim, when set"),
    ("jwt.leeway", "clock skew tolerated on exp/nbf"),
    (
        "jwt.jwks_url",
        "https:// URL of the identity provider's key set (JWKS); set: keys chosen by kid",
    ),
    ("jwt.jwks_file", "a JWKS file instead of jwt.jwks_url"),
    (
        "jwt.algorithms",
        "with a key set: the algorithms accepted (RS256, ES256)",
    ),
    ("jwt.jwks_refresh", "with a key set: how often it is fetched again"),
    (
        "jwt.jwks_min_interval",
        "with a key set: an unknown kid fetches it again at most this often",
    ),
    ("jwt.claims.user", "claim (dotted path) naming the user"),
    ("jwt.claims.org", "claim (dotted path) naming the organization"),
    (
        "jwt.claims.roles",
        "claim (dotted path) with the roles: a string or a list",
    ),
    (
        "jwt.claims.role_map",
        "identity-provider role name -> guard, supervisor, admin or service",
    ),
    ("limits.ping_interval", "server WebSocket ping interval"),
    (
        "limits.dead_peer_timeout",
        "close a connection that sent nothing (no pong, no frame) for this long",
    ),
    (
        "limits.idle_timeout",
        "close a connection without subscriptions after this long",
    ),
    (
        "limits.idle_notice",
        "send an idle notice this long before the idle close",
    ),
    (
        "limits.handshake_timeout",
        "TLS handshake + HTTP upgrade request deadline",
    ),
    (
        "limits.write_timeout",
        "drop a peer that takes nothing of a waiting write for this long",
    ),
    (
        "limits.shutdown_grace",
        "how long shutdown waits for connections to drain",
    ),
    (
        "limits.max_connections_per_user",
        "WebSocket connections per user",
    ),
    ("limits.max_connections", "WebSocket connections in total"),
    (
        "limits.max_subscriptions_per_connection",
        "subscriptions per connection",
    ),
    (
        "limits.max_publishes_in_flight",
        "publishes of one native connection awaiting their commit at once (backpressure beyond)",
    ),
    (
        "limits.positions_in_flight",
        "guards' location fixes processed at once, server-wide (beyond: each guard's latest waits, older ones are shed)",
    ),
    (
        "limits.messages_per_second",
        "messages per second per user, video excluded",
    ),
    ("limits.message_burst", "message burst per user"),
    (
        "limits.video_frames_per_second",
        "video frames per second per user",
    ),
    (
        "limits.alerts_per_minute",
        "emergencies a user may raise per minute (WebSocket and REST)",
    ),
    (
        "limits.max_message_size",
        "largest text/JSON message in bytes (larger: close 1009)",
    ),
    (
        "limits.max_video_frame",
        "largest video frame payload in bytes",
    ),
    (
        "limits.outbound_queue",
        "messages queued for one connection before the overflow policy applies",
    ),
    (
        "limits.max_pending_connections",
        "connections not yet past their first request's headers, server-wide (beyond: wait in the listen backlog)",
    ),
    (
        "limits.max_pending_per_peer",
        "connections not yet past their first request's headers, from one address (beyond: closed)",
    ),
    (
        "limits.body_timeout",
        "how long a REST request's body may take to arrive (beyond: 408)",
    ),
    (
        "limits.outbound_queue_bytes",
        "bytes queued for one connection before the overflow policy applies",
    ),
    (
        "limits.max_response_bytes",
        "bytes of messages in one history or long-poll response (at least 1 MiB)",
    ),
    (
        "limits.max_requests_per_user",
        "REST reads (history, poll, location history, stats) one user may run at once",
    ),
    (
        "limits.stomp_transactions",
        "open STOMP transactions per connection",
    ),
    (
        "limits.stomp_transaction_frames",
        "frames held in all open STOMP transactions of one connection",
    ),
    (
        "limits.stomp_transaction_bytes",
        "bytes held in all open STOMP transactions of one connection",
    ),
    (
        "limits.max_unacked_per_connection",
        "messages awaiting one connection's ACK (STOMP client ack modes)",
    ),
    (
        "limits.max_rooms_per_org",
        "rooms the clients of one org may create",
    ),
    (
        "limits.max_devices_per_org",
        "guard devices one org may have enrolled and not revoked",
    ),
    (
        "limits.keyframe_ttl",
        "how long a video channel's latest keyframe is kept for a late viewer",
    ),
    (
        "limits.socketio_handshakes",
        "Socket.IO sessions handshaken and not yet connected with a token",
    ),
    (
        "limits.unsent_bytes",
        "bytes the kernel may hold unsent for one connection (TCP_NOTSENT_LOWAT)",
    ),
    (
        "retention.interval",
        "how often channel logs are trimmed (in the background)",
    ),
    ("retention.default.max_messages", "newest messages kept per channel"),
    ("retention.default.max_age", "messages older than this are trimmed"),
    (
        "field.max_clock_skew",
        "how far in the future a location's ts may be",
    ),
    (
        "field.max_fence_vertices",
        "vertices a polygon geofence may have",
    ),
    (
        "field.guard_session",
        "how long a guard's session from a sign-in link lasts (a shift)",
    ),
    (
        "alerts.level2_after",
        "escalate an unacknowledged alert to level 2 after this long",
    ),
    (
        "alerts.level3_after",
        "escalate to level 3 (admins and a /topic/system notice) after this long",
    ),
    (
        "amqp.url",
        "amqp:// or amqps:// URL of the site's RabbitMQ; set: task events are consumed",
    ),
    (
        "amqp.bindings",
        "[[amqp.bindings]] entries: exchange, routing_key, channel (with {org}), org (the body's field)",
    ),
    (
        "amqp.queue_prefix",
        "the durable queues Lookout declares are <prefix>.<exchange>.<routing_key>",
    ),
    (
        "amqp.prefetch",
        "deliveries the broker hands over before they are acknowledged",
    ),
    (
        "notify.webhooks",
        "[[notify.webhooks]] entries: url, events, min_level, secret (see Alert notifications)",
    ),
    (
        "notify.max_outbox",
        "most notifications of one org waiting for their webhooks; beyond it the org's new ones are dropped and counted",
    ),
    (
        "metrics.token",
        "bearer token a Prometheus scraper sends for /metrics (admins' and supervisors' tokens work too); at least 32 bytes",
    ),
    (
        "dashboard.site_plan",
        "site-plan image (PNG, JPEG or SVG) under the dashboard's map; unset: none",
    ),
    (
        "dashboard.site_plan_bounds",
        "the image's edges [west, south, east, north] in degrees; required with site_plan",
    ),
    (
        "testing.echo_endpoint",
        "serve /echo, an unauthenticated echo WebSocket for conformance suites; never on a site",
    ),
    (
        "store.cache_capacity",
        "bytes of the store's page cache (sled), default 64 MiB",
    ),
    (
        "cluster.redis",
        "redis://, rediss:// or redis+unix:// URL of the Redis all nodes share; set: no sled store",
    ),
    (
        "cluster.sentinels",
        "host:port of each Redis Sentinel of the shared Redis (instead of cluster.redis)",
    ),
    (
        "cluster.master_name",
        "the name the Sentinels know the shared Redis by (with cluster.sentinels)",
    ),
    (
        "cluster.sentinel_tls",
        "with cluster.sentinels: TLS to the Sentinels and to the Redis they name",
    ),
    (
        "cluster.sentinel_password",
        "with cluster.sentinels: the Sentinels' own password",
    ),
    (
        "cluster.username",
        "with cluster.sentinels: the ACL user on the Redis they name (with cluster.redis: in the URL)",
    ),
    (
        "cluster.password",
        "with cluster.sentinels: the password on the Redis they name (with cluster.redis: in the URL)",
    ),
    (
        "cluster.node_id",
        "this node's name in logs, metrics and the Redis; default the host name",
    ),
    (
        "cluster.min_replicas",
        "replicas a write must reach (WAIT) before it is acknowledged",
    ),
    (
        "cluster.wait_timeout",
        "how long a write may wait for cluster.min_replicas",
    ),
    (
        "testing.store_faults",
        "obey the FAULT-flush / FAULT-write trigger files of the data directory, for store-fault tests; never on a site",
    ),
    (
        "retention.kinds",
        "per-kind rules {max_messages, max_age}: location, emergency, alerts, tasks, room, role, queue, job, system",
    ),
];

/// The help text listing every key, its environment variable and its default.
pub fn keys_help() -> String {
    let defaults = default_values();
    let mut out =
        String::from("Configuration keys (lookout.toml key / LOOKOUT_* variable, default):\n");
    for (key, doc) in KEYS {
        let env = format!("LOOKOUT_{}", key.replace('.', "__").to_uppercase());
        let default = defaults
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        out.push_str(&format!(
            "  {key}  ({env}, default {default})\n      {doc}\n"
        ));
    }
    out
}

/// The default configuration as dotted key → display value.
pub fn default_values() -> Vec<(String, String)> {
    let mut out = Vec::new();
    match serde_json::to_value(Config::default()) {
        Ok(v) => flatten("", &v, &mut out),
        Err(e) => out.push(("<error>".into(), e.to_string())),
    }
    out
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    // A map keyed by channel kind (and maps and lists of tables) is one documented key.
    if [
        "retention.kinds",
        "jwt.claims.role_map",
        "notify.webhooks",
        "amqp.bindings",
    ]
    .contains(&prefix)
    {
        out.push((prefix.to_string(), value.to_string()));
        return;
    }
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::Null => out.push((prefix.to_string(), "unset".into())),
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Values given on the command line; they override every other source.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    /// `--listen`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--data-dir`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

/// Assembles the configuration from defaults, the file, the environment and the flags.
///
/// `file`: an explicit `--config`; it must exist. Without it, `./lookout.toml` is read if present.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let config: Config = figment(file, overrides)?.extract().map_err(Box::new)?;
    config.validate()?;
    Ok(config)
}

/// Every problem with the configuration, each naming its key: all the values that do not
/// parse (unknown keys, wrong types) or, when they all do, every inconsistency.
pub fn check(file: Option<&Path>, overrides: &Overrides) -> Vec<String> {
    let figment = match figment(file, overrides) {
        Ok(f) => f,
        Err(e) => return vec![e.to_string()],
    };
    match figment.extract::<Config>() {
        Ok(config) => config.problems().iter().map(|p| p.to_string()).collect(),
        Err(errors) => errors.into_iter().map(|e| e.to_string()).collect(),
    }
}

/// The layered sources: defaults ← file ← `LOOKOUT_*` ← flags.
fn figment(file: Option<&Path>, overrides: &Overrides) -> Result<Figment, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    match file {
        Some(path) => {
            if !path.exists() {
                return Err(ConfigError::Inconsistent {
                    key: "config",
                    message: format!("config file {} does not exist", path.display()),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        None if Path::new("lookout.toml").exists() => {
            figment = figment.merge(Toml::file_exact("lookout.toml"))
        }
        None => {}
    }
    Ok(figment
        .merge(
            Env::prefixed("LOOKOUT_")
                .split("__")
                // Variables that steer the CLI or logging, not configuration keys.
                .ignore(&["config", "log", "log_format"]),
        )
        .merge(Serialized::defaults(overrides)))
}

impl Config {
    /// Rejects combinations that would only fail later, naming the key at fault (the first
    /// problem; [`Config::problems`] lists them all).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }

    /// What is allowed but should not be on a site, each naming its key.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.testing.store_faults {
            out.push(
                "testing.store_faults: a file in the data directory can make the store fail; for fault tests only"
                    .into(),
            );
        }
        if self.testing.echo_endpoint {
            out.push(
                "testing.echo_endpoint: /echo echoes anything to anyone, without a token; for conformance tests only"
                    .to_string(),
            );
        }
        out
    }

    /// Every combination that would only fail later, each naming its key.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        let mut bad = |key: &'static str, message: &str| {
            out.push(ConfigError::Inconsistent {
                key,
                message: message.to_string(),
            })
        };
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            bad("tls.cert", "tls.cert and tls.key must be given together");
        }
        for hook in &self.notify.webhooks {
            if !(hook.url.starts_with("https://") || hook.url.starts_with("http://")) {
                bad(
                    "notify.webhooks",
                    "a webhook url is https:// (or http:// on the LAN)",
                );
            }
            if hook.events.is_empty()
                || hook
                    .events
                    .iter()
                    .any(|e| !ALERT_EVENTS.contains(&e.as_str()))
            {
                bad(
                    "notify.webhooks",
                    "events: one or more of alert.created, alert.escalated, alert.acknowledged, alert.resolved",
                );
            }
            if hook.secret.len() < 16 {
                bad(
                    "notify.webhooks",
                    "a webhook secret must be at least 16 bytes",
                );
            }
            if hook.min_level.is_some_and(|l| !(1..=3).contains(&l)) {
                bad("notify.webhooks", "min_level is 1, 2 or 3");
            }
        }
        if let Some(url) = &self.amqp.url {
            if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                bad("amqp.url", "an amqp:// or amqps:// URL");
            }
            if self.amqp.bindings.is_empty() {
                bad(
                    "amqp.bindings",
                    "amqp.url is set but no [[amqp.bindings]] says what to consume",
                );
            }
        }
        for b in &self.amqp.bindings {
            if !b.channel.contains("{org}")
                || b.exchange.is_empty()
                || b.routing_key.is_empty()
                || b.org.is_empty()
            {
                bad(
                    "amqp.bindings",
                    "each binding needs exchange, routing_key, org and a channel with {org}",
                );
            }
        }
        if self.amqp.prefetch == 0 {
            bad("amqp.prefetch", "must be positive");
        }
        if self.notify.max_outbox == 0 {
            bad("notify.max_outbox", "must be positive");
        }
        for name in &self.tls.names {
            let ip = name.parse::<std::net::IpAddr>().is_ok();
            let dns = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !(ip || dns) {
                bad(
                    "tls.names",
                    &format!("{name:?} is neither a DNS name nor an IP address"),
                );
            }
        }
        if self.tls.cert.is_some() && !self.tls.names.is_empty() {
            bad(
                "tls.names",
                "names are for the locally issued certificate: a configured tls.cert carries its own",
            );
        }
        let jwt = &self.jwt;
        if jwt.jwks_url.is_some() || jwt.jwks_file.is_some() {
            if jwt.jwks_url.is_some() && jwt.jwks_file.is_some() {
                bad(
                    "jwt.jwks_url",
                    "set jwt.jwks_url or jwt.jwks_file, not both",
                );
            }
            if jwt
                .jwks_url
                .as_deref()
                .is_some_and(|u| !u.starts_with("https://"))
            {
                bad("jwt.jwks_url", "the key set is fetched over https:// only");
            }
            if jwt.secret.is_some() || jwt.secret_file.is_some() || jwt.public_key.is_some() {
                bad(
                    "jwt.jwks_url",
                    "a key set replaces jwt.secret, jwt.secret_file and jwt.public_key: unset them",
                );
            }
            if jwt.algorithms.is_empty() || jwt.algorithms.contains(&JwtAlgorithm::HS256) {
                bad(
                    "jwt.algorithms",
                    "with a key set: RS256 and/or ES256 (a shared secret is never in a key set)",
                );
            }
            if jwt.jwks_refresh.is_zero() {
                bad("jwt.jwks_refresh", "must be positive");
            }
            // A provider signs tokens for many applications: without an audience, a token it
            // issued for another one would open Lookout.
            if jwt.audience.as_deref().is_none_or(str::is_empty) {
                bad(
                    "jwt.audience",
                    "required with a key set: the audience (client id) the provider puts in Lookout's tokens",
                );
            }
        }
        for (name, role) in &jwt.claims.role_map {
            // The role names of the design (auth builds on this module, so not `Role::parse`).
            if !["guard", "supervisor", "admin", "service"].contains(&role.as_str()) {
                bad(
                    "jwt.claims.role_map",
                    &format!("{name:?} maps to {role:?}: guard, supervisor, admin or service"),
                );
            }
        }
        for (key, path) in [
            ("jwt.claims.user", &jwt.claims.user),
            ("jwt.claims.org", &jwt.claims.org),
            ("jwt.claims.roles", &jwt.claims.roles),
        ] {
            if path.is_empty() || path.split('.').any(str::is_empty) {
                bad(
                    key,
                    "a claim name or a dotted path such as realm_access.roles",
                );
            }
        }
        if self.metrics.token.as_deref().is_some_and(|t| t.len() < 32) {
            bad(
                "metrics.token",
                "at least 32 bytes (it opens the metrics to whoever holds it)",
            );
        }
        let uses_key_set = jwt.jwks_url.is_some() || jwt.jwks_file.is_some();
        match self.jwt.algorithm {
            _ if uses_key_set => {}
            JwtAlgorithm::HS256 => {
                if self.jwt.secret.as_deref().is_some_and(|s| s.len() < 32) {
                    bad("jwt.secret", "an HS256 secret must be at least 32 bytes");
                }
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => {
                if self.jwt.public_key.is_none() {
                    bad(
                        "jwt.public_key",
                        "RS256/ES256 need jwt.public_key (PEM) to verify tokens",
                    );
                }
            }
        }
        let l = &self.limits;
        let positive: &[(&str, bool)] = &[
            ("limits.ping_interval", l.ping_interval.is_zero()),
            ("limits.dead_peer_timeout", l.dead_peer_timeout.is_zero()),
            ("limits.idle_timeout", l.idle_timeout.is_zero()),
            ("limits.handshake_timeout", l.handshake_timeout.is_zero()),
            ("limits.write_timeout", l.write_timeout.is_zero()),
            (
                "limits.max_connections_per_user",
                l.max_connections_per_user == 0,
            ),
            ("limits.max_connections", l.max_connections == 0),
            ("limits.messages_per_second", l.messages_per_second == 0),
            ("limits.message_burst", l.message_burst == 0),
            (
                "limits.video_frames_per_second",
                l.video_frames_per_second == 0,
            ),
            ("limits.alerts_per_minute", l.alerts_per_minute == 0),
            ("limits.max_message_size", l.max_message_size < 256),
            ("limits.outbound_queue", l.outbound_queue == 0),
            (
                "limits.max_pending_connections",
                l.max_pending_connections == 0,
            ),
            ("limits.max_pending_per_peer", l.max_pending_per_peer == 0),
            ("limits.body_timeout", l.body_timeout.is_zero()),
            (
                "limits.outbound_queue_bytes",
                l.outbound_queue_bytes < l.max_video_frame.max(l.max_message_size),
            ),
            (
                "limits.max_response_bytes",
                l.max_response_bytes < 1024 * 1024,
            ),
            ("limits.max_requests_per_user", l.max_requests_per_user == 0),
            (
                "limits.max_publishes_in_flight",
                l.max_publishes_in_flight == 0,
            ),
            ("limits.positions_in_flight", l.positions_in_flight == 0),
            ("limits.stomp_transactions", l.stomp_transactions == 0),
            (
                "limits.stomp_transaction_frames",
                l.stomp_transaction_frames == 0,
            ),
            (
                "limits.stomp_transaction_bytes",
                l.stomp_transaction_bytes == 0,
            ),
            (
                "limits.max_unacked_per_connection",
                l.max_unacked_per_connection == 0,
            ),
            ("limits.max_rooms_per_org", l.max_rooms_per_org == 0),
            ("limits.max_devices_per_org", l.max_devices_per_org == 0),
            ("limits.keyframe_ttl", l.keyframe_ttl.is_zero()),
            ("limits.unsent_bytes", l.unsent_bytes == 0),
            ("limits.socketio_handshakes", l.socketio_handshakes == 0),
        ];
        if l.positions_in_flight > 4096 {
            bad(
                "limits.positions_in_flight",
                "at most 4096: each one in flight holds a task and its fix",
            );
        }
        if l.max_publishes_in_flight > 4096 {
            bad(
                "limits.max_publishes_in_flight",
                "at most 4096: each one in flight holds a task and its message",
            );
        }
        if l.socketio_handshakes > 100_000 {
            bad(
                "limits.socketio_handshakes",
                "at most 100000: each one holds an Engine.IO session before any token is seen",
            );
        }
        if self.store.cache_capacity < (1 << 20) {
            bad("store.cache_capacity", "at least 1 MiB (1048576 bytes)");
        }
        if let Some(url) = &self.cluster.redis {
            if !["redis://", "rediss://", "redis+unix://"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
            {
                bad(
                    "cluster.redis",
                    "a redis://, rediss:// or redis+unix:// URL",
                );
            }
        }
        if self.cluster.redis.is_some() && !self.cluster.sentinels.is_empty() {
            bad(
                "cluster.sentinels",
                "either cluster.redis or cluster.sentinels, not both",
            );
        }
        if !self.cluster.sentinels.is_empty() && self.cluster.master_name.is_none() {
            bad(
                "cluster.master_name",
                "needed with cluster.sentinels: the name the Sentinels know the Redis by",
            );
        }
        if self.cluster.master_name.is_some() && self.cluster.sentinels.is_empty() {
            bad("cluster.master_name", "only with cluster.sentinels");
        }
        let sentinel_only = [
            ("cluster.sentinel_tls", self.cluster.sentinel_tls),
            (
                "cluster.sentinel_password",
                self.cluster.sentinel_password.is_some(),
            ),
            ("cluster.username", self.cluster.username.is_some()),
            ("cluster.password", self.cluster.password.is_some()),
        ];
        for (key, set) in sentinel_only {
            if set && self.cluster.sentinels.is_empty() {
                bad(
                    key,
                    "only with cluster.sentinels (with cluster.redis, the URL carries TLS and credentials)",
                );
            }
        }
        for s in &self.cluster.sentinels {
            let port = s
                .rsplit_once(':')
                .and_then(|(h, p)| (!h.is_empty()).then_some(p));
            if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                bad("cluster.sentinels", "each entry is host:port");
            }
        }
        if self.cluster.node_id.as_deref().is_some_and(|n| {
            n.is_empty()
                || n.len() > 64
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        }) {
            bad(
                "cluster.node_id",
                "1 to 64 letters, digits, '-', '_' or '.'",
            );
        }
        if self.cluster.wait_timeout.is_zero() {
            bad("cluster.wait_timeout", "must be above zero");
        }
        for &(key, is_bad) in positive {
            if is_bad {
                bad(
                    key,
                    "must be greater than zero (max_message_size: at least 256; \
                     max_response_bytes: at least 1 MiB; outbound_queue_bytes: at least \
                     max_video_frame and max_message_size)",
                );
            }
        }
        for kind in self.retention.kinds.keys() {
            if !RETENTION_KINDS.contains(&kind.as_str()) {
                bad(
                    "retention.kinds",
                    &format!(
                        "unknown channel kind `{kind}` (one of {})",
                        RETENTION_KINDS.join(", ")
                    ),
                );
            }
        }
        let rules = std::iter::once(&self.retention.default).chain(self.retention.kinds.values());
        for rule in rules {
            if rule.max_messages == 0 || rule.max_age.is_zero() {
                bad(
                    "retention",
                    "max_messages and max_age must be greater than zero",
                );
            }
        }
        if self.alerts.level2_after.is_zero()
            || self.alerts.level3_after <= self.alerts.level2_after
        {
            bad(
                "alerts.level3_after",
                "escalation intervals must be positive and level 3 after level 2",
            );
        }
        let plan = &self.dashboard;
        if plan.site_plan.is_some() != plan.site_plan_bounds.is_some() {
            bad(
                "dashboard.site_plan_bounds",
                "dashboard.site_plan and dashboard.site_plan_bounds must be given together",
            );
        }
        if let Some([w, s, e, n]) = plan.site_plan_bounds {
            let lon = -180.0..=180.0;
            let lat = -90.0..=90.0;
            if !(lon.contains(&w) && lon.contains(&e) && lat.contains(&s) && lat.contains(&n))
                || w >= e
                || s >= n
            {
                bad(
                    "dashboard.site_plan_bounds",
                    "must be [west, south, east, north] with west < east and south < north",
                );
            }
        }
        if self.field.guard_session < Duration::from_secs(60)
            || self.field.guard_session > Duration::from_secs(7 * 24 * 3600)
        {
            bad("field.guard_session", "must be between 1m and 7d");
        }
        if self.field.max_fence_vertices < 3 {
            bad("field.max_fence_vertices", "must be at least 3");
        }
        if self.retention.interval.is_zero() {
            bad("retention.interval", "must be greater than zero");
        }
        if l.idle_notice >= l.idle_timeout {
            bad(
                "limits.idle_notice",
                "must be shorter than limits.idle_timeout",
            );
        }
        if l.dead_peer_timeout <= l.ping_interval {
            bad(
                "limits.dead_peer_timeout",
                "must be longer than limits.ping_interval, or healthy peers are dropped",
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_key_is_documented_and_every_documented_key_exists() {
        let actual: Vec<String> = default_values().into_iter().map(|(k, _)| k).collect();
        let documented: Vec<String> = KEYS.iter().map(|(k, _)| k.to_string()).collect();
        for key in &actual {
            assert!(documented.contains(key), "undocumented config key {key}");
        }
        for key in &documented {
            assert!(
                actual.contains(key),
                "documented key {key} is not in Config"
            );
        }
    }

    #[test]
    fn defaults_are_the_designs_and_valid() {
        let c = Config::default();
        c.validate().expect("defaults validate");
        assert_eq!(c.limits.max_connections_per_user, 5);
        assert_eq!(c.limits.max_message_size, 64 * 1024);
        assert_eq!(c.listen.port(), 8443);
    }

    #[test]
    fn a_half_given_certificate_is_refused_with_its_key() {
        let mut c = Config::default();
        c.tls.cert = Some("x.pem".into());
        let err = c.validate().expect_err("must fail");
        assert!(err.to_string().starts_with("tls.cert"), "{err}");
    }

    #[test]
    fn a_store_cache_too_small_to_work_and_an_unbounded_pipeline_are_refused_with_their_keys() {
        let mut c = Config::default();
        c.store.cache_capacity = 4096;
        let err = c.validate().expect_err("must fail");
        assert!(err.to_string().starts_with("store.cache_capacity"), "{err}");
        let mut c = Config::default();
        c.limits.max_publishes_in_flight = 100_000;
        let err = c.validate().expect_err("must fail");
        assert!(
            err.to_string()
                .starts_with("limits.max_publishes_in_flight"),
            "{err}"
        );
        let mut c = Config::default();
        c.limits.socketio_handshakes = usize::MAX;
        let err = c.validate().expect_err("must fail");
        assert!(
            err.to_string().starts_with("limits.socketio_handshakes"),
            "{err}"
        );
    }

    /// A change made to the defaults.
    type Adjust = Box<dyn FnOnce(&mut Config)>;

    /// The first problem a configuration has, by its key.
    fn first_problem(adjust: impl FnOnce(&mut Config)) -> String {
        let mut c = Config::default();
        adjust(&mut c);
        c.validate().expect_err("must fail").to_string()
    }

    #[test]
    fn integrations_are_refused_with_their_keys_when_they_could_not_work() {
        let cases: [(&str, Adjust); 6] = [
            (
                "jwt.jwks_url",
                Box::new(|c| c.jwt.jwks_url = Some("http://idp/certs".into())),
            ),
            (
                "jwt.algorithms",
                Box::new(|c| {
                    c.jwt.jwks_url = Some("https://idp/certs".into());
                    c.jwt.algorithms = vec![JwtAlgorithm::HS256];
                }),
            ),
            (
                "jwt.claims.role_map",
                Box::new(|c| {
                    c.jwt.claims.role_map.insert("boss".into(), "root".into());
                }),
            ),
            (
                "amqp.bindings",
                Box::new(|c| c.amqp.url = Some("amqp://mq".into())),
            ),
            (
                "notify.webhooks",
                Box::new(|c| {
                    c.notify.webhooks.push(Webhook {
                        url: "https://pager/hook".into(),
                        events: vec!["alert.exploded".into()],
                        min_level: None,
                        secret: "long enough for a secret".into(),
                    })
                }),
            ),
            (
                "notify.webhooks",
                Box::new(|c| {
                    c.notify.webhooks.push(Webhook {
                        url: "https://pager/hook".into(),
                        events: vec!["alert.created".into()],
                        min_level: None,
                        secret: "short".into(),
                    })
                }),
            ),
        ];
        for (key, adjust) in cases {
            let problem = first_problem(adjust);
            assert!(problem.starts_with(key), "{key}: {problem}");
        }
    }
}
