//! Tracking statistics: points, distance, and time inside and outside fences per guard, from
//! the location history.

use serde::Serialize;

use super::error::FieldError;
use super::location::Location;
use super::service::Field;
use crate::auth::Identity;

/// Points one user's tracking statistics take into account; a longer range is cut here (the
/// statistics say how many points they cover).
const MAX_TRACKED_POINTS: usize = 100_000;

/// A guard's tracking statistics over a time window.
#[derive(Debug, Clone, Serialize)]
pub struct TrackingStats {
    /// The guard.
    pub user: String,
    /// Location updates in the window.
    pub points: usize,
    /// Distance covered, metres (great-circle between consecutive points).
    pub distance_m: f64,
    /// Time spent inside at least one of the guard's fences, ms (each point's state lasting
    /// until the next point).
    pub inside_ms: u64,
    /// Time spent outside all of them, ms.
    pub outside_ms: u64,
    /// When Lookout last received a location, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<u64>,
    /// Battery at the last location, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub battery: Option<f64>,
}

impl Field {
    /// Tracking statistics for `user` (or every guard of the caller's org with a known
    /// location) between `from` and `to` (client time, ms).
    pub async fn tracking_stats(
        &self,
        who: &Identity,
        user: Option<&str>,
        from: u64,
        to: u64,
    ) -> Result<Vec<TrackingStats>, FieldError> {
        // Each user with the identity that reads its history: an admin acts in the user's org.
        let users: Vec<(Identity, String)> = match user {
            Some(u) => vec![(who.clone(), u.to_string())],
            None => self
                .locations(who)
                .await?
                .into_iter()
                .map(|l| (who.acting_in(&l.org), l.user))
                .collect(),
        };
        let mut out = Vec::with_capacity(users.len());
        for (who, user) in users {
            let who = &who;
            let points: Vec<Location> = self
                .location_history(who, &user, from, to, MAX_TRACKED_POINTS)
                .await?
                .into_iter()
                .map(|(_, l)| l)
                .collect();
            let last = match &who.org {
                Some(org) => self.last_location(org, &user).await?,
                None => None,
            };
            let org = last.as_ref().map(|l| l.org.clone());
            let index = match &org {
                Some(org) => Some(self.fence_index(org).await?),
                None => None,
            };
            let mut stats = TrackingStats {
                user: user.clone(),
                points: points.len(),
                distance_m: 0.0,
                inside_ms: 0,
                outside_ms: 0,
                last_seen: last.as_ref().map(|l| l.received_at),
                battery: last.as_ref().and_then(|l| l.location.battery),
            };
            for pair in points.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                stats.distance_m += crate::geofence::distance_m([a.lon, a.lat], [b.lon, b.lat]);
                let span = b.ts.saturating_sub(a.ts);
                let inside = index.as_ref().is_some_and(|index| {
                    index
                        .classify(a.lon, a.lat)
                        .into_iter()
                        .any(|(fence, inside)| {
                            inside && fence.guards.as_ref().is_none_or(|g| g.contains(&user))
                        })
                });
                if inside {
                    stats.inside_ms += span;
                } else {
                    stats.outside_ms += span;
                }
            }
            out.push(stats);
        }
        Ok(out)
    }
}
