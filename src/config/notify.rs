//! `[notify]`: alert notifications out, to webhooks fed from a durable outbox, and the checks
//! of each `[[notify.webhooks]]` entry.
//!
//! Only the settings live here; the outbox and the deliveries are `notify`'s job.

use serde::{Deserialize, Serialize};

use super::section::config_section;

/// The alert events a webhook can ask for.
pub const ALERT_EVENTS: [&str; 4] = [
    "alert.created",
    "alert.escalated",
    "alert.acknowledged",
    "alert.resolved",
];

/// One webhook: an entry of `notify.webhooks` (documented as part of that key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// `https://` (or `http://` on the LAN) URL the events are POSTed to.
    pub url: String,
    /// Any of `alert.created`, `alert.escalated`, `alert.acknowledged`, `alert.resolved`.
    pub events: Vec<String>,
    /// Only alerts at this escalation level or above.
    #[serde(default)]
    pub min_level: Option<u8>,
    /// The HMAC-SHA256 key of `X-Lookout-Signature`.
    pub secret: String,
}

impl Webhook {
    /// What is wrong with this webhook, each a problem of `notify.webhooks`.
    fn problems(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            out.push("a webhook url is https:// (or http:// on the LAN)");
        }
        if self.events.is_empty()
            || self
                .events
                .iter()
                .any(|e| !ALERT_EVENTS.contains(&e.as_str()))
        {
            out.push(
                "events: one or more of alert.created, alert.escalated, alert.acknowledged, alert.resolved",
            );
        }
        if self.secret.len() < 16 {
            out.push("a webhook secret must be at least 16 bytes");
        }
        if self.min_level.is_some_and(|l| !(1..=3).contains(&l)) {
            out.push("min_level is 1, 2 or 3");
        }
        out
    }
}

config_section! {
    /// Alert notifications out: webhooks fed from a durable outbox.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct NotifySettings in "notify." {
        /// [[notify.webhooks]] entries: url, events, min_level, secret
        ///
        /// Each entry: `url` (`https://`, or `http://` on the LAN), `events` (any of
        /// `alert.created`, `alert.escalated`, `alert.acknowledged`, `alert.resolved`),
        /// `min_level` (optional, 1 to 3) and `secret` (16 bytes or more, the key of the
        /// `X-Lookout-Signature` HMAC). See docs/integrations.md.
        pub webhooks: Vec<Webhook> = Vec::new(),
            check: |hooks| hooks.iter().flat_map(Webhook::problems).collect::<Vec<_>>();
        /// most notifications of one org waiting for their webhooks; beyond it the org's new ones are dropped and counted
        ///
        /// All webhooks together. Beyond it the org's new notifications are dropped (counted,
        /// logged), never the alert change itself, and never another org's.
        pub max_outbox: usize = 10_000, check: |max| (*max == 0).then_some("must be positive");
    }
}
