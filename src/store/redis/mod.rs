//! An engine on Redis, for cluster mode: the durable state lives in a Redis that every node
//! shares (Debian's `redis-server` 7, made durable by `appendonly yes` + `appendfsync always`,
//! which [`RedisStore::open`] checks and refuses to run without).
//!
//! Layout, every key under `lookout:`:
//! - `epoch`: the store's id; `head`: a hash of channel → last seq given;
//! - `log:{channel}`: a Stream whose entry ids are `{seq}-1`, one field `m` (the message as
//!   MessagePack); `ackreq:{channel}`: a sorted set of its `ack_required` seqs;
//!   `keys:{channel}`: a hash of idempotency key → seq;
//! - `acked:{user}\0{channel}`: a set of acknowledged seqs; `cursor`: a hash of
//!   `{user}\0{channel}` → seq;
//! - `users` / `seen`: user → org / last seen; `jobs`: job → owner;
//! - `rec:{kind}`: one hash per record kind (`rec:fence:{org}` per org); `timers`: a sorted set
//!   scored by due time.
//!
//! An append is one server-side script that takes the channel's next seq and appends to its
//! stream (and, with a key, records the idempotency key) atomically, the pattern Centrifugo's
//! Redis engine uses. Redis answers a write only after its fsync (`appendfsync always`), so a
//! ticket is durable when the write returns; with `cluster.min_replicas` > 0 a `WAIT` on the
//! same connection must also report that many replicas, otherwise the write is an error and is
//! never acknowledged.
//!
//! Several nodes run on one Redis side by side ([`bus`]): each append is also published on
//! the channel's pub/sub channel (`live:{channel}`) once it is durable (in the append script
//! itself when no replica is awaited, else after `WAIT`), live-only messages go through
//! pub/sub alone with a cluster-wide seq (`lseq`), each node counts its connections in
//! `conns:{instance}` while it is alive in `nodes`, and an escalation timer is claimed
//! (`claimed`) by the one node that fires it. [`link`] follows the primary the Sentinels name.

mod bus;
mod keys;
pub mod link;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use self::bus::{Bus, TICK};
use self::keys::{decode_entry, encode_message, engine, key, pair, Heads, PAGE};
pub use self::link::Endpoint;
use self::link::Link;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use super::cluster::Cluster;
use super::error::{Result, StoreError};
use super::interface::{
    Appended, Background, Draft, Item, Messages, OpenReport, Remembered, RetentionRule, Store,
    StoredMessage, Ticket,
};
use super::records::{Change, Record, Records, Timer};
use crate::counters::Latency;

/// Ticks between heartbeats.
const HEARTBEAT_TICKS: u32 = 5;
/// How long a claimed escalation timer stays with the node that claimed it; if that node dies
/// before it fired, the timer is due again then.
const CLAIM_HOLD: Duration = Duration::from_secs(30);
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

/// The Redis engine.
pub struct RedisStore {
    link: Arc<Link>,
    /// What this node tells the others and hears from them.
    bus: Arc<Bus>,
    epoch: String,
    min_replicas: u32,
    wait_timeout: Duration,
    heads: Arc<Heads>,
    written: AtomicU64,
    healthy: AtomicBool,
    failed: CancellationToken,
    latency: Latency,
}

/// The hash a record lives in and its field there; `None` for a timer.
fn record_slot(record: &Record<'_>) -> Option<(String, String)> {
    Some(match *record {
        Record::Fence { org, id } => (key(&["rec", "fence", org]), id.to_string()),
        Record::Location { user } => (key(&["rec", "location"]), user.to_string()),
        Record::FenceState { user, fence } => (key(&["rec", "fencestate"]), pair(user, fence)),
        Record::Alert { id } => (key(&["rec", "alert"]), id.to_string()),
        Record::Shift { id } => (key(&["rec", "shift"]), id.to_string()),
        Record::UsedLink { jti } => (key(&["rec", "usedlink"]), jti.to_string()),
        Record::Device { id } => (key(&["rec", "device"]), id.to_string()),
        Record::Outbox { id } => (key(&["rec", "outbox"]), id.to_string()),
        Record::Member { key: member } => (key(&["rec", "member"]), member.to_string()),
        Record::Timer { .. } => return None,
    })
}

fn set_hash(set: &Records<'_>) -> String {
    match *set {
        Records::Fences { org } => key(&["rec", "fence", org]),
        Records::Locations => key(&["rec", "location"]),
        Records::Alerts => key(&["rec", "alert"]),
        Records::Shifts => key(&["rec", "shift"]),
        Records::Devices => key(&["rec", "device"]),
        Records::Outbox => key(&["rec", "outbox"]),
    }
}

