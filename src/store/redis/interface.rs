//! The engine behind the store interface: `impl Store for RedisStore`, reads, acknowledgements,
//! cursors, the user directory, jobs, records and escalation timers, and the node's life in the
//! cluster (`start`).
//!
//! How a write is made durable is `engine.rs`'s; the scripts are in `scripts.rs`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use super::super::cluster::Cluster;
use super::super::error::{Result, StoreError};
use super::super::interface::{
    Appended, Background, Draft, Messages, Remembered, RetentionOf, Store, StoredMessage, Ticket,
};
use super::super::records::{Change, Record, Records, Timer};
use super::bus::{self, TICK};
use super::engine::RedisStore;
use super::keys::{
    decode_entry, engine, key, pair, parse_timer, record_slot, set_hash, timer_member, PAGE,
};
use super::scripts::{ADVANCE, CLAIM, RECLAIM, REMEMBER, WRITE_IF};
use crate::counters::Latency;

/// Ticks between heartbeats.
const HEARTBEAT_TICKS: u32 = 5;
/// How long a claimed escalation timer stays with the node that claimed it; if that node dies
/// before it fired, the timer is due again then.
const CLAIM_HOLD: Duration = Duration::from_secs(30);

type Entries = Vec<(String, (String, Vec<u8>))>;

#[async_trait::async_trait]
impl Store for RedisStore {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn failed(&self) -> &CancellationToken {
        // Redis failing over is not this process failing: writes error until it is back, and
        // nothing is acknowledged meanwhile. The token never fires.
        &self.failed
    }

    fn commit_latency(&self) -> &Latency {
        &self.latency
    }

