//! The appliance's engine: the store in one sled database in the data directory.
//!
//! What lives here: the epoch (random, fixed when the data directory is created), the schema
//! version, the channel registry (name → id, floor), the message logs, the index of messages
//! that need acknowledgement and who acknowledged them, per-user delivery cursors, the user
//! directory and job owners, domain records and the timer index. [`keys`] is the only place
//! that knows how keys are laid out, [`flusher`] makes writes durable, [`backup`] moves a data
//! directory. Nothing outside this folder knows that sled is underneath.
//!
//! Durability discipline (sled 0.34 is beta software):
//! - a message and its channel's head are one atomic write: the log key carries the seq, and
//!   the head is the last key of the channel's log (the registry keeps name → id and a floor
//!   that retention moves before it empties a log). A message that needs acknowledgement is
//!   written with its index entry in one atomic batch. Plain inserts, not a batch per message:
//!   in sled 0.34 every batch adds ~130 µs to the next flush, which defeats group commit;
//!   sled recovers a prefix of its writes, so earlier inserts are never lost behind later ones;
//! - a write is acknowledged only after a flush that started after it returned Ok (group
//!   commit, [`flusher`]);
//! - the data directory is locked so a second process cannot open it.
//!
//! sled's calls return from its page cache without waiting for the disk; only flushes wait,
//! and they run on the flusher task.

pub mod backup;
pub mod dump;
pub mod faults;
pub mod flusher;
pub mod keys;
pub mod principals;
pub mod sealed;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use self::faults::Faults;
use self::flusher::GroupCommit;
use self::sealed::{seal, unseal, Damaged};
use crate::counters::Latency;
use crate::store::error::{Result, StoreError};
use crate::store::interface::{
    Appended, Background, Draft, Messages, OpenReport, Remembered, RetentionRule, Store,
    StoredMessage, Ticket,
};
use crate::store::records::{decode, encode, Change, Record, Records, Timer};

/// The on-disk format this binary reads and writes: 2 seals every value with a checksum
/// ([`sealed`]); 3 keeps user-keyed state under principals (org, user) ([`principals`]).
/// Older stores are moved in place when opened.
pub const SCHEMA_VERSION: u32 = 3;

/// The sled database's directory inside the data directory.
pub const STORE_DIR: &str = "store";
/// The lock file inside the data directory.
pub const LOCK_FILE: &str = "lookout.lock";
/// Beside the store, the epoch it was created with. sled reads some kinds of damage as an
/// empty database; this marker is how an empty store is told apart from a lost one.
pub const EPOCH_FILE: &str = "epoch";
/// Log entries deleted in one batch by retention, so that a long log is trimmed in bounded
/// steps with the async workers free between them.
const TRIM_BATCH: usize = 1000;

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Engine(e.to_string())
    }
}

/// How the store makes writes durable.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Share flushes among concurrent writers (the default). Off: every acknowledgement waits
    /// for a flush of its own, one at a time — only for comparing in the benchmark.
    pub group_commit: bool,
    /// Obey the fault triggers of [`faults`] (`testing.store_faults`; never on a site).
    pub faults: bool,
    /// Bytes of sled's page cache (`store.cache_capacity`).
    pub cache_capacity: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            group_commit: true,
            faults: false,
            cache_capacity: crate::config::StoreSettings::default().cache_capacity,
        }
    }
}

