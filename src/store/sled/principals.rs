//! Schema 3: a store of schema 2 moves its user-keyed state under principals (org, user), in
//! one atomic batch when opened (rules in [`crate::store::principals`]). Each user's org is
//! the one its user directory entry holds — the org it was registered to, which was the only
//! one it could use — and a job's is its owner's. State of a user the directory never saw
//! stays where it was, unreachable, and is counted in the log line.

use std::collections::HashMap;

use serde::Deserialize;

use super::keys;
use super::sealed::{seal, unseal};
use crate::store::error::{Result, StoreError};
use crate::store::principals;
use crate::store::records::decode;

/// The part of a user directory entry (`U` + user) the move reads: the org.
#[derive(Deserialize)]
struct UserRecord {
    org: String,
}

/// What the move did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rekeyed {
    /// Keys rewritten under their principal.
    pub moved: u64,
    /// Keys of users or jobs of no known org, left where they were.
    pub left: u64,
}

fn text(raw: &[u8]) -> Option<&str> {
    std::str::from_utf8(raw).ok()
}

/// Moves schema-2 state under principals and marks the store schema 3, atomically.
pub fn move_to_principals(db: &sled::Db) -> Result<Rekeyed> {
    let value = |k: &sled::IVec, v: sled::IVec| {
        unseal(k, v).map_err(|d| StoreError::Engine(format!("{}: fails its checksum", d.0)))
    };
    // A bare user id (no `/`) is a key from before: a principal's key always holds one.
    let bare = |user: &str| !user.contains('/');
    let mut orgs: HashMap<String, String> = HashMap::new();
    for entry in db.scan_prefix([keys::USER]) {
        let (k, v) = entry?;
        if let Some(user) = text(&k[1..]).filter(|u| bare(u)) {
            let record: UserRecord = decode(&value(&k, v)?)?;
            orgs.insert(user.to_string(), record.org);
        }
    }
    let mut owners: HashMap<String, String> = HashMap::new();
    for entry in db.scan_prefix([keys::JOB]) {
        let (k, v) = entry?;
        if let (Some(job), Some(owner)) = (text(&k[1..]), text(&value(&k, v.clone())?)) {
            if bare(job) {
                owners.insert(job.to_string(), owner.to_string());
            }
        }
    }
    let principal = |user: &str| {
        orgs.get(user)
            .map(|org| crate::auth::principal_key(Some(org), user))
    };
    let mut batch = sled::Batch::default();
    let mut report = Rekeyed::default();
    let mut rekey = |batch: &mut sled::Batch,
                     old: &sled::IVec,
                     new: Option<Vec<u8>>,
                     v: sled::IVec| {
        match new {
            Some(new) => {
                batch.remove(old.as_ref());
                batch.insert(new.clone(), seal(&new, &v));
                report.moved += 1;
            }
            None => report.left += 1,
        }
    };
    for tag in [
        keys::CHANNEL,
        keys::USER,
        keys::JOB,
        keys::LOCATION,
        keys::ACKED,
        keys::CURSOR,
        keys::FENCE_STATE,
    ] {
        for entry in db.scan_prefix([tag]) {
            let (k, v) = entry?;
            let body = &k[1..];
            let new: Option<Vec<u8>> = match tag {
                keys::CHANNEL => {
                    let Some(name) = text(body) else { continue };
                    if !principals::is_old_channel(name) {
                        continue;
                    }
                    principals::channel(name, |u| orgs.get(u).cloned(), |j| owners.get(j).cloned())
                        .map(|n| keys::channel(&n))
                }
                keys::JOB => {
                    let Some(job) = text(body).filter(|j| bare(j)) else {
                        continue;
                    };
                    owners
                        .get(job)
                        .and_then(|owner| orgs.get(owner))
                        .map(|org| keys::job(&format!("{org}/{job}")))
                }
                keys::USER | keys::LOCATION => {
                    let Some(user) = text(body).filter(|u| bare(u)) else {
                        continue;
                    };
                    principal(user).map(|p| {
                        let mut new = vec![tag];
                        new.extend_from_slice(p.as_bytes());
                        new
                    })
                }
                // user, 0, rest
                _ => {
                    let Some(zero) = body.iter().position(|b| *b == 0) else {
                        continue;
                    };
                    let Some(user) = text(&body[..zero]).filter(|u| bare(u)) else {
                        continue;
                    };
                    principal(user).map(|p| {
                        let mut new = vec![tag];
                        new.extend_from_slice(p.as_bytes());
                        new.extend_from_slice(&body[zero..]);
                        new
                    })
                }
            };
            let v = value(&k, v)?;
            rekey(&mut batch, &k, new, v);
        }
    }
    batch.insert(keys::meta("schema"), &3u32.to_be_bytes());
    db.apply_batch(batch)?;
    db.flush()?;
    Ok(report)
}
