//! `[metrics]`: who may scrape `/metrics`. Only the setting lives here; the endpoint is `api`'s.

use serde::{Deserialize, Serialize};

use super::section::config_section;

config_section! {
    /// `/metrics` settings. The metrics tell who is connected, how much and to what: never open
    /// to anyone on the LAN.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct MetricsSettings in "metrics." {
        /// bearer token a Prometheus scraper sends for /metrics (admins' and supervisors' tokens work too); at least 32 bytes
        ///
        /// Sent as `Authorization: Bearer …`. Unset: only admins' and supervisors' own tokens.
        pub token: Option<String> = None,
            check: |token| token
                .as_deref()
                .is_some_and(|t| t.len() < 32)
                .then_some("at least 32 bytes (it opens the metrics to whoever holds it)");
    }
}
