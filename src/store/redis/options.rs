//! Where the Redis engine connects and what it requires, from the configuration or a URL.

use std::time::Duration;

use super::link::{self, Endpoint};

/// Where the Redis engine connects and what it requires.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// The Redis, or the Sentinels that name it.
    pub endpoint: Endpoint,
    /// This node's name (`cluster.node_id`).
    pub node_id: String,
    /// Replicas a write must reach (`WAIT`) before it is acknowledged.
    pub min_replicas: u32,
    /// How long `WAIT` may take.
    pub wait_timeout: Duration,
}

impl RedisOptions {
    /// One Redis by URL, with the default durability settings (for tools and tests).
    pub fn url(url: &str) -> Self {
        let defaults = crate::config::ClusterSettings::default();
        RedisOptions {
            endpoint: Endpoint::Url(url.to_string()),
            node_id: defaults.node(),
            min_replicas: defaults.min_replicas,
            wait_timeout: defaults.wait_timeout,
        }
    }

    /// The options of a cluster configuration; `None` when it is not in cluster mode.
    pub fn from_settings(settings: &crate::config::ClusterSettings) -> Option<Self> {
        let endpoint = match (&settings.redis, &settings.master_name) {
            (Some(url), _) => Endpoint::Url(url.clone()),
            (None, Some(master)) if !settings.sentinels.is_empty() => Endpoint::Sentinels {
                sentinels: settings.sentinels.clone(),
                master: master.clone(),
                access: link::SentinelAccess {
                    tls: settings.sentinel_tls,
                    sentinel_password: settings.sentinel_password.clone(),
                    username: settings.username.clone(),
                    password: settings.password.clone(),
                },
            },
            _ => return None,
        };
        Some(RedisOptions {
            endpoint,
            node_id: settings.node(),
            min_replicas: settings.min_replicas,
            wait_timeout: settings.wait_timeout,
        })
    }
}
