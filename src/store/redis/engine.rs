//! The engine's state ([`RedisStore`]) and its write path: every write goes through
//! [`RedisStore::commit`] (durable on Redis and, with `cluster.min_replicas`, on the replicas
//! before it is answered), appends through the append script.
//!
//! Opening is in `open.rs`, the store interface in `interface.rs`; both sit above this file.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use super::super::error::{Result, StoreError};
use super::super::interface::{Appended, Draft, Ticket};
use super::bus::{self, Bus};
use super::keys::{encode_message, engine, key, Heads, PAGE};
use super::link::{self, RedisLink};
use super::scripts::APPEND_SCRIPT;
use crate::counters::Latency;

/// The Redis engine.
pub struct RedisStore {
    pub(super) link: Arc<RedisLink>,
    /// What this node tells the others and hears from them.
    pub(super) bus: Arc<Bus>,
    pub(super) epoch: String,
    pub(super) min_replicas: u32,
    pub(super) wait_timeout: Duration,
    pub(super) heads: Arc<Heads>,
    pub(super) written: AtomicU64,
    pub(super) healthy: AtomicBool,
    pub(super) failed: CancellationToken,
    pub(super) latency: Latency,
}

impl RedisStore {
    pub(super) fn con(&self) -> ConnectionManager {
        self.link.con()
    }

    /// Sends a write and, with `cluster.min_replicas` > 0, a `WAIT` for the replicas behind it,
    /// in one request on one connection; answers the write's own replies (the `WAIT` taken off)
    /// and its ticket, once Redis has it durably and enough replicas do. The commit latency is
    /// the time since the write was sent.
    ///
    /// Never a `WAIT` of its own: the shared connection reconnects when any task sharing it sees
    /// it drop (Sentinel drops clients when it reconfigures a server), and a `WAIT` on the new
    /// connection, which has written nothing, answers at once with every replica — a false
    /// acknowledgement. In one pipeline both go on the same connection or both fail.
    ///
    /// `script`: the one the pipeline runs by hash; when the server does not know it (a
    /// promoted replica's script cache is empty), nothing of the pipeline was applied, so it is
    /// loaded and the pipeline sent once more.
    pub(super) async fn commit(
        &self,
        con: &mut ConnectionManager,
        pipe: redis::Pipeline,
        script: Option<&redis::Script>,
    ) -> Result<(Vec<redis::Value>, Ticket)> {
        let started = Instant::now();
        let (replies, reached) =
            link::send_behind_replicas(con, pipe, script, self.min_replicas, self.wait_timeout)
                .await
                .map_err(|e| self.unhealthy(e))?;
        if reached < self.min_replicas {
            self.healthy.store(false, Ordering::Release);
            return Err(StoreError::Engine(format!(
                "redis: the write reached {reached} replica(s) within {} ms, cluster.min_replicas is {}; not acknowledging",
                self.wait_timeout.as_millis(),
                self.min_replicas
            )));
        }
        self.latency.observe(started.elapsed());
        self.healthy.store(true, Ordering::Release);
        Ok((
            replies,
            Ticket(self.written.fetch_add(1, Ordering::AcqRel) + 1),
        ))
    }

    pub(super) fn unhealthy(&self, e: redis::RedisError) -> StoreError {
        self.healthy.store(false, Ordering::Release);
        engine(e)
    }

    /// The first of a pipeline's replies, as `T`.
    pub(super) fn reply<T: redis::FromRedisValue>(&self, replies: Vec<redis::Value>) -> Result<T> {
        let first = replies
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Engine("redis: a write without its reply".into()))?;
        redis::from_redis_value(first).map_err(|e| engine(e.into()))
    }

    pub(super) fn note_head(&self, channel: &str, seq: u64) {
        self.heads.note(channel, seq);
    }

    pub(super) async fn append_with(
        &self,
        channel: &str,
        draft: Draft,
        idempotency: &str,
    ) -> Result<Appended> {
        let mut con = self.con();
        // The body does not depend on the seq, so it is encoded before the seq is taken.
        let body = encode_message(draft.timestamp, &draft.data, draft.ack_required)?;
        // Without replicas to wait for, the script publishes the message itself: durable and
        // on its way to the other nodes in one step.
        let publish_in_script = self.min_replicas == 0;
        let mut invocation = APPEND_SCRIPT.prepare_invoke();
        invocation
            .key(key(&["head"]))
            .key(key(&["log", channel]))
            .key(key(&["ackreq", channel]))
            .key(key(&["keys", channel]))
            .key(bus::topic(channel))
            .arg(channel)
            .arg(&body)
            .arg(if draft.ack_required { "1" } else { "0" })
            .arg(idempotency)
            .arg(if publish_in_script { "1" } else { "0" });
        let mut pipe = redis::pipe();
        pipe.invoke_script(&invocation);
        let (replies, ticket) = self.commit(&mut con, pipe, Some(&APPEND_SCRIPT)).await?;
        let (new, seq): (u8, u64) = self.reply(replies)?;
        self.note_head(channel, seq);
        if new == 1 && !publish_in_script {
            // Only now that the replicas have it may another node deliver it. A node that dies
            // here leaves a gap the others fill from the log.
            // The message is durable whatever this answers: a lost publish is a gap the nodes
            // fill from the log, not a reason to refuse the acknowledgement.
            let published: redis::RedisResult<u64> = redis::cmd("PUBLISH")
                .arg(bus::topic(channel))
                .arg(bus::frame(b'L', seq, &body))
                .query_async(&mut con)
                .await;
            if let Err(e) = published {
                tracing::warn!(error = %e, seq, "publishing a durable message to the other nodes");
            }
        }
        Ok(if new == 1 {
            Appended::New(Arc::new(draft.with_seq(seq)), ticket)
        } else {
            Appended::Repeat(seq, ticket)
        })
    }

    pub(super) async fn head_of(&self, con: &mut ConnectionManager, channel: &str) -> Result<u64> {
        let head: Option<u64> = con.hget(key(&["head"]), channel).await.map_err(engine)?;
        Ok(head.unwrap_or(0))
    }

    pub(super) async fn channels(&self) -> Result<Vec<String>> {
        let mut con = self.con();
        let mut channels = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("HSCAN")
                .arg(key(&["head"]))
                .arg(cursor)
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut con)
                .await
                .map_err(engine)?;
            // HSCAN answers field, value, field, value… and may repeat a field.
            channels.extend(batch.into_iter().step_by(2));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        channels.sort();
        channels.dedup();
        Ok(channels)
    }
}
