//! Admission: a connection is let in under the limits (per principal, server-wide); its slot is
//! given back when its [`Admission`] is dropped. A principal is (org, user): the same user id
//! in another org is someone else, with slots, status and devices of its own. Presence
//! events, the online list and user status are here too: they are about who is connected.

use std::sync::Arc;

use super::conn::Outbound;
use super::error::{HubError, Refusal};
use super::requests::UserStatus;
use super::users::{Joined, Joining};
use super::{ConnHandle, Hub};
use crate::auth::{Identity, Role};
use crate::channel::{ChannelKind, Target};
use crate::clock::now_millis;
use crate::counters::Budget;
use crate::protocol::{Encoding, Protocol};
use crate::store::{Change, Record, Slot, StoreError};

/// A member of an org as its tokens have shown it (`Record::Member`): the roles it held
/// there. A guard link is never minted for an id that holds another role in its org.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// Role names ever seen in this org's tokens for the user.
    pub roles: Vec<String>,
}

impl Member {
    /// Whether the member holds a role other than `role`.
    pub fn holds_other_than(&self, role: Role) -> bool {
        self.roles.iter().any(|r| r != role.as_str())
    }
}

/// A REST read running for a principal; its place is given back when dropped.
pub struct ReadSlot {
    hub: Arc<Hub>,
    key: Arc<str>,
}

impl Drop for ReadSlot {
    fn drop(&mut self) {
        let mut reads = self.hub.reads.lock();
        if let Some(n) = reads.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                reads.remove(&self.key);
            }
        }
    }
}

/// Releases a connection's slot when dropped.
pub struct Admission {
    hub: Arc<Hub>,
    conn: Arc<ConnHandle>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.hub.leave(&self.conn);
    }
}

impl Hub {
    /// Admits a new connection if the limits allow, registering it under its user.
    pub async fn admit(
        self: &Arc<Self>,
        identity: Identity,
        encoding: Encoding,
        protocol: Protocol,
        peer: std::net::SocketAddr,
    ) -> Result<
        (
            Arc<ConnHandle>,
            tokio::sync::mpsc::Receiver<Outbound>,
            Admission,
        ),
        Refusal,
    > {
        if let Some(org) = &identity.org {
            // Keyed by the principal: a user id another org also uses is another entry, never
            // a conflict that would lock either out.
            self.store
                .remember_user(&identity.key, org, now_millis())
                .await?;
            self.remember_roles(&identity).await?;
        }
        let limits = self.limits();
        let joining = Joining {
            identity,
            encoding,
            protocol,
            peer,
        };
        let joined = self.users.join(
            joining,
            limits.max_connections,
            limits.max_connections_per_user,
            (limits.outbound_queue, limits.outbound_queue_bytes),
        );
        let refused = |refusal: Refusal| {
            match refusal {
                Refusal::Total(_) => self.stats.refused(Budget::Connections),
                Refusal::PerUser(_) => self.stats.refused(Budget::ConnectionsPerUser),
                _ => {}
            }
            Err(refusal)
        };
        let ((conn, rx), mut first): (Joined, bool) = match joined {
            Ok(joined) => joined,
            Err(refusal) => return refused(refusal),
        };
        if let Some(cluster) = self.store.cluster() {
            // The per-user limit counts the user's connections on every node.
            let max = limits.max_connections_per_user;
            match cluster.take_slot(&conn.identity.key, max).await {
                Ok(Slot::Taken {
                    first: first_anywhere,
                }) => first = first_anywhere,
                Ok(Slot::Full) => {
                    self.users.leave(&conn);
                    return refused(Refusal::PerUser(max));
                }
                Err(e) => {
                    self.users.leave(&conn);
                    return refused(Refusal::Store(e));
                }
            }
        }
        self.stats.connected(protocol);
        if first && protocol.present() {
            self.presence(&conn.identity, "join");
        }
        let admission = Admission {
            hub: self.clone(),
            conn: conn.clone(),
        };
        Ok((conn, rx, admission))
    }

    /// Takes one of `who`'s places for REST reads (`limits.max_requests_per_user`): a user
    /// that asks for more at once is refused, and nobody else waits for it.
    pub fn begin_read(self: &Arc<Self>, who: &Identity) -> Result<ReadSlot, HubError> {
        let max = self.limits().max_requests_per_user;
        let mut reads = self.reads.lock();
        let n = reads.entry(who.key.clone()).or_default();
        if *n >= max {
            drop(reads);
            self.stats.refused(Budget::RequestsPerUser);
            return Err(HubError::OverBudget(format!(
                "{max} reads of this user are running (limits.max_requests_per_user)"
            )));
        }
        *n += 1;
        Ok(ReadSlot {
            hub: self.clone(),
            key: who.key.clone(),
        })
    }

    /// Records the roles `who` holds in its org, when its token shows one not seen before
    /// (a write on the first connection of each new role, none on the others).
    pub async fn remember_roles(&self, who: &Identity) -> Result<(), StoreError> {
        if who.org.is_none() || !self.first_sight(who) {
            return Ok(());
        }
        let remembered = self.record_roles(who).await;
        if remembered.is_err() {
            self.members_seen
                .lock()
                .remove(&(who.key.clone(), who.roles));
        }
        remembered
    }

    /// [`Hub::remember_roles`] for a REST request, which does not wait for it.
    pub fn note_roles(self: &Arc<Self>, who: &Identity) {
        if who.org.is_none()
            || self
                .members_seen
                .lock()
                .contains(&(who.key.clone(), who.roles))
        {
            return;
        }
        let (hub, who) = (self.clone(), who.clone());
        self.tasks.spawn(async move {
            if let Err(e) = hub.remember_roles(&who).await {
                tracing::warn!(error = %e, "recording a member's roles");
            }
        });
    }