    fn start(self: Arc<Self>) -> Background {
        // Writes are durable when they return; what runs here is the node's life in the
        // cluster: the pub/sub feed, the heartbeat, and following the primary.
        let stop = CancellationToken::new();
        let (done, finished) = tokio::sync::oneshot::channel();
        let feed = tokio::spawn(bus::run_feed(self.bus.clone(), stop.clone()));
        let token = stop.clone();
        tokio::spawn(async move {
            let mut ticks = 0u32;
            loop {
                if self.link.follows_sentinels() {
                    if let Err(e) = self.link.follow().await {
                        tracing::warn!(error = %e, "asking the Sentinels for the Redis primary");
                    }
                }
                if ticks.is_multiple_of(HEARTBEAT_TICKS) {
                    let beat = self.bus.heartbeat().await;
                    if let Err(e) = &beat {
                        tracing::warn!(error = %e, "the node's heartbeat in Redis");
                    }
                    self.healthy.store(beat.is_ok(), Ordering::Release);
                }
                ticks = ticks.wrapping_add(1);
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(TICK) => {}
                }
            }
            let _ = feed.await;
            if let Err(e) = self.bus.leave_cluster().await {
                tracing::warn!(error = %e, "leaving the cluster; this node's counts expire by themselves");
            }
            drop(self);
            let _ = done.send(());
        });
        Background::new(stop, finished)
    }

    fn cluster(&self) -> Option<&dyn Cluster> {
        Some(&*self.bus)
    }

    async fn fresh_head(&self, channel: &str) -> Result<u64> {
        let mut con = self.con();
        let head = self.head_of(&mut con, channel).await?;
        self.note_head(channel, head);
        Ok(head)
    }

    async fn claim_timer(&self, timer: &Timer) -> Result<bool> {
        let mut con = self.con();
        let script = redis::Script::new(CLAIM);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(key(&["timers"]))
            .key(key(&["claimed"]))
            .arg(timer_member(timer.due, timer.level, &timer.alert))
            .arg(CLAIM_HOLD.as_millis() as u64);
        let mut pipe = redis::pipe();
        pipe.invoke_script(&invocation);
        // The claim must outlive a failover, or two nodes could fire the timer.
        let (replies, _) = self.commit(&mut con, pipe, Some(&script)).await?;
        let claimed: u8 = self.reply(replies)?;
        Ok(claimed == 1)
    }

    async fn size(&self) -> u64 {
        let mut con = self.con();
        let info: String = match redis::cmd("INFO").arg("memory").query_async(&mut con).await {
            Ok(info) => info,
            Err(_) => return 0,
        };
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    fn head(&self, channel: &str) -> u64 {
        self.heads.get(channel)
    }

    async fn append(&self, channel: &str, draft: Draft) -> Result<(Arc<StoredMessage>, Ticket)> {
        match self.append_with(channel, draft, "").await? {
            Appended::New(message, ticket) => Ok((message, ticket)),
            Appended::Repeat(seq, _) => Err(StoreError::Engine(format!(
                "redis: an append without a key answered an existing seq {seq}"
            ))),
        }
    }

    async fn append_once(&self, channel: &str, draft: Draft, key: &str) -> Result<Appended> {
        self.append_with(channel, draft, key).await
    }

    async fn count_channels(&self, prefix: &str) -> Result<usize> {
        Ok(self
            .channels()
            .await?
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count())
    }

    async fn first_retained(&self, channel: &str) -> Result<Option<u64>> {
        let mut con = self.con();
        let entries: Entries = redis::cmd("XRANGE")
            .arg(key(&["log", channel]))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut con)
            .await
            .map_err(engine)?;
        match entries.first() {
            Some((id, (_, body))) => Ok(Some(decode_entry(id, body)?.seq)),
            None => Ok(None),
        }
    }

    async fn read(&self, channel: &str, after: u64, upto: u64, limit: usize) -> Result<Messages> {
        if upto <= after || limit == 0 {
            return Ok(Vec::new());
        }
        let mut con = self.con();
        let mut out = Vec::new();
        let mut from = after + 1;
        while out.len() < limit && from <= upto {
            let count = (limit - out.len()).min(PAGE);
            let entries: Entries = redis::cmd("XRANGE")
                .arg(key(&["log", channel]))
                .arg(format!("{from}-0"))
                .arg(format!("{upto}-1"))
                .arg("COUNT")
                .arg(count)
                .query_async(&mut con)
                .await
                .map_err(engine)?;
            let done = entries.len() < count;
            for (id, (_, body)) in &entries {
                let message = decode_entry(id, body)?;
                from = message.seq + 1;
                out.push(message);
            }
            if done {
                break;
            }
        }
        Ok(out)
    }

    async fn get(&self, channel: &str, seq: u64) -> Result<Option<Arc<StoredMessage>>> {
        Ok(self
            .read(channel, seq.saturating_sub(1), seq, 1)
            .await?
            .pop()
            .filter(|m| m.seq == seq))
    }

    async fn trim(&self, rule: RetentionOf) -> Result<u64> {
        let mut deleted = 0u64;
        for channel in self.channels().await? {
            let (keep, older_than) = rule(&channel);
            let mut con = self.con();
            let head = self.head_of(&mut con, &channel).await?;
            // Everything below `from` goes: by count, then by age from the oldest on.
            let mut from = (head + 1).saturating_sub(keep as u64).max(1);
            loop {
                let oldest = self.read(&channel, from - 1, head, PAGE).await?;
                let young = oldest.iter().position(|m| m.timestamp >= older_than);
                match young {
                    Some(i) => {
                        from = oldest[i].seq;
                        break;
                    }
                    None if oldest.len() == PAGE => from = oldest[PAGE - 1].seq + 1,
                    None => {
                        from = head + 1;
                        break;
                    }
                }
            }
            let stream = key(&["log", &channel]);
            let removed: u64 = redis::cmd("XTRIM")
                .arg(&stream)
                .arg("MINID")
                .arg(format!("{from}-0"))
                .query_async(&mut con)
                .await
                .map_err(engine)?;
            // The indexes are cleaned even when nothing was removed now: an earlier trim may
            // have stopped between the stream and them.
            deleted += removed;
            let _: u64 = con
                .zrembyscore(key(&["ackreq", &channel]), 0, (from - 1) as f64)
                .await
                .map_err(engine)?;
            let keys: HashMap<String, u64> = con
                .hgetall(key(&["keys", &channel]))
                .await
                .map_err(engine)?;
            let stale: Vec<&String> = keys
                .iter()
                .filter(|(_, s)| **s < from)
                .map(|(k, _)| k)
                .collect();
            if !stale.is_empty() {
                let _: u64 = con
                    .hdel(key(&["keys", &channel]), stale)
                    .await
                    .map_err(engine)?;
            }
        }
        Ok(deleted)
    }

    async fn unacknowledged(&self, user: &str, channel: &str, upto: u64) -> Result<Vec<u64>> {
        let mut con = self.con();
        let seqs: Vec<u64> = con
            .zrangebyscore(key(&["ackreq", channel]), 0, upto as f64)
            .await
            .map_err(engine)?;
        if seqs.is_empty() {
            return Ok(seqs);
        }
        let acked: Vec<bool> = redis::cmd("SMISMEMBER")
            .arg(key(&["acked", &pair(user, channel)]))
            .arg(&seqs)
            .query_async(&mut con)
            .await
            .map_err(engine)?;
        Ok(seqs
            .into_iter()
            .zip(acked)
            .filter(|(_, a)| !a)
            .map(|(s, _)| s)
            .collect())
    }

    async fn acknowledge(&self, user: &str, channel: &str, seq: u64) -> Result<Option<Ticket>> {
        let mut con = self.con();
        if seq == 0 || seq > self.head_of(&mut con, channel).await? {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        pipe.sadd(key(&["acked", &pair(user, channel)]), seq)
            .ignore();
        Ok(Some(self.commit(&mut con, pipe, None).await?.1))
    }

    async fn advance_cursor(&self, user: &str, channel: &str, seq: u64) -> Result<Option<Ticket>> {
        let mut con = self.con();
        if seq == 0 || seq > self.head_of(&mut con, channel).await? {
            return Ok(None);
        }
        let script = redis::Script::new(ADVANCE);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(key(&["cursor"]))
            .arg(pair(user, channel))
            .arg(seq);
        let mut pipe = redis::pipe();
        pipe.invoke_script(&invocation).ignore();
        Ok(Some(self.commit(&mut con, pipe, Some(&script)).await?.1))
    }

    async fn cursor(&self, user: &str, channel: &str) -> Result<u64> {
        let mut con = self.con();
        let cursor: Option<u64> = con
            .hget(key(&["cursor"]), pair(user, channel))
            .await
            .map_err(engine)?;
        Ok(cursor.unwrap_or(0))
    }

    async fn remember_user(&self, user: &str, org: &str, now: u64) -> Result<Remembered> {
        let mut con = self.con();
        let script = redis::Script::new(REMEMBER);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(key(&["users"]))
            .key(key(&["seen"]))
            .arg(user)
            .arg(org)
            .arg(now);
        let mut pipe = redis::pipe();
        pipe.invoke_script(&invocation);
        let (replies, _) = self.commit(&mut con, pipe, Some(&script)).await?;
        let known: String = self.reply(replies)?;
        if known.is_empty() {
            Ok(Remembered::Same)
        } else {
            Ok(Remembered::Conflict(Arc::from(known)))
        }
    }

    async fn user_org(&self, user: &str) -> Result<Option<Arc<str>>> {
        let mut con = self.con();
        let org: Option<String> = con.hget(key(&["users"]), user).await.map_err(engine)?;
        Ok(org.map(Arc::from))
    }

    async fn last_seen(&self, user: &str) -> Result<Option<u64>> {
        let mut con = self.con();
        con.hget(key(&["seen"]), user).await.map_err(engine)
    }

    async fn job_owner(&self, job: &str) -> Result<Option<Arc<str>>> {
        let mut con = self.con();
        let owner: Option<String> = con.hget(key(&["jobs"]), job).await.map_err(engine)?;
        Ok(owner.map(Arc::from))
    }

    async fn claim_job(&self, job: &str, owner: &str) -> Result<Arc<str>> {
        let mut con = self.con();
        let mut pipe = redis::pipe();
        pipe.hset_nx(key(&["jobs"]), job, owner);
        let (replies, _) = self.commit(&mut con, pipe, None).await?;
        let claimed: bool = self.reply(replies)?;
        if claimed {
            return Ok(Arc::from(owner));
        }
        let stored: Option<String> = con.hget(key(&["jobs"]), job).await.map_err(engine)?;
        Ok(Arc::from(stored.unwrap_or_else(|| owner.to_string())))
    }

    async fn record(&self, record: Record<'_>) -> Result<Option<Vec<u8>>> {
        let mut con = self.con();
        match record_slot(&record) {
            Some((hash, field)) => con.hget(hash, field).await.map_err(engine),
            None => match record {
                Record::Timer { due, alert, level } => {
                    let score: Option<f64> = con
                        .zscore(key(&["timers"]), timer_member(due, level, alert))
                        .await
                        .map_err(engine)?;
                    Ok(score.map(|_| Vec::new()))
                }
                _ => Ok(None),
            },
        }
    }

    async fn records(&self, set: Records<'_>) -> Result<Vec<Vec<u8>>> {
        let mut con = self.con();
        let all: HashMap<String, Vec<u8>> = con.hgetall(set_hash(&set)).await.map_err(engine)?;
        // In key order, as the other engines scan them.
        let mut all: Vec<(String, Vec<u8>)> = all.into_iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all.into_iter().map(|(_, v)| v).collect())
    }

    async fn write(&self, changes: &[Change<'_>]) -> Result<Ticket> {
        let mut con = self.con();
        let mut pipe = redis::pipe();
        pipe.cmd("MULTI").ignore();
        for op in redis_ops(changes) {
            match op {
                Op::HSet(hash, field, value) => pipe.hset(hash, field, value).ignore(),
                Op::HDel(hash, field) => pipe.hdel(hash, field).ignore(),
                Op::ZAdd(set, member, due) => pipe.zadd(set, member, due as f64).ignore(),
                Op::ZRem(set, member) => pipe.zrem(set, member).ignore(),
            };
        }
        // Not ignored: an error inside the transaction is in the EXEC reply.
        pipe.cmd("EXEC");
        Ok(self.commit(&mut con, pipe, None).await?.1)
    }

    async fn write_if(
        &self,
        guard: Record<'_>,
        expected: Option<&[u8]>,
        changes: &[Change<'_>],
    ) -> Result<Option<Ticket>> {
        let (hash, field) = record_slot(&guard)
            .ok_or_else(|| StoreError::Engine("a timer is not a record".into()))?;
        let script = redis::Script::new(WRITE_IF);
        let mut invocation = script.prepare_invoke();
        invocation.key(hash).arg(field);
        match expected {
            Some(value) => invocation.arg("1").arg(value),
            None => invocation.arg("0").arg(""),
        };
        for op in redis_ops(changes) {
            match op {
                Op::HSet(hash, field, value) => {
                    invocation.arg("hset").arg(hash).arg(field).arg(value)
                }
                Op::HDel(hash, field) => invocation.arg("hdel").arg(hash).arg(field),
                Op::ZAdd(set, member, due) => invocation.arg("zadd").arg(set).arg(member).arg(due),
                Op::ZRem(set, member) => invocation.arg("zrem").arg(set).arg(member),
            };
        }
        let mut con = self.con();
        let mut pipe = redis::pipe();
        pipe.invoke_script(&invocation);
        let (replies, ticket) = self.commit(&mut con, pipe, Some(&script)).await?;
        let written: u8 = self.reply(replies)?;
        Ok((written == 1).then_some(ticket))
    }

    async fn put_new(&self, record: Record<'_>, value: Vec<u8>) -> Result<Option<Ticket>> {
        let (hash, field) = record_slot(&record)
            .ok_or_else(|| StoreError::Engine("a timer is not a record".into()))?;
        let mut con = self.con();
        let mut pipe = redis::pipe();
        pipe.hset_nx(hash, field, value);
        let (replies, ticket) = self.commit(&mut con, pipe, None).await?;
        let created: bool = self.reply(replies)?;
        Ok(created.then_some(ticket))
    }

    async fn due_timers(&self, now: u64) -> Result<Vec<Timer>> {
        let mut con = self.con();
        let _: u64 = redis::Script::new(RECLAIM)
            .key(key(&["timers"]))
            .key(key(&["claimed"]))
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.unhealthy(e))?;
        let members: Vec<String> = con
            .zrangebyscore(key(&["timers"]), 0, now as f64)
            .await
            .map_err(engine)?;
        let mut timers: Vec<Timer> = members.iter().filter_map(|m| parse_timer(m)).collect();
        timers.sort();
        Ok(timers)
    }

    async fn next_timer(&self) -> Result<Option<u64>> {
        let mut con = self.con();
        let first: Vec<String> = con.zrange(key(&["timers"]), 0, 0).await.map_err(engine)?;
        Ok(first.first().and_then(|m| parse_timer(m)).map(|t| t.due))
    }

    fn is_durable(&self, ticket: Ticket) -> bool {
        // A ticket exists only once its write is durable.
        ticket.0 <= self.written.load(Ordering::Acquire)
    }

    async fn durable(&self, _ticket: Ticket) -> Result<()> {
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// One Redis command of a write.
enum Op<'a> {
    HSet(String, String, &'a [u8]),
    HDel(String, String),
    ZAdd(String, String, u64),
    ZRem(String, String),
}

/// The commands that apply `changes`: records are hash fields, timers members of the due-time
/// index (a deleted timer leaves the claims too).
fn redis_ops<'a>(changes: &'a [Change<'_>]) -> Vec<Op<'a>> {
    let mut ops = Vec::with_capacity(changes.len());
    for change in changes {
        let (record, value) = match change {
            Change::Put(record, value) => (record, Some(value.as_slice())),
            Change::Delete(record) => (record, None),
        };
        match (record_slot(record), value) {
            (Some((hash, field)), Some(v)) => ops.push(Op::HSet(hash, field, v)),
            (Some((hash, field)), None) => ops.push(Op::HDel(hash, field)),
            (None, value) => {
                if let Record::Timer { due, alert, level } = *record {
                    let member = timer_member(due, level, alert);
                    if value.is_some() {
                        ops.push(Op::ZAdd(key(&["timers"]), member, due));
                    } else {
                        ops.push(Op::ZRem(key(&["claimed"]), member.clone()));
                        ops.push(Op::ZRem(key(&["timers"]), member));
                    }
                }
            }
        }
    }
    ops
}
