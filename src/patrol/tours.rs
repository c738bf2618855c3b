//! Tours: checkpoints to scan on a schedule, assigned to guards; making, changing and removing
//! one arms or disarms its window timer in the same write.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::error::{bad, PatrolError};
use super::records::{Checkpoint, Tour, TourSpec, TourState, CHECKPOINT, ROUND, TOUR};
use super::schedule;
use super::service::{new_id, valid_text, Patrols, WRITE_ATTEMPTS};
use crate::alerts::PATROL_TIMERS;
use crate::auth::{Identity, Role};
use crate::clock::now_millis;
use crate::store::{Change, Record};

/// The id of a tour's window timer in the alerts' due-time index.
pub(super) fn timer_id(org: &str, tour: &str) -> String {
    format!("{PATROL_TIMERS}{org}/{tour}")
}

/// One of a guard's tours as the guard app shows it: the round open or next, each checkpoint
/// with whether it was scanned in that round, and the one to scan next.
#[derive(Debug, Clone, Serialize)]
pub struct CurrentTour {
    /// The tour.
    pub tour: Tour,
    /// Its round open or next.
    pub round: TourState,
    /// Whether that round is open now (else it is the next one).
    pub open: bool,
    /// The tour's checkpoints, in its order.
    pub stops: Vec<TourStop>,
    /// The checkpoint to scan next: the first unscanned one (in order for an ordered tour).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A checkpoint of a tour, for the guard.
#[derive(Debug, Clone, Serialize)]
pub struct TourStop {
    /// Checkpoint id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// What the guard does there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Scanned in the round.
    pub scanned: bool,
}

/// The tour `spec` describes (checked), with its id, org and creation time.
fn built(id: String, org: String, created_at: u64, spec: TourSpec) -> Tour {
    Tour {
        id,
        org,
        name: spec.name.trim().to_string(),
        site: spec.site,
        checkpoints: spec.checkpoints,
        ordered: spec.ordered,
        schedule: spec.schedule,
        guards: spec.guards,
        created_at,
    }
}

impl Patrols {
    /// The org's tours (the org's users; an admin names the org).
    pub async fn tours(&self, who: &Identity, org: Option<&str>) -> Result<Vec<Tour>, PatrolError> {
        let org = self.org_for(who, org)?;
        let mut all: Vec<Tour> = self.load_all(&org, TOUR).await?;
        all.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    /// A tour's current round (the one open or next, and what was scanned in it).
    pub async fn tour_round(
        &self,
        who: &Identity,
        org: Option<&str>,
        id: &str,
    ) -> Result<TourState, PatrolError> {
        let org = self.org_for(who, org)?;
        self.existing(&org, ROUND, id, "tour").await
    }

    /// The tours a guard is assigned to, each with its round open or next and what is left
    /// to scan in it (the guard app's tour card).
    pub async fn current_tours(&self, who: &Identity) -> Result<Vec<CurrentTour>, PatrolError> {
        let Some(org) = who.org.as_deref().filter(|_| who.is(Role::Guard)) else {
            return Err(PatrolError::Forbidden("only a guard of an org has tours"));
        };
        let mut tours: Vec<Tour> = self.load_all(org, TOUR).await?;
        tours.retain(|t| t.guards.iter().any(|g| *g == *who.user));
        tours.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        if tours.is_empty() {
            return Ok(Vec::new());
        }
        let checkpoints: HashMap<String, Checkpoint> = self
            .load_all::<Checkpoint>(org, CHECKPOINT)
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let now = now_millis();
        let mut current = Vec::with_capacity(tours.len());
        for tour in tours {
            // A tour whose round is gone (deleted while listed) is left out.
            let Some(round) = self.load::<TourState>(org, ROUND, &tour.id).await? else {
                continue;
            };
            let stops: Vec<TourStop> = tour
                .checkpoints
                .iter()
                .filter_map(|id| checkpoints.get(id))
                .map(|c| TourStop {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    lat: c.lat,
                    lon: c.lon,
                    instructions: c.instructions.clone(),
                    scanned: round.scanned.contains_key(&c.id),
                })
                .collect();
            let next = stops.iter().find(|s| !s.scanned).map(|s| s.id.clone());
            current.push(CurrentTour {
                open: round.round_start <= now,
                tour,
                round,
                stops,
                next,
            });
        }
        Ok(current)
    }

    async fn checked_tour(&self, org: &str, spec: &TourSpec) -> Result<(), PatrolError> {
        if !valid_text(&spec.name, 100) {
            return bad("`name` must be 1–100 characters");
        }
        schedule::check(&spec.schedule)?;
        if spec.checkpoints.is_empty() {
            return bad("`checkpoints` must list at least one checkpoint");
        }
        if spec.checkpoints.len() > self.config.max_checkpoints_per_tour {
            return bad(format!(
                "`checkpoints` lists more than {} (patrol.max_checkpoints_per_tour)",
                self.config.max_checkpoints_per_tour
            ));
        }
        let distinct: HashSet<&String> = spec.checkpoints.iter().collect();
        if distinct.len() != spec.checkpoints.len() {
            return bad("`checkpoints` lists a checkpoint twice");
        }
        if spec.guards.is_empty() || spec.guards.iter().any(|g| !valid_text(g, 200)) {
            return bad("`guards` must name at least one guard");
        }
        if spec.guards.len() > 100 {
            return bad("`guards` must name at most 100 guards");
        }
        let known: HashSet<String> = self
            .load_all::<Checkpoint>(org, CHECKPOINT)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        if let Some(unknown) = spec.checkpoints.iter().find(|c| !known.contains(*c)) {
            return bad(format!("no checkpoint {unknown}"));
        }
        Ok(())
    }

    /// Creates a tour (supervisors, admins), within `patrol.max_tours_per_org`, and arms its
    /// first round's window timer.
    pub async fn create_tour(
        &self,
        who: &Identity,
        org: Option<&str>,
        spec: TourSpec,
    ) -> Result<Tour, PatrolError> {
        let org = self.managed_org(who, org)?;
        self.checked_tour(&org, &spec).await?;
        let _turn = self
            .creation_turn(
                &org,
                TOUR,
                self.config.max_tours_per_org,
                "tours per org",
                "patrol.max_tours_per_org",
            )
            .await?;
        let tour = built(new_id(), org, now_millis(), spec);
        self.save_tour(&tour).await?;
        self.stats
            .tours_created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(tour)
    }

    /// Replaces a tour; its round is recomputed (scans of the same round are kept).
    pub async fn replace_tour(
        &self,
        who: &Identity,
        org: Option<&str>,
        id: &str,
        spec: TourSpec,
    ) -> Result<Tour, PatrolError> {
        let org = self.managed_org(who, org)?;
        self.checked_tour(&org, &spec).await?;
        let _turn = self.turns.take(&timer_id(&org, id)).await;
        let old: Tour = self.existing(&org, TOUR, id, "tour").await?;
        let tour = built(old.id, org.clone(), old.created_at, spec);
        self.save_tour(&tour).await?;
        Ok(tour)
    }

    /// Deletes a tour with its round and its timer.
    pub async fn delete_tour(
        &self,
        who: &Identity,
        org: Option<&str>,
        id: &str,
    ) -> Result<(), PatrolError> {
        let org = self.managed_org(who, org)?;
        let timer = timer_id(&org, id);
        let _turn = self.turns.take(&timer).await;
        self.existing::<Tour>(&org, TOUR, id, "tour").await?;
        for _ in 0..WRITE_ATTEMPTS {
            let (state, read) = self.read_round(&org, id).await?;
            let mut changes = vec![
                Change::Delete(Record::Patrol {
                    org: &org,
                    kind: TOUR,
                    id,
                }),
                Change::Delete(Record::Patrol {
                    org: &org,
                    kind: ROUND,
                    id,
                }),
            ];
            if let Some(state) = &state {
                changes.push(Change::Delete(Record::Timer {
                    due: state.window_end,
                    alert: &timer,
                    level: 0,
                }));
            }
            if self.write_over_round(&org, id, read, &changes).await? {
                return Ok(());
            }
        }
        Err(PatrolError::Contended("the tour's round"))
    }

    /// Writes `tour` with its current round (keeping the kept round's scans when it is the
    /// same round) and that round's timer, in one write over the round as read; the old round's
    /// timer goes in the same write.
    async fn save_tour(&self, tour: &Tour) -> Result<(), PatrolError> {
        for _ in 0..WRITE_ATTEMPTS {
            let (old, read) = self.read_round(&tour.org, &tour.id).await?;
            if self.try_save_tour(tour, old, read).await? {
                self.alerts.timers_changed();
                return Ok(());
            }
        }
        Err(PatrolError::Contended("the tour's round"))
    }

    /// One attempt of [`Patrols::save_tour`]: `false` when the round changed since `read`.
    async fn try_save_tour(
        &self,
        tour: &Tour,
        old: Option<TourState>,
        read: Option<Vec<u8>>,
    ) -> Result<bool, PatrolError> {
        let now = now_millis();
        let Some(round) = schedule::round_after(&tour.schedule, self.minute_ms, now) else {
            return bad("the schedule has no round");
        };
        let mut state = TourState {
            round_start: round.start,
            window_end: round.end,
            scanned: Default::default(),
        };
        if let Some(old) = &old {
            if old.round_start == round.start {
                state.scanned = old
                    .scanned
                    .iter()
                    .filter(|(cp, _)| tour.checkpoints.contains(cp))
                    .map(|(cp, scan)| (cp.clone(), scan.clone()))
                    .collect();
            }
        }
        let timer = timer_id(&tour.org, &tour.id);
        let mut changes = vec![
            Change::put(
                Record::Patrol {
                    org: &tour.org,
                    kind: TOUR,
                    id: &tour.id,
                },
                tour,
            )?,
            Change::put(
                Record::Patrol {
                    org: &tour.org,
                    kind: ROUND,
                    id: &tour.id,
                },
                &state,
            )?,
        ];
        if let Some(old) = &old {
            if old.window_end != state.window_end {
                changes.push(Change::Delete(Record::Timer {
                    due: old.window_end,
                    alert: &timer,
                    level: 0,
                }));
            }
        }
        changes.push(Change::Put(
            Record::Timer {
                due: state.window_end,
                alert: &timer,
                level: 0,
            },
            Vec::new(),
        ));
        self.write_over_round(&tour.org, &tour.id, read, &changes)
            .await
    }
}
