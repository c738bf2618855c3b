//! Opening the engine: checking a Redis for `check-config`, connecting and checking that it is
//! durable, taking (or creating) the epoch and the heads, and importing a moved appliance's
//! items.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use super::super::error::{Result, StoreError};
use super::super::interface::{Item, OpenReport};
use super::bus::Bus;
use super::engine::RedisStore;
use super::keys::{encode_message, engine, key, pair, record_slot, timer_member, Heads, PAGE};
use super::link::RedisLink;
use super::options::RedisOptions;
use crate::counters::Latency;

impl RedisStore {
    /// What `check-config` reports of the Redis in `options`, without touching its state:
    /// `Err` when a node could not run on it (unreachable, not durable, too few replicas for
    /// `cluster.min_replicas`), else what was found.
    pub async fn check(options: &RedisOptions) -> Result<String> {
        let link = RedisLink::open(&options.endpoint, Duration::from_secs(5)).await?;
        let mut con = link.con();
        check_durability(&mut con).await?;
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut con)
            .await
            .map_err(engine)?;
        let replicas: u32 = info
            .lines()
            .find_map(|l| l.strip_prefix("connected_slaves:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if replicas < options.min_replicas {
            return Err(StoreError::Engine(format!(
                "redis has {replicas} connected replica(s) and cluster.min_replicas is {}: every write would fail. \
                 Add replicas, or lower cluster.min_replicas (0 acknowledges on the primary's fsync alone)",
                options.min_replicas
            )));
        }
        let via = if link.follows_sentinels() {
            format!("primary {} (named by the Sentinels), ", link.addr())
        } else {
            String::new()
        };
        Ok(format!(
            "{via}appendonly yes, appendfsync always, {replicas} connected replica(s) (cluster.min_replicas {})",
            options.min_replicas
        ))
    }

    /// Connects, checks that Redis is durable (`appendonly yes`, `appendfsync always`), and
    /// takes (or creates) the store's epoch and the channels' heads.
    pub async fn open(options: &RedisOptions) -> Result<(Self, OpenReport)> {
        Self::open_with(options, None).await
    }

    /// Like [`RedisStore::open`] on a Redis that must hold no Lookout store yet, which gets
    /// `epoch` (a moved appliance's, so its clients' seqs stay valid).
    pub async fn create(options: &RedisOptions, epoch: &str) -> Result<Self> {
        Ok(Self::open_with(options, Some(epoch)).await?.0)
    }

    async fn open_with(options: &RedisOptions, epoch: Option<&str>) -> Result<(Self, OpenReport)> {
        let must_create = epoch.is_some();
        let link = RedisLink::open(
            &options.endpoint,
            options.wait_timeout + Duration::from_secs(5),
        )
        .await?;
        let mut con = link.con();
        check_durability(&mut con).await?;
        let fresh = epoch
            .map(str::to_string)
            .unwrap_or_else(|| hex::encode(rand::random::<[u8; 8]>()));
        let epoch_key = key(&["epoch"]);
        let created: bool = redis::cmd("SET")
            .arg(&epoch_key)
            .arg(&fresh)
            .arg("NX")
            .query_async::<Option<String>>(&mut con)
            .await
            .map_err(engine)?
            .is_some();
        let epoch: String = con.get(&epoch_key).await.map_err(engine)?;
        if must_create && !created {
            return Err(StoreError::Engine(format!(
                "redis already holds a Lookout store (epoch {epoch}): moving an appliance needs an empty one"
            )));
        }
        let heads: HashMap<String, u64> = con.hgetall(key(&["head"])).await.map_err(engine)?;
        // A store written before principals keeps users' channels under their ids alone; read
        // as it is, they would be out of every user's reach (and nothing would say so).
        if let Some(old) = heads
            .keys()
            .find(|c| crate::store::principals::is_old_channel(c))
        {
            return Err(StoreError::Engine(format!(
                "this Redis holds a Lookout store written before principals (org, user) \
                 (channel {old}); this version cannot move it in place: restore the appliance's \
                 data directory, start it once with this version (it moves its sled store), and \
                 migrate that into an empty Redis with `lookout migrate`"
            )));
        }
        let mut messages = 0u64;
        if !heads.is_empty() {
            let mut pipe = redis::pipe();
            for channel in heads.keys() {
                pipe.cmd("XLEN").arg(key(&["log", channel]));
            }
            let lens: Vec<u64> = pipe.query_async(&mut con).await.map_err(engine)?;
            messages = lens.iter().sum();
        }
        let report = OpenReport {
            epoch: epoch.clone(),
            created,
            channels: heads.len(),
            messages,
        };
        let link = Arc::new(link);
        let heads = Heads::new(heads);
        let bus = Arc::new(Bus::new(
            link.clone(),
            heads.clone(),
            &options.node_id,
            options.min_replicas,
            options.wait_timeout,
        ));
        Ok((
            RedisStore {
                link,
                bus,
                epoch,
                min_replicas: options.min_replicas,
                wait_timeout: options.wait_timeout,
                heads,
                written: AtomicU64::new(0),
                healthy: AtomicBool::new(true),
                failed: CancellationToken::new(),
                latency: Latency::default(),
            },
            report,
        ))
    }

