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
//!   queue behind each other only, and take at most the lane's one thread. (Handshakes on every
//!   core at a lower priority starved behind everything else: 19,000 connections took 15.2 s
//!   instead of 11.9 s, and a storm was no faster.)
//! - The **position lane** processes guards' location fixes (their log entries, last-known
//!   records, fan-in and fence checks), on as many threads as the machine has cores, each at a
//!   lower CPU priority than the async workers and the urgent lane. Positions are most of the work a busy site makes; on the
//!   async workers their processing filled every round of the run queue, and the reads that
//!   would have found an emergency waited behind it. On the lane they take what the workers
//!   leave, and when that is too little, the position pipeline sheds all but each guard's
//!   latest fix.
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
    /// Starts a lane of one thread, named `lookout-{name}`, at the workers' priority.
    pub fn start(name: &'static str) -> Result<Lane, LaneError> {
        Lane::run(name, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        })
    }

    /// Starts a lane of `threads` threads (at least one), named `lookout-{name}`, that yield
    /// the CPU to everything else: each runs at a nice value [`BACKGROUND_NICE`] above the
    /// process's.
    pub fn start_background(name: &'static str, threads: usize) -> Result<Lane, LaneError> {
        Lane::run(name, move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .thread_name(format!("lookout-{name}"))
                .on_thread_start(lower_priority)
                .enable_all()
                .build()
        })
    }

    /// Builds the lane's runtime on a thread of its own and keeps it there until the lane is
    /// dropped: a runtime can be neither dropped nor blocked on from async code, where the
    /// server starts and drops its lanes.
    fn run(
        name: &'static str,
        build: impl FnOnce() -> std::io::Result<tokio::runtime::Runtime> + Send + 'static,
    ) -> Result<Lane, LaneError> {
        let stop = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name(format!("lookout-{name}"))
            .spawn(move || {
                let runtime = match build() {
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

/// Lowers the calling thread's CPU priority (Linux keeps a nice value per thread). A lane that
/// cannot lower it still works, at the workers' priority.
fn lower_priority() {
    let tid = rustix::thread::gettid();
    let now = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
    if let Err(e) = rustix::process::setpriority_process(Some(tid), now + BACKGROUND_NICE) {
        tracing::warn!(error = %e, "cannot lower a background lane's priority");
    }
}

/// How much nicer than the workers a background lane is: at 10, the kernel gives a busy
/// worker about nine times the CPU of a busy lane thread.
const BACKGROUND_NICE: i32 = 10;

/// The server's lanes.
pub struct Lanes {
    /// Emergencies.
    pub urgent: Lane,
    /// New connections' TLS handshakes.
    pub handshakes: Lane,
    /// Guards' location fixes.
    pub positions: Lane,
}

impl Lanes {
    /// Starts both lanes' threads.
    pub fn start() -> Result<Lanes, LaneError> {
        Ok(Lanes {
            urgent: Lane::start("urgent")?,
            handshakes: Lane::start("handshakes")?,
            positions: Lane::start_background("positions", cores())?,
        })
    }
}

/// The cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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

    #[tokio::test]
    async fn a_background_lane_runs_on_its_own_threads_nicer_than_the_caller() {
        let own = rustix::process::getpriority_process(None).expect("own nice value");
        let lane = Lane::start_background("background", 2).expect("lane");
        let (ran_on, nice) = lane
            .handle()
            .spawn(async {
                let tid = rustix::thread::gettid();
                (
                    std::thread::current().name().map(str::to_string),
                    rustix::process::getpriority_process(Some(tid)).expect("nice value"),
                )
            })
            .await
            .expect("background task");
        assert_eq!(ran_on.as_deref(), Some("lookout-background"));
        assert_eq!(nice, (own + BACKGROUND_NICE).min(19));
    }
}
