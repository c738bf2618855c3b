//! `[amqp]`: task events consumed from the site's RabbitMQ (AMQP 0-9-1), and the checks of each
//! `[[amqp.bindings]]` entry.
//!
//! Only the settings live here; the consumer is `amqp`'s job.

use serde::{Deserialize, Serialize};

use super::section::{config_section, ConfigError};

/// One binding: an exchange and a topic pattern, delivered on a channel of each event's org.
/// An entry of `amqp.bindings` (documented as part of that key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AmqpBinding {
    /// The (topic) exchange the events are published to.
    pub exchange: String,
    /// AMQP topic pattern, e.g. `task.event.*`.
    pub routing_key: String,
    /// The channel, with `{org}` for the event's organization, e.g. `/topic/org/{org}/tasks`.
    pub channel: String,
    /// The body's JSON field naming the organization, e.g. `organization_id`.
    pub org: String,
}

impl AmqpBinding {
    /// Whether every part is there, and the channel names the org.
    fn is_complete(&self) -> bool {
        self.channel.contains("{org}")
            && !self.exchange.is_empty()
            && !self.routing_key.is_empty()
            && !self.org.is_empty()
    }
}

config_section! {
    /// Task events consumed from RabbitMQ (AMQP 0-9-1).
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct AmqpSettings in "amqp.", cross_checks: problems {
        /// amqp:// or amqps:// URL of the site's RabbitMQ; set: task events are consumed
        ///
        /// Unset: no consumer. `amqps://` checks the broker's certificate against the system's
        /// roots or `SSL_CERT_FILE`. See docs/integrations.md.
        pub url: Option<String> = None,
            check: |url| url
                .as_deref()
                .is_some_and(|u| !(u.starts_with("amqp://") || u.starts_with("amqps://")))
                .then_some("an amqp:// or amqps:// URL");
        /// [[amqp.bindings]] entries: exchange, routing_key, channel (with {org}), org (the body's field)
        ///
        /// Each entry: `exchange` (a durable topic exchange, declared if missing),
        /// `routing_key` (an AMQP topic pattern), `channel` (where each event goes, with
        /// `{org}` taken from the body) and `org` (the body's field naming the organization).
        pub bindings: Vec<AmqpBinding> = Vec::new(),
            check: |bindings| bindings
                .iter()
                .filter(|b| !b.is_complete())
                .map(|_| "each binding needs exchange, routing_key, org and a channel with {org}")
                .collect::<Vec<_>>();
        /// the durable queues Lookout declares are <prefix>.<exchange>.<routing_key>
        ///
        /// Dead letters go to `<prefix>.dead-letter`.
        pub queue_prefix: String = "lookout".into();
        /// deliveries the broker hands over before they are acknowledged
        pub prefetch: u16 = 64, check: |n| (*n == 0).then_some("must be positive");
    }
}

impl AmqpSettings {
    /// A consumer needs something to consume.
    fn problems(&self, out: &mut Vec<ConfigError>) {
        if self.url.is_some() && self.bindings.is_empty() {
            out.push(ConfigError::Inconsistent {
                key: "amqp.bindings",
                message: "amqp.url is set but no [[amqp.bindings]] says what to consume".into(),
            });
        }
    }
}