/// Opens (or creates) the store of the data directory `data_dir`, locking it.
pub fn open_data_dir(
    data_dir: &Path,
    options: StoreOptions,
) -> Result<(Arc<dyn Store>, OpenReport)> {
    let (store, report) = SledStore::open(data_dir, options)?;
    Ok((Arc::new(store), report))
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

/// The sled engine.
pub struct SledStore {
    db: sled::Db,
    path: PathBuf,
    epoch: String,
    /// Registry cache. Each channel's head has a lock of its own, which orders its seqs with
    /// their tickets; the map's lock is taken for writing only to register a channel.
    channels: RwLock<HashMap<String, Arc<Mutex<ChannelHead>>>>,
    next_channel_id: AtomicU64,
    commits: GroupCommit,
    faults: Faults,
    _lock: File,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Locks `data_dir` for this process; released when the file is dropped.
pub fn lock_data_dir(data_dir: &Path) -> Result<File> {
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

impl SledStore {
    /// Opens (or creates) the store in `data_dir`, locking the directory.
    pub fn open(data_dir: &Path, options: StoreOptions) -> Result<(SledStore, OpenReport)> {
        std::fs::create_dir_all(data_dir)?;
        let lock = lock_data_dir(data_dir)?;
        let path = data_dir.join(STORE_DIR);
        if path.exists() && !path.join("db").exists() && std::fs::read_dir(&path)?.next().is_some()
        {
            return Err(StoreError::Foreign(path));
        }
        let marker = read_marker(data_dir)?;
        let db = open_sled(&path, options.cache_capacity)?;
        // The schema version is the one value stored bare: it says whether the others are sealed.
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
                sealed_insert(&mut batch, &keys::meta("epoch"), epoch.as_bytes());
                sealed_insert(
                    &mut batch,
                    &keys::meta("next_channel_id"),
                    &1u64.to_be_bytes(),
                );
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
                if found == 1 {
                    seal_version_1(&db)?;
                }
                if found == 1 || found == 2 {
                    let moved = principals::move_to_principals(&db)?;
                    tracing::info!(
                        moved = moved.moved,
                        left = moved.left,
                        "store moved to schema 3: users' state under (org, user)"
                    );
                } else if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
                false
            }
        };
        // Every value is checked once here, so a damaged one stops the start, named, instead of
        // turning up in a reply some day.
        let mut messages = 0u64;
        for entry in db.iter() {
            let (k, v) = entry?;
            if k.as_ref() == keys::meta("schema").as_slice() {
                continue;
            }
            unseal(&k, v).map_err(|d| damaged(&path, d))?;
            messages += u64::from(k.first() == Some(&keys::LOG));
        }
        let flushes = get_sealed(&db, &path, &keys::meta("flushes"))?
            .map(|v| read_u64(&path, "metadata \"flushes\"", &v))
            .transpose()?
            .unwrap_or(0);
        let watermark = path.join(flusher::WATERMARK_FILE);
        if let Some(completed) = flusher::read_watermark(&watermark)? {
            if completed > flushes {
                return Err(corrupt(
                    &path,
                    &format!(
                        "{} ends at flush {flushes}, but flush {completed} had completed \
                         ({}): sled dropped the writes after a damaged spot in the file \
                         (a flipped bit or a cut-short file); restore a backup",
                        path.join("db").display(),
                        watermark.display()
                    ),
                ));
            }
        }
        let epoch = get_sealed(&db, &path, &keys::meta("epoch"))?
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
        let next_channel_id = get_sealed(&db, &path, &keys::meta("next_channel_id"))?
            .map(|v| read_u64(&path, "metadata \"next_channel_id\"", &v))
            .transpose()?
            .ok_or_else(|| corrupt(&path, "no channel id counter"))?;
        let mut channels = HashMap::new();
        for entry in db.scan_prefix([keys::CHANNEL]) {
            let (k, v) = entry?;
            let name = String::from_utf8(k[1..].to_vec())
                .map_err(|_| corrupt(&path, "channel name is not UTF-8"))?;
            let v = unseal(&k, v).map_err(|d| damaged(&path, d))?;
            let record: ChannelRecord = decode(&v)?;
            let last = match db
                .scan_prefix(keys::log_prefix(record.id))
                .keys()
                .next_back()
            {
                Some(k) => keys::seq_of(&k?).unwrap_or(0),
                None => 0,
            };
            let head = ChannelHead {
                id: record.id,
                head: record.floor.max(last),
            };
            channels.insert(name, Arc::new(Mutex::new(head)));
        }
        let faults = Faults::new(options.faults, data_dir);
        let report = OpenReport {
            epoch: epoch.clone(),
            created,
            channels: channels.len(),
            messages,
        };
        Ok((
            SledStore {
                commits: GroupCommit::new(
                    db.clone(),
                    options.group_commit,
                    flushes,
                    watermark,
                    faults.clone(),
                ),
                faults,
                db,
                path,
                epoch,
                channels: RwLock::new(channels),
                next_channel_id: AtomicU64::new(next_channel_id),
                _lock: lock,
            },
            report,
        ))
    }

    fn channel_record(&self, channel: &str) -> Option<ChannelHead> {
        let head = self.channels.read().get(channel).cloned()?;
        let head = *head.lock();
        Some(head)
    }

    /// The head of `channel`, registering the channel first when it is new: sled keeps writes
    /// in order, so a log entry is never found without its registry record.
    fn channel_entry(&self, channel: &str) -> Result<Arc<Mutex<ChannelHead>>> {
        if let Some(head) = self.channels.read().get(channel) {
            return Ok(head.clone());
        }
        let mut channels = self.channels.write();
        if let Some(head) = channels.get(channel) {
            return Ok(head.clone());
        }
        let id = self.next_channel_id.fetch_add(1, Ordering::AcqRel);
        self.put(&keys::meta("next_channel_id"), &(id + 1).to_be_bytes())?;
        let record = ChannelRecord { id, floor: 0 };
        self.put(&keys::channel(channel), &encode(&record)?)?;
        let head = Arc::new(Mutex::new(ChannelHead { id, head: 0 }));
        channels.insert(channel.to_string(), head.clone());
        Ok(head)
    }

    /// The id of `channel` when `seq` is one it has given.
    fn known_seq(&self, channel: &str, seq: u64) -> Option<u64> {
        self.channel_record(channel)
            .filter(|r| seq != 0 && seq <= r.head)
            .map(|r| r.id)
    }

    fn message(&self, seq: u64, raw: &[u8]) -> Result<StoredMessage> {
        message(seq, raw)
    }

    fn user_record(&self, user: &str) -> Result<Option<UserRecord>> {
        match self.get(&keys::user(user))? {
            Some(raw) => Ok(Some(decode(&raw)?)),
            None => Ok(None),
        }
    }

    /// Appends with the next seq; with `key`, only when the key names no message yet. The
    /// message, its ack index entry and its key are one atomic write.
    fn append_keyed(&self, channel: &str, draft: Draft, key: Option<&str>) -> Result<Appended> {
        let log = LogRecord {
            ts: draft.timestamp,
            ack: draft.ack_required,
            data: draft.data,
        };
        // Encoded before any lock: only the seq, in the key, waits for the channel's turn.
        let value = encode(&log)?;
        let entry = self.channel_entry(channel)?;
        // Under the channel's lock: two publishes with one key cannot both append.
        let mut head = entry.lock();
        let key = key.map(|k| keys::idempotency(head.id, k));
        if let Some(key) = &key {
            if let Some(seq) = self.get(key)? {
                let seq = read_u64(&self.path, "an idempotency key", &seq)?;
                // A ticket taken now is covered only by a flush after the first write:
                // waiting on it waits for that write too.
                return Ok(Appended::Repeat(seq, self.commits.applied()));
            }
        }
        let seq = head.head + 1;
        let log_key = keys::log(head.id, seq);
        if !log.ack && key.is_none() {
            self.put(&log_key, &value)?;
        } else {
            let mut batch = sled::Batch::default();
            sealed_insert(&mut batch, &log_key, &value);
            if log.ack {
                sealed_insert(&mut batch, &keys::ack_required(head.id, seq), &[]);
            }
            if let Some(key) = &key {
                sealed_insert(&mut batch, key, &seq.to_be_bytes());
            }
            self.apply(batch)?;
        }
        head.head = seq;
        // Taken under the channel's lock: per channel, ticket order is seq order.
        let ticket = self.commits.applied();
        drop(head);
        let message = StoredMessage {
            seq,
            timestamp: log.ts,
            data: log.data,
            ack_required: log.ack,
        };
        Ok(Appended::New(Arc::new(message), ticket))
    }

    /// The value under `key`, its checksum verified.
    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        get_sealed(&self.db, &self.path, key)
    }

    /// Stores `value` under `key`, sealed.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.faults
            .before_write()
            .map_err(|e| self.write_failed(e))?;
        self.db
            .insert(key, seal(key, value))
            .map(drop)
            .map_err(|e| self.write_failed(e.into()))
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.faults
            .before_write()
            .map_err(|e| self.write_failed(e))?;
        self.db
            .remove(key)
            .map(drop)
            .map_err(|e| self.write_failed(e.into()))
    }

    fn apply(&self, batch: sled::Batch) -> Result<()> {
        self.faults
            .before_write()
            .map_err(|e| self.write_failed(e))?;
        self.db
            .apply_batch(batch)
            .map_err(|e| self.write_failed(e.into()))
    }

    /// Deletes the idempotency keys of channel `id` whose messages retention removed.
    async fn forget_keys_before(&self, id: u64) -> Result<()> {
        let first = match self.db.scan_prefix(keys::log_prefix(id)).keys().next() {
            Some(k) => keys::seq_of(&k?).unwrap_or(u64::MAX),
            None => u64::MAX,
        };
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for entry in self.db.scan_prefix(keys::idempotency_prefix(id)) {
            let (k, v) = entry?;
            let v = unseal(&k, v).map_err(|d| damaged(&self.path, d))?;
            if read_u64(&self.path, "an idempotency key", &v)? < first {
                batch.remove(k);
                in_batch += 1;
                if in_batch == TRIM_BATCH {
                    self.apply(std::mem::take(&mut batch))?;
                    in_batch = 0;
                    tokio::task::yield_now().await;
                }
            }
        }
        if in_batch > 0 {
            self.apply(batch)?;
        }
        Ok(())
    }

    /// A write sled refused leaves its state unknown, like a failed flush: nothing more is
    /// acknowledged and the process stops.
    fn write_failed(&self, error: StoreError) -> StoreError {
        self.commits.fail(&error.to_string());
        error
    }

    /// Every key and value, for backups.
    pub(crate) fn entries(
        &self,
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), sled::Error>> {
        self.db.iter()
    }
}

