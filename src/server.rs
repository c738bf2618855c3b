//! The server: prepares the data directory, keys and certificate, opens the store, binds the
//! listeners, and runs until a shutdown signal, then drains. The wiring of the services is
//! [`crate::app`]'s; the sockets are [`crate::transport`]'s.
//!
//! Shutdown order: stop accepting, tell every session to close with 1001, wait for the tracked
//! tasks up to `limits.shutdown_grace`, return. `main` and the tests call the same
//! [`Server::bind`] + [`Server::run`].

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::app::AppState;
use crate::auth::{AuthError, Authenticator};
use crate::config::Config;
use crate::store::{RetentionOf, Store, StoreError, StoreOptions};
use crate::transport::{self, tls, Gateway};

/// Start-up failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TLS material is missing or invalid.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// JWT keys are missing or invalid.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The store could not be opened, or failed while running.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A lane's thread could not start.
    #[error(transparent)]
    Lane(#[from] crate::lanes::LaneError),
    /// An `[[amqp.bindings]]` entry names no usable channel.
    #[error("{0}")]
    Amqp(String),
}

/// Reads the configuration again (the same file, variables and flags as at start).
pub type Reloader = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// A bound, not yet running server.
pub struct Server {
    state: Arc<AppState>,
    listener: TcpListener,
    plain: Option<TcpListener>,
    reloader: Option<(Reloader, tokio::signal::unix::Signal)>,
    /// Facts about the TLS certificate in use.
    pub certificate: CertificateInfo,
}

/// What an operator needs to trust the certificate.
#[derive(Debug, Clone)]
pub struct CertificateInfo {
    /// SHA-256 fingerprint.
    pub fingerprint: String,
    /// Certificate file.
    pub path: PathBuf,
    /// What clients trust: the local CA's certificate, or the configured certificate.
    pub trust_path: PathBuf,
    /// SHA-256 fingerprint of the local CA, when there is one (what a phone compares).
    pub ca_fingerprint: Option<String>,
    /// Issued by this run.
    pub generated: bool,
}

/// The certificate line operators use to trust the server.
pub fn print_certificate(cert: &CertificateInfo) {
    println!(
        "certificate {} (SHA-256 {}){}",
        cert.path.display(),
        cert.fingerprint,
        if cert.generated { ", issued now" } else { "" }
    );
    if let Some(ca) = &cert.ca_fingerprint {
        println!(
            "local CA {} (SHA-256 {ca}): trust it on phones from https://<this host>/trust",
            cert.trust_path.display()
        );
    }
}

