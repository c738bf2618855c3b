//! A guard's patrols over a span of time, for the shift report: the scans, and each round of
//! the guard's tours that ended in the span with what was scanned in it and what was missed.
//!
//! Past rounds are not kept (a tour keeps only its current round), so they are derived: the
//! schedule gives the rounds, and each scan that counted for a round names its tour and the
//! round's start. A round whose window ended with checkpoints unscanned is the one the window
//! timer raised `TOUR_MISSED` for, and [`RoundOutcome::alert`] is that alert's derived id.

use std::collections::BTreeSet;

use super::error::PatrolError;
use super::records::{Checkpoint, Scan, Tour, CHECKPOINT, SCAN, TOUR};
use super::schedule::round_after;
use super::service::Patrols;
use crate::auth::{Identity, Role};
use crate::clock::now_millis;

/// A round of one of the guard's tours, as it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundOutcome {
    /// The tour.
    pub tour: String,
    /// Its name.
    pub tour_name: String,
    /// The round's start, ms.
    pub start: u64,
    /// Its window's end, ms.
    pub end: u64,
    /// The next round's start, ms (a scan of a missed checkpoint before it is late).
    pub next_start: u64,
    /// Checkpoint ids scanned in it.
    pub scanned: Vec<String>,
    /// Checkpoint ids left unscanned.
    pub missed: Vec<String>,
    /// The id the round's `TOUR_MISSED` has (or would have, had the server been up).
    pub alert: Option<String>,
}

/// A guard's patrols in a span of time.
#[derive(Debug, Clone, Default)]
pub struct PatrolHistory {
    /// The org's checkpoints (to name and place them).
    pub checkpoints: Vec<Checkpoint>,
    /// The guard's scans read in the span, oldest first.
    pub scans: Vec<Scan>,
    /// Keys of the scans read after their round's window ended, before the next round, of a
    /// checkpoint that round missed.
    pub late: BTreeSet<String>,
    /// Rounds of the guard's tours that started in the span and whose window has ended,
    /// oldest first.
    pub rounds: Vec<RoundOutcome>,
    /// Whether more than the limit of scans or rounds was found (the rest left out).
    pub truncated: bool,
}

impl Patrols {
    /// What `user` of `org` scanned and missed from `from` to `to` (ms), at most `limit` scans
    /// and `limit` rounds. Supervisors and admins of the org, and the guard itself.
    pub async fn history(
        &self,
        who: &Identity,
        org: &str,
        user: &str,
        (from, to): (u64, u64),
        limit: usize,
    ) -> Result<PatrolHistory, PatrolError> {
        let manager = who.is(Role::Admin) || (who.is(Role::Supervisor) && who.in_org(org));
        let own = who.in_org(org) && *who.user == *user;
        if !(manager || own) {
            return Err(PatrolError::Forbidden("another guard's patrols"));
        }
        let checkpoints: Vec<Checkpoint> = self.load_all(org, CHECKPOINT).await?;
        let mut scans: Vec<Scan> = self.load_all(org, SCAN).await?;
        scans.retain(|s| s.user == user && (from..to).contains(&s.scanned_at));
        scans.sort_by_key(|s| s.scanned_at);
        let mut truncated = scans.len() > limit;
        scans.truncate(limit);
        let tours: Vec<Tour> = self.load_all(org, TOUR).await?;
        let mut rounds = Vec::new();
        let ended_by = to.min(now_millis());
        for tour in tours.iter().filter(|t| t.guards.iter().any(|g| g == user)) {
            truncated |= self.rounds_of(org, tour, &scans, (from, ended_by), limit, &mut rounds);
        }
        rounds.sort_by_key(|r| (r.start, r.tour.clone()));
        truncated |= rounds.len() > limit;
        rounds.truncate(limit);
        let late = late_scans(&scans, &rounds);
        Ok(PatrolHistory {
            checkpoints,
            scans,
            late,
            rounds,
            truncated,
        })
    }

