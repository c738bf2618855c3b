//! The engine's vocabulary: key names under `lookout:`, where each record and timer lives, how
//! a message is encoded in a stream entry and on the pub/sub, the heads this node knows, and
//! Redis errors as store errors. A leaf: it knows nothing of the engine's parts that use it.
//!
//! Layout, every key under `lookout:`:
//! - `epoch`: the store's id; `head`: a hash of channel → last seq given;
//! - `log:{channel}`: a Stream whose entry ids are `{seq}-1`, one field `m` (the message as
//!   MessagePack); `ackreq:{channel}`: a sorted set of its `ack_required` seqs;
//!   `keys:{channel}`: a hash of idempotency key → seq;
//! - `acked:{user}\0{channel}`: a set of acknowledged seqs; `cursor`: a hash of
//!   `{user}\0{channel}` → seq;
//! - `users` / `seen`: user → org / last seen; `jobs`: job → owner;
//! - `rec:{kind}`: one hash per record kind (`rec:fence:{org}` per org); `timers`: a sorted set
//!   scored by due time.
//!
//! The cluster's own keys (`lseq`, `live:{channel}`, `nodes`, `conns:{instance}`, `claimed`)
//! are described in the engine's module doc and `bus.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::super::error::{Result, StoreError};
use super::super::message::StoredMessage;
use super::super::records::{Record, Records, Timer};

/// Every key of the engine starts with it.
const PREFIX: &str = "lookout:";
/// How many entries one trim or scan step reads.
pub(super) const PAGE: usize = 500;

pub(super) fn engine(e: redis::RedisError) -> StoreError {
    StoreError::Engine(format!("redis: {e}"))
}

pub(super) fn key(parts: &[&str]) -> String {
    let mut k = String::from(PREFIX);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(':');
        }
        k.push_str(p);
    }
    k
}

pub(super) fn pair(a: &str, b: &str) -> String {
    format!("{a}\0{b}")
}

/// A stored message's body in the stream: (timestamp, data, ack_required).
pub(super) fn encode_message(
    timestamp: u64,
    data: &rmpv::Value,
    ack_required: bool,
) -> Result<Vec<u8>> {
    rmp_serde::to_vec(&(timestamp, data, ack_required))
        .map_err(|e| StoreError::Codec(e.to_string()))
}

pub(super) fn decode_entry(id: &str, body: &[u8]) -> Result<Arc<StoredMessage>> {
    let seq = id
        .split('-')
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::Codec(format!("stream entry id {id}")))?;
    decode_body(seq, body)
}

pub(super) fn decode_body(seq: u64, body: &[u8]) -> Result<Arc<StoredMessage>> {
    let (timestamp, data, ack_required): (u64, rmpv::Value, bool) =
        rmp_serde::from_slice(body).map_err(|e| StoreError::Codec(e.to_string()))?;
    Ok(Arc::new(StoredMessage {
        seq,
        timestamp,
        data,
        ack_required,
    }))
}

/// The channels' heads as this node knows them: from its own appends, what it heard from the
/// other nodes and what it read.
#[derive(Default)]
pub(super) struct Heads(RwLock<HashMap<String, u64>>);

impl Heads {
    pub(super) fn new(heads: HashMap<String, u64>) -> Arc<Self> {
        Arc::new(Heads(RwLock::new(heads)))
    }

    /// The head of `channel`, 0 when unknown.
    pub(super) fn get(&self, channel: &str) -> u64 {
        self.0.read().get(channel).copied().unwrap_or(0)
    }

    /// Raises the head of `channel` to `seq` (never lowers it).
    pub(super) fn note(&self, channel: &str, seq: u64) {
        let mut heads = self.0.write();
        let head = heads.entry(channel.to_string()).or_insert(0);
        *head = (*head).max(seq);
    }
}

/// The hash a record lives in and its field there; `None` for a timer.
pub(super) fn record_slot(record: &Record<'_>) -> Option<(String, String)> {
    Some(match *record {
        Record::Fence { org, id } => (key(&["rec", "fence", org]), id.to_string()),
        Record::Location { user } => (key(&["rec", "location"]), user.to_string()),
        Record::FenceState { user, fence } => (key(&["rec", "fencestate"]), pair(user, fence)),
        Record::Alert { id } => (key(&["rec", "alert"]), id.to_string()),
        Record::Shift { id } => (key(&["rec", "shift"]), id.to_string()),
        Record::UsedLink { jti } => (key(&["rec", "usedlink"]), jti.to_string()),
        Record::Device { id } => (key(&["rec", "device"]), id.to_string()),
        Record::Outbox { id } => (key(&["rec", "outbox"]), id.to_string()),
        Record::ArcOutbox { id } => (key(&["rec", "arcoutbox"]), id.to_string()),
        Record::Member { key: member } => (key(&["rec", "member"]), member.to_string()),
        Record::Welfare { key: welfare } => (key(&["rec", "welfare"]), welfare.to_string()),
        Record::Patrol { org, kind, id } => (key(&["rec", "patrol", org, kind]), id.to_string()),
        Record::Timer { .. } => return None,
    })
}

pub(super) fn set_hash(set: &Records<'_>) -> String {
    match *set {
        Records::Fences { org } => key(&["rec", "fence", org]),
        Records::Locations => key(&["rec", "location"]),
        Records::Alerts => key(&["rec", "alert"]),
        Records::Shifts => key(&["rec", "shift"]),
        Records::Devices => key(&["rec", "device"]),
        Records::Outbox => key(&["rec", "outbox"]),
        Records::ArcOutbox => key(&["rec", "arcoutbox"]),
        Records::Welfare => key(&["rec", "welfare"]),
        Records::Patrol { org, kind } => key(&["rec", "patrol", org, kind]),
    }
}

/// A timer as a sorted-set member: ordered like [`Timer`] among equal due times.
pub(super) fn timer_member(due: u64, level: u8, alert: &str) -> String {
    format!("{due:020}\0{level:03}\0{alert}")
}

pub(super) fn parse_timer(member: &str) -> Option<Timer> {
    let mut parts = member.splitn(3, '\0');
    let due = parts.next()?.parse().ok()?;
    let level = parts.next()?.parse().ok()?;
    let alert = parts.next()?.to_string();
    Some(Timer { due, level, alert })
}
