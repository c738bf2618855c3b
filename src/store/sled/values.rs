//! The values the engine keeps and how they are read back: the channel registry's, a log
//! entry's and a user's records, sealed writes and checked reads, and the errors a damaged or
//! unreadable value becomes.
//!
//! How keys are laid out is [`keys`](super::keys)'s; how a value is sealed is
//! [`sealed`](super::sealed)'s.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::sealed::{seal, unseal, Damaged};
use crate::store::error::{Result, StoreError};
use crate::store::interface::StoredMessage;
use crate::store::records::decode;

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Engine(e.to_string())
    }
}

/// A channel in the registry, as stored.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct ChannelRecord {
    pub(super) id: u64,
    /// The head when retention last trimmed; the log's last key is the head when higher.
    pub(super) floor: u64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct LogRecord {
    pub(super) ts: u64,
    pub(super) ack: bool,
    pub(super) data: rmpv::Value,
}

#[derive(Serialize, Deserialize)]
pub(super) struct UserRecord {
    pub(super) org: String,
    pub(super) last_seen: u64,
}

pub(super) fn message(seq: u64, raw: &[u8]) -> Result<StoredMessage> {
    let r: LogRecord = decode(raw)?;
    Ok(StoredMessage {
        seq,
        timestamp: r.ts,
        data: r.data,
        ack_required: r.ack,
    })
}

/// Adds `value` to `batch` under `key`, sealed.
pub(super) fn sealed_insert(batch: &mut sled::Batch, key: &[u8], value: &[u8]) {
    batch.insert(key, seal(key, value));
}

/// The value under `key`, its checksum verified.
pub(super) fn get_sealed(db: &sled::Db, path: &Path, key: &[u8]) -> Result<Option<sled::IVec>> {
    match db.get(key)? {
        Some(raw) => unseal(key, raw).map(Some).map_err(|d| damaged(path, d)),
        None => Ok(None),
    }
}

pub(super) fn read_u64(path: &Path, what: &str, v: &[u8]) -> Result<u64> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt(path, &format!("{what} is not a number")))
}

pub(super) fn damaged(path: &Path, damage: Damaged) -> StoreError {
    corrupt(
        path,
        &format!(
            "{} fails its checksum (in {}); restore a backup",
            damage.0,
            path.join("db").display()
        ),
    )
}

pub(super) fn corrupt(path: &Path, message: &str) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}
