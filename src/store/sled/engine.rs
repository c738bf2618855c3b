//! The engine's state ([`SledStore`]) and its write path: the channel registry in memory, an
//! append under its channel's lock, sealed puts, deletes and batches, and a write sled refused
//! stopping the process.
//!
//! Opening is in `open.rs`, the store interface in `interface.rs`; both sit above this file.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::faults::Faults;
use super::flusher::GroupCommit;
use super::keys;
use super::sealed::{seal, unseal};
use super::values::{
    damaged, get_sealed, message, read_u64, sealed_insert, ChannelRecord, LogRecord, UserRecord,
};
use crate::store::error::{Result, StoreError};
use crate::store::interface::{Appended, Draft, StoredMessage};
use crate::store::records::{decode, encode};

/// Log entries deleted in one batch by retention, so that a long log is trimmed in bounded
/// steps with the async workers free between them.
pub(super) const TRIM_BATCH: usize = 1000;

/// A channel as the store tracks it in memory.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChannelHead {
    pub(super) id: u64,
    pub(super) head: u64,
}

/// The sled engine.
pub struct SledStore {
    pub(super) db: sled::Db,
    pub(super) path: PathBuf,
    pub(super) epoch: String,
    /// Registry cache. Each channel's head has a lock of its own, which orders its seqs with
    /// their tickets; the map's lock is taken for writing only to register a channel.
    pub(super) channels: RwLock<HashMap<String, Arc<Mutex<ChannelHead>>>>,
    pub(super) next_channel_id: AtomicU64,
    pub(super) commits: GroupCommit,
    pub(super) faults: Faults,
    pub(super) _lock: File,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SledStore {
    pub(super) fn channel_record(&self, channel: &str) -> Option<ChannelHead> {
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
    pub(super) fn known_seq(&self, channel: &str, seq: u64) -> Option<u64> {
        self.channel_record(channel)
            .filter(|r| seq != 0 && seq <= r.head)
            .map(|r| r.id)
    }

    pub(super) fn message(&self, seq: u64, raw: &[u8]) -> Result<StoredMessage> {
        message(seq, raw)
    }

    pub(super) fn user_record(&self, user: &str) -> Result<Option<UserRecord>> {
        match self.get(&keys::user(user))? {
            Some(raw) => Ok(Some(decode(&raw)?)),
            None => Ok(None),
        }
    }

    /// Appends with the next seq; with `key`, only when the key names no message yet. The
    /// message, its ack index entry and its key are one atomic write.
    pub(super) fn append_keyed(
        &self,
        channel: &str,
        draft: Draft,
        key: Option<&str>,
    ) -> Result<Appended> {
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
    pub(super) fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        get_sealed(&self.db, &self.path, key)
    }

    /// Stores `value` under `key`, sealed.
    pub(super) fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.faults
            .before_write()
            .map_err(|e| self.write_failed(e))?;
        self.db
            .insert(key, seal(key, value))
            .map(drop)
            .map_err(|e| self.write_failed(e.into()))
    }

    pub(super) fn delete(&self, key: &[u8]) -> Result<()> {
        self.faults
            .before_write()
            .map_err(|e| self.write_failed(e))?;
        self.db
            .remove(key)
            .map(drop)
            .map_err(|e| self.write_failed(e.into()))
    }

    pub(super) fn apply(&self, batch: sled::Batch) -> Result<()> {
        self.faults
            .before_write()
            .map_err(|e| self.write_failed(e))?;
        self.db
            .apply_batch(batch)
            .map_err(|e| self.write_failed(e.into()))
    }

    /// Deletes the idempotency keys of channel `id` whose messages retention removed.
    pub(super) async fn forget_keys_before(&self, id: u64) -> Result<()> {
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
    pub(super) fn write_failed(&self, error: StoreError) -> StoreError {
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
