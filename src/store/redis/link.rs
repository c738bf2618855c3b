//! The link to the shared Redis: one multiplexed connection (reconnecting by itself), to the
//! URL of `cluster.redis` or to whichever server the Sentinels of `cluster.sentinels` name as
//! the primary now. After a failover the Sentinels name another primary: [`RedisLink::follow`]
//! notices it and moves the link there, so writes error only while there is no primary and
//! nothing needs a restart.
//!
//! The link never retries a write by itself: a write that failed is reported as failed and
//! never acknowledged (it may still have been applied; the hub's gap filling delivers it then).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelServerType};

use super::super::error::{Result, StoreError};
use super::keys::engine;

/// Where the shared Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// One server, by URL.
    Url(String),
    /// The primary the Sentinels name.
    Sentinels {
        /// `host:port` of each Sentinel.
        sentinels: Vec<String>,
        /// The name they know it by.
        master: String,
        /// TLS and credentials, to the Sentinels and to the servers they name.
        access: SentinelAccess,
    },
}

/// How to reach the Sentinels and the servers they name (`cluster.sentinel_tls`,
/// `cluster.sentinel_password`, `cluster.username`, `cluster.password`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SentinelAccess {
    /// TLS to both.
    pub tls: bool,
    /// The Sentinels' own password.
    pub sentinel_password: Option<String>,
    /// The ACL user on the servers they name.
    pub username: Option<String>,
    /// The password on the servers they name.
    pub password: Option<String>,
}

// Never print a password.
impl std::fmt::Debug for SentinelAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelAccess")
            .field("tls", &self.tls)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl SentinelAccess {
    /// The connection to one Sentinel at `host:port`.
    fn sentinel(&self, addr: &str) -> Result<redis::ConnectionInfo> {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let mut info =
            redis::IntoConnectionInfo::into_connection_info(format!("{scheme}://{addr}"))
                .map_err(engine)?;
        if let Some(password) = &self.sentinel_password {
            let redis = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(redis);
        }
        Ok(info)
    }

    /// How to log in to the servers the Sentinels name.
    fn node(&self) -> redis::sentinel::SentinelNodeConnectionInfo {
        let mut redis = redis::RedisConnectionInfo::default();
        if let Some(user) = &self.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        let node =
            redis::sentinel::SentinelNodeConnectionInfo::default().set_redis_connection_info(redis);
        if self.tls {
            node.set_tls_mode(redis::TlsMode::Secure)
        } else {
            node
        }
    }
}

struct Current {
    /// The primary's address, as the Sentinels gave it (or the URL).
    addr: String,
    client: redis::Client,
    con: ConnectionManager,
}

/// The connection to the shared Redis, following its primary.
pub struct RedisLink {
    endpoint: Endpoint,
    response_timeout: Duration,
    current: ArcSwap<Current>,
    sentinel: Option<tokio::sync::Mutex<SentinelClient>>,
}

impl RedisLink {
    /// Connects; with Sentinels, to the primary they name now.
    pub async fn open(endpoint: &Endpoint, response_timeout: Duration) -> Result<RedisLink> {
        let sentinel = match endpoint {
            Endpoint::Url(_) => None,
            Endpoint::Sentinels {
                sentinels,
                master,
                access,
            } => {
                let infos = sentinels
                    .iter()
                    .map(|s| access.sentinel(s))
                    .collect::<Result<Vec<_>>>()?;
                Some(tokio::sync::Mutex::new(
                    SentinelClient::build(
                        infos,
                        master.clone(),
                        Some(access.node()),
                        SentinelServerType::Master,
                    )
                    .map_err(engine)?,
                ))
            }
        };
        let client = match (endpoint, &sentinel) {
            (Endpoint::Url(url), _) => redis::Client::open(url.as_str()).map_err(engine)?,
            (_, Some(sentinel)) => sentinel
                .lock()
                .await
                .async_get_client()
                .await
                .map_err(engine)?,
            (_, None) => return Err(StoreError::Engine("redis: no endpoint".into())),
        };
        let current = Self::connect(client, response_timeout).await?;
        Ok(RedisLink {
            endpoint: endpoint.clone(),
            response_timeout,
            current: ArcSwap::from_pointee(current),
            sentinel,
        })
    }

    async fn connect(client: redis::Client, response_timeout: Duration) -> Result<Current> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(response_timeout))
            .set_number_of_retries(2);
        let con = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(engine)?;
        Ok(Current {
            addr: client.get_connection_info().addr().to_string(),
            client,
            con,
        })
    }

    /// The connection to the primary as known now (cheap: a clone of a handle).
    pub fn con(&self) -> ConnectionManager {
        self.current.load().con.clone()
    }

    /// A client for the primary as known now, for connections of their own (pub/sub).
    pub fn client(&self) -> redis::Client {
        self.current.load().client.clone()
    }

    /// Where the link goes now.
    pub fn addr(&self) -> String {
        self.current.load().addr.clone()
    }

    /// Whether the link follows Sentinels.
    pub fn follows_sentinels(&self) -> bool {
        matches!(self.endpoint, Endpoint::Sentinels { .. })
    }

    /// Asks the Sentinels for the primary and moves the link there when it changed. `true`
    /// when it moved.
    pub async fn follow(&self) -> Result<bool> {
        let Some(sentinel) = &self.sentinel else {
            return Ok(false);
        };
        let client = sentinel
            .lock()
            .await
            .async_get_client()
            .await
            .map_err(engine)?;
        let addr = client.get_connection_info().addr().to_string();
        if addr == self.current.load().addr {
            return Ok(false);
        }
        let current = Self::connect(client, self.response_timeout).await?;
        tracing::warn!(primary = %addr, "the Sentinels name another Redis primary: following it");
        self.current.store(Arc::new(current));
        Ok(true)
    }
}

/// Sends `pipe` with, when `min_replicas` > 0, a `WAIT min_replicas wait_timeout` behind it in
/// the same request, so both run on one connection; answers the pipeline's own replies and how
/// many replicas the `WAIT` counted (`u32::MAX` when none was asked for). `script`: the one the
/// pipeline runs by hash; when the server does not know it (a promoted replica's script cache
/// is empty), nothing of the pipeline was applied, so it is loaded and the pipeline sent again.
pub(super) async fn send_behind_replicas(
    con: &mut ConnectionManager,
    mut pipe: redis::Pipeline,
    script: Option<&redis::Script>,
    min_replicas: u32,
    wait_timeout: Duration,
) -> redis::RedisResult<(Vec<redis::Value>, u32)> {
    if min_replicas > 0 {
        pipe.cmd("WAIT")
            .arg(min_replicas)
            .arg(wait_timeout.as_millis() as u64);
    }
    let mut answer: redis::RedisResult<Vec<redis::Value>> = pipe.query_async(con).await;
    if let (Err(e), Some(script)) = (&answer, script) {
        if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) {
            script.load_async(con).await?;
            answer = pipe.query_async(con).await;
        }
    }
    let mut replies = answer?;
    if min_replicas == 0 {
        return Ok((replies, u32::MAX));
    }
    let reached = replies
        .pop()
        .map(redis::from_redis_value)
        .transpose()?
        .unwrap_or(0);
    Ok((replies, reached))
}
