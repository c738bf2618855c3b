//! `[alerts]`: when an unacknowledged alert escalates. Only the settings live here; the
//! escalation timers are `alerts`'s.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::section::{config_section, ConfigError};

config_section! {
    /// Alert escalation settings.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct AlertSettings in "alerts.", cross_checks: problems {
        /// escalate an unacknowledged alert to level 2 after this long
        ///
        /// Timers are stored with their due time: after a restart each fires once, at once if
        /// overdue.
        #[serde(with = "humantime_serde")]
        pub level2_after: Duration = Duration::from_secs(300);
        /// escalate to level 3 (admins and a /topic/system notice) after this long
        #[serde(with = "humantime_serde")]
        pub level3_after: Duration = Duration::from_secs(900);
    }
}

impl AlertSettings {
    /// Level 2 comes first, level 3 after it.
    fn problems(&self, out: &mut Vec<ConfigError>) {
        if self.level2_after.is_zero() || self.level3_after <= self.level2_after {
            out.push(ConfigError::Inconsistent {
                key: "alerts.level3_after",
                message: "escalation intervals must be positive and level 3 after level 2".into(),
            });
        }
    }
}
