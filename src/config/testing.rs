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
        if self.echo_endpoint {
            out.push(
                "testing.echo_endpoint: /echo echoes anything to anyone, without a token; for conformance tests only"
                    .to_string(),
            );
        }
        out
    }
}
