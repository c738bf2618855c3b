//! Group commit for the sled engine: one flusher thread runs `flush()` back to back, so
//! writers waiting at the same time share one flush.
//!
//! A write is acknowledged only after a flush that started after it returned Ok. A failed
//! flush is never retried: what the kernel dropped is unknown, so the store turns unhealthy,
//! refuses every later acknowledgement and fires [`GroupCommit::fatal`] so the process exits.
//!
//! Flushes are numbered, and the number goes into the database with each flush. At most once
//! a second (and when stopping) the number of the last completed flush is also written to
//! [`WATERMARK_FILE`] beside sled's files. sled reads a damaged file as a database that ends
//! before the damage; a store that opens with a lower number than its watermark has lost
//! writes that were acknowledged, and is refused instead of served shortened.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::faults::Faults;
use super::keys;
use super::sealed::seal;
use crate::counters::Latency;
use crate::store::error::StoreError;
use crate::store::interface::Ticket;

/// Beside sled's files: the number of the last flush known complete.
pub const WATERMARK_FILE: &str = "lookout-flushed";
/// How often the watermark is brought up to date.
const WATERMARK_EVERY: Duration = Duration::from_secs(1);

/// The shortest time from one flush's start to the next one's.
const GATHER: std::time::Duration = std::time::Duration::from_millis(1);

/// The flush bookkeeping of one sled database.
pub struct GroupCommit {
    db: sled::Db,
    /// Ticket of the last applied write.
    written: AtomicU64,
    /// Highest ticket a completed flush covers.
    durable: watch::Sender<u64>,
    kick: Notify,
    failed: AtomicBool,
    group_commit: bool,
    // Only for the benchmark's one-flush-per-write mode: the flushes must not overlap.
    serial_flush: tokio::sync::Mutex<()>,
    /// Fires when a flush failed: the process must stop.
    pub fatal: CancellationToken,
    /// Durations of the flushes.
    pub latency: Latency,
    /// Number of the last completed flush (counting over the store's whole life).
    flushes: AtomicU64,
    watermark: PathBuf,
    faults: Faults,
}

impl GroupCommit {
    /// Commits for `db`; without `group_commit`, every acknowledgement waits for a flush of its
    /// own, one at a time (only for comparing in the benchmark).
    pub fn new(
        db: sled::Db,
        group_commit: bool,
        flushes: u64,
        watermark: PathBuf,
        faults: Faults,
    ) -> Self {
        GroupCommit {
            flushes: AtomicU64::new(flushes),
            watermark,
            faults,
            db,
            written: AtomicU64::new(0),
            durable: watch::channel(0).0,
            kick: Notify::new(),
            failed: AtomicBool::new(false),
            group_commit,
            serial_flush: tokio::sync::Mutex::new(()),
            fatal: CancellationToken::new(),
            latency: Latency::default(),
        }
    }

