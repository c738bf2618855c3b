//! Lanes: threads of their own, each with its own small executor, for work that must not queue
//! behind the async workers' run queues, or must not fill them.
//!
//! - The **urgent lane** runs the work an emergency starts (its log entry, the alert, the
//!   announcement to supervisors). Under load the workers' run queues hold thousands of ready
//!   tasks, served in turn; an alert whose every step queued behind them would take seconds.
//!   Work spawned there waits only for other urgent work. Nothing that scales with ordinary
//!   traffic belongs there.
//! - The **handshake lane** runs new connections' TLS handshakes. When thousands of clients
//!   reconnect at once, their handshakes (the costliest step of a connection) would otherwise be
//!   thousands of ready tasks ahead of every established connection's reader and writer: a
//!   PANIC sent during a reconnect storm waited behind them for over a second. On a lane they
//!   queue behind each other only, and take at most the lane's one thread.
//!
//! A lane knows nothing of what runs on it.

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// A lane; dropping it stops the thread once its current work yields.
pub struct Lane {
    handle: Handle,
    stop: CancellationToken,
}

/// Why a lane could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the {0} lane: {1}")]
pub struct LaneError(&'static str, String);

impl Lane {
    /// Starts a lane's thread, named `lookout-{name}`.
    pub fn start(name: &'static str) -> Result<Lane, LaneError> {
        let stop = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name(format!("lookout-{name}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(stopped.cancelled());
            })
            .map_err(|e| LaneError(name, e.to_string()))?;
        let handle = rx
            .recv()
            .map_err(|e| LaneError(name, e.to_string()))?
            .map_err(|e| LaneError(name, e))?;
        Ok(Lane { handle, stop })
    }

    /// Where the lane's work is spawned.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

/// The server's lanes.
pub struct Lanes {
    /// Emergencies.
    pub urgent: Lane,
    /// New connections' TLS handshakes.
    pub handshakes: Lane,
}

impl Lanes {
    /// Starts both lanes' threads.
    pub fn start() -> Result<Lanes, LaneError> {
        Ok(Lanes {
            urgent: Lane::start("urgent")?,
            handshakes: Lane::start("handshakes")?,
        })
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_lane_s_own_thread() {
        let urgent = Lane::start("urgent").expect("lane");
        let ran_on = urgent
            .handle()
            .spawn(async {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                std::thread::current().name().map(str::to_string)
            })
            .await
            .expect("urgent task");
        assert_eq!(ran_on.as_deref(), Some("lookout-urgent"));
    }
}
