//! The urgent lane: a thread of its own with its own small executor, for the work an
//! emergency starts (its log entry, the alert, the announcement to supervisors).
//!
//! Under load the async workers' run queues hold thousands of ready tasks, served in turn; an
//! alert whose every step (each durable wait, each hand-over) queued behind them would take
//! seconds. Work spawned here waits only for other urgent work. It must stay small: nothing
//! that scales with ordinary traffic belongs here.

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The lane; dropping it stops the thread once its current work yields.
pub struct Urgent {
    handle: Handle,
    stop: CancellationToken,
}

/// Why the lane could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the urgent lane: {0}")]
pub struct UrgentError(String);

impl Urgent {
    /// Starts the lane's thread.
    pub fn start() -> Result<Urgent, UrgentError> {
        let stop = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("lookout-urgent".into())
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
            .map_err(|e| UrgentError(e.to_string()))?;
        let handle = rx
            .recv()
            .map_err(|e| UrgentError(e.to_string()))?
            .map_err(UrgentError)?;
        Ok(Urgent { handle, stop })
    }

    /// Where urgent work is spawned.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Urgent {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urgent_work_runs_on_the_lane_s_own_thread() {
        let urgent = Urgent::start().expect("lane");
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
