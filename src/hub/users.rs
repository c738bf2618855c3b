//! Who is connected: each principal's live connections (keyed by
//! [`crate::auth::principal_key`], so one org's `carol` never counts against another's), the server-wide count, and the limits on
//! both. The slot is taken here and given back here; the rest of admission (the org check,
//! presence, counters) is [`super::admission`]'s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::conn::{ConnHandle, Outbound};
use super::error::Refusal;
use super::requests::ConnStatus;
use crate::auth::Identity;
use crate::clock::now_millis;
use crate::protocol::{Encoding, Protocol};

/// A new connection's handle and the receiving end of its queue.
pub type Joined = (Arc<ConnHandle>, mpsc::Receiver<Outbound>);

/// A user's live connections.
#[derive(Default)]
struct UserEntry {
    conns: Vec<Arc<ConnHandle>>,
    last_seen: u64,
    /// When each of the user's enrolled devices last had a connection (a handful per guard).
    devices: HashMap<Arc<str>, u64>,
}

/// The connection table.
#[derive(Default)]
pub struct Users {
    map: Mutex<HashMap<Arc<str>, UserEntry>>,
    total: AtomicUsize,
    next_id: AtomicU64,
}

/// What a connection needs to be taken into the table.
pub struct Joining {
    /// Who.
    pub identity: Identity,
    /// The encoding it speaks.
    pub encoding: Encoding,
    /// The protocol it speaks.
    pub protocol: Protocol,
    /// Its peer.
    pub peer: std::net::SocketAddr,
}

impl Users {
    /// Takes a slot under `max_total` and `max_per_user`; says whether the connection is the
    /// user's first.
    pub fn join(
        &self,
        joining: Joining,
        max_total: usize,
        max_per_user: usize,
        queue: (usize, usize),
    ) -> Result<(Joined, bool), Refusal> {
        if self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max_total).then_some(n + 1)
            })
            .is_err()
        {
            return Err(Refusal::Total(max_total));
        }
        let mut map = self.map.lock();
        let entry = map.entry(joining.identity.key.clone()).or_default();
        if entry.conns.len() >= max_per_user {
            drop(map);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::PerUser(max_per_user));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (conn, rx) = ConnHandle::new(
            id,
            joining.identity,
            joining.encoding,
            joining.protocol,
            joining.peer,
            queue,
        );
        let first = entry.conns.is_empty();
        entry.conns.push(conn.clone());
        entry.last_seen = now_millis();
        if let Some(device) = &conn.identity.device {
            entry.devices.insert(device.clone(), entry.last_seen);
        }
        Ok(((conn, rx), first))
    }

    /// Gives the slot back; says whether it was the user's last connection.
    pub fn leave(&self, conn: &ConnHandle) -> bool {
        let mut map = self.map.lock();
        let mut last = false;
        if let Some(entry) = map.get_mut(&conn.identity.key) {
            entry.conns.retain(|c| c.id != conn.id);
            entry.last_seen = now_millis();
            if let Some(device) = &conn.identity.device {
                entry.devices.insert(device.clone(), entry.last_seen);
            }
            last = entry.conns.is_empty();
        }
        drop(map);
        self.total.fetch_sub(1, Ordering::AcqRel);
        last
    }

    /// Forgets users without a connection since before `before` (ms); their status falls back
    /// to what the store remembers.
    pub fn forget_gone(&self, before: u64) {
        self.map
            .lock()
            .retain(|_, e| !e.conns.is_empty() || e.last_seen >= before);
    }

    /// Whether `user`'s `device` is connected now, and when it last was (this process's
    /// memory: nothing before a restart or a long absence).
    pub fn device_seen(&self, user: &str, device: &str) -> (bool, Option<u64>) {
        let map = self.map.lock();
        let Some(entry) = map.get(user) else {
            return (false, None);
        };
        let online = entry
            .conns
            .iter()
            .any(|c| c.identity.device.as_deref() == Some(device));
        let seen = if online {
            Some(now_millis())
        } else {
            entry.devices.get(device).copied()
        };
        (online, seen)
    }

    /// A user's open connections.
    pub fn of(&self, user: &str) -> Vec<Arc<ConnHandle>> {
        self.map
            .lock()
            .get(user)
            .map(|e| e.conns.clone())
            .unwrap_or_default()
    }

    /// A user's open connections and when it was last seen in this process.
    pub fn status(&self, user: &str) -> (Vec<ConnStatus>, Option<u64>) {
        let map = self.map.lock();
        let Some(entry) = map.get(user) else {
            return (Vec::new(), None);
        };
        let connections = entry
            .conns
            .iter()
            .map(|c| ConnStatus {
                session_id: c.session_id.clone(),
                protocol: c.encoding.subprotocol(),
                connected_at: c.connected_at,
                subscriptions: c.subscriptions.load(Ordering::Relaxed),
                queued: c.queued(),
            })
            .collect();
        (connections, Some(entry.last_seen))
    }

    /// Users of `org` with at least one connection: (user, name, connections, since).
    pub fn online(&self, org: &str) -> Vec<(String, Option<String>, usize, u64)> {
        self.map
            .lock()
            .values()
            .filter_map(|e| {
                let first = e.conns.first()?;
                first.identity.in_org(org).then(|| {
                    let since = e.conns.iter().map(|c| c.connected_at).min().unwrap_or(0);
                    (
                        first.identity.user.to_string(),
                        first.identity.name.clone(),
                        e.conns.len(),
                        since,
                    )
                })
            })
            .collect()
    }

    /// Users with at least one connection.
    pub fn online_count(&self) -> usize {
        self.map
            .lock()
            .values()
            .filter(|e| !e.conns.is_empty())
            .count()
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}