#[async_trait::async_trait]
impl Store for SledStore {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn healthy(&self) -> bool {
        self.commits.healthy()
    }

    fn failed(&self) -> &CancellationToken {
        &self.commits.fatal
    }

    fn commit_latency(&self) -> &Latency {
        &self.commits.latency
    }

    fn start(self: Arc<Self>) -> Background {
        let stop = CancellationToken::new();
        let (finished, done) = tokio::sync::oneshot::channel();
        let thread_stop = stop.clone();
        let store = self.clone();
        let spawned = std::thread::Builder::new()
            .name("lookout-flush".into())
            .spawn(move || {
                store.commits.run_blocking(&thread_stop);
                // The store (and its lock on the data directory) goes before `stop` returns.
                drop(store);
                let _ = finished.send(());
            });
        if let Err(e) = spawned {
            self.commits.fail(&format!("cannot start the flusher: {e}"));
        }
        Background::new(stop, done)
    }

    async fn size(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn head(&self, channel: &str) -> u64 {
        self.channel_record(channel).map_or(0, |r| r.head)
    }

    async fn append(&self, channel: &str, draft: Draft) -> Result<(Arc<StoredMessage>, Ticket)> {
        match self.append_keyed(channel, draft, None)? {
            Appended::New(message, ticket) => Ok((message, ticket)),
            Appended::Repeat(..) => Err(StoreError::Engine(
                "an append without a key was taken for a repeat".into(),
            )),
        }
    }

    async fn append_once(&self, channel: &str, draft: Draft, key: &str) -> Result<Appended> {
        self.append_keyed(channel, draft, Some(key))
    }

    async fn count_channels(&self, prefix: &str) -> Result<usize> {
        let channels = self.channels.read();
        Ok(channels.keys().filter(|k| k.starts_with(prefix)).count())
    }

    async fn first_retained(&self, channel: &str) -> Result<Option<u64>> {
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

    async fn read(&self, channel: &str, after: u64, upto: u64, limit: usize) -> Result<Messages> {
        let Some(record) = self.channel_record(channel) else {
            return Ok(Vec::new());
        };
        if upto <= after {
            return Ok(Vec::new());
        }
        let range = keys::log(record.id, after + 1)..=keys::log(record.id, upto);
        if limit.min((upto - after) as usize) <= READ_INLINE {
            return read_range(&self.db, &self.path, range, limit);
        }
        // A page of history or replay reads the disk: not on an async worker.
        let (db, path) = (self.db.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || read_range(&db, &path, range, limit))
            .await
            .map_err(|e| StoreError::Engine(format!("history read stopped: {e}")))?
    }

    async fn get(&self, channel: &str, seq: u64) -> Result<Option<Arc<StoredMessage>>> {
        let Some(record) = self.channel_record(channel) else {
            return Ok(None);
        };
        match self.get(&keys::log(record.id, seq))? {
            Some(v) => Ok(Some(Arc::new(self.message(seq, &v)?))),
            None => Ok(None),
        }
    }

    async fn trim(&self, rule: RetentionRule) -> Result<u64> {
        let channels: Vec<(String, ChannelHead)> = self
            .channels
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), *v.lock()))
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
            sealed_insert(&mut batch, &keys::channel(&name), &encode(&floor)?);
            let mut in_batch = 0;
            for entry in self.db.scan_prefix(keys::log_prefix(record.id)) {
                let (k, v) = entry?;
                let Some(seq) = keys::seq_of(&k) else {
                    continue;
                };
                let too_many = record.head.saturating_sub(seq) >= keep as u64;
                let v = unseal(&k, v).map_err(|d| damaged(&self.path, d))?;
                let too_old = decode::<LogRecord>(&v).is_ok_and(|r| r.ts < older_than);
                if !(too_many || too_old) {
                    break;
                }
                batch.remove(k);
                batch.remove(&keys::ack_required(record.id, seq));
                in_batch += 1;
                if in_batch == TRIM_BATCH {
                    self.apply(std::mem::take(&mut batch))?;
                    deleted += in_batch as u64;
                    in_batch = 0;
                    tokio::task::yield_now().await;
                }
            }
            deleted += in_batch as u64;
            self.apply(batch)?;
            self.forget_keys_before(record.id).await?;
        }
        Ok(deleted)
    }

    async fn unacknowledged(&self, user: &str, channel: &str, upto: u64) -> Result<Vec<u64>> {
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

    async fn acknowledge(&self, user: &str, channel: &str, seq: u64) -> Result<Option<Ticket>> {
        let Some(id) = self.known_seq(channel, seq) else {
            return Ok(None);
        };
        self.put(&keys::acked(user, id, seq), &[])?;
        Ok(Some(self.commits.applied()))
    }

    async fn advance_cursor(&self, user: &str, channel: &str, seq: u64) -> Result<Option<Ticket>> {
        let Some(id) = self.known_seq(channel, seq) else {
            return Ok(None);
        };
        self.faults
            .before_write()
            .map_err(|e| self.write_failed(e))?;
        let key = keys::cursor(user, id);
        let mut damage = None;
        self.db
            .fetch_and_update(&key, |old| {
                let old = match old.map(|v| unseal(&key, sled::IVec::from(v))) {
                    None => 0,
                    Some(Ok(v)) => <[u8; 8]>::try_from(v.as_ref()).map_or(0, u64::from_be_bytes),
                    // Left as it is, and reported below.
                    Some(Err(d)) => {
                        damage = Some(d);
                        return old.map(<[u8]>::to_vec);
                    }
                };
                Some(seal(&key, &old.max(seq).to_be_bytes()))
            })
            .map_err(|e| self.write_failed(e.into()))?;
        if let Some(d) = damage {
            return Err(damaged(&self.path, d));
        }
        Ok(Some(self.commits.applied()))
    }

    async fn cursor(&self, user: &str, channel: &str) -> Result<u64> {
        let Some(record) = self.channel_record(channel) else {
            return Ok(0);
        };
        Ok(self
            .get(&keys::cursor(user, record.id))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    async fn remember_user(&self, user: &str, org: &str, now: u64) -> Result<Remembered> {
        if let Some(known) = self.user_record(user)? {
            if known.org != org {
                return Ok(Remembered::Conflict(Arc::from(known.org)));
            }
        }
        let record = UserRecord {
            org: org.to_string(),
            last_seen: now,
        };
        self.put(&keys::user(user), &encode(&record)?)?;
        self.commits.applied();
        Ok(Remembered::Same)
    }

    async fn user_org(&self, user: &str) -> Result<Option<Arc<str>>> {
        Ok(self.user_record(user)?.map(|r| Arc::from(r.org)))
    }

    async fn last_seen(&self, user: &str) -> Result<Option<u64>> {
        Ok(self.user_record(user)?.map(|r| r.last_seen))
    }

    async fn job_owner(&self, job: &str) -> Result<Option<Arc<str>>> {
        Ok(self
            .get(&keys::job(job))?
            .map(|raw| Arc::from(String::from_utf8_lossy(&raw).as_ref())))
    }

    async fn claim_job(&self, job: &str, owner: &str) -> Result<Arc<str>> {
        let key = keys::job(job);
        self.faults
            .before_write()
            .map_err(|e| self.write_failed(e))?;
        let result = self
            .db
            .compare_and_swap(
                &key,
                None as Option<&[u8]>,
                Some(seal(&key, owner.as_bytes())),
            )
            .map_err(|e| self.write_failed(e.into()))?;
        let stored = match result {
            Ok(()) => {
                self.commits.applied();
                owner.to_string()
            }
            Err(current) => match current.current {
                Some(v) => {
                    let v = unseal(&key, v).map_err(|d| damaged(&self.path, d))?;
                    String::from_utf8_lossy(&v).into_owned()
                }
                None => String::new(),
            },
        };
        Ok(Arc::from(stored))
    }

    async fn record(&self, key: Record<'_>) -> Result<Option<Vec<u8>>> {
        Ok(self.get(&keys::record(&key))?.map(|v| v.to_vec()))
    }

    async fn records(&self, set: Records<'_>) -> Result<Vec<Vec<u8>>> {
        self.db
            .scan_prefix(keys::records(&set))
            .map(|entry| {
                let (k, v) = entry?;
                Ok(unseal(&k, v).map_err(|d| damaged(&self.path, d))?.to_vec())
            })
            .collect()
    }

    async fn write(&self, changes: &[Change<'_>]) -> Result<Ticket> {
        // One change is atomic by itself, and a sled batch costs the next flush ~130 µs.
        if let [single] = changes {
            match single {
                Change::Put(key, value) => self.put(&keys::record(key), value)?,
                Change::Delete(key) => self.delete(&keys::record(key))?,
            };
            return Ok(self.commits.applied());
        }
        let mut batch = sled::Batch::default();
        for change in changes {
            match change {
                Change::Put(key, value) => sealed_insert(&mut batch, &keys::record(key), value),
                Change::Delete(key) => batch.remove(keys::record(key)),
            }
        }
        self.apply(batch)?;
        Ok(self.commits.applied())
    }

    async fn put_new(&self, key: Record<'_>, value: Vec<u8>) -> Result<Option<Ticket>> {
        let key = keys::record(&key);
        self.faults
            .before_write()
            .map_err(|e| self.write_failed(e))?;
        let sealed = seal(&key, &value);
        match self
            .db
            .compare_and_swap(&key, None as Option<&[u8]>, Some(sealed))
            .map_err(|e| self.write_failed(e.into()))?
        {
            Ok(()) => Ok(Some(self.commits.applied())),
            Err(_) => Ok(None),
        }
    }

    async fn due_timers(&self, now: u64) -> Result<Vec<Timer>> {
        let mut out = Vec::new();
        for key in self.db.scan_prefix([keys::TIMER]).keys() {
            let key = key?;
            let Some(timer) = keys::timer_of(&key) else {
                continue;
            };
            if timer.due > now {
                break;
            }
            out.push(timer);
        }
        Ok(out)
    }

    async fn next_timer(&self) -> Result<Option<u64>> {
        match self.db.scan_prefix([keys::TIMER]).keys().next() {
            Some(k) => Ok(keys::timer_of(&k?).map(|t| t.due)),
            None => Ok(None),
        }
    }

    fn is_durable(&self, ticket: Ticket) -> bool {
        self.commits.is_durable(ticket)
    }

    async fn durable(&self, ticket: Ticket) -> Result<()> {
        self.commits.durable(ticket).await
    }

    async fn flush(&self) -> Result<()> {
        self.commits.flush().await
    }
}

fn read_marker(data_dir: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(data_dir.join(EPOCH_FILE)) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn write_marker(data_dir: &Path, epoch: &str) -> Result<()> {
    use std::io::Write;
    let path = data_dir.join(EPOCH_FILE);
    let mut file = File::create(&path)?;
    file.write_all(epoch.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Reads of up to this many messages run inline; larger ones on the blocking pool.
const READ_INLINE: usize = 16;

fn read_range(
    db: &sled::Db,
    path: &Path,
    range: std::ops::RangeInclusive<[u8; 17]>,
    limit: usize,
) -> Result<Messages> {
    let mut out = Vec::new();
    for entry in db.range(range).take(limit) {
        let (k, v) = entry?;
        let seq = keys::seq_of(&k).ok_or_else(|| corrupt(path, "bad log key"))?;
        let v = unseal(&k, v).map_err(|d| damaged(path, d))?;
        out.push(Arc::new(message(seq, &v)?));
    }
    Ok(out)
}

fn message(seq: u64, raw: &[u8]) -> Result<StoredMessage> {
    let r: LogRecord = decode(raw)?;
    Ok(StoredMessage {
        seq,
        timestamp: r.ts,
        data: r.data,
        ack_required: r.ack,
    })
}

/// Adds `value` to `batch` under `key`, sealed.
fn sealed_insert(batch: &mut sled::Batch, key: &[u8], value: &[u8]) {
    batch.insert(key, seal(key, value));
}

/// The value under `key`, its checksum verified.
fn get_sealed(db: &sled::Db, path: &Path, key: &[u8]) -> Result<Option<sled::IVec>> {
    match db.get(key)? {
        Some(raw) => unseal(key, raw).map(Some).map_err(|d| damaged(path, d)),
        None => Ok(None),
    }
}

fn read_u64(path: &Path, what: &str, v: &[u8]) -> Result<u64> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt(path, &format!("{what} is not a number")))
}

fn damaged(path: &Path, damage: Damaged) -> StoreError {
    corrupt(
        path,
        &format!(
            "{} fails its checksum (in {}); restore a backup",
            damage.0,
            path.join("db").display()
        ),
    )
}

/// Seals the values of a schema-1 store in place, in bounded batches, then marks it version 2.
/// Interrupted, it starts over: a value already sealed is recognised by its checksum.
fn seal_version_1(db: &sled::Db) -> Result<()> {
    use std::ops::Bound;
    const BATCH: usize = 1000;
    let schema = keys::meta("schema");
    let mut after: Option<sled::IVec> = None;
    loop {
        let from = match &after {
            Some(k) => Bound::Excluded(k.clone()),
            None => Bound::Unbounded,
        };
        let mut batch = sled::Batch::default();
        let mut last = None;
        for entry in db
            .range::<sled::IVec, _>((from, Bound::Unbounded))
            .take(BATCH)
        {
            let (k, v) = entry?;
            if k.as_ref() != schema.as_slice() && unseal(&k, v.clone()).is_err() {
                batch.insert(k.clone(), seal(&k, &v));
            }
            last = Some(k);
        }
        db.apply_batch(batch)?;
        match last {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    db.insert(&schema, &2u32.to_be_bytes())?;
    db.flush()?;
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

fn open_sled(path: &Path, cache_capacity: u64) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + SLED_LOCK_WAIT;
    loop {
        // sled panics on some kinds of damage instead of returning an error; either way the
        // operator must get a clear message, never a silent reset.
        let opened = std::panic::catch_unwind(|| {
            sled::Config::new()
                .path(path)
                .cache_capacity(cache_capacity)
                .open()
        });
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
