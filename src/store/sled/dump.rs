//! Reading a sled store out as engine-independent [`Item`]s, for `lookout migrate`: every
//! channel with its head, the retained messages with their seqs, idempotency keys,
//! acknowledgements, cursors, the user directory, job owners, domain records and timers.
//!
//! Values are checked against their seals as on every read; a key this module does not know
//! is an error rather than something silently left behind.

use std::collections::HashMap;

use super::engine::SledStore;
use super::keys;
use super::open::StoreOptions;
use super::sealed::unseal;
use super::values::{corrupt, damaged, message, read_u64, ChannelRecord, UserRecord};
use crate::store::error::{Result, StoreError};
use crate::store::interface::Item;
use crate::store::records::{decode, OwnedRecord};

/// The epoch and every item of the (stopped) appliance's store in `data_dir`.
pub fn dump_data_dir(data_dir: &std::path::Path) -> Result<(String, Vec<Item>)> {
    let (store, report) = SledStore::open(data_dir, StoreOptions::default())?;
    Ok((report.epoch, store.dump()?))
}

impl SledStore {
    /// Every item of the store, channels first (so that a reader knows each channel's head
    /// before its messages and acknowledgements).
    pub fn dump(&self) -> Result<Vec<Item>> {
        let path = &self.path;
        let mut names: HashMap<u64, String> = HashMap::new();
        let mut items = Vec::new();
        for entry in self.db.scan_prefix([keys::CHANNEL]) {
            let (k, v) = entry?;
            let name = utf8(path, &k[1..])?;
            let v = unseal(&k, v).map_err(|d| damaged(path, d))?;
            let record: ChannelRecord = decode(&v)?;
            names.insert(record.id, name.clone());
            items.push(Item::Channel {
                head: self.channel_record(&name).map_or(0, |r| r.head),
                name,
            });
        }
        let channel = |id: u64| {
            names
                .get(&id)
                .cloned()
                .ok_or_else(|| corrupt(path, &format!("no channel with id {id}")))
        };
        for entry in self.db.iter() {
            let (k, raw) = entry?;
            let Some(&tag) = k.first() else {
                return Err(corrupt(path, "an empty key"));
            };
            // The schema version is stored bare; everything else is sealed.
            if tag == keys::META || tag == keys::CHANNEL {
                continue;
            }
            let v = unseal(&k, raw).map_err(|d| damaged(path, d))?;
            let id_of = |k: &[u8]| -> Result<u64> {
                let bytes: [u8; 8] = k
                    .get(1..9)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| corrupt(path, "a short key"))?;
                Ok(u64::from_be_bytes(bytes))
            };
            match tag {
                keys::LOG => {
                    let seq = keys::seq_of(&k).ok_or_else(|| corrupt(path, "bad log key"))?;
                    items.push(Item::Message {
                        channel: channel(id_of(&k)?)?,
                        message: message(seq, &v)?,
                    });
                }
                // Rebuilt from the messages' own flag.
                keys::ACK_REQUIRED => {}
                keys::IDEMPOTENCY => items.push(Item::Key {
                    channel: channel(id_of(&k)?)?,
                    key: utf8(path, &k[9..])?,
                    seq: read_u64(path, "an idempotency key's seq", &v)?,
                }),
                keys::ACKED => {
                    let (user, rest) = split_user(path, &k)?;
                    let (id, seq) = two_u64(path, rest)?;
                    items.push(Item::Acked {
                        user,
                        channel: channel(id)?,
                        seq,
                    });
                }
                keys::CURSOR => {
                    let (user, rest) = split_user(path, &k)?;
                    let id = <[u8; 8]>::try_from(rest)
                        .map(u64::from_be_bytes)
                        .map_err(|_| corrupt(path, "bad cursor key"))?;
                    items.push(Item::Cursor {
                        user,
                        channel: channel(id)?,
                        seq: read_u64(path, "a cursor", &v)?,
                    });
                }
                keys::USER => {
                    let record: UserRecord = decode(&v)?;
                    items.push(Item::User {
                        user: utf8(path, &k[1..])?,
                        org: record.org,
                        seen: record.last_seen,
                    });
                }
                keys::JOB => items.push(Item::Job {
                    job: utf8(path, &k[1..])?,
                    owner: utf8(path, &v)?,
                }),
                keys::TIMER => items.push(Item::Timer(
                    keys::timer_of(&k).ok_or_else(|| corrupt(path, "bad timer key"))?,
                )),
                keys::FENCE => {
                    let (org, id) = split_user(path, &k)?;
                    let record = OwnedRecord::Fence {
                        org,
                        id: utf8(path, id)?,
                    };
                    items.push(Item::Record(record, v.to_vec()));
                }
                keys::PATROL => {
                    let (org, rest) = split_user(path, &k)?;
                    let at = rest
                        .iter()
                        .position(|b| *b == 0)
                        .ok_or_else(|| corrupt(path, "a patrol key without its kind"))?;
                    let record = OwnedRecord::Patrol {
                        org,
                        kind: utf8(path, &rest[..at])?,
                        id: utf8(path, &rest[at + 1..])?,
                    };
                    items.push(Item::Record(record, v.to_vec()));
                }
                keys::FENCE_STATE => {
                    let (user, fence) = split_user(path, &k)?;
                    let record = OwnedRecord::FenceState {
                        user,
                        fence: utf8(path, fence)?,
                    };
                    items.push(Item::Record(record, v.to_vec()));
                }
                keys::LOCATION
                | keys::ALERT
                | keys::SHIFT
                | keys::DEVICE
                | keys::USED_LINK
                | keys::MEMBER
                | keys::WELFARE
                | keys::OUTBOX
                | keys::ARC_OUTBOX => {
                    let id = utf8(path, &k[1..])?;
                    let record = match tag {
                        keys::LOCATION => OwnedRecord::Location(id),
                        keys::ALERT => OwnedRecord::Alert(id),
                        keys::SHIFT => OwnedRecord::Shift(id),
                        keys::DEVICE => OwnedRecord::Device(id),
                        keys::OUTBOX => OwnedRecord::Outbox(id),
                        keys::ARC_OUTBOX => OwnedRecord::ArcOutbox(id),
                        keys::MEMBER => OwnedRecord::Member(id),
                        keys::WELFARE => OwnedRecord::Welfare(id),
                        _ => OwnedRecord::UsedLink(id),
                    };
                    items.push(Item::Record(record, v.to_vec()));
                }
                other => {
                    return Err(corrupt(
                        path,
                        &format!(
                            "a key of kind {:?} that this lookout cannot move",
                            other as char
                        ),
                    ))
                }
            }
        }
        Ok(items)
    }
}

fn utf8(path: &std::path::Path, bytes: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| corrupt(path, "a name that is not UTF-8"))
}

/// `tag + user + 0 + rest` → (user, rest).
fn split_user<'a>(path: &std::path::Path, key: &'a [u8]) -> Result<(String, &'a [u8])> {
    let body = &key[1..];
    let zero = body
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| corrupt(path, "a key without its separator"))?;
    Ok((utf8(path, &body[..zero])?, &body[zero + 1..]))
}

fn two_u64(path: &std::path::Path, rest: &[u8]) -> Result<(u64, u64)> {
    let a: [u8; 8] = rest
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt(path, "a short key"))?;
    let b: [u8; 8] = rest
        .get(8..16)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt(path, "a short key"))?;
    Ok((u64::from_be_bytes(a), u64::from_be_bytes(b)))
}