    /// Whether this process has not recorded `who`'s roles yet (and now counts them as
    /// recorded). Bounded: past `MEMBERS_SEEN` it starts over, costing a store read each.
    fn first_sight(&self, who: &Identity) -> bool {
        const MEMBERS_SEEN: usize = 100_000;
        let mut seen = self.members_seen.lock();
        if seen.len() >= MEMBERS_SEEN {
            seen.clear();
        }
        seen.insert((who.key.clone(), who.roles))
    }

    async fn record_roles(&self, who: &Identity) -> Result<(), StoreError> {
        let key = Record::Member { key: &who.key };
        let mut member: Member = self.store.load(key).await?.unwrap_or_default();
        let mut grown = false;
        for role in who.roles.names() {
            if !member.roles.iter().any(|r| r == role) {
                member.roles.push(role.to_string());
                grown = true;
            }
        }
        if grown {
            self.store.write(&[Change::put(key, &member)?]).await?;
        }
        Ok(())
    }

    fn leave(self: &Arc<Self>, conn: &ConnHandle) {
        let last = self.users.leave(conn);
        self.stats.disconnected(conn.protocol);
        if self.store.cluster().is_some() {
            // The slot is given back in the cluster; the user leaves when it was its last one
            // on every node.
            let hub = self.clone();
            let identity = conn.identity.clone();
            let present = conn.protocol.present();
            self.tasks.spawn(async move {
                let Some(cluster) = hub.store.cluster() else {
                    return;
                };
                match cluster.give_slot(&identity.key).await {
                    Ok(true) if present => hub.presence(&identity, "leave"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        error = %e,
                        "giving a connection slot back in the cluster; it expires with this node"
                    ),
                }
            });
            return;
        }
        if last && conn.protocol.present() {
            self.presence(&conn.identity, "leave");
        }
    }

    /// Publishes a presence event of `who` on its org's presence channel (live only).
    pub fn presence(&self, who: &Identity, event: &str) {
        self.presence_event(who, event, Vec::new());
    }

    /// A presence event with extra fields (e.g. typing: room, active).
    pub fn presence_event(&self, who: &Identity, event: &str, extra: Vec<(&str, rmpv::Value)>) {
        let Some(org) = &who.org else { return };
        let mut fields = vec![
            (rmpv::Value::from("event"), rmpv::Value::from(event)),
            (rmpv::Value::from("user"), rmpv::Value::from(&*who.user)),
            (rmpv::Value::from("at"), rmpv::Value::from(now_millis())),
        ];
        if let Some(name) = &who.name {
            fields.push((rmpv::Value::from("name"), rmpv::Value::from(name.as_str())));
        }
        for (k, v) in extra {
            fields.push((rmpv::Value::from(k), v));
        }
        let target = Target::Org {
            kind: ChannelKind::OrgPresence,
            org: org.to_string(),
        };
        let stored = target.stored_name();
        if self.store.cluster().is_none() {
            self.publish_live_here(target.kind(), &stored, rmpv::Value::Map(fields));
            return;
        }
        let Some(hub) = self.me.upgrade() else { return };
        // In cluster mode it is a round trip to the shared Redis, which the caller does not
        // wait for (live only, best effort).
        self.tasks.spawn(async move {
            if let Err(e) = hub
                .publish_live(&target, &stored, rmpv::Value::Map(fields))
                .await
            {
                tracing::warn!(error = %e, "publishing a presence event");
            }
        });
    }

    /// Users of `org` with at least one connection: (user, name, connections, since).
    pub fn online(&self, org: &str) -> Vec<(String, Option<String>, usize, u64)> {
        self.users.online(org)
    }

    /// Whether the principal (`key` from [`crate::auth::principal_key`]) has a connection to
    /// this node.
    pub fn connected_here(&self, key: &str) -> bool {
        !self.users.status(key).0.is_empty()
    }

    /// Status of one principal's connections (`key` from [`crate::auth::principal_key`]).
    pub async fn user_status(&self, key: &str, user: &str) -> Result<UserStatus, StoreError> {
        let (connections, seen_here) = self.users.status(key);
        let last_seen = match seen_here {
            Some(at) => Some(at),
            None => self.store.last_seen(key).await?,
        };
        Ok(UserStatus {
            user_id: user.to_string(),
            online: !connections.is_empty(),
            connections,
            last_seen,
        })
    }

    /// Users with at least one connection.
    pub fn users_online(&self) -> usize {
        self.users.online_count()
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.users.connections()
    }

    /// Closes the open connections of principal `key` on every transport that authenticated
    /// as `device`, with `code`; how many.
    pub fn close_device(&self, key: &str, device: &str, code: u16, reason: &str) -> usize {
        self.users
            .of(key)
            .into_iter()
            .filter(|c| c.identity.device.as_deref() == Some(device))
            .filter(|c| c.close(code, reason))
            .count()
    }

    /// Whether principal `key`'s enrolled `device` is connected now, and when it last was.
    pub fn device_seen(&self, key: &str, device: &str) -> (bool, Option<u64>) {
        self.users.device_seen(key, device)
    }

    /// Whether `who` may ask for the status of `user` of `org`: itself, an admin, or a
    /// supervisor or service of that org.
    pub fn may_see_user(&self, who: &Identity, org: &str, user: &str) -> bool {
        who.is(Role::Admin)
            || (who.in_org(org)
                && (*who.user == *user || who.is(Role::Supervisor) || who.is(Role::Service)))
    }
}
