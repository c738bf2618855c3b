//! The patrol service: its settings, its counters, the access rules every patrol operation
//! shares (whose org, who manages it) and the store access they share.
//!
//! The operations are `impl Patrols` blocks in the files beside this one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use serde::de::DeserializeOwned;

use super::error::{bad, PatrolError};
use super::records::{TourState, ROUND};
use crate::alerts::Alerts;
use crate::auth::{Identity, Role};
use crate::config::PatrolSettings;
use crate::store::records::decode;
use crate::store::{Change, Record, Records, Store};

/// Tries of a write over a tour's round that other nodes' writes keep invalidating.
pub(super) const WRITE_ATTEMPTS: usize = 16;

/// Patrol counters, for `/metrics` (this node's, since start).
#[derive(Debug, Default)]
pub struct PatrolStats {
    /// Checkpoints created.
    pub checkpoints_created: AtomicU64,
    /// Tours created.
    pub tours_created: AtomicU64,
    /// Scans recorded (repeats not counted).
    pub scans: AtomicU64,
    /// Scans flagged far from their checkpoint.
    pub scans_far: AtomicU64,
    /// TOUR_MISSED alerts raised.
    pub missed: AtomicU64,
    /// Incident reports filed (resends not counted).
    pub incidents_filed: AtomicU64,
    /// Incident photos stored.
    pub incident_photos: AtomicU64,
    /// Incident reports closed.
    pub incidents_closed: AtomicU64,
    /// Closed incident reports purged with their photos.
    pub incidents_purged: AtomicU64,
    /// Requests refused over a budget.
    pub refused: AtomicU64,
}

/// The patrol service.
pub struct Patrols {
    pub(super) store: Arc<dyn Store>,
    pub(super) alerts: Arc<Alerts>,
    pub(super) config: PatrolSettings,
    /// How far ahead of the server a scan's time may be.
    pub(super) max_clock_skew: std::time::Duration,
    /// A schedule's minute, ms (`testing.patrol_minute`; 60 000 on a site).
    pub(super) minute_ms: u64,
    /// One change at a time per tour's round on this node.
    pub(super) turns: crate::alerts::Turns,
    /// When each org's old scans were last purged on this node (ms): one entry per org that
    /// scanned.
    pub(super) purged: parking_lot::Mutex<std::collections::HashMap<String, u64>>,
    /// Counters.
    pub stats: PatrolStats,
}

impl Patrols {
    /// The service, keeping its records in `store` and raising alerts through `alerts`; it
    /// fires the tours' window timers.
    pub fn new(
        store: Arc<dyn Store>,
        alerts: Arc<Alerts>,
        config: PatrolSettings,
        max_clock_skew: std::time::Duration,
        minute: std::time::Duration,
    ) -> Arc<Self> {
        let patrols = Arc::new(Patrols {
            minute_ms: u64::try_from(minute.as_millis()).unwrap_or(super::schedule::MINUTE),
            store,
            alerts,
            config,
            max_clock_skew,
            turns: crate::alerts::Turns::default(),
            purged: Default::default(),
            stats: PatrolStats::default(),
        });
        let handler: Weak<dyn crate::alerts::TimerHandler> = Arc::downgrade(&patrols) as Weak<_>;
        patrols.alerts.set_patrol_timer_handler(handler);
        patrols
    }

    /// The org a request acts in: the caller's, or the one an admin names.
    pub(super) fn org_for(
        &self,
        who: &Identity,
        requested: Option<&str>,
    ) -> Result<String, PatrolError> {
        match (requested, &who.org) {
            (Some(org), _) if who.is(Role::Admin) => Ok(org.to_string()),
            (Some(org), Some(own)) if org == &**own => Ok(org.to_string()),
            (Some(_), _) => Err(PatrolError::Forbidden("another organization")),
            (None, Some(own)) => Ok(own.to_string()),
            (None, None) => bad("an admin must name the `org`"),
        }
    }

