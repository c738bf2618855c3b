//! Opening the engine: the store's options, the schema version and the moves from older ones,
//! opening sled (which can panic on damage, or find its own lock still held), and checking
//! every value, the flush watermark and the epoch marker before anything is served.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::datadir::{lock_data_dir, read_marker, write_marker, STORE_DIR};
use super::engine::{ChannelHead, SledStore};
use super::faults::Faults;
use super::flusher::{self, GroupCommit};
use super::keys;
use super::principals;
use super::sealed::{seal, unseal};
use super::values::{corrupt, damaged, get_sealed, read_u64, sealed_insert, ChannelRecord};
use crate::store::error::{Result, StoreError};
use crate::store::interface::{OpenReport, Store};
use crate::store::records::decode;

/// The on-disk format this binary reads and writes: 2 seals every value with a checksum
/// ([`sealed`](super::sealed)); 3 keeps user-keyed state under principals (org, user)
/// ([`principals`](super::principals)). Older stores are moved in place when opened.
pub const SCHEMA_VERSION: u32 = 3;

/// How the store makes writes durable.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Share flushes among concurrent writers (the default). Off: every acknowledgement waits
    /// for a flush of its own, one at a time — only for comparing in the benchmark.
    pub group_commit: bool,
    /// Obey the fault triggers of [`faults`](super::faults) (`testing.store_faults`; never on a
    /// site).
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