    /// A ticket for a write that was just applied.
    pub fn applied(&self) -> Ticket {
        Ticket(self.written.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// Runs flushes on the calling thread until `stop` fires or a flush fails: each covers
    /// every write applied before it started, so writers waiting meanwhile share the next one.
    ///
    /// A thread of its own, not a task: under load the async workers' run queues are long,
    /// and a flusher queued behind them would add that wait to every acknowledgement twice
    /// (to start the flush, and to announce it).
    pub fn run_blocking(&self, stop: &CancellationToken) {
        let waiting = match tokio::runtime::Builder::new_current_thread().build() {
            Ok(waiting) => waiting,
            Err(e) => {
                self.fail(&e.to_string());
                return;
            }
        };
        let mut marked = Instant::now();
        loop {
            let kicked = waiting.block_on(async {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => false,
                    _ = self.kick.notified() => true,
                }
            });
            let started = std::time::Instant::now();
            if !kicked {
                self.mark();
                return;
            }
            if self.flush_once().is_err() {
                return;
            }
            if marked.elapsed() >= WATERMARK_EVERY {
                self.mark();
                marked = Instant::now();
            }
            // A flush can take a fraction of a millisecond: flushing back to back would spend
            // a core on flushes of a write or two each. Waiting out the rest of a millisecond
            // lets the next one gather what arrives meanwhile.
            if let Some(rest) = GATHER.checked_sub(started.elapsed()) {
                std::thread::sleep(rest);
            }
        }
    }

    fn flush_once(&self) -> Result<(), StoreError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StoreError::Unhealthy);
        }
        let target = self.written.load(Ordering::Acquire);
        if target <= *self.durable.borrow() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let number = self.flushes.load(Ordering::Acquire) + 1;
        let key = keys::meta("flushes");
        let flushed = self
            .faults
            .before_flush()
            .and_then(|()| Ok(self.db.insert(&key, seal(&key, &number.to_be_bytes()))?))
            .and_then(|_| Ok(self.db.flush()?));
        match flushed {
            Ok(_) => {
                self.latency.observe(started.elapsed());
                self.flushes.store(number, Ordering::Release);
                self.durable.send_modify(|d| *d = (*d).max(target));
                Ok(())
            }
            Err(e) => {
                self.fail(&e.to_string());
                Err(StoreError::Engine(e.to_string()))
            }
        }
    }

    /// Records the last completed flush in the watermark file. A failure is logged, not fatal:
    /// the watermark only lags, and a lagging one is still correct.
    fn mark(&self) {
        if !self.healthy() {
            return;
        }
        let number = self.flushes.load(Ordering::Acquire);
        if let Err(e) = write_watermark(&self.watermark, number) {
            tracing::warn!(error = %e, file = %self.watermark.display(), "cannot update the flush watermark");
        }
    }

    /// No acknowledgement after this: the process must stop.
    pub fn fail(&self, error: &str) {
        tracing::error!(
            error,
            "store flush failed; refusing further acknowledgements and stopping"
        );
        self.failed.store(true, Ordering::Release);
        self.fatal.cancel();
        self.durable.send_modify(|_| {});
    }

    /// Waits until a flush covers `ticket`.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), StoreError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StoreError::Unhealthy);
        }
        if !self.group_commit {
            let _one_at_a_time = self.serial_flush.lock().await;
            let target = self.written.load(Ordering::Acquire);
            self.db
                .flush_async()
                .await
                .map_err(|e| StoreError::Engine(e.to_string()))?;
            self.durable.send_modify(|d| *d = (*d).max(target));
            return Ok(());
        }
        let mut rx = self.durable.subscribe();
        if *rx.borrow_and_update() >= ticket.0 {
            return Ok(());
        }
        self.kick.notify_one();
        loop {
            if rx.changed().await.is_err() {
                return Err(StoreError::Unhealthy);
            }
            if self.failed.load(Ordering::Acquire) {
                return Err(StoreError::Unhealthy);
            }
            if *rx.borrow_and_update() >= ticket.0 {
                return Ok(());
            }
        }
    }

    /// Whether a completed flush covers `ticket`.
    pub fn is_durable(&self, ticket: Ticket) -> bool {
        *self.durable.borrow() >= ticket.0
    }

    /// Whether every flush so far succeeded.
    pub fn healthy(&self) -> bool {
        !self.failed.load(Ordering::Acquire)
    }

    /// Flushes everything written so far (shutdown, tools).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.kick.notify_one();
        let ticket = Ticket(self.written.load(Ordering::Acquire));
        if self.group_commit && ticket.0 > *self.durable.borrow() {
            self.db
                .flush_async()
                .await
                .map_err(|e| StoreError::Engine(e.to_string()))?;
            self.durable.send_modify(|d| *d = (*d).max(ticket.0));
            return Ok(());
        }
        self.durable(ticket).await
    }
}

/// Writes `number` to `path` through a temporary file, synced, then renamed into place.
fn write_watermark(path: &Path, number: u64) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    let mut file = std::fs::File::create(&partial)?;
    writeln!(file, "{number}")?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}

/// The watermark in `path`; `None` when there is none yet.
pub fn read_watermark(path: &Path) -> Result<Option<u64>, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| StoreError::Corrupt {
                path: path.to_path_buf(),
                message: "the flush watermark is not a number".into(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}
