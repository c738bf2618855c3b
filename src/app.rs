//! The application's shared state, and where it is wired together: configuration, keys, the
//! store, the hub, alerts and field operations, the shutdown signal and the task tracker.
//!
//! Everything that serves requests (the transport, the REST API, the demo) reads this state;
//! nothing here binds a socket or serves a request.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alerts::{Alerts, Escalation};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::field::{Field, FieldConfig};
use crate::hub::Hub;
use crate::lanes::Lanes;
use crate::session::positions::Positions;
use crate::session::SessionContext;
use crate::store::Store;

/// What every connection task shares.
pub struct AppState {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// The durable state.
    pub store: Arc<dyn Store>,
    /// The hub.
    pub hub: Arc<Hub>,
    /// Field operations (locations, video, emergencies, fences, shifts, alerts).
    pub field: Arc<Field>,
    /// Patrols: checkpoints, tours, scans.
    pub patrols: Arc<crate::patrol::Patrols>,
    /// Guards' location fixes on their way to the field, shed under overload.
    pub positions: Arc<Positions>,
    /// Token verification.
    pub auth: Arc<Authenticator>,
    /// Fires once when shutdown begins.
    pub shutdown: CancellationToken,
    /// Every connection and session task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// When the server started.
    pub started: Instant,
    /// Serializes sign-in link exchanges.
    pub links: tokio::sync::Mutex<()>,
    /// The threads emergencies and TLS handshakes are handled on; live as long as the state.
    pub lanes: Lanes,
    /// The TLS configuration new connections get; replaced by a reload.
    pub tls: Arc<arc_swap::ArcSwap<rustls::ServerConfig>>,
    /// Origins allowed to open WebSockets; replaced by a reload.
    pub origins: arc_swap::ArcSwap<Vec<String>>,
    /// The RabbitMQ consumer, when `amqp.url` is set (set once, when the server binds).
    pub amqp: std::sync::OnceLock<Arc<crate::amqp::Bridge>>,
    /// Alarms to the alarm receiving centres: the outbox the alerts write to, its deliverers
    /// and the links' state.
    pub arc: Arc<crate::arc::Transmitter>,
}

impl AppState {
    /// Wires the services over `store`.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        auth: Arc<Authenticator>,
        tls: Arc<rustls::ServerConfig>,
        lanes: Lanes,
    ) -> Arc<Self> {
        let hub = Hub::new(store.clone(), config.limits.clone());
        let arc = crate::arc::Transmitter::new(&config.arc, store.clone());
        let alerts = Alerts::new(
            hub.clone(),
            store.clone(),
            Escalation {
                level2_after: config.alerts.level2_after,
                level3_after: config.alerts.level3_after,
            },
            crate::notify::Hooks::new(&config.notify, store.clone()),
            arc.clone(),
        );
        let field = Field::new(
            hub.clone(),
            store.clone(),
            alerts.clone(),
            FieldConfig {
                max_clock_skew: config.field.max_clock_skew,
                max_fence_vertices: config.field.max_fence_vertices,
                check_in_min_interval: config.field.check_in_min_interval,
                max_welfare_guards_per_org: config.field.max_welfare_guards_per_org,
                lost_contact_after: config.field.lost_contact_after,
            },
            lanes.urgent.handle().clone(),
        );
        let patrols = crate::patrol::Patrols::new(
            store.clone(),
            alerts,
            config.patrol.clone(),
            config.field.max_clock_skew,
            config.testing.patrol_minute,
        );
        let positions =
            Positions::new(field.clone(), hub.clone(), lanes.positions.handle().clone());
        Arc::new(AppState {
            positions,
            origins: arc_swap::ArcSwap::from_pointee(config.allowed_origins.clone()),
            amqp: std::sync::OnceLock::new(),
            arc,
            tls: Arc::new(arc_swap::ArcSwap::new(tls)),
            config: Arc::new(config),
            store,
            hub,
            field,
            patrols,
            auth,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            started: Instant::now(),
            links: tokio::sync::Mutex::new(()),
            lanes,
        })
    }

    /// What a session needs of this state.
    pub fn session_context(&self) -> SessionContext {
        SessionContext {
            hub: self.hub.clone(),
            field: self.field.clone(),
            positions: self.positions.clone(),
            auth: self.auth.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}