    /// Appends the rounds of `tour` that started at or after `from` (and after the tour was
    /// made) and ended by `ended_by`; `true` when it stopped at `limit`.
    fn rounds_of(
        &self,
        org: &str,
        tour: &Tour,
        scans: &[Scan],
        (from, ended_by): (u64, u64),
        limit: usize,
        out: &mut Vec<RoundOutcome>,
    ) -> bool {
        let every = u64::from(tour.schedule.every_minutes) * self.minute_ms.max(1);
        let mut at = from.max(tour.created_at);
        let mut found = 0;
        while let Some(round) = round_after(&tour.schedule, self.minute_ms, at) {
            if round.end > ended_by {
                return false;
            }
            at = round.end;
            if round.start < from.max(tour.created_at) {
                continue;
            }
            if found == limit {
                return true;
            }
            found += 1;
            let scanned: BTreeSet<&str> = scans
                .iter()
                .filter(|s| {
                    // A late arrival names its round but came after the round was settled.
                    s.tour.as_deref() == Some(tour.id.as_str())
                        && s.round_start == Some(round.start)
                        && !s.late_arrival
                })
                .map(|s| s.checkpoint.as_str())
                .collect();
            let (done, missed): (Vec<String>, Vec<String>) = tour
                .checkpoints
                .iter()
                .cloned()
                .partition(|c| scanned.contains(c.as_str()));
            out.push(RoundOutcome {
                tour: tour.id.clone(),
                tour_name: tour.name.clone(),
                start: round.start,
                end: round.end,
                next_start: round.start + every,
                alert: (!missed.is_empty())
                    .then(|| super::timers::alert_id(org, &tour.id, round.end)),
                scanned: done,
                missed,
            });
        }
        false
    }
}

/// Scans (by key) that came late: those made in a round's window that arrived after the round
/// was settled (`late_arrival`), and those of a checkpoint a round missed, read after that
/// round's window and before the next round started, counted for no round (the guard came,
/// late).
fn late_scans(scans: &[Scan], rounds: &[RoundOutcome]) -> BTreeSet<String> {
    scans
        .iter()
        .filter(|s| {
            s.late_arrival
                || s.tour.is_none()
                    && rounds.iter().any(|r| {
                        r.missed.contains(&s.checkpoint)
                            && (r.end..r.next_start).contains(&s.scanned_at)
                    })
        })
        .map(|s| s.key.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(key: &str, checkpoint: &str, at: u64, tour: Option<&str>) -> Scan {
        Scan {
            key: key.into(),
            org: "acme".into(),
            user: "g1".into(),
            checkpoint: checkpoint.into(),
            tour: tour.map(str::to_string),
            round_start: tour.map(|_| 100),
            scanned_at: at,
            received_at: at,
            lat: None,
            lon: None,
            accuracy: None,
            distance_m: None,
            far: false,
            out_of_order: false,
            late_arrival: false,
            via: "qr".into(),
        }
    }

    #[test]
    fn a_scan_of_a_missed_checkpoint_after_the_window_and_before_the_next_round_is_late() {
        let round = RoundOutcome {
            tour: "t".into(),
            tour_name: "Night".into(),
            start: 100,
            end: 200,
            next_start: 400,
            scanned: vec!["gate".into()],
            missed: vec!["yard".into()],
            alert: Some("a".into()),
        };
        // Made in the round's window offline, arrived after the round was settled.
        let mut arrived_late = scan("arrived-late", "yard", 180, Some("t"));
        arrived_late.late_arrival = true;
        let scans = [
            scan("in-round", "gate", 150, Some("t")),
            scan("late", "yard", 250, None),
            scan("other-checkpoint", "gate", 250, None),
            scan("next-round", "yard", 450, None),
            arrived_late,
        ];
        let late = late_scans(&scans, &[round]);
        assert_eq!(
            late.into_iter().collect::<Vec<_>>(),
            vec!["arrived-late".to_string(), "late".to_string()]
        );
    }
}
