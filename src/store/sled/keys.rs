//! The one place that decides how keys are laid out in sled.
//!
//! Callers name records by their typed keys ([`Record`], [`Records`]); this module turns them
//! into bytes.
//!
//! Everything lives in sled's default tree so that one `Batch` can write a message, its
//! channel's head and anything it creates atomically. A key starts with one tag byte; integers
//! are big-endian so that ranges come out in order.

use crate::store::records::{Record, Records, Timer};

/// Metadata: epoch, schema version.
pub const META: u8 = b'M';
/// Channel record by stored name: id and head.
pub const CHANNEL: u8 = b'C';
/// Message log: channel id, seq.
pub const LOG: u8 = b'L';
/// Index of messages sent with `ack_required`: channel id, seq.
pub const ACK_REQUIRED: u8 = b'R';
/// A user's acknowledgement of one `ack_required` message: user, 0, channel id, seq.
pub const ACKED: u8 = b'K';
/// A user's delivery cursor on one of its queues: user, 0, channel id.
pub const CURSOR: u8 = b'A';
/// User directory: user → org, last seen.
pub const USER: u8 = b'U';
/// Job owners: job → owner.
pub const JOB: u8 = b'J';
/// Idempotency keys of publishes: channel id, key → seq.
pub const IDEMPOTENCY: u8 = b'I';

