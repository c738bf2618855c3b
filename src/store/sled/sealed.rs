//! Checksums on every value the sled engine stores, and the names of damaged keys.
//!
//! sled checks its own log, but what it does with a damaged spot is not ours to choose: it may
//! panic, read an empty database, or recover only what came before the damage. A value that
//! comes back with other bytes than were written must never become a message, an alert or a
//! seq. So each value is stored as `value ‖ crc32(key ‖ value)`; covering the key catches a
//! value found under another key. Every read verifies it, and opening the store verifies all.
//!
//! This module only seals, unseals and describes; it never touches the database.

use sled::IVec;

/// Bytes the seal adds to a value.
pub const SEAL_LEN: usize = 4;

/// `value` with its checksum, as stored under `key`.
pub fn seal(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + SEAL_LEN);
    out.extend_from_slice(value);
    out.extend_from_slice(&checksum(key, value).to_le_bytes());
    out
}

/// The value stored under `key`, if its checksum holds; `Err` names the key.
pub fn unseal(key: &[u8], raw: IVec) -> Result<IVec, Damaged> {
    let Some(len) = raw.len().checked_sub(SEAL_LEN) else {
        return Err(Damaged(describe(key)));
    };
    let (value, stored) = raw.split_at(len);
    let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
    if stored != checksum(key, value) {
        return Err(Damaged(describe(key)));
    }
    Ok(raw.subslice(0, len))
}

/// A value whose checksum failed, by the key's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged(pub String);

fn checksum(key: &[u8], value: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&(key.len() as u64).to_le_bytes());
    hasher.update(key);
    hasher.update(value);
    hasher.finalize()
}

/// A key as an operator can read it in an error message.
pub fn describe(key: &[u8]) -> String {
    use super::keys;
    let text = |rest: &[u8]| String::from_utf8_lossy(rest).replace('\0', "/");
    let id_seq = |rest: &[u8]| -> Option<(u64, u64)> {
        let id = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        let seq = u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?);
        Some((id, seq))
    };
    let Some((&tag, rest)) = key.split_first() else {
        return "the empty key".into();
    };
    let named = match tag {
        keys::META => Some(format!("metadata {:?}", text(rest))),
        keys::CHANNEL => Some(format!("the registry entry of channel {}", text(rest))),
        keys::LOG => id_seq(rest).map(|(id, seq)| format!("message {seq} of channel #{id}")),
        keys::ACK_REQUIRED => {
            id_seq(rest).map(|(id, seq)| format!("the ack index of message {seq} of channel #{id}"))
        }
        keys::USER => Some(format!("user {}", text(rest))),
        keys::IDEMPOTENCY => rest.get(..8).map(|id| {
            let id = u64::from_be_bytes(id.try_into().unwrap_or_default());
            format!("an idempotency key of channel #{id}")
        }),
        keys::JOB => Some(format!("the owner of job {}", text(rest))),
        keys::ALERT => Some(format!("alert {}", text(rest))),
        keys::FENCE => Some(format!("geofence {}", text(rest))),
        keys::SHIFT => Some(format!("shift {}", text(rest))),
        _ => None,
    };
    named.unwrap_or_else(|| format!("key {}", hex::encode(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_comes_back_and_any_flipped_bit_is_caught() {
        let key = super::super::keys::log(5, 17);
        let sealed = seal(&key, b"hello");
        assert_eq!(
            unseal(&key, IVec::from(sealed.clone())).as_deref(),
            Ok(&b"hello"[..])
        );
        for bit in 0..sealed.len() * 8 {
            let mut flipped = sealed.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                unseal(&key, IVec::from(flipped)),
                Err(Damaged("message 17 of channel #5".into()))
            );
        }
        // The same bytes under another key do not pass.
        assert!(unseal(&super::super::keys::log(5, 18), IVec::from(sealed)).is_err());
        // Nor does a value cut short.
        assert!(unseal(&key, IVec::from(&b"he"[..])).is_err());
    }
}
