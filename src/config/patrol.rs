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
        /// how long scans are kept after they arrived
        ///
        /// Older scans (and the daily counts of the scan budget) are deleted; an org's are
        /// looked at when its guards scan, at most every tenth of this and at least hourly.
        #[serde(with = "humantime_serde")]
        pub scan_retention: Duration = Duration::from_secs(90 * 24 * 3600),
            check: |d| (*d < Duration::from_secs(1)).then_some("must be at least 1s");
        /// bytes one incident photo may have (JPEG, resized on the phone)
        ///
        /// A larger upload is refused `too_large` (413) naming this key while it is read: the
        /// server never holds more of it than this.
        pub max_photo_bytes: usize = 2 * 1024 * 1024,
            check: |n| (*n < 1024).then_some("must be at least 1024");
        /// photos one incident report may have
        ///
        /// A photo numbered above it is refused `too_large` (413) naming this key.
        pub max_photos_per_incident: usize = 8,
            check: |n| (*n == 0 || *n > 100).then_some("must be from 1 to 100");
        /// bytes of one incident report: its text and its photos
        ///
        /// A photo that would take the report over it is refused `too_large` (413) naming this
        /// key; the photos already sent stay.
        pub max_incident_bytes: usize = 8 * 1024 * 1024,
            check: |n| (*n < 4096).then_some("must be at least 4096");
        /// bytes of incident reports an org may keep (text, photos, comments)
        ///
        /// Counted exactly, across the nodes of a cluster, in one usage record per org; freed
        /// when a closed report is purged (`patrol.incident_retention`). A report or photo
        /// that would take the org over it is refused `rate_limited` (429) naming this key;
        /// other orgs are unaffected.
        pub max_incident_bytes_per_org: u64 = 2 * 1024 * 1024 * 1024,
            check: |n| (*n < 1024 * 1024).then_some("must be at least 1 MiB");
        /// incident reports one guard may file in a day (UTC)
        ///
        /// One more is refused `rate_limited` (429) naming this key; a resend of a report
        /// already filed (the same client key) is still answered.
        pub max_incidents_per_guard_per_day: usize = 50,
            check: |n| (*n == 0).then_some("must be at least 1");
        /// how long a closed incident report is kept, with its photos
        ///
        /// Purged by the retention task (every `retention.interval`) this long after it was
        /// closed; open reports are never purged.
        #[serde(with = "humantime_serde")]
        pub incident_retention: Duration = Duration::from_secs(365 * 24 * 3600),
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
        /// bytes of incident photos one shift report embeds
        ///
        /// The shift's incident photos are put in its PDF, oldest report first, until this
        /// much; the rest are listed by number and the PDF names this key.
        pub max_report_photo_bytes: usize = 64 * 1024 * 1024,
            check: |n| (*n < 1024 * 1024).then_some("must be at least 1 MiB");
    }
}