/// `I` + id + key.
pub fn idempotency(id: u64, key: &str) -> Vec<u8> {
    let mut k = id_only(IDEMPOTENCY, id).to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

/// `I` + id: the idempotency keys of one channel.
pub fn idempotency_prefix(id: u64) -> [u8; 9] {
    id_only(IDEMPOTENCY, id)
}

/// `M` + name.
pub fn meta(name: &str) -> Vec<u8> {
    tagged(META, name.as_bytes())
}

/// `C` + stored channel name.
pub fn channel(name: &str) -> Vec<u8> {
    tagged(CHANNEL, name.as_bytes())
}

/// `L` + id + seq.
pub fn log(id: u64, seq: u64) -> [u8; 17] {
    id_seq(LOG, id, seq)
}

/// `L` + id: the prefix of one channel's log.
pub fn log_prefix(id: u64) -> [u8; 9] {
    id_only(LOG, id)
}

/// `R` + id + seq.
pub fn ack_required(id: u64, seq: u64) -> [u8; 17] {
    id_seq(ACK_REQUIRED, id, seq)
}

/// `R` + id.
pub fn ack_required_prefix(id: u64) -> [u8; 9] {
    id_only(ACK_REQUIRED, id)
}

/// `K` + user + 0 + id + seq.
pub fn acked(user: &str, id: u64, seq: u64) -> Vec<u8> {
    let mut k = user_prefix(ACKED, user);
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `A` + user + 0 + id.
pub fn cursor(user: &str, id: u64) -> Vec<u8> {
    let mut k = user_prefix(CURSOR, user);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// `U` + user.
pub fn user(user: &str) -> Vec<u8> {
    tagged(USER, user.as_bytes())
}

/// `J` + job.
pub fn job(job: &str) -> Vec<u8> {
    tagged(JOB, job.as_bytes())
}

/// The seq at the end of a `L`/`R` key.
pub fn seq_of(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

fn tagged(tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(tag);
    k.extend_from_slice(rest);
    k
}

// User ids never contain a 0 byte (channel segments are [A-Za-z0-9_.@:-]), so 0 ends the user.
fn user_prefix(tag: u8, user: &str) -> Vec<u8> {
    let mut k = tagged(tag, user.as_bytes());
    k.push(0);
    k
}

fn patrol_prefix(org: &str, kind: &str) -> Vec<u8> {
    let mut k = user_prefix(PATROL, org);
    k.extend_from_slice(kind.as_bytes());
    k.push(0);
    k
}

fn id_only(tag: u8, id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = tag;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn id_seq(tag: u8, id: u64, seq: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = tag;
    k[1..9].copy_from_slice(&id.to_be_bytes());
    k[9..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Domain records kept beside the logs (see [`Record`]).
pub const FENCE: u8 = b'G';
/// Last known location per user.
pub const LOCATION: u8 = b'P';
/// Inside/outside state per user and fence.
pub const FENCE_STATE: u8 = b'S';
/// Alert records.
pub const ALERT: u8 = b'X';
/// Escalation timers by due time: due (ms), alert id, level.
pub const TIMER: u8 = b'T';
/// Shifts.
pub const SHIFT: u8 = b'H';
/// `D` + device id: an enrolled guard device.
pub const DEVICE: u8 = b'D';
/// `N` + link id: a one-time sign-in link already used.
pub const USED_LINK: u8 = b'N';
/// `O` + id: a notification waiting in the outbox.
pub const OUTBOX: u8 = b'O';

/// `Q` + id: an alarm waiting in the outbox for its alarm receiving centre.
pub const ARC_OUTBOX: u8 = b'Q';

/// `W` + principal key: an org's member and its roles.
pub const MEMBER: u8 = b'W';

/// `V` + `org/{org}` or `guard/{principal key}`: lone-worker welfare settings and states.
pub const WELFARE: u8 = b'V';

/// `Y` + org + `\0` + kind + `\0` + id: an org's patrol records (checkpoints, tours, rounds,
/// scans).
pub const PATROL: u8 = b'Y';

/// The key bytes of a domain record.
pub fn record(key: &Record<'_>) -> Vec<u8> {
    match *key {
        Record::Fence { org, id } => {
            let mut k = user_prefix(FENCE, org);
            k.extend_from_slice(id.as_bytes());
            k
        }
        Record::Location { user } => tagged(LOCATION, user.as_bytes()),
        Record::FenceState { user, fence } => {
            let mut k = user_prefix(FENCE_STATE, user);
            k.extend_from_slice(fence.as_bytes());
            k
        }
        Record::Alert { id } => tagged(ALERT, id.as_bytes()),
        Record::Timer { due, alert, level } => {
            let mut k = vec![TIMER];
            k.extend_from_slice(&due.to_be_bytes());
            k.push(level);
            k.extend_from_slice(alert.as_bytes());
            k
        }
        Record::Shift { id } => tagged(SHIFT, id.as_bytes()),
        Record::UsedLink { jti } => tagged(USED_LINK, jti.as_bytes()),
        Record::Device { id } => tagged(DEVICE, id.as_bytes()),
        Record::Outbox { id } => tagged(OUTBOX, id.as_bytes()),
        Record::ArcOutbox { id } => tagged(ARC_OUTBOX, id.as_bytes()),
        Record::Member { key } => tagged(MEMBER, key.as_bytes()),
        Record::Welfare { key } => tagged(WELFARE, key.as_bytes()),
        Record::Patrol { org, kind, id } => {
            let mut k = patrol_prefix(org, kind);
            k.extend_from_slice(id.as_bytes());
            k
        }
    }
}

/// The key prefix of a set of domain records.
pub fn records(set: &Records<'_>) -> Vec<u8> {
    match *set {
        Records::Fences { org } => user_prefix(FENCE, org),
        Records::Locations => vec![LOCATION],
        Records::Alerts => vec![ALERT],
        Records::Shifts => vec![SHIFT],
        Records::Devices => vec![DEVICE],
        Records::Outbox => vec![OUTBOX],
        Records::ArcOutbox => vec![ARC_OUTBOX],
        Records::Welfare => vec![WELFARE],
        Records::Patrol { org, kind } => patrol_prefix(org, kind),
    }
}

/// Decodes a timer key.
pub fn timer_of(key: &[u8]) -> Option<Timer> {
    if key.first() != Some(&TIMER) || key.len() < 10 {
        return None;
    }
    let due = u64::from_be_bytes(key[1..9].try_into().ok()?);
    let level = key[9];
    let alert = String::from_utf8(key[10..].to_vec()).ok()?;
    Some(Timer { due, level, alert })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_by_channel_then_seq() {
        let mut keys = vec![log(2, 1), log(1, 300), log(1, 2), log(1, 256)];
        keys.sort();
        assert_eq!(keys, vec![log(1, 2), log(1, 256), log(1, 300), log(2, 1)]);
        assert_eq!(seq_of(&log(7, 42)), Some(42));
        assert!(log(1, 5).starts_with(&log_prefix(1)));
    }

    /// Two kinds of records under one tag would read each other's keys (a merge once gave the
    /// ARC outbox and the patrols both `Q`): every tag this file declares is its own.
    #[test]
    fn every_record_tag_is_distinct() {
        let mut tags: Vec<&str> = include_str!("keys.rs")
            .lines()
            .filter(|line| line.starts_with("pub const ") && line.contains(": u8 = b'"))
            .filter_map(|line| line.split("b'").nth(1))
            .collect();
        assert!(tags.len() >= 20, "found {} tags", tags.len());
        let all = tags.len();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), all, "a tag is used twice: {tags:?}");
    }
}
