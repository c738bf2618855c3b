//! The one place that decides how keys are laid out in sled.
//!
//! Everything lives in sled's default tree so that one `Batch` can write a message, its
//! channel's head and anything it creates atomically. A key starts with one tag byte; integers
//! are big-endian so that ranges come out in order.

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
}