    /// The org `who` manages patrols of (supervisors of it, admins).
    pub(super) fn managed_org(
        &self,
        who: &Identity,
        requested: Option<&str>,
    ) -> Result<String, PatrolError> {
        let org = self.org_for(who, requested)?;
        if self.manages(who, &org) {
            Ok(org)
        } else {
            Err(PatrolError::Forbidden(
                "only supervisors and admins manage patrols",
            ))
        }
    }

    /// Whether `who` manages `org`'s patrols (a supervisor of it, an admin).
    pub(super) fn manages(&self, who: &Identity, org: &str) -> bool {
        who.is(Role::Admin) || (who.is(Role::Supervisor) && who.in_org(org))
    }

    pub(super) async fn load<T: DeserializeOwned>(
        &self,
        org: &str,
        kind: &str,
        id: &str,
    ) -> Result<Option<T>, PatrolError> {
        Ok(self.store.load(Record::Patrol { org, kind, id }).await?)
    }

    /// The record `id` of `kind`, or `not_found` naming it as `what`.
    pub(super) async fn existing<T: DeserializeOwned>(
        &self,
        org: &str,
        kind: &str,
        id: &str,
        what: &str,
    ) -> Result<T, PatrolError> {
        self.load(org, kind, id)
            .await?
            .ok_or_else(|| PatrolError::NotFound(format!("no {what} {id}")))
    }

    pub(super) async fn load_all<T: DeserializeOwned>(
        &self,
        org: &str,
        kind: &str,
    ) -> Result<Vec<T>, PatrolError> {
        Ok(self.store.load_all(Records::Patrol { org, kind }).await?)
    }

    /// The turn to create one more record of `kind` in `org` (one creation at a time per org
    /// and kind on this node, so the count holds here), refused when the org already has
    /// `limit` of them.
    pub(super) async fn creation_turn(
        &self,
        org: &str,
        kind: &str,
        limit: usize,
        what: &'static str,
        key: &'static str,
    ) -> Result<crate::alerts::AlertTurn<'_>, PatrolError> {
        let turn = self.turns.take(&format!("{org}/{kind}")).await;
        let count = self
            .store
            .records(Records::Patrol { org, kind })
            .await?
            .len();
        self.within_budget(count, limit, what, key)?;
        Ok(turn)
    }

    /// A tour's round as kept, decoded and as read (for [`Patrols::write_over_round`]).
    pub(super) async fn read_round(
        &self,
        org: &str,
        tour: &str,
    ) -> Result<(Option<TourState>, Option<Vec<u8>>), PatrolError> {
        let read = self
            .store
            .record(Record::Patrol {
                org,
                kind: ROUND,
                id: tour,
            })
            .await?;
        let state = read.as_deref().map(decode).transpose()?;
        Ok((state, read))
    }

    /// Writes `changes` only over the tour's round as `read`, and waits until they are
    /// durable; `false` when another node changed the round meanwhile (read again, decide
    /// again).
    pub(super) async fn write_over_round(
        &self,
        org: &str,
        tour: &str,
        read: Option<Vec<u8>>,
        changes: &[Change<'_>],
    ) -> Result<bool, PatrolError> {
        let round = Record::Patrol {
            org,
            kind: ROUND,
            id: tour,
        };
        match self.store.write_if(round, read.as_deref(), changes).await? {
            Some(ticket) => {
                self.store.durable(ticket).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Refuses one more of `what` when `count` already reached `limit` (counted).
    pub(super) fn within_budget(
        &self,
        count: usize,
        limit: usize,
        what: &'static str,
        key: &'static str,
    ) -> Result<(), PatrolError> {
        if count >= limit {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(PatrolError::OverBudget { what, limit, key });
        }
        Ok(())
    }
}

/// A random id: 16 lowercase base32 characters (80 bits).
pub(super) fn new_id() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..16]
        .iter()
        .map(|b| ALPHABET[usize::from(b % 32)] as char)
        .collect()
}

/// Whether `name` is 1–`max` characters with no control character.
pub(super) fn valid_text(text: &str, max: usize) -> bool {
    !text.trim().is_empty() && text.chars().count() <= max && !text.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sixteen_base32_characters() {
        let id = new_id();
        assert_eq!(id.len(), 16);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)));
        assert_ne!(new_id(), id);
    }
}
