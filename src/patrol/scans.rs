//! Scans: a guard's phone reports a checkpoint's code read by camera or NFC, with the time it
//! was read (it may have waited in the phone's offline queue) and where the phone was.
//!
//! A scan is kept once per phone key (`scan/{user}/{key}`, `put_new`): a repeat is answered
//! with the scan first recorded. A scan far from its checkpoint is flagged, never refused. A
//! scan read inside the open round of a tour assigned to the guard that lists the checkpoint
//! counts for that round (a write guarded by the round as read).

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::error::{bad, PatrolError};
use super::records::{
    Checkpoint, Scan, ScanCount, ScanSpec, Tour, TourState, CHECKPOINT, ROUND, SCAN, SCAN_COUNT,
    TOUR,
};
use super::schedule;
use super::service::{Patrols, WRITE_ATTEMPTS};
use crate::auth::{Identity, Role};
use crate::clock::now_millis;
use crate::geofence::distance_m;
use crate::store::records::{decode, encode};
use crate::store::{Change, Record, Records};

const DAY_MS: u64 = 24 * 3600 * 1000;
/// Deletions written together when old scans are purged.
const PURGE_BATCH: usize = 512;

/// What a scan answers.
#[derive(Debug, Clone, Serialize)]
pub struct ScanResult {
    /// The scan as recorded.
    #[serde(flatten)]
    pub scan: Scan,
    /// Whether this request recorded it (`false`: a repeat of a scan already recorded).
    pub recorded: bool,
}

