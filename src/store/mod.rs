//! The durable store: everything that must survive a restart, in sled.
//!
//! What lives here: the epoch (random, fixed when the data directory is created), the schema
//! version, the channel registry (name → id, head seq), the message logs, the index of messages
//! that need acknowledgement and who acknowledged them, per-user delivery cursors, the user
//! directory (user → org, last seen) and job owners. [`keys`] is the only place that knows how
//! keys are laid out; nothing outside this module touches sled.
//!
//! Durability discipline (sled 0.34 is beta software):
//! - a message and its channel's head are one atomic write: the log key carries the seq, and
//!   the head is the last key of the channel's log (the registry keeps name → id and a floor
//!   that retention moves before it empties a log). A message that needs acknowledgement is
//!   written with its index entry in one atomic batch. Plain inserts, not a batch per message:
//!   in sled 0.34 every batch adds ~130 µs to the next flush, which defeats group commit;
//!   sled recovers a prefix of its writes, so earlier inserts are never lost behind later ones;
//! - a write is acknowledged only after a `flush_async()` that started after it returned Ok;
//!   one flusher task runs flushes back to back, so concurrent writers share them (group commit);
//! - a failed flush is never retried: the store turns unhealthy, refuses every later
//!   acknowledgement and fires [`Store::fatal`] so the process exits;
//! - the data directory is locked so a second process cannot open it.
//!
//! The store never delivers messages and never checks rights: that is the hub's job.

pub mod backup;
pub mod keys;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::hub::channel::Directory;

/// The on-disk format this binary reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The sled database's directory inside the data directory.
pub const STORE_DIR: &str = "store";
/// The lock file inside the data directory.
pub const LOCK_FILE: &str = "lookout.lock";
/// Beside the store, the epoch it was created with. sled reads some kinds of damage as an
/// empty database; this marker is how an empty store is told apart from a lost one.
pub const EPOCH_FILE: &str = "epoch";

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another lookout process")]
    Locked(PathBuf),
    /// The directory holds something that is not a Lookout store.
    #[error("{0} is not a Lookout store (refusing to touch it)")]
    Foreign(PathBuf),
    /// Written by another format version.
    #[error("store schema version {found}, this lookout understands {expected}")]
    Schema {
        /// Version on disk.
        found: u32,
        /// Version of this binary.
        expected: u32,
    },
    /// The store could not be read: damaged files or missing metadata.
    #[error("store in {path} is damaged: {message}")]
    Corrupt {
        /// The store directory.
        path: PathBuf,
        /// What was found wrong.
        message: String,
    },
    /// sled reported an error.
    #[error("store I/O: {0}")]
    Sled(#[from] sled::Error),
    /// A file around the store could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A record could not be encoded or decoded.
    #[error("store record: {0}")]
    Codec(String),
    /// A flush failed earlier; nothing more is acknowledged.
    #[error("store is unhealthy after a failed flush; not acknowledging")]
    Unhealthy,
}

/// One message as kept in a channel log (and shared by every delivery of it).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// Per-channel sequence number, from 1, without gaps.
    pub seq: u64,
    /// Publish time, ms since the Unix epoch.
    pub timestamp: u64,
    /// The application payload.
    pub data: rmpv::Value,
    /// Recipients must acknowledge it.
    pub ack_required: bool,
}

/// A user's org as remembered, compared with what a new token claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remembered {
    /// First sighting, or the same org again.
    Same,
    /// The user is registered to another org.
    Conflict(Arc<str>),
}

/// One change of a [`Store::write`].
#[derive(Debug, Clone)]
pub enum Change<'a> {
    /// Store an encoded record.
    Put(keys::Record<'a>, Vec<u8>),
    /// Remove a record.
    Delete(keys::Record<'a>),
}

impl<'a> Change<'a> {
    /// A put of `value`, encoded.
    pub fn put<T: Serialize>(key: keys::Record<'a>, value: &T) -> Result<Self, StoreError> {
        Ok(Change::Put(key, encode(value)?))
    }
}

/// Proof of a write; [`Store::durable`] waits until a flush covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// How the store makes writes durable.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Share flushes among concurrent writers (the default). Off: every acknowledgement waits
    /// for a flush of its own, one at a time — only for comparing in the benchmark.
    pub group_commit: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { group_commit: true }
    }
}