impl Server {
    /// Prepares the data directory, keys and certificate, and binds the listeners.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        Self::prepare_data_dir(&config)?;
        let (store, report): (Arc<dyn Store>, _) =
            match crate::store::RedisOptions::from_settings(&config.cluster) {
                // Cluster mode: the state is in the shared Redis; the data directory keeps only
                // this node's keys and certificate.
                Some(options) => {
                    let (store, report) = crate::store::RedisStore::open(&options).await?;
                    (Arc::new(store), report)
                }
                None => crate::store::open_data_dir(
                    &config.data_dir,
                    StoreOptions {
                        faults: config.testing.store_faults,
                        cache_capacity: config.store.cache_capacity,
                        ..StoreOptions::default()
                    },
                )?,
            };
        tracing::info!(
            epoch = %report.epoch,
            channels = report.channels,
            messages = report.messages,
            created = report.created,
            "store opened"
        );
        Self::bind_on(config, store).await
    }

    /// Like [`Server::bind`], over a store already opened (any engine): the data directory
    /// still holds the keys and the certificate.
    pub async fn bind_on(config: Config, store: Arc<dyn Store>) -> Result<Server, ServerError> {
        Self::prepare_data_dir(&config)?;
        let material = tls::load_or_generate(&config)?;
        let auth = Arc::new(Authenticator::from_config(&config)?);
        if let Some(set) = auth.key_set() {
            // The live set now; the cached one (or none) while the provider is unreachable.
            match set.refresh().await {
                Ok(keys) => tracing::info!(keys, "identity provider's key set loaded"),
                Err(e) if !set.is_empty() => tracing::warn!(
                    error = %e,
                    keys = set.len(),
                    "identity provider unreachable: verifying with the cached key set"
                ),
                Err(e) => {
                    return Err(ServerError::Auth(AuthError::Key(format!(
                        "{e}, and no cached key set in the data directory"
                    ))))
                }
            }
        }
        let listener =
            crate::transport::listen(config.listen).map_err(|source| ServerError::Bind {
                addr: config.listen,
                source,
            })?;
        let plain = match config.plain_listen {
            Some(addr) => Some(
                crate::transport::listen(addr)
                    .map_err(|source| ServerError::Bind { addr, source })?,
            ),
            None => None,
        };
        let lanes = crate::lanes::Lanes::start()?;
        let state = AppState::new(config, store, auth, material.server, lanes);
        if let Some(bridge) = crate::amqp::Bridge::new(&state.config.amqp, state.hub.clone())
            .map_err(ServerError::Amqp)?
        {
            let _ = state.amqp.set(bridge);
        }
        // Before the first connection: a revoked phone stays cut off across restarts.
        let revoked = crate::api::devices::load_revocations(&state).await?;
        if revoked > 0 {
            tracing::info!(revoked, "revoked devices loaded");
        }
        Ok(Server {
            state,
            listener,
            plain,
            reloader: None,
            certificate: CertificateInfo {
                fingerprint: material.fingerprint,
                ca_fingerprint: (material.trust_path != material.cert_path)
                    .then(|| crate::transport::tls::file_fingerprint(&material.trust_path))
                    .flatten(),
                path: material.cert_path,
                trust_path: material.trust_path,
                generated: material.generated,
            },
        })
    }

    fn prepare_data_dir(config: &Config) -> Result<(), ServerError> {
        create_private_dir(&config.data_dir).map_err(|source| ServerError::DataDir {
            path: config.data_dir.clone(),
            source,
        })
    }

    /// The TLS listener's address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.config.listen)
    }

    /// The plain-HTTP listener's address, when configured.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The shared state, for in-process tests and tools.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Reload the configuration with `reloader` on SIGHUP while running. SIGHUP is caught from
    /// now on: a reload asked for as soon as the service says it listens (systemd, a test)
    /// waits for the server to run instead of ending the process, as SIGHUP's default does.
    pub fn reload_with(mut self, reloader: Reloader) -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(hangups) => self.reloader = Some((reloader, hangups)),
            Err(e) => tracing::error!(error = %e, "cannot listen for SIGHUP; reloads are off"),
        }
        self
    }

    /// Serves until `shutdown` completes (or the store fails), then drains within
    /// `limits.shutdown_grace` and flushes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let state = self.state.clone();
        let addr = self.local_addr();
        let store = state.store.clone();
        // A store that cannot be read at start is not served from.
        state
            .field
            .alerts()
            .take_census()
            .await
            .map_err(|e| match e {
                crate::alerts::AlertError::Store(e) => ServerError::Store(e),
                other => ServerError::Store(StoreError::Codec(other.to_string())),
            })?;
        let flusher = store.clone().start();
        let retention = tokio::spawn(retention(state.clone()));
        let timers = tokio::spawn(
            state
                .field
                .alerts()
                .clone()
                .run_timers(state.shutdown.clone()),
        );
        // Cluster mode: what the other nodes publish reaches this node's subscribers.
        let cluster_feed = tokio::spawn(state.hub.clone().run_cluster(state.shutdown.clone()));
        // Followers that end on `state.shutdown`; awaited before the store is flushed, so that
        // none of them still holds the store (or writes to it) when `run` returns.
        let mut followers = tokio::task::JoinSet::new();
        if store.cluster().is_some() {
            // A phone revoked on another node is cut off here too.
            let revocations =
                crate::api::devices::follow_revocations(state.clone(), state.shutdown.clone());
            followers.spawn(async move {
                let _ = revocations.await;
            });
        }
        if let Some(set) = state.auth.key_set() {
            let keys = set.clone().run(state.shutdown.clone());
            followers.spawn(async move {
                let _ = keys.await;
            });
        }
        // Lost contact: guards on shift gone silent.
        let sweep = state
            .field
            .clone()
            .run_contact_sweep(state.shutdown.clone());
        followers.spawn(sweep);
        let hooks = state
            .field
            .alerts()
            .hooks()
            .clone()
            .run(state.shutdown.clone());
        followers.spawn(async move {
            let _ = hooks.await;
        });
        // Alarms to the alarm receiving centres, and their links' supervision.
        let arc = state.arc.clone().run(state.shutdown.clone());
        followers.spawn(async move {
            let _ = arc.await;
        });
        if let Some(bridge) = state.amqp.get() {
            let bridge = bridge.clone().run(state.shutdown.clone());
            followers.spawn(async move {
                let _ = bridge.await;
            });
        }
        let gateway = Gateway::new(state.clone());
        let tls_loop = tokio::spawn(transport::accept_loop(
            gateway.clone(),
            self.listener,
            Some(state.tls.clone()),
        ));
        let reloads = self.reloader.map(|(reloader, hangups)| {
            tokio::spawn(reload_on_sighup(state.clone(), reloader, hangups))
        });
        let plain_loop = self
            .plain
            .map(|l| tokio::spawn(transport::accept_loop(gateway.clone(), l, None)));
        let housekeeping = tokio::spawn(housekeeping(state.clone()));
        // Ready first: the watchdog's first ping, on a task of its own, could otherwise reach
        // the service manager before it (seen on a loaded CI machine).
        crate::systemd::ready(&format!("listening on {addr}"));
        let watchdog = crate::systemd::watchdog_interval().map(|every| {
            let store = store.clone();
            tokio::spawn(crate::systemd::feed_watchdog(
                move || store.healthy(),
                state.shutdown.clone(),
                every,
            ))
        });

        let store_failed = tokio::select! {
            _ = shutdown => false,
            _ = store.failed().cancelled() => true,
        };
        if store_failed {
            // Health checks answer 503 for a grace period before the listeners close, so a
            // balancer or a supervisor sees why this node goes away. Nothing is acknowledged
            // meanwhile: every commit now fails.
            tracing::error!("the store failed: stopping after the grace period");
            tokio::time::sleep(state.hub.limits().shutdown_grace).await;
        }
        crate::systemd::stopping();
        // Aborted tasks are awaited too: until one is dropped, it still holds what it captured
        // (the store among it), and the data directory would stay locked after `run`.
        if let Some(watchdog) = watchdog {
            watchdog.abort();
            let _ = watchdog.await;
        }
        if let Some(reloads) = reloads {
            reloads.abort();
            let _ = reloads.await;
        }
        tracing::info!("shutting down: closing connections");
        state.shutdown.cancel();
        // Socket.IO sessions end like the others; then socketioxide closes what it still holds.
        gateway
            .socketio
            .close(state.hub.limits().shutdown_grace)
            .await;
        let _ = tls_loop.await;
        if let Some(plain) = plain_loop {
            let _ = plain.await;
        }
        housekeeping.abort();
        retention.abort();
        let _ = housekeeping.await;
        let _ = retention.await;
        let _ = timers.await;
        let _ = cluster_feed.await;
        state.tracker.close();
        let grace = state.hub.limits().shutdown_grace;
        if tokio::time::timeout(grace, state.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = state.tracker.len(),
                "connections still open after the grace period"
            );
        }
        // Releases and acknowledgements the hub started on its own finish before the flush.
        let hub_tasks = state.hub.tasks();
        hub_tasks.close();
        if tokio::time::timeout(grace, hub_tasks.wait()).await.is_err() {
            tracing::warn!(
                remaining = hub_tasks.len(),
                "hub tasks still running after the grace period"
            );
        }
        if tokio::time::timeout(grace, async {
            while followers.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(
                remaining = followers.len(),
                "background tasks still running after the grace period"
            );
            followers.abort_all();
            while followers.join_next().await.is_some() {}
        }
        let flushed = if store_failed || !store.healthy() {
            Err(ServerError::Store(StoreError::Unhealthy))
        } else {
            store.flush().await.map_err(ServerError::from)
        };
        // The flusher holds the store; wait until it is gone so the data directory is unlocked
        // when `run` returns.
        flusher.stop().await;
        flushed?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Waits for SIGHUP and reloads, until the server stops.
async fn reload_on_sighup(
    state: Arc<AppState>,
    reloader: Reloader,
    mut hangups: tokio::signal::unix::Signal,
) {
    // What the last reload (or the start) put in force: each reload reports what it changed.
    let mut running = state.config.clone();
    while hangups.recv().await.is_some() {
        crate::systemd::reloading();
        match reloader().map_err(|e| e.to_string()).and_then(|c| {
            let done = reload(&state, &running, &c)?;
            running = Arc::new(c);
            Ok(done)
        }) {
            Ok(done) => {
                tracing::info!(applied = ?done.applied, restart = ?done.restart, "configuration reloaded");
                if !done.restart.is_empty() {
                    tracing::warn!(
                        keys = ?done.restart,
                        "changed settings that take effect only after a restart"
                    );
                }
            }
            // A bad file changes nothing: the server keeps running as it was.
            Err(e) => {
                tracing::error!(error = %e, "reload refused; keeping the running configuration")
            }
        }
        crate::systemd::ready("reloaded");
    }
}

/// What a reload did with each key that changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Keys in force now, for new connections and requests (open connections keep theirs).
    pub applied: Vec<String>,
    /// Keys that take effect at the next start. A limit Socket.IO's engine was built with is
    /// listed as `key (Socket.IO)`: it applies now to every other transport.
    pub restart: Vec<String>,
}

