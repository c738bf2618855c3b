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
    }
}