/// A timer as a sorted-set member: ordered like [`Timer`] among equal due times.
fn timer_member(due: u64, level: u8, alert: &str) -> String {
    format!("{due:020}\0{level:03}\0{alert}")
}

fn parse_timer(member: &str) -> Option<Timer> {
    let mut parts = member.splitn(3, '\0');
    let due = parts.next()?.parse().ok()?;
    let level = parts.next()?.parse().ok()?;
    let alert = parts.next()?.to_string();
    Some(Timer { due, level, alert })
}

type Entries = Vec<(String, (String, Vec<u8>))>;

/// Takes the channel's next seq and appends the message under it, atomically; with an
/// idempotency key, a key seen before answers its seq and writes nothing. With ARGV[5] set
/// (no replica to wait for) the message is also published to the nodes watching the channel.
const APPEND: &str = r#"
if ARGV[4] ~= '' then
  local seen = redis.call('HGET', KEYS[4], ARGV[4])
  if seen then return {0, tonumber(seen)} end
end
local seq = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('XADD', KEYS[2], string.format('%d-1', seq), 'm', ARGV[2])
if ARGV[3] == '1' then redis.call('ZADD', KEYS[3], seq, seq) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[4], ARGV[4], seq) end
if ARGV[5] == '1' then redis.call('PUBLISH', KEYS[5], 'L' .. seq .. ':' .. ARGV[2]) end
return {1, seq}
"#;

static APPEND_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(APPEND));

/// Takes a due timer for this node: it moves from `timers` to `claimed`, scored by when the
/// claim lapses. 0 when another node took it first.
const CLAIM: &str = r#"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2]), ARGV[1])
return 1
"#;

/// Claims that lapsed (their node died before firing) are due again at their due time.
const RECLAIM: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, m in ipairs(lapsed) do
  redis.call('ZREM', KEYS[2], m)
  redis.call('ZADD', KEYS[1], tonumber(string.sub(m, 1, 20)), m)
end
return #lapsed
"#;

/// A cursor only moves forward.
const ADVANCE: &str = r#"
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"#;

/// A user keeps the org it was first seen with.
const REMEMBER: &str = r#"
local known = redis.call('HGET', KEYS[1], ARGV[1])
if known and known ~= ARGV[2] then return known end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return ''
"#;

impl RedisStore {
    /// What `check-config` reports of the Redis in `options`, without touching its state:
    /// `Err` when a node could not run on it (unreachable, not durable, too few replicas for
    /// `cluster.min_replicas`), else what was found.
    pub async fn check(options: &RedisOptions) -> Result<String> {
        let link = Link::open(&options.endpoint, Duration::from_secs(5)).await?;
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
        let link = Link::open(
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

    fn con(&self) -> ConnectionManager {
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
    async fn commit(
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

    fn unhealthy(&self, e: redis::RedisError) -> StoreError {
        self.healthy.store(false, Ordering::Release);
        engine(e)
    }

    /// The first of a pipeline's replies, as `T`.
    fn reply<T: redis::FromRedisValue>(&self, replies: Vec<redis::Value>) -> Result<T> {
        let first = replies
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Engine("redis: a write without its reply".into()))?;
        redis::from_redis_value(first).map_err(|e| engine(e.into()))
    }

    fn note_head(&self, channel: &str, seq: u64) {
        self.heads.note(channel, seq);
    }

    async fn append_with(
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

    async fn head_of(&self, con: &mut ConnectionManager, channel: &str) -> Result<u64> {
        let head: Option<u64> = con.hget(key(&["head"]), channel).await.map_err(engine)?;
        Ok(head.unwrap_or(0))
    }

    async fn channels(&self) -> Result<Vec<String>> {
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

    async fn trim(&self, rule: RetentionRule) -> Result<u64> {
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
        for change in changes {
            let (record, value) = match change {
                Change::Put(record, value) => (record, Some(value)),
                Change::Delete(record) => (record, None),
            };
            match (record_slot(record), value) {
                (Some((hash, field)), Some(v)) => {
                    pipe.hset(hash, field, v.as_slice()).ignore();
                }
                (Some((hash, field)), None) => {
                    pipe.hdel(hash, field).ignore();
                }
                (None, value) => {
                    if let Record::Timer { due, alert, level } = *record {
                        let member = timer_member(due, level, alert);
                        if value.is_some() {
                            pipe.zadd(key(&["timers"]), member, due as f64).ignore();
                        } else {
                            pipe.zrem(key(&["claimed"]), &member).ignore();
                            pipe.zrem(key(&["timers"]), member).ignore();
                        }
                    }
                }
            }
        }
        // Not ignored: an error inside the transaction is in the EXEC reply.
        pipe.cmd("EXEC");
        Ok(self.commit(&mut con, pipe, None).await?.1)
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