/// Limits socketioxide's engine is built with at start (ping, timeouts, frame sizes).
const SOCKETIO_AT_START: [&str; 5] = [
    "limits.ping_interval",
    "limits.dead_peer_timeout",
    "limits.handshake_timeout",
    "limits.max_message_size",
    "limits.max_video_frame",
];

/// Whether a reload puts a key in force: the certificate, the allowed origins and the limits
/// (every limit is read through the hub's reloaded copy). Everything else is read at start.
fn applies_on_reload(key: &str) -> bool {
    key == "allowed_origins" || key.starts_with("tls.") || key.starts_with("limits.")
}

/// Applies what can change while running: the TLS certificate (its files are read again), the
/// allowed origins and the limits, and reports every key that differs from `running`.
pub fn reload(state: &AppState, running: &Config, config: &Config) -> Result<Reloaded, String> {
    config.validate().map_err(|e| e.to_string())?;
    let material = tls::load_or_generate(config).map_err(|e| e.to_string())?;
    state.tls.store(material.server);
    state
        .origins
        .store(Arc::new(config.allowed_origins.clone()));
    state.hub.set_limits(config.limits.clone());
    tracing::info!(fingerprint = %material.fingerprint, "TLS certificate in use for new connections");
    let before = crate::config::values(running);
    let mut done = Reloaded::default();
    for (key, value) in crate::config::values(config) {
        if before.iter().any(|(k, v)| *k == key && *v == value) {
            continue;
        }
        if SOCKETIO_AT_START.contains(&key.as_str()) {
            done.restart.push(format!("{key} (Socket.IO)"));
        }
        if applies_on_reload(&key) {
            done.applied.push(key);
        } else {
            done.restart.push(key);
        }
    }
    Ok(done)
}

