//! `[field]`: field operations, the bounds on guards' locations, geofences and sign-in
//! sessions. Only the settings live here; what they govern is `field`'s and `auth`'s.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::section::config_section;

config_section! {
    /// Field operations settings.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct FieldSettings in "field." {
        /// how far in the future a location's ts may be
        ///
        /// A fix dated further ahead is refused `bad_request` and not stored.
        #[serde(with = "humantime_serde")]
        pub max_clock_skew: Duration = Duration::from_secs(120);
        /// vertices a polygon geofence may have
        pub max_fence_vertices: usize = 1000,
            check: |n| (*n < 3).then_some("must be at least 3");
        /// how long a guard's session from a sign-in link lasts (a shift)
        ///
        /// From 1m to 7d. When it ends the guard app asks for a new link.
        #[serde(with = "humantime_serde")]
        pub guard_session: Duration = Duration::from_secs(12 * 3600),
            check: |shift| {
                (*shift < Duration::from_secs(60) || *shift > Duration::from_secs(7 * 24 * 3600))
                    .then_some("must be between 1m and 7d")
            };
        /// the shortest welfare check-in interval an org or a guard may set
        ///
        /// Check-ins (`PUT /api/v1/welfare/settings`) take an interval from this to 24h. Lower it
        /// only to try check-ins out.
        #[serde(with = "humantime_serde")]
        pub check_in_min_interval: Duration = Duration::from_secs(300),
            check: |d| {
                (d.is_zero() || *d > Duration::from_secs(24 * 3600))
                    .then_some("must be between 1ms and 24h")
            };
        /// guards per org whose welfare state (check-ins, lone work, duress PIN) is kept
        ///
        /// A guard past it is refused `over_budget` when it starts lone work or sets a PIN, and
        /// is not armed by a shift.
        pub max_welfare_guards_per_org: usize = 10_000,
            check: |n| (*n == 0).then_some("must be at least 1");
        /// how long a guard on shift may have no connection and no position before LOST_CONTACT
        ///
        /// The alert carries the last known position; it resolves itself when the phone comes
        /// back.
        #[serde(with = "humantime_serde")]
        pub lost_contact_after: Duration = Duration::from_secs(300),
            check: |d| d.is_zero().then_some("must be more than 0");
    }
}
