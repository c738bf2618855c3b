//! The storage interface the hub relies on: per-channel sequence numbers and message logs, the
//! user directory (user → org) and job owners.
//!
//! [`MemoryStore`] keeps it all in memory (bounded per channel); the durable sled store
//! implements the same trait. Nothing outside this module decides how messages are kept.
//! The store never delivers anything and never checks rights: that is the hub's job.

mod memory;

use std::sync::Arc;

pub use memory::MemoryStore;

use crate::hub::channel::Directory;

/// Storage failed; the hub reports `internal` and logs the detail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing store failed.
    #[error("store failure: {0}")]
    Backend(String),
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

/// What a replay after `since` found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Messages after `since`, in seq order.
    pub messages: Vec<Arc<StoredMessage>>,
    /// Whether every message after `since` was still in the log.
    pub complete: bool,
    /// The channel's head when read.
    pub head: u64,
}

/// A user's org as remembered, compared with what a new token claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remembered {
    /// First sighting, or the same org again.
    Same,
    /// The user is registered to another org.
    Conflict(Arc<str>),
}

/// The hub's storage interface.
pub trait Store: Directory + Send + Sync + 'static {
    /// The random id of this data directory; seqs never repeat within it.
    fn epoch(&self) -> &str;
    /// Assigns the next seq of `channel` and, when `logged`, appends the message to its log.
    fn append(
        &self,
        channel: &str,
        logged: bool,
        timestamp: u64,
        data: rmpv::Value,
        ack_required: bool,
    ) -> Result<Arc<StoredMessage>, StoreError>;
    /// The last seq given on `channel` (0 when none).
    fn head(&self, channel: &str) -> u64;
    /// Messages after `since`, at most `limit`.
    fn read_after(&self, channel: &str, since: u64, limit: usize) -> Result<Replay, StoreError>;
    /// Records `user → org`, or says which other org the user belongs to.
    fn remember_user(&self, user: &str, org: &str) -> Result<Remembered, StoreError>;
    /// Stores the owner of a job if it has none; returns the owner now stored.
    fn claim_job(&self, job: &str, owner: &str) -> Result<Arc<str>, StoreError>;
}
