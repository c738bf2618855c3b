//! The service manager: readiness, watchdog, reload and stop notifications (`sd_notify`).
//!
//! Every call is a no-op unless systemd (or a test) set `NOTIFY_SOCKET`. The watchdog is fed
//! only while the server says it is healthy (the store) and not shutting down, so a wedged
//! store gets the service restarted instead of kept alive by a timer that knows nothing. This
//! module only talks to the service manager; what "healthy" means is the server's.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// The store is open and the listeners are bound.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload (SIGHUP) began.
pub fn reloading() {
    notify(&[NotifyState::Reloading]);
}

/// Shutdown began.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// How often to feed the watchdog (half its timeout), when systemd asked for it.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

/// Feeds the watchdog every `every` while `healthy` says so, until `shutdown`.
pub async fn feed_watchdog(
    healthy: impl Fn() -> bool,
    shutdown: CancellationToken,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if healthy() {
            notify(&[NotifyState::Watchdog]);
        } else {
            tracing::error!("store unhealthy: not feeding the watchdog");
        }
    }
}