/// Whether `key` is a phone's key for a request: 8–64 of `[A-Za-z0-9_-]`.
pub(super) fn valid_key(key: &str) -> bool {
    (8..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Patrols {
    /// Records a scan by a guard of the org.
    pub async fn scan(&self, who: &Identity, spec: ScanSpec) -> Result<ScanResult, PatrolError> {
        let Some(org) = who.org.as_deref().filter(|_| who.is(Role::Guard)) else {
            return Err(PatrolError::Forbidden(
                "only a guard of an org records scans",
            ));
        };
        if !valid_key(&spec.key) {
            return bad("`key` must be 8–64 of A-Z a-z 0-9 - _");
        }
        let scan_id = format!("{}/{}", who.user, spec.key);
        let scan_record = Record::Patrol {
            org,
            kind: SCAN,
            id: &scan_id,
        };
        // A repeat: the first answer again, whatever else changed since.
        if let Some(first) = self.store.record(scan_record).await? {
            return Ok(ScanResult {
                scan: decode(&first)?,
                recorded: false,
            });
        }
        let now = now_millis();
        let skew = u64::try_from(self.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        if spec.scanned_at > now.saturating_add(skew) {
            return bad("`scanned_at` is in the future");
        }
        let max_age = u64::try_from(self.config.max_scan_age.as_millis()).unwrap_or(u64::MAX);
        if spec.scanned_at < now.saturating_sub(max_age) {
            return bad("`scanned_at` is older than patrol.max_scan_age");
        }
        let position = match (spec.lat, spec.lon) {
            (Some(lat), Some(lon))
                if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
            {
                Some((lat, lon))
            }
            (None, None) => None,
            _ => return bad("`lat` and `lon` go together, within ±90 and ±180"),
        };
        let accuracy = spec.accuracy.filter(|a| a.is_finite() && *a >= 0.0);
        let via = match spec.via.as_deref() {
            None | Some("qr") => "qr",
            Some("nfc") => "nfc",
            Some(_) => return bad("`via` must be `qr` or `nfc`"),
        };
        let checkpoint_id = self.verify(org, &spec.code).await?;
        let Some(checkpoint) = self
            .load::<Checkpoint>(org, CHECKPOINT, checkpoint_id)
            .await?
        else {
            return Err(PatrolError::NotFound(format!(
                "no checkpoint {checkpoint_id} (deleted)"
            )));
        };
        // The guard's scans of the day, within budget: one slot taken in the day's count.
        let _turn = self.turns.take(&format!("{org}/{SCAN}/{}", who.user)).await;
        self.take_scan_slot(org, &who.user, now / DAY_MS).await?;
        self.purge_scans_if_due(org, now).await?;
        let distance =
            position.map(|(lat, lon)| distance_m([lon, lat], [checkpoint.lon, checkpoint.lat]));
        let far = distance.is_some_and(|d| d > checkpoint.radius_m + accuracy.unwrap_or(0.0));
        let mut scan = Scan {
            key: spec.key.clone(),
            org: org.to_string(),
            user: who.user.to_string(),
            checkpoint: checkpoint.id.clone(),
            tour: None,
            round_start: None,
            scanned_at: spec.scanned_at,
            received_at: now,
            lat: position.map(|p| p.0),
            lon: position.map(|p| p.1),
            accuracy,
            distance_m: distance.map(|d| (d * 10.0).round() / 10.0),
            far,
            out_of_order: false,
            late_arrival: false,
            via: via.to_string(),
        };
        let tours: Vec<Tour> = self.load_all(org, TOUR).await?;
        for tour in tours.iter().filter(|t| {
            t.checkpoints.contains(&checkpoint.id) && t.guards.iter().any(|g| *g == *who.user)
        }) {
            if let Some(recorded) = self.count_in_round(tour, &mut scan, &scan_id).await? {
                return Ok(recorded);
            }
        }
        // In no open round: kept on its own.
        self.record_scan(scan, None).await
    }

    /// Records `scan` in `tour`'s open round when it was read inside its window: `None` when
    /// it was not (the caller tries the next tour).
    async fn count_in_round(
        &self,
        tour: &Tour,
        scan: &mut Scan,
        scan_id: &str,
    ) -> Result<Option<ScanResult>, PatrolError> {
        let _turn = self
            .turns
            .take(&super::tours::timer_id(&tour.org, &tour.id))
            .await;
        let round_key = Record::Patrol {
            org: &tour.org,
            kind: ROUND,
            id: &tour.id,
        };
        for _ in 0..WRITE_ATTEMPTS {
            let read = self.store.record(round_key).await?;
            let Some(mut state) = read.as_deref().map(decode::<TourState>).transpose()? else {
                return Ok(None);
            };
            if scan.scanned_at < state.round_start {
                return self.record_late(tour, scan).await;
            }
            if scan.scanned_at >= state.window_end {
                return Ok(None);
            }
            scan.tour = Some(tour.id.clone());
            scan.round_start = Some(state.round_start);
            if tour.ordered {
                // Out of order: an earlier checkpoint of the tour is still unscanned.
                scan.out_of_order = tour
                    .checkpoints
                    .iter()
                    .take_while(|c| **c != scan.checkpoint)
                    .any(|c| !state.scanned.contains_key(c));
            }
            if state.scanned.contains_key(&scan.checkpoint) {
                // Scanned again in the same round: kept, the round unchanged.
                return self.record_scan(scan.clone(), None).await.map(Some);
            }
            state
                .scanned
                .insert(scan.checkpoint.clone(), scan_id.to_string());
            let round = (round_key, encode(&state)?, read);
            match self.record_scan(scan.clone(), Some(round)).await {
                Err(PatrolError::Contended(_)) => continue,
                other => return other.map(Some),
            }
        }
        Err(PatrolError::Contended("the tour's round"))
    }

    /// One more of the guard's scans of `day`, within `patrol.max_scans_per_guard_per_day`: the
    /// day's count is compared and set over the value read (exact across a cluster's nodes). A
    /// scan refused after its slot was taken (its checkpoint gone meanwhile) still counts.
    async fn take_scan_slot(&self, org: &str, user: &str, day: u64) -> Result<(), PatrolError> {
        let id = format!("{user}/{day}");
        let key = Record::Patrol {
            org,
            kind: SCAN_COUNT,
            id: &id,
        };
        for _ in 0..WRITE_ATTEMPTS {
            let read = self.store.record(key).await?;
            let count = read
                .as_deref()
                .map(decode::<ScanCount>)
                .transpose()?
                .map_or(0, |c| c.count);
            self.within_budget(
                count,
                self.config.max_scans_per_guard_per_day,
                "scans per guard per day",
                "patrol.max_scans_per_guard_per_day",
            )?;
            let next = ScanCount {
                user: user.to_string(),
                day,
                count: count + 1,
            };
            let changes = [Change::Put(key, encode(&next)?)];
            if self
                .store
                .write_if(key, read.as_deref(), &changes)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(PatrolError::Contended("the guard's scan count"))
    }

    /// Deletes the org's scans received more than `patrol.scan_retention` ago, and the daily
    /// counts of days before that, when the org's last purge on this node is older than a
    /// tenth of the retention (at most an hour).
    async fn purge_scans_if_due(&self, org: &str, now: u64) -> Result<(), PatrolError> {
        let retention = u64::try_from(self.config.scan_retention.as_millis()).unwrap_or(u64::MAX);
        let every = (retention / 10).min(3_600_000);
        {
            let mut purged = self.purged.lock();
            match purged.get(org) {
                Some(at) if now.saturating_sub(*at) < every => return Ok(()),
                _ => {}
            }
            purged.insert(org.to_string(), now);
        }
        let cutoff = now.saturating_sub(retention);
        let old_scans: Vec<String> = self
            .load_all::<Scan>(org, SCAN)
            .await?
            .into_iter()
            .filter(|s| s.received_at < cutoff)
            .map(|s| format!("{}/{}", s.user, s.key))
            .collect();
        let old_counts: Vec<String> = self
            .load_all::<ScanCount>(org, SCAN_COUNT)
            .await?
            .into_iter()
            .filter(|c| (c.day + 1) * DAY_MS < cutoff)
            .map(|c| format!("{}/{}", c.user, c.day))
            .collect();
        let deletions = old_scans
            .iter()
            .map(|id| (SCAN, id))
            .chain(old_counts.iter().map(|id| (SCAN_COUNT, id)));
        let mut batch = Vec::with_capacity(PURGE_BATCH);
        for (kind, id) in deletions {
            batch.push(Change::Delete(Record::Patrol { org, kind, id }));
            if batch.len() == PURGE_BATCH {
                self.store.write(&batch).await?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.store.write(&batch).await?;
        }
        Ok(())
    }

    /// A scan made inside a round of `tour` that was settled before it arrived (the phone was
    /// offline past the window's end): recorded for that round, flagged `late_arrival`; the
    /// round is not reopened. `None` when it was made in no round of the tour.
    async fn record_late(
        &self,
        tour: &Tour,
        scan: &mut Scan,
    ) -> Result<Option<ScanResult>, PatrolError> {
        let Some(round) = schedule::round_after(&tour.schedule, self.minute_ms, scan.scanned_at)
        else {
            return Ok(None);
        };
        if scan.scanned_at < round.start {
            return Ok(None);
        }
        scan.tour = Some(tour.id.clone());
        scan.round_start = Some(round.start);
        scan.late_arrival = true;
        self.record_scan(scan.clone(), None).await.map(Some)
    }

    /// Writes a scan (with its round's new state, over the state as read): a repeat that won
    /// the race meanwhile answers that one.
    async fn record_scan(
        &self,
        scan: Scan,
        round: Option<(Record<'_>, Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<ScanResult, PatrolError> {
        let scan_id = format!("{}/{}", scan.user, scan.key);
        let scan_record = Record::Patrol {
            org: &scan.org,
            kind: SCAN,
            id: &scan_id,
        };
        let bytes = encode(&scan)?;
        let ticket = match round {
            // Guarded twice: the round as read, and no scan under the key yet (a repeat racing
            // this one; checked again below).
            Some((round_key, state, read)) => {
                if self.store.record(scan_record).await?.is_some() {
                    None
                } else {
                    let changes = [
                        Change::Put(round_key, state),
                        Change::Put(scan_record, bytes.clone()),
                    ];
                    match self
                        .store
                        .write_if(round_key, read.as_deref(), &changes)
                        .await?
                    {
                        Some(ticket) => Some(ticket),
                        None => return Err(PatrolError::Contended("the tour's round")),
                    }
                }
            }
            None => self.store.put_new(scan_record, bytes).await?,
        };
        let Some(ticket) = ticket else {
            let first = self
                .store
                .record(scan_record)
                .await?
                .ok_or(PatrolError::Contended("the scan"))?;
            return Ok(ScanResult {
                scan: decode(&first)?,
                recorded: false,
            });
        };
        self.store.durable(ticket).await?;
        self.stats.scans.fetch_add(1, Ordering::Relaxed);
        if scan.far {
            self.stats.scans_far.fetch_add(1, Ordering::Relaxed);
        }
        Ok(ScanResult {
            scan,
            recorded: true,
        })
    }

    /// Scans of the org (supervisors, admins; a guard its own), newest first, optionally of
    /// one guard or one tour, at most `limit`.
    pub async fn scans(
        &self,
        who: &Identity,
        org: Option<&str>,
        user: Option<&str>,
        tour: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Scan>, PatrolError> {
        let org = self.org_for(who, org)?;
        let manager = who.is(Role::Admin) || who.is(Role::Supervisor);
        let user = match (manager, user) {
            (true, user) => user.map(str::to_string),
            (false, None) => Some(who.user.to_string()),
            (false, Some(u)) if u == &*who.user => Some(u.to_string()),
            (false, Some(_)) => return Err(PatrolError::Forbidden("another guard's scans")),
        };
        let mut all: Vec<Scan> = self
            .store
            .load_all(Records::Patrol {
                org: &org,
                kind: SCAN,
            })
            .await?;
        all.retain(|s| {
            user.as_deref().is_none_or(|u| s.user == u)
                && tour.is_none_or(|t| s.tour.as_deref() == Some(t))
        });
        all.sort_by_key(|s| std::cmp::Reverse(s.scanned_at));
        all.truncate(limit);
        Ok(all)
    }
}