    /// Writes moved `items` (see [`Item`]) as they were, seqs included; channels come first.
    /// Returns how many were written.
    pub async fn import(&self, items: &[Item]) -> Result<u64> {
        let mut con = self.con();
        let mut written = 0u64;
        for chunk in items.chunks(PAGE) {
            let mut pipe = redis::pipe();
            // MULTI by hand, not `atomic()`: the WAIT `commit` adds must follow the EXEC.
            pipe.cmd("MULTI").ignore();
            for item in chunk {
                match item {
                    Item::Channel { name, head } => {
                        pipe.hset(key(&["head"]), name, *head).ignore();
                        self.note_head(name, *head);
                    }
                    Item::Message { channel, message } => {
                        pipe.cmd("XADD")
                            .arg(key(&["log", channel]))
                            .arg(format!("{}-1", message.seq))
                            .arg("m")
                            .arg(encode_message(
                                message.timestamp,
                                &message.data,
                                message.ack_required,
                            )?)
                            .ignore();
                        if message.ack_required {
                            pipe.zadd(key(&["ackreq", channel]), message.seq, message.seq as f64)
                                .ignore();
                        }
                    }
                    Item::Key {
                        channel,
                        key: k,
                        seq,
                    } => {
                        pipe.hset(key(&["keys", channel]), k, *seq).ignore();
                    }
                    Item::Acked { user, channel, seq } => {
                        pipe.sadd(key(&["acked", &pair(user, channel)]), *seq)
                            .ignore();
                    }
                    Item::Cursor { user, channel, seq } => {
                        pipe.hset(key(&["cursor"]), pair(user, channel), *seq)
                            .ignore();
                    }
                    Item::User { user, org, seen } => {
                        pipe.hset(key(&["users"]), user, org).ignore();
                        pipe.hset(key(&["seen"]), user, *seen).ignore();
                    }
                    Item::Job { job, owner } => {
                        pipe.hset(key(&["jobs"]), job, owner).ignore();
                    }
                    Item::Record(record, bytes) => {
                        if let Some((hash, field)) = record_slot(&record.as_record()) {
                            pipe.hset(hash, field, bytes.as_slice()).ignore();
                        }
                    }
                    Item::Timer(t) => {
                        pipe.zadd(
                            key(&["timers"]),
                            timer_member(t.due, t.level, &t.alert),
                            t.due as f64,
                        )
                        .ignore();
                    }
                }
            }
            // Not ignored: an error inside the transaction is in the EXEC reply.
            pipe.cmd("EXEC");
            self.commit(&mut con, pipe, None).await?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }
}

/// Redis must fsync every write before answering it, or an acknowledged message could be lost
/// with the Redis process.
async fn check_durability(con: &mut ConnectionManager) -> Result<()> {
    let get = |name: &'static str| {
        let mut con = con.clone();
        async move {
            let pair: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async(&mut con)
                .await
                .map_err(engine)?;
            Ok::<String, StoreError>(pair.get(1).cloned().unwrap_or_default())
        }
    };
    let appendonly = get("appendonly").await?;
    let appendfsync = get("appendfsync").await?;
    if appendonly != "yes" || appendfsync != "always" {
        return Err(StoreError::Engine(format!(
            "redis runs with appendonly {appendonly:?} and appendfsync {appendfsync:?}: an acknowledged message could be lost with it. \
             Set `appendonly yes` and `appendfsync always` in redis.conf (or CONFIG SET both, then CONFIG REWRITE)"
        )));
    }
    Ok(())
}