/// Trims the channel logs every `retention.interval` (and purges resolved alerts and closed
/// incident reports past their retention), on a task of its own; the engine trims in
/// bounded batches, so publish and delivery go on between them.
async fn retention(state: Arc<AppState>) {
    let config = state.config.retention.clone();
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = crate::clock::now_millis();
        let alert_age = config.rule("alerts").max_age.as_millis() as u64;
        if let Err(e) = state
            .field
            .alerts()
            .purge_resolved(now.saturating_sub(alert_age))
            .await
        {
            tracing::error!(error = %e, "purging resolved alerts failed");
        }
        if let Err(e) = state.patrols.purge_incidents(now).await {
            tracing::error!(error = %e, "purging closed incident reports failed");
        }
        let rules = config.clone();
        let rule: RetentionOf = Arc::new(move |name| {
            let kind = crate::channel::ChannelKind::of_stored(name).map_or("system", |k| k.name());
            let rule = rules.rule(kind);
            let cutoff = now.saturating_sub(rule.max_age.as_millis() as u64);
            (rule.max_messages, cutoff)
        });
        match state.store.trim(rule).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(trimmed = n, "retention"),
            Err(e) => tracing::error!(error = %e, "retention failed"),
        }
    }
}

/// Creates the data directory readable by its owner only; an existing one is left as it is.
/// Creates `path` (and its parents) readable by the owner only.
pub fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

async fn housekeeping(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        state.hub.housekeeping();
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled: a signal that arrives after the caller announced it is listening
/// must stop the server, not meet the default action that kills the process.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match handlers {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