/// What opening found, for the start-up log line.
#[derive(Debug, Clone)]
pub struct OpenReport {
    /// The store's epoch.
    pub epoch: String,
    /// Whether this open created the store.
    pub created: bool,
    /// Channels in the registry.
    pub channels: usize,
    /// Messages in the logs.
    pub messages: u64,
}

/// A channel in the registry, as stored.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct ChannelRecord {
    id: u64,
    /// The head when retention last trimmed; the log's last key is the head when higher.
    floor: u64,
}

/// A channel as the store tracks it in memory.
#[derive(Debug, Clone, Copy)]
struct ChannelHead {
    id: u64,
    head: u64,
}

#[derive(Serialize, Deserialize)]
struct LogRecord {
    ts: u64,
    ack: bool,
    data: rmpv::Value,
}

#[derive(Serialize, Deserialize)]
struct UserRecord {
    org: String,
    last_seen: u64,
}

// Maps with field names, not arrays: records have optional fields and will gain new ones.
fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(value).map_err(|e| StoreError::Codec(e.to_string()))
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Codec(e.to_string()))
}

/// The durable store.
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    epoch: String,
    /// Registry cache; the lock also orders seq assignment with ticket numbers.
    channels: Mutex<HashMap<String, ChannelHead>>,
    next_channel_id: AtomicU64,
    /// Ticket of the last applied write.
    written: AtomicU64,
    /// Highest ticket a completed flush covers.
    durable: watch::Sender<u64>,
    kick: Notify,
    failed: AtomicBool,
    group_commit: bool,
    serial_flush: tokio::sync::Mutex<()>,
    /// Fires when a flush failed: the process must stop.
    pub fatal: CancellationToken,
    /// Durations of the group-commit flushes.
    pub flush_latency: crate::metrics::Latency,
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Locks `data_dir` for this process; released when the file is dropped.
pub fn lock_data_dir(data_dir: &Path) -> Result<File, StoreError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join(LOCK_FILE))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(data_dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

impl Store {
    /// Opens (or creates) the store in `data_dir`, locking the directory.
    pub fn open(data_dir: &Path, options: StoreOptions) -> Result<(Store, OpenReport), StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let lock = lock_data_dir(data_dir)?;
        let path = data_dir.join(STORE_DIR);
        if path.exists() && !path.join("db").exists() && std::fs::read_dir(&path)?.next().is_some()
        {
            return Err(StoreError::Foreign(path));
        }
        let marker = read_marker(data_dir)?;
        let db = open_sled(&path)?;
        let created = match db.get(keys::meta("schema"))? {
            None if db.is_empty() && marker.is_some() => {
                return Err(corrupt(
                    &path,
                    "the store is empty but this data directory held one; restore a backup",
                ))
            }
            None if db.is_empty() => {
                let epoch = hex::encode(rand::random::<[u8; 8]>());
                let mut batch = sled::Batch::default();
                batch.insert(keys::meta("schema"), &SCHEMA_VERSION.to_be_bytes());
                batch.insert(keys::meta("epoch"), epoch.as_bytes());
                batch.insert(keys::meta("next_channel_id"), &1u64.to_be_bytes());
                db.apply_batch(batch)?;
                db.flush()?;
                write_marker(data_dir, &epoch)?;
                true
            }
            None => return Err(StoreError::Foreign(path)),
            Some(raw) => {
                let found = <[u8; 4]>::try_from(raw.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| corrupt(&path, "schema version unreadable"))?;
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
                false
            }
        };
        let epoch = db
            .get(keys::meta("epoch"))?
            .and_then(|e| String::from_utf8(e.to_vec()).ok())
            .ok_or_else(|| corrupt(&path, "no epoch"))?;
        match marker.as_deref() {
            Some(m) if m != epoch => {
                return Err(corrupt(
                    &path,
                    &format!("the store has epoch {epoch}, this data directory says {m}"),
                ))
            }
            Some(_) => {}
            None => write_marker(data_dir, &epoch)?,
        }
        let next_channel_id = db
            .get(keys::meta("next_channel_id"))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| corrupt(&path, "no channel id counter"))?;
        let mut channels = HashMap::new();
        for entry in db.scan_prefix([keys::CHANNEL]) {
            let (k, v) = entry?;
            let name = String::from_utf8(k[1..].to_vec())
                .map_err(|_| corrupt(&path, "channel name is not UTF-8"))?;
            let record: ChannelRecord = decode(&v)?;
            let last = match db
                .scan_prefix(keys::log_prefix(record.id))
                .keys()
                .next_back()
            {
                Some(k) => keys::seq_of(&k?).unwrap_or(0),
                None => 0,
            };
            channels.insert(
                name,
                ChannelHead {
                    id: record.id,
                    head: record.floor.max(last),
                },
            );
        }
        let messages = db.scan_prefix([keys::LOG]).keys().count() as u64;
        let report = OpenReport {
            epoch: epoch.clone(),
            created,
            channels: channels.len(),
            messages,
        };
        let (durable, _) = watch::channel(0);
        Ok((
            Store {
                db,
                path,
                epoch,
                channels: Mutex::new(channels),
                next_channel_id: AtomicU64::new(next_channel_id),
                written: AtomicU64::new(0),
                durable,
                kick: Notify::new(),
                failed: AtomicBool::new(false),
                group_commit: options.group_commit,
                serial_flush: tokio::sync::Mutex::new(()),
                fatal: CancellationToken::new(),
                flush_latency: Default::default(),
                _lock: lock,
            },
            report,
        ))
    }

    /// Runs the group-commit flusher until it is aborted or a flush fails: each flush covers
    /// every write applied before it started, so writers waiting meanwhile share the next one.
    pub fn spawn_flusher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                store.kick.notified().await;
                // Let the writers that are ready to run append before the flush takes its target:
                // without this, a flush starts the moment the previous one woke its waiters and
                // covers only the first one or two of them.
                tokio::task::yield_now().await;
                if store.flush_once().await.is_err() {
                    return;
                }
            }
        })
    }

    async fn flush_once(&self) -> Result<(), StoreError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StoreError::Unhealthy);
        }
        let target = self.written.load(Ordering::Acquire);
        if target <= *self.durable.borrow() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        match self.db.flush_async().await {
            Ok(_) => {
                self.flush_latency.observe(started.elapsed());
                self.durable.send_modify(|d| *d = (*d).max(target));
                Ok(())
            }
            Err(e) => {
                // Never retry an fsync and carry on: what the kernel dropped is unknown.
                tracing::error!(error = %e, "store flush failed; refusing further acknowledgements and stopping");
                self.failed.store(true, Ordering::Release);
                self.fatal.cancel();
                self.durable.send_modify(|_| {});
                Err(StoreError::Sled(e))
            }
        }
    }

    /// Bytes the store takes on disk (0 if sled cannot tell).
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Waits until a flush covers `ticket`.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), StoreError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StoreError::Unhealthy);
        }
        if !self.group_commit {
            let _one_at_a_time = self.serial_flush.lock().await;
            let target = self.written.load(Ordering::Acquire);
            self.db.flush_async().await?;
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
            self.db.flush_async().await?;
            self.durable.send_modify(|d| *d = (*d).max(ticket.0));
            return Ok(());
        }
        self.durable(ticket).await
    }

    fn applied(&self) -> Ticket {
        Ticket(self.written.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// The random id of this data directory; seqs never repeat within it.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Appends a message to `channel`'s log with the next seq, in one atomic batch with the new
    /// head. Not yet durable: wait on the ticket before acknowledging or delivering.
    pub fn append(
        &self,
        channel: &str,
        timestamp: u64,
        data: rmpv::Value,
        ack_required: bool,
    ) -> Result<(Arc<StoredMessage>, Ticket), StoreError> {
        let mut channels = self.channels.lock();
        let current = match channels.get(channel) {
            Some(c) => *c,
            None => {
                // Registered before its first message: sled keeps writes in order, so a log
                // entry is never found without its registry record.
                let id = self.next_channel_id.fetch_add(1, Ordering::AcqRel);
                self.db
                    .insert(keys::meta("next_channel_id"), &(id + 1).to_be_bytes())?;
                let record = ChannelRecord { id, floor: 0 };
                self.db.insert(keys::channel(channel), encode(&record)?)?;
                ChannelHead { id, head: 0 }
            }
        };
        let seq = current.head + 1;
        let log = LogRecord {
            ts: timestamp,
            ack: ack_required,
            data,
        };
        let value = encode(&log)?;
        if ack_required {
            let mut batch = sled::Batch::default();
            batch.insert(&keys::log(current.id, seq), value);
            batch.insert(&keys::ack_required(current.id, seq), &[]);
            self.db.apply_batch(batch)?;
        } else {
            self.db.insert(keys::log(current.id, seq), value)?;
        }
        channels.insert(
            channel.to_string(),
            ChannelHead {
                id: current.id,
                head: seq,
            },
        );
        // Taken under the registry lock: per channel, ticket order is seq order.
        let ticket = self.applied();
        drop(channels);
        let message = StoredMessage {
            seq,
            timestamp,
            data: log.data,
            ack_required,
        };
        Ok((Arc::new(message), ticket))
    }

    fn channel_record(&self, channel: &str) -> Option<ChannelHead> {
        self.channels.lock().get(channel).copied()
    }

    /// The last seq given on `channel` (0 when none), durable or not.
    pub fn head(&self, channel: &str) -> u64 {
        self.channel_record(channel).map_or(0, |r| r.head)
    }

    /// The oldest seq still in `channel`'s log.
    pub fn first_retained(&self, channel: &str) -> Result<Option<u64>, StoreError> {
        let Some(record) = self.channel_record(channel) else {
            return Ok(None);
        };
        match self
            .db
            .scan_prefix(keys::log_prefix(record.id))
            .keys()
            .next()
        {
            Some(k) => Ok(keys::seq_of(&k?)),
            None => Ok(None),
        }
    }

    /// Messages with `after < seq <= upto`, at most `limit`, in seq order.
    pub fn read(
        &self,
        channel: &str,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Arc<StoredMessage>>, StoreError> {
        let Some(record) = self.channel_record(channel) else {
            return Ok(Vec::new());
        };
        if upto <= after {
            return Ok(Vec::new());
        }
        let range = keys::log(record.id, after + 1)..=keys::log(record.id, upto);
        let mut out = Vec::new();
        for entry in self.db.range(range).take(limit) {
            let (k, v) = entry?;
            let seq = keys::seq_of(&k).ok_or_else(|| corrupt(&self.path, "bad log key"))?;
            out.push(Arc::new(self.message(seq, &v)?));
        }
        Ok(out)
    }

    fn message(&self, seq: u64, raw: &[u8]) -> Result<StoredMessage, StoreError> {
        let r: LogRecord = decode(raw)?;
        Ok(StoredMessage {
            seq,
            timestamp: r.ts,
            data: r.data,
            ack_required: r.ack,
        })
    }

    /// One message by seq, if still in the log.
    pub fn get(&self, channel: &str, seq: u64) -> Result<Option<Arc<StoredMessage>>, StoreError> {
        let Some(record) = self.channel_record(channel) else {
            return Ok(None);
        };
        match self.db.get(keys::log(record.id, seq))? {
            Some(v) => Ok(Some(Arc::new(self.message(seq, &v)?))),
            None => Ok(None),
        }
    }

    /// Seqs `<= upto` on `channel` sent with `ack_required` that `user` has not acknowledged.
    pub fn unacknowledged(
        &self,
        user: &str,
        channel: &str,
        upto: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let Some(record) = self.channel_record(channel) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for key in self
            .db
            .scan_prefix(keys::ack_required_prefix(record.id))
            .keys()
        {
            let Some(seq) = keys::seq_of(&key?) else {
                continue;
            };
            if seq > upto {
                break;
            }
            if !self.db.contains_key(keys::acked(user, record.id, seq))? {
                out.push(seq);
            }
        }
        Ok(out)
    }

    /// Records that `user` acknowledged `seq` on `channel`: a single `ack_required` message, or,
    /// with `cumulative`, everything up to `seq` (a user's own queue).
    pub fn acknowledge(
        &self,
        user: &str,
        channel: &str,
        seq: u64,
        cumulative: bool,
    ) -> Result<Option<Ticket>, StoreError> {
        let Some(record) = self.channel_record(channel) else {
            return Ok(None);
        };
        if seq == 0 || seq > record.head {
            return Ok(None);
        }
        if cumulative {
            let key = keys::cursor(user, record.id);
            self.db.fetch_and_update(&key, |old| {
                let old = old
                    .and_then(|v| <[u8; 8]>::try_from(v).ok())
                    .map_or(0, u64::from_be_bytes);
                Some(old.max(seq).to_be_bytes().to_vec())
            })?;
        } else {
            self.db.insert(keys::acked(user, record.id, seq), &[])?;
        }
        Ok(Some(self.applied()))
    }

    /// The last seq `user` acknowledged on one of its queues (0 when none).
    pub fn cursor(&self, user: &str, channel: &str) -> Result<u64, StoreError> {
        let Some(record) = self.channel_record(channel) else {
            return Ok(0);
        };
        Ok(self
            .db
            .get(keys::cursor(user, record.id))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Records `user → org` and the time, or says which other org the user belongs to.
    pub fn remember_user(&self, user: &str, org: &str, now: u64) -> Result<Remembered, StoreError> {
        let key = keys::user(user);
        if let Some(raw) = self.db.get(&key)? {
            let known: UserRecord = decode(&raw)?;
            if known.org != org {
                return Ok(Remembered::Conflict(Arc::from(known.org)));
            }
        }
        let record = UserRecord {
            org: org.to_string(),
            last_seen: now,
        };
        self.db.insert(key, encode(&record)?)?;
        self.applied();
        Ok(Remembered::Same)
    }

    /// When the user was last seen connecting.
    pub fn last_seen(&self, user: &str) -> Option<u64> {
        let raw = self.db.get(keys::user(user)).ok()??;
        decode::<UserRecord>(&raw).ok().map(|r| r.last_seen)
    }

    /// Stores the owner of a job if it has none; returns the owner now stored.
    pub fn claim_job(&self, job: &str, owner: &str) -> Result<Arc<str>, StoreError> {
        let key = keys::job(job);
        let result =
            self.db
                .compare_and_swap(&key, None as Option<&[u8]>, Some(owner.as_bytes()))?;
        let stored = match result {
            Ok(()) => {
                self.applied();
                owner.to_string()
            }
            Err(current) => current
                .current
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default(),
        };
        Ok(Arc::from(stored))
    }

    /// Deletes messages beyond `keep` per channel or older than `older_than` (ms since the
    /// Unix epoch), as `rule` says per stored channel name. Returns how many were deleted.
    pub fn trim(&self, rule: impl Fn(&str) -> (usize, u64)) -> Result<u64, StoreError> {
        let channels: Vec<(String, ChannelHead)> = self
            .channels
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let mut deleted = 0;
        for (name, record) in channels {
            let (keep, older_than) = rule(&name);
            let mut batch = sled::Batch::default();
            // The floor keeps the head when every message of the log is trimmed.
            let floor = ChannelRecord {
                id: record.id,
                floor: record.head,
            };
            batch.insert(keys::channel(&name), encode(&floor)?);
            let mut in_batch = 0;
            for entry in self.db.scan_prefix(keys::log_prefix(record.id)) {
                let (k, v) = entry?;
                let Some(seq) = keys::seq_of(&k) else {
                    continue;
                };
                let too_many = record.head.saturating_sub(seq) >= keep as u64;
                let too_old = decode::<LogRecord>(&v).is_ok_and(|r| r.ts < older_than);
                if !(too_many || too_old) {
                    break;
                }
                batch.remove(k);
                batch.remove(&keys::ack_required(record.id, seq));
                in_batch += 1;
                if in_batch == 1000 {
                    self.db.apply_batch(std::mem::take(&mut batch))?;
                    deleted += in_batch;
                    in_batch = 0;
                }
            }
            if in_batch > 0 {
                deleted += in_batch;
            }
            self.db.apply_batch(batch)?;
        }
        Ok(deleted)
    }

    /// Reads one domain record.
    pub fn record<T: serde::de::DeserializeOwned>(
        &self,
        key: keys::Record<'_>,
    ) -> Result<Option<T>, StoreError> {
        match self.db.get(key.key())? {
            Some(raw) => Ok(Some(decode(&raw)?)),
            None => Ok(None),
        }
    }

    /// Reads every record of a set.
    pub fn records<T: serde::de::DeserializeOwned>(
        &self,
        set: keys::Records<'_>,
    ) -> Result<Vec<T>, StoreError> {
        self.db
            .scan_prefix(set.prefix())
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    /// Applies puts and deletes of domain records atomically; wait on the ticket before
    /// acknowledging.
    pub fn write(&self, changes: &[Change<'_>]) -> Result<Ticket, StoreError> {
        // One change is atomic by itself, and a sled batch costs the next flush ~130 µs.
        if let [single] = changes {
            match single {
                Change::Put(key, value) => self.db.insert(key.key(), value.clone())?,
                Change::Delete(key) => self.db.remove(key.key())?,
            };
            return Ok(self.applied());
        }
        let mut batch = sled::Batch::default();
        for change in changes {
            match change {
                Change::Put(key, value) => batch.insert(key.key(), value.clone()),
                Change::Delete(key) => batch.remove(key.key()),
            }
        }
        self.db.apply_batch(batch)?;
        Ok(self.applied())
    }

    /// Escalation timers due at or before `now` (ms), oldest first: (due, level, alert id).
    pub fn due_timers(&self, now: u64) -> Result<Vec<(u64, u8, String)>, StoreError> {
        let mut out = Vec::new();
        for key in self.db.scan_prefix([keys::TIMER]).keys() {
            let key = key?;
            let Some(timer) = keys::timer_of(&key) else {
                continue;
            };
            if timer.0 > now {
                break;
            }
            out.push(timer);
        }
        Ok(out)
    }

    /// When the next escalation timer is due.
    pub fn next_timer(&self) -> Result<Option<u64>, StoreError> {
        match self.db.scan_prefix([keys::TIMER]).keys().next() {
            Some(k) => Ok(keys::timer_of(&k?).map(|t| t.0)),
            None => Ok(None),
        }
    }

    /// Every key and value, for backups.
    pub(crate) fn entries(
        &self,
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), sled::Error>> {
        self.db.iter()
    }
}

fn read_marker(data_dir: &Path) -> Result<Option<String>, StoreError> {
    match std::fs::read_to_string(data_dir.join(EPOCH_FILE)) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn write_marker(data_dir: &Path, epoch: &str) -> Result<(), StoreError> {
    use std::io::Write;
    let path = data_dir.join(EPOCH_FILE);
    let mut file = File::create(&path)?;
    file.write_all(epoch.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn corrupt(path: &Path, message: &str) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// How long opening waits for sled's own file lock. The caller holds the data directory's
/// lock, so the only possible holder is a store of this process that was just dropped: sled
/// releases its lock when its background threads let go of the file, a moment later.
const SLED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn open_sled(path: &Path) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + SLED_LOCK_WAIT;
    loop {
        // sled panics on some kinds of damage instead of returning an error; either way the
        // operator must get a clear message, never a silent reset.
        let opened = std::panic::catch_unwind(|| sled::Config::new().path(path).open());
        match opened {
            Ok(Ok(db)) => return Ok(db),
            Ok(Err(sled::Error::Io(e))) if is_lock_conflict(&e) => {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::Locked(path.to_path_buf()));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(Err(e)) => return Err(corrupt(path, &e.to_string())),
            Err(_) => return Err(corrupt(path, "sled could not read it")),
        }
    }
}

/// sled 0.34 reports a held file lock as an `Other` I/O error saying so, not as
/// `WouldBlock`; either means "in use", never "damaged".
fn is_lock_conflict(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
        || e.to_string().starts_with("could not acquire lock on")
}

impl Directory for Store {
    fn user_org(&self, user: &str) -> Option<Arc<str>> {
        let raw = self.db.get(keys::user(user)).ok()??;
        decode::<UserRecord>(&raw).ok().map(|r| Arc::from(r.org))
    }

    fn job_owner(&self, job: &str) -> Option<Arc<str>> {
        let raw = self.db.get(keys::job(job)).ok()??;
        Some(Arc::from(String::from_utf8_lossy(&raw).as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Store {
        Store::open(dir, StoreOptions::default()).expect("open").0
    }

    #[tokio::test]
    async fn seqs_survive_a_reopen_and_the_epoch_stays() {
        let dir = tempfile::tempdir().expect("dir");
        let epoch = {
            let store = Arc::new(open(dir.path()));
            let flusher = store.spawn_flusher();
            for i in 1..=5u64 {
                let (m, t) = store
                    .append("/topic/system", i, rmpv::Value::from(i), i == 3)
                    .expect("append");
                assert_eq!(m.seq, i);
                store.durable(t).await.expect("durable");
            }
            flusher.abort();
            let _ = flusher.await;
            store.epoch().to_string()
        };
        let (store, report) = Store::open(dir.path(), StoreOptions::default()).expect("reopen");
        assert_eq!(report.epoch, epoch);
        assert_eq!(
            (report.channels, report.messages, report.created),
            (1, 5, false)
        );
        let (m, _) = store
            .append("/topic/system", 9, rmpv::Value::Nil, false)
            .expect("append");
        assert_eq!(m.seq, 6, "no seq is reused");
        let seqs: Vec<u64> = store
            .read("/topic/system", 2, 6, 100)
            .expect("read")
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(seqs, [3, 4, 5, 6]);
        assert_eq!(
            store
                .unacknowledged("bob", "/topic/system", 6)
                .expect("unacked"),
            [3]
        );
        store
            .acknowledge("bob", "/topic/system", 3, false)
            .expect("ack");
        assert!(store
            .unacknowledged("bob", "/topic/system", 6)
            .expect("unacked")
            .is_empty());
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let _first = open(dir.path());
        match Store::open(dir.path(), StoreOptions::default()) {
            Err(StoreError::Locked(_)) => {}
            other => panic!("expected Locked, got {other:?}"),
        }
    }

    #[test]
    fn a_directory_holding_something_else_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir_all(dir.path().join(STORE_DIR)).expect("mkdir");
        std::fs::write(dir.path().join(STORE_DIR).join("notes.txt"), "hello").expect("write");
        assert!(matches!(
            Store::open(dir.path(), StoreOptions::default()),
            Err(StoreError::Foreign(_))
        ));
    }

    #[test]
    fn an_emptied_store_is_refused_rather_than_silently_recreated() {
        let dir = tempfile::tempdir().expect("dir");
        drop(open(dir.path()));
        std::fs::remove_dir_all(dir.path().join(STORE_DIR)).expect("rm");
        assert!(matches!(
            Store::open(dir.path(), StoreOptions::default()),
            Err(StoreError::Corrupt { .. })
        ));
    }

    /// The store against a model (a BTreeMap per channel), through appends, trims and reboots
    /// in a seeded random order: heads, reads and first-retained seqs always agree.
    #[test]
    fn the_store_behaves_like_its_model_across_reboots_and_trims() {
        use rand::{Rng, SeedableRng};
        use std::collections::BTreeMap;
        let dir = tempfile::tempdir().expect("dir");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let channels = ["/topic/system", "/topic/org/a/room/x", "/user/u/queue/jobs"];
        let mut model: HashMap<&str, (u64, BTreeMap<u64, u64>)> = HashMap::new();
        let mut store = open(dir.path());
        for step in 0..600u64 {
            match rng.random_range(0..100) {
                0..=79 => {
                    let channel = channels[rng.random_range(0..channels.len())];
                    let (m, _) = store
                        .append(channel, step, rmpv::Value::from(step), false)
                        .expect("append");
                    let (head, log) = model.entry(channel).or_default();
                    *head += 1;
                    assert_eq!(m.seq, *head, "step {step}");
                    log.insert(*head, step);
                }
                80..=89 => {
                    let keep = rng.random_range(1..20usize);
                    store.trim(|_| (keep, 0)).expect("trim");
                    for (head, log) in model.values_mut() {
                        log.retain(|seq, _| head.saturating_sub(*seq) < keep as u64);
                    }
                }
                _ => {
                    drop(store);
                    store = open(dir.path());
                }
            }
            for channel in channels {
                let (head, log) = model.get(channel).cloned().unwrap_or_default();
                assert_eq!(
                    store.head(channel),
                    head,
                    "head of {channel} at step {step}"
                );
                assert_eq!(
                    store.first_retained(channel).expect("first"),
                    log.keys().next().copied(),
                    "first of {channel} at step {step}"
                );
                let read: Vec<(u64, u64)> = store
                    .read(channel, 0, head, usize::MAX)
                    .expect("read")
                    .iter()
                    .map(|m| (m.seq, m.data.as_u64().unwrap_or(u64::MAX)))
                    .collect();
                assert_eq!(
                    read,
                    log.into_iter().collect::<Vec<_>>(),
                    "{channel} at step {step}"
                );
            }
        }
    }

    #[test]
    fn trimming_keeps_the_newest_and_says_where_the_log_starts() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(dir.path());
        for i in 1..=10u64 {
            store
                .append("/topic/system", i, rmpv::Value::Nil, false)
                .expect("append");
        }
        assert_eq!(store.trim(|_| (4, 0)).expect("trim"), 6);
        assert_eq!(
            store.first_retained("/topic/system").expect("first"),
            Some(7)
        );
        assert_eq!(store.head("/topic/system"), 10);
        assert_eq!(store.trim(|_| (100, 8)).expect("trim by age"), 1);
        assert_eq!(
            store.first_retained("/topic/system").expect("first"),
            Some(8)
        );
    }
}
