//! `[testing]`: what only test rigs turn on, never a site, and the warnings `check-config`
//! prints when one is on. Nothing a site needs may live here.

use serde::{Deserialize, Serialize};

use super::section::config_section;

config_section! {
    /// Settings for test rigs, never for a site.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct TestingSettings in "testing." {
        /// serve /echo, an unauthenticated echo WebSocket for conformance suites; never on a site
        ///
        /// A WebSocket that echoes every message (up to 16 MiB), for conformance suites such as
        /// Autobahn; `check-config` warns when it is on.
        pub echo_endpoint: bool = false;
        /// obey the FAULT-flush / FAULT-write trigger files of the data directory, for store-fault tests; never on a site
        ///
        /// The files `FAULT-flush` and `FAULT-write` in the data directory make every later
        /// flush or write fail; `check-config` warns when it is on.
        pub store_faults: bool = false;
        /// how long a minute of a patrol tour's schedule lasts, for tour tests; never on a site
        ///
        /// Tours' schedules (`start`, `every_minutes`, `window_minutes`) and the day their rounds
        /// repeat in count minutes of this length, so a test runs a round in seconds;
        /// `check-config` warns when it is not 1m.
        #[serde(with = "humantime_serde")]
        pub patrol_minute: std::time::Duration = std::time::Duration::from_secs(60),
            check: |d| (d.as_millis() < 10).then_some("must be at least 10ms");
    }
}

impl TestingSettings {
    /// What is on and should not be on a site, each naming its key.
    pub(super) fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.store_faults {
            out.push(
                "testing.store_faults: a file in the data directory can make the store fail; for fault tests only"
                    .into(),
            );
        }
        if self.patrol_minute != std::time::Duration::from_secs(60) {
            out.push(
                "testing.patrol_minute: tours' schedules run on a shortened clock; for tour tests only"
                    .into(),
            );
        }
        if self.echo_endpoint {
            out.push(
                "testing.echo_endpoint: /echo echoes anything to anyone, without a token; for conformance tests only"
                    .to_string(),
            );
        }
        out
    }
}
