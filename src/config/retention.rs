//! `[retention]`: how many messages, and for how long, each channel's log keeps.
//!
//! Only the rules and their checks live here; trimming the logs is the store's and the hub's
//! job, which read [`Retention::rule`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::section::{config_section, ConfigError};

/// Channel kind names as `retention.kinds` knows them (live-only kinds have no log).
pub const RETENTION_KINDS: [&str; 9] = [
    "location",
    "emergency",
    "alerts",
    "tasks",
    "room",
    "role",
    "queue",
    "job",
    "system",
];

const DAY: u64 = 24 * 3600;

config_section! {
    /// How many messages, and for how long, one channel's log keeps.
    ///
    /// Its keys are documented as those of `retention.default`, whose defaults they have; each
    /// entry of `retention.kinds` has the same two.
    #[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    pub struct RetentionRule in "retention.default." {
        /// newest messages kept per channel
        pub max_messages: usize = 10_000;
        /// messages older than this are trimmed
        #[serde(with = "humantime_serde")]
        pub max_age: Duration = Duration::from_secs(7 * DAY);
    }
}

/// The check of `retention.kinds`: every kind is one of [`RETENTION_KINDS`].
fn known_kinds(kinds: &BTreeMap<String, RetentionRule>) -> Vec<String> {
    kinds
        .keys()
        .filter(|kind| !RETENTION_KINDS.contains(&kind.as_str()))
        .map(|kind| {
            format!(
                "unknown channel kind `{kind}` (one of {})",
                RETENTION_KINDS.join(", ")
            )
        })
        .collect()
}

/// The default of `retention.kinds`: emergencies and alerts are kept longer.
fn default_kinds() -> BTreeMap<String, RetentionRule> {
    let alerts = RetentionRule {
        max_messages: 100_000,
        max_age: Duration::from_secs(30 * DAY),
    };
    [
        ("emergency".to_string(), alerts),
        ("alerts".to_string(), alerts),
    ]
    .into_iter()
    .collect()
}

config_section! {
    /// Retention of the channel logs, done in the background.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct Retention in "retention.", cross_checks: problems {
        /// how often channel logs are trimmed (in the background)
        #[serde(with = "humantime_serde")]
        pub interval: Duration = Duration::from_secs(60),
            check: |every| every.is_zero().then_some("must be greater than zero");
        /// The rule for every kind not listed in `kinds`.
        pub default: RetentionRule;
        /// per-kind rules {max_messages, max_age}: location, emergency, alerts, tasks, room, role, queue, job, system
        ///
        /// Each rule names both keys, e.g. `[retention.kinds.location]` with `max_messages =
        /// 50000` and `max_age = "30d"`. By default `emergency` and `alerts` keep 100,000
        /// messages for 30 days; every other kind follows `retention.default`. Live-only
        /// channels (video, org locations, presence) keep nothing.
        pub kinds: BTreeMap<String, RetentionRule> = default_kinds(), check: known_kinds;
    }
}

impl Retention {
    /// The rule for a kind name.
    pub fn rule(&self, kind: &str) -> RetentionRule {
        self.kinds.get(kind).copied().unwrap_or(self.default)
    }

    /// Every rule, `default`'s and each kind's, keeps something.
    fn problems(&self, out: &mut Vec<ConfigError>) {
        for rule in std::iter::once(&self.default).chain(self.kinds.values()) {
            if rule.max_messages == 0 || rule.max_age.is_zero() {
                out.push(ConfigError::Inconsistent {
                    key: "retention",
                    message: "max_messages and max_age must be greater than zero".into(),
                });
            }
        }
    }
}
