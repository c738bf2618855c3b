//! The end of a round's window: `TOUR_MISSED` for the checkpoints left unscanned, and the next
//! round armed — in one write, guarded by the round as read, so that it happens once across
//! nodes and restarts (the timer is claimed like an escalation; a refire finds the alert by its
//! derived id and the round already moved on).

use std::sync::atomic::Ordering;

use super::error::PatrolError;
use super::records::{Checkpoint, Tour, TourState, CHECKPOINT, ROUND, TOUR};
use super::schedule;
use super::service::{Patrols, WRITE_ATTEMPTS};
use super::tours::timer_id;
use crate::alerts::{AlertType, NewAlert, TimerHandler, PATROL_TIMERS};
use crate::clock::now_millis;
use crate::store::{Change, Record};

/// Rounds whose window ended longer ago than this are not raised after an outage (one raise
/// for the round that was due, then the schedule resumes from here).
const CATCH_UP_MS: u64 = 24 * 3600 * 1000;

/// The alert id of a round's `TOUR_MISSED`: the same for every firing of the same round.
pub(super) fn alert_id(org: &str, tour: &str, window_end: u64) -> String {
    crate::field::derived_id(&["tour", org, tour, &window_end.to_string()])
}

impl Patrols {
    async fn fire_window(&self, due: u64, level: u8, id: &str) -> Result<(), PatrolError> {
        let timer = Record::Timer {
            due,
            alert: id,
            level,
        };
        let Some((org, tour_id)) = id
            .strip_prefix(PATROL_TIMERS)
            .and_then(|k| k.split_once('/'))
        else {
            return Ok(self.store.commit(&[Change::Delete(timer)]).await?);
        };
        let _turn = self.turns.take(&timer_id(org, tour_id)).await;
        for _ in 0..WRITE_ATTEMPTS {
            if self.try_fire(due, level, org, tour_id).await? {
                self.alerts.timers_changed();
                return Ok(());
            }
        }
        Err(PatrolError::Contended("the tour's round"))
    }

    /// One attempt: `false` when another node changed the round meanwhile.
    async fn try_fire(
        &self,
        due: u64,
        level: u8,
        org: &str,
        tour_id: &str,
    ) -> Result<bool, PatrolError> {
        let id = timer_id(org, tour_id);
        let timer = Record::Timer {
            due,
            alert: &id,
            level,
        };
        let round_key = Record::Patrol {
            org,
            kind: ROUND,
            id: tour_id,
        };
        let tour: Option<Tour> = self.load(org, TOUR, tour_id).await?;
        let (state, read) = self.read_round(org, tour_id).await?;
        let (Some(tour), Some(state)) = (tour, state.filter(|s| s.window_end == due)) else {
            // The tour is gone, or its round moved on (a stale timer): only the timer goes.
            self.store.commit(&[Change::Delete(timer)]).await?;
            return Ok(true);
        };
        let now = now_millis();
        let Some(next) = schedule::round_after(
            &tour.schedule,
            self.minute_ms,
            due.max(now.saturating_sub(CATCH_UP_MS)),
        ) else {
            self.store.commit(&[Change::Delete(timer)]).await?;
            return Ok(true);
        };
        let next_state = TourState {
            round_start: next.start,
            window_end: next.end,
            scanned: Default::default(),
        };
        let changes = vec![
            Change::Delete(timer),
            Change::Put(
                Record::Timer {
                    due: next.end,
                    alert: &id,
                    level: 0,
                },
                Vec::new(),
            ),
            Change::put(round_key, &next_state)?,
        ];
        let missed: Vec<&String> = tour
            .checkpoints
            .iter()
            .filter(|c| !state.scanned.contains_key(*c))
            .collect();
        if missed.is_empty() {
            return Ok(
                match self
                    .store
                    .write_if(round_key, read.as_deref(), &changes)
                    .await?
                {
                    Some(ticket) => {
                        self.store.durable(ticket).await?;
                        true
                    }
                    None => false,
                },
            );
        }
        let checkpoints: Vec<Checkpoint> = self.load_all(org, CHECKPOINT).await?;
        let names: Vec<String> = missed
            .iter()
            .map(|id| {
                checkpoints
                    .iter()
                    .find(|c| &&c.id == id)
                    .map_or_else(|| (*id).clone(), |c| c.name.clone())
            })
            .collect();
        let message = format!(
            "Tour {}: round of {} UTC missed {} of {} checkpoints: {}",
            tour.name,
            schedule::hh_mm(state.round_start, self.minute_ms),
            missed.len(),
            tour.checkpoints.len(),
            names.join(", ")
        );
        let new = NewAlert {
            org: org.to_string(),
            user: tour.guards.first().cloned().unwrap_or_default(),
            kind: AlertType::TourMissed,
            priority: AlertType::TourMissed.default_priority(),
            message: Some(message),
            position: None,
            fence: None,
            site: tour.site.clone(),
            by: "lookout".into(),
        };
        let raised = self
            .alerts
            .create_with_id_if(
                alert_id(org, tour_id, due),
                new,
                changes,
                round_key,
                read.as_deref(),
            )
            .await?;
        if raised.is_some() {
            self.stats.missed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(raised.is_some())
    }
}

#[async_trait::async_trait]
impl TimerHandler for Patrols {
    async fn fire(&self, due: u64, level: u8, id: &str) {
        if let Err(e) = self.fire_window(due, level, id).await {
            tracing::error!(timer = %id, error = %e, "a tour's window timer failed");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rounds_alert_id_is_stable_and_its_own() {
        assert_eq!(alert_id("a", "t", 5), alert_id("a", "t", 5));
        assert_ne!(alert_id("a", "t", 5), alert_id("a", "t", 6));
        assert_ne!(alert_id("a", "t1", 5), alert_id("a", "t", 15));
        assert_eq!(
            schedule::hh_mm(22 * 3_600_000 + 5 * 60_000, schedule::MINUTE),
            "22:05"
        );
    }
}
