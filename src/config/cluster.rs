//! `[cluster]`: cluster mode, where every node keeps its durable state in one shared Redis
//! (named by URL, or by Sentinels), and the checks that a combination of them can work.
//!
//! Only the settings live here; connecting to the Redis is the store's job
//! (`store::RedisOptions::from_settings`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::section::{config_section, ConfigError};

/// The check of `cluster.sentinels`: each entry is `host:port`.
fn host_ports(sentinels: &[String]) -> Vec<&'static str> {
    sentinels
        .iter()
        .filter(|s| {
            let port = s
                .rsplit_once(':')
                .and_then(|(h, p)| (!h.is_empty()).then_some(p));
            port.and_then(|p| p.parse::<u16>().ok()).is_none()
        })
        .map(|_| "each entry is host:port")
        .collect()
}

config_section! {
    /// Cluster mode: with `redis` (or `sentinels` and `master_name`) set, all durable state is in
    /// that Redis (shared by every node) and no sled store is opened.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct ClusterSettings in "cluster.", cross_checks: problems {
        /// redis://, rediss:// or redis+unix:// URL of the Redis all nodes share; set: no sled store
        ///
        /// `rediss://` is TLS, its certificate checked against the system's roots or the bundle
        /// `SSL_CERT_FILE` names; `redis+unix://` a socket on the same host. See
        /// docs/cluster.md.
        pub redis: Option<String> = None,
            check: |url| url
                .as_deref()
                .is_some_and(|url| {
                    !["redis://", "rediss://", "redis+unix://"]
                        .iter()
                        .any(|scheme| url.starts_with(scheme))
                })
                .then_some("a redis://, rediss:// or redis+unix:// URL");
        /// host:port of each Redis Sentinel of the shared Redis (instead of cluster.redis)
        pub sentinels: Vec<String> = Vec::new(), check: |sentinels| host_ports(sentinels);
        /// the name the Sentinels know the shared Redis by (with cluster.sentinels)
        pub master_name: Option<String> = None;
        /// with cluster.sentinels: TLS to the Sentinels and to the Redis they name
        ///
        /// Their certificates are checked against the system's roots, or the bundle
        /// `SSL_CERT_FILE` names.
        pub sentinel_tls: bool = false;
        /// with cluster.sentinels: the Sentinels' own password
        ///
        /// Their `requirepass`.
        pub sentinel_password: Option<String> = None;
        /// with cluster.sentinels: the ACL user on the Redis they name (with cluster.redis: in the URL)
        ///
        /// Lookout logs in with it and `password` on the Redis the Sentinels name; with
        /// `redis`, the URL carries both.
        pub username: Option<String> = None;
        /// with cluster.sentinels: the password on the Redis they name (with cluster.redis: in the URL)
        ///
        /// See `username`.
        pub password: Option<String> = None;
        /// this node's name in logs, metrics and the Redis; default the host name
        pub node_id: Option<String> = None,
            check: |id| id
                .as_deref()
                .is_some_and(|n| {
                    n.is_empty()
                        || n.len() > 64
                        || !n
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                })
                .then_some("1 to 64 letters, digits, '-', '_' or '.'");
        /// replicas a write must reach (WAIT) before it is acknowledged
        ///
        /// 0 for a Redis without replicas. With more, each write waits for Redis `WAIT`; a
        /// write short of replicas is an error to the publisher, never an acknowledgement.
        pub min_replicas: u32 = 1;
        /// how long a write may wait for cluster.min_replicas
        ///
        /// Beyond it the write is an error, never an acknowledgement.
        #[serde(with = "humantime_serde")]
        pub wait_timeout: Duration = Duration::from_secs(1),
            check: |wait| wait.is_zero().then_some("must be above zero");
    }
}

impl ClusterSettings {
    /// Whether this node runs in cluster mode (its state in a shared Redis).
    pub fn enabled(&self) -> bool {
        self.redis.is_some() || !self.sentinels.is_empty()
    }

    /// `node_id`, or the host name.
    pub fn node(&self) -> String {
        self.node_id
            .clone()
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned())
    }

    /// A Redis by URL or by Sentinels, and the keys that only Sentinels use.
    fn problems(&self, out: &mut Vec<ConfigError>) {
        let mut bad = |key: &'static str, message: &str| {
            out.push(ConfigError::Inconsistent {
                key,
                message: message.to_string(),
            })
        };
        let sentinels = !self.sentinels.is_empty();
        if self.redis.is_some() && sentinels {
            bad(
                "cluster.sentinels",
                "either cluster.redis or cluster.sentinels, not both",
            );
        }
        if sentinels && self.master_name.is_none() {
            bad(
                "cluster.master_name",
                "needed with cluster.sentinels: the name the Sentinels know the Redis by",
            );
        }
        if self.master_name.is_some() && !sentinels {
            bad("cluster.master_name", "only with cluster.sentinels");
        }
        let sentinel_only = [
            ("cluster.sentinel_tls", self.sentinel_tls),
            (
                "cluster.sentinel_password",
                self.sentinel_password.is_some(),
            ),
            ("cluster.username", self.username.is_some()),
            ("cluster.password", self.password.is_some()),
        ];
        for (key, set) in sentinel_only {
            if set && !sentinels {
                bad(
                    key,
                    "only with cluster.sentinels (with cluster.redis, the URL carries TLS and credentials)",
                );
            }
        }
    }
}
