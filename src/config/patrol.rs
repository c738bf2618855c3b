//! `[patrol]`: guard tours, checkpoints and scans — the budgets an org's clients can make the
//! server hold. Only the settings live here; what they govern is `patrol`'s.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::section::config_section;

config_section! {
    /// Patrol settings.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct PatrolSettings in "patrol." {
        /// checkpoints an org may have
        ///
        /// Creating one more is refused `rate_limited` (429) naming this key; the org's other
        /// operations and other orgs are unaffected.
        pub max_checkpoints_per_org: usize = 2000,
            check: |n| (*n == 0).then_some("must be at least 1");
        /// tours an org may have
        ///
        /// Creating one more is refused `rate_limited` (429) naming this key.
        pub max_tours_per_org: usize = 200,
            check: |n| (*n == 0).then_some("must be at least 1");
        /// checkpoints one tour may list
        ///
        /// A tour listing more is refused `bad_request`.
        pub max_checkpoints_per_tour: usize = 200,
            check: |n| (*n == 0).then_some("must be at least 1");
        /// scans one guard may record in a day (UTC)
        ///
        /// One more is refused `rate_limited` (429) naming this key; a repeat of a scan already
        /// recorded (the same client key) is still answered.
        pub max_scans_per_guard_per_day: usize = 2000,
            check: |n| (*n == 0).then_some("must be at least 1");
        /// how old a scan's time may be when it arrives (a phone's offline queue)
        ///
        /// An older scan is refused `bad_request`; the phone drops it from its queue.
        #[serde(with = "humantime_serde")]
        pub max_scan_age: Duration = Duration::from_secs(24 * 3600),
            check: |d| d.is_zero().then_some("must be more than 0");
        /// events one shift report holds (fixes, scans, rounds, alerts, check-ins)
        ///
        /// A longer shift's report is cut, not refused, and says so: the scans, rounds, alerts
        /// and check-ins come first, the track's fixes fill what is left (in time order, so
        /// the track then ends early); its PDF and CSV name this key.
        pub max_report_events: usize = 20_000,
            check: |n| (*n < 100).then_some("must be at least 100");
        /// track points the shift report's PDF draws (evenly thinned)
        ///
        /// Every fix is still a row of the CSV; the drawing keeps every n-th to stay light.
        pub max_report_track_points: usize = 2000,
            check: |n| (*n < 2).then_some("must be at least 2");
    }
}
