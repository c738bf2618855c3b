//! What the nodes on one Redis tell each other ([`Cluster`]): messages of the channels a node
//! watches, over Redis pub/sub; the cluster-wide seqs of live-only channels and the latest
//! video keyframes; and each node's connection counts, alive while the node beats.
//!
//! A pub/sub message is `{kind}{seq}:{body}`: kind `L` for a durable message of a logged
//! channel, `V` for a live-only one, `K` for a video keyframe; the body is a stored message's
//! (see `encode_message`). Pub/sub is at most once: a message missed during a reconnect is a
//! gap in the seqs, which the hub fills from the log ([`Cluster::heads`]), so nothing here
//! retries.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::AsyncCommands;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::super::cluster::{Cluster, Remote, Slot};
use super::super::error::{Result, StoreError};
use super::super::message::{Draft, StoredMessage};
use super::keys::{decode_body, encode_message, engine, key, Heads, PAGE};
use super::link::RedisLink;
use super::scripts::{BROADCAST, GIVE, HEARTBEAT, LEASE, TAKE};

/// How long a node counts as alive after its last heartbeat (its connection counts go then).
pub(super) const NODE_TTL: Duration = Duration::from_secs(15);
/// How often a node beats (and, with Sentinels, asks where the primary is).
pub(super) const TICK: Duration = Duration::from_secs(1);

/// Messages the hub has not taken yet; beyond that, live ones are dropped and logged ones
/// are found again by the hub's gap filling.
const FEED: usize = 65_536;

/// The pub/sub channel of a stored channel.
pub(super) fn topic(channel: &str) -> String {
    key(&["live", channel])
}

/// A pub/sub message: kind, seq, body.
pub(super) fn frame(kind: u8, seq: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 24);
    out.push(kind);
    out.extend_from_slice(seq.to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(body);
    out
}

fn parse_frame(bytes: &[u8]) -> Option<(u8, u64, &[u8])> {
    let (&kind, rest) = bytes.split_first()?;
    let colon = rest.iter().position(|&b| b == b':')?;
    let seq = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
    Some((kind, seq, &rest[colon + 1..]))
}

#[derive(Default)]
struct Watch {
    /// Channels the hub wants to hear of.
    wanted: HashSet<Arc<str>>,
    /// Channels whose wish changed since the feed task last looked.
    dirty: HashSet<Arc<str>>,
    /// Channels the pub/sub connection is subscribed to now.
    confirmed: HashSet<Arc<str>>,
}

/// A node's side of the bus.
pub(super) struct Bus {
    link: Arc<RedisLink>,
    heads: Arc<Heads>,
    /// This node's name.
    node: String,
    /// This process among the nodes: the name and a random part, so that a node restarted
    /// under the same name never inherits its previous life's connection counts.
    instance: String,
    min_replicas: u32,
    wait_timeout: Duration,
    watch: Mutex<Watch>,
    changed: Notify,
    /// Fired whenever `confirmed` grows.
    subscribed: Notify,
    tx: mpsc::Sender<Remote>,
    rx: Mutex<Option<mpsc::Receiver<Remote>>>,
    /// The slots this node holds, per user: written again when the cluster forgot the node
    /// (its heartbeat lapsed during an outage).
    slots: Mutex<HashMap<String, u64>>,
    /// Messages heard but not taken by the hub in time.
    pub lost: AtomicU64,
}

impl Bus {
    pub(super) fn new(
        link: Arc<RedisLink>,
        heads: Arc<Heads>,
        node: &str,
        min_replicas: u32,
        wait_timeout: Duration,
    ) -> Self {
        let (tx, rx) = mpsc::channel(FEED);
        Bus {
            link,
            heads,
            node: node.to_string(),
            instance: format!("{node}:{}", hex::encode(rand::random::<[u8; 4]>())),
            min_replicas,
            wait_timeout,
            watch: Mutex::new(Watch::default()),
            changed: Notify::new(),
            subscribed: Notify::new(),
            tx,
            rx: Mutex::new(Some(rx)),
            slots: Mutex::new(HashMap::new()),
            lost: AtomicU64::new(0),
        }
    }

    /// Records that the pub/sub connection is (or is no longer) subscribed to `channels`.
    fn confirm(&self, channels: &[Arc<str>], subscribed: bool) {
        let mut watch = self.watch.lock();
        for c in channels {
            if subscribed {
                // Only what is still wanted: an unwatch may have come meanwhile.
                if watch.wanted.contains(c) {
                    watch.confirmed.insert(c.clone());
                }
            } else {
                watch.confirmed.remove(c);
            }
        }
        drop(watch);
        if subscribed {
            self.subscribed.notify_waiters();
        }
    }

    fn con(&self) -> redis::aio::ConnectionManager {
        self.link.con()
    }

    fn hear(&self, msg: &redis::Msg) {
        let Some(channel) = msg.get_channel_name().strip_prefix(&topic("")) else {
            return;
        };
        let Some((kind, seq, body)) = parse_frame(msg.get_payload_bytes()) else {
            tracing::warn!(channel, "an unreadable message on the cluster's pub/sub");
            return;
        };
        let message = match decode_body(seq, body) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(channel, error = %e, "an undecodable message on the cluster's pub/sub");
                return;
            }
        };
        let channel: Arc<str> = Arc::from(channel);
        let remote = match kind {
            b'L' => {
                self.heads.note(&channel, seq);
                Remote::Logged { channel, message }
            }
            b'V' | b'K' => Remote::Live {
                channel,
                message,
                keyframe: kind == b'K',
            },
            _ => return,
        };
        if self.tx.try_send(remote).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Hears the channels the hub watches until `stop`, reconnecting (and resubscribing
/// everything) when the connection drops or the primary moved.
pub(super) async fn run_feed(bus: Arc<Bus>, stop: CancellationToken) {
    let pause = |d: Duration| {
        let stop = stop.clone();
        async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(d) => {}
            }
        }
    };
    'connect: while !stop.is_cancelled() {
        let addr = bus.link.addr();
        let pubsub = match bus.link.client().get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(e) => {
                tracing::warn!(error = %e, "connecting the cluster's pub/sub");
                pause(Duration::from_millis(500)).await;
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        // A new connection has no subscriptions: everything wanted, again.
        let all: Vec<Arc<str>> = {
            let mut watch = bus.watch.lock();
            watch.dirty.clear();
            watch.confirmed.clear();
            watch.wanted.iter().cloned().collect()
        };
        for chunk in all.chunks(PAGE) {
            let topics: Vec<String> = chunk.iter().map(|c| topic(c)).collect();
            if let Err(e) = sink.subscribe(&topics).await {
                tracing::warn!(error = %e, "subscribing the cluster's pub/sub");
                pause(Duration::from_millis(500)).await;
                continue 'connect;
            }
            bus.confirm(chunk, true);
        }
        // An interval, not a sleep in the select: a sleep made anew on every turn never
        // fires while messages keep coming, and the feed would stay on a former primary.
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = bus.changed.notified() => {
                    let (on, off): (Vec<Arc<str>>, Vec<Arc<str>>) = {
                        let mut watch = bus.watch.lock();
                        let dirty = std::mem::take(&mut watch.dirty);
                        dirty.into_iter().partition(|c| watch.wanted.contains(c))
                    };
                    let mut failed = false;
                    for chunk in off.chunks(PAGE) {
                        bus.confirm(chunk, false);
                        let topics: Vec<String> = chunk.iter().map(|c| topic(c)).collect();
                        failed |= sink.unsubscribe(&topics).await.is_err();
                    }
                    for chunk in on.chunks(PAGE) {
                        let topics: Vec<String> = chunk.iter().map(|c| topic(c)).collect();
                        let done = sink.subscribe(&topics).await.is_ok();
                        if done {
                            bus.confirm(chunk, true);
                        }
                        failed |= !done;
                    }
                    if failed {
                        continue 'connect;
                    }
                }
                msg = stream.next() => match msg {
                    Some(msg) => bus.hear(&msg),
                    None => {
                        tracing::warn!("the cluster's pub/sub connection ended; reconnecting");
                        pause(Duration::from_millis(200)).await;
                        continue 'connect;
                    }
                },
                _ = tick.tick(), if bus.link.follows_sentinels() => {
                    if bus.link.addr() != addr {
                        continue 'connect;
                    }
                }
            }
        }
    }
}

impl Bus {
    /// Says this node is alive; rewrites its connection counts when the cluster had
    /// forgotten it; with replicas required, checks they are there.
    pub(super) async fn heartbeat(&self) -> Result<()> {
        let mut con = self.con();
        let script = redis::Script::new(HEARTBEAT);
        let mut pipe = redis::pipe();
        pipe.invoke_script(
            script
                .key(key(&["nodes"]))
                .arg(&self.instance)
                .arg(NODE_TTL.as_millis() as u64),
        );
        let forgotten: u8 = self.behind_replicas(&mut con, pipe, Some(&script)).await?;
        let slots: Vec<(String, u64)> = if forgotten == 1 {
            let slots = self.slots.lock();
            slots.iter().map(|(u, n)| (u.clone(), *n)).collect()
        } else {
            Vec::new()
        };
        if !slots.is_empty() {
            let _: () = con
                .hset_multiple(key(&["conns", &self.instance]), &slots)
                .await
                .map_err(engine)?;
        }
        Ok(())
    }

    /// Sends `pipe` (one write) with, when replicas are required, a `WAIT` behind it in the
    /// same request, so both run on one connection (see `RedisStore::commit` for why a `WAIT`
    /// is never sent alone); answers the write's reply. `script`: the one the pipeline runs by
    /// hash, loaded and the pipeline sent again when the server does not know it (a promoted
    /// replica's script cache is empty).
    async fn behind_replicas<T: redis::FromRedisValue>(
        &self,
        con: &mut redis::aio::ConnectionManager,
        pipe: redis::Pipeline,
        script: Option<&redis::Script>,
    ) -> Result<T> {
        let (replies, reached) = super::link::send_behind_replicas(
            con,
            pipe,
            script,
            self.min_replicas,
            self.wait_timeout,
        )
        .await
        .map_err(engine)?;
        if reached < self.min_replicas {
            return Err(StoreError::Engine(format!(
                "redis: {reached} replica(s) answered, cluster.min_replicas is {}",
                self.min_replicas
            )));
        }
        let first = replies
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Engine("redis: a pipeline answered nothing".into()))?;
        redis::from_redis_value(first).map_err(|e| engine(e.into()))
    }

    /// A clean stop: the node's counts go now rather than when its heartbeat lapses.
    pub(super) async fn leave_cluster(&self) -> Result<()> {
        let mut con = self.con();
        let () = redis::pipe()
            .zrem(key(&["nodes"]), &self.instance)
            .ignore()
            .del(key(&["conns", &self.instance]))
            .ignore()
            .query_async(&mut con)
            .await
            .map_err(engine)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Cluster for Bus {
    fn node(&self) -> &str {
        &self.node
    }

    fn take_feed(&self) -> Option<mpsc::Receiver<Remote>> {
        self.rx.lock().take()
    }

    fn watch(&self, channel: &str, watch: bool) {
        let mut state = self.watch.lock();
        let changed = if watch {
            state.wanted.insert(Arc::from(channel))
        } else {
            state.wanted.remove(channel)
        };
        if changed {
            state.dirty.insert(Arc::from(channel));
            drop(state);
            self.changed.notify_one();
        }
    }

    async fn until_watched(&self, channel: &str, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let notified = self.subscribed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.watch.lock().confirmed.contains(channel) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    fn gap_grace(&self) -> Duration {
        self.wait_timeout + Duration::from_secs(1)
    }

    async fn replicated(&self) -> Result<()> {
        if self.min_replicas == 0 {
            return Ok(());
        }
        // Replication is one ordered stream: once a write made after the read is on the
        // replicas, so is everything the read saw.
        let mut con = self.con();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(key(&["synced", &self.instance]))
            .arg(1)
            .arg("PX")
            .arg(NODE_TTL.as_millis() as u64);
        let _: redis::Value = self.behind_replicas(&mut con, pipe, None).await?;
        Ok(())
    }

    async fn heads(&self, channels: &[Arc<str>]) -> Result<Vec<u64>> {
        let mut con = self.con();
        let mut out = Vec::with_capacity(channels.len());
        for chunk in channels.chunks(PAGE) {
            let heads: Vec<Option<u64>> = redis::cmd("HMGET")
                .arg(key(&["head"]))
                .arg(chunk.iter().map(|c| &**c).collect::<Vec<&str>>())
                .query_async(&mut con)
                .await
                .map_err(engine)?;
            for (channel, head) in chunk.iter().zip(heads) {
                let head = head.unwrap_or(0);
                self.heads.note(channel, head);
                out.push(head);
            }
        }
        Ok(out)
    }

    async fn broadcast(
        &self,
        channel: &str,
        draft: &Draft,
        keyframe_ttl: Option<Duration>,
    ) -> Result<u64> {
        let mut con = self.con();
        let body = encode_message(draft.timestamp, &draft.data, draft.ack_required)?;
        let ttl = keyframe_ttl.map_or(0, |t| t.as_millis().max(1) as u64);
        redis::Script::new(BROADCAST)
            .key(key(&["lseq"]))
            .key(topic(channel))
            .key(key(&["keyframe", channel]))
            .arg(channel)
            .arg(body)
            .arg(if ttl > 0 { "K" } else { "V" })
            .arg(ttl)
            .invoke_async(&mut con)
            .await
            .map_err(engine)
    }

    async fn keyframe(&self, channel: &str) -> Result<Option<Arc<StoredMessage>>> {
        let mut con = self.con();
        let kept: Option<Vec<u8>> = con.get(key(&["keyframe", channel])).await.map_err(engine)?;
        let Some(kept) = kept else {
            return Ok(None);
        };
        let (_, seq, body) = parse_frame(&kept)
            .ok_or_else(|| StoreError::Codec("a kept keyframe is unreadable".into()))?;
        decode_body(seq, body).map(Some)
    }

    async fn lease(&self, name: &str, ttl: Duration) -> Result<bool> {
        let mut con = self.con();
        let held: u8 = redis::Script::new(LEASE)
            .key(key(&["lease", name]))
            .arg(&self.instance)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut con)
            .await
            .map_err(engine)?;
        Ok(held == 1)
    }

    async fn take_slot(&self, user: &str, max: usize) -> Result<Slot> {
        let mut con = self.con();
        let before: i64 = redis::Script::new(TAKE)
            .key(key(&["nodes"]))
            .arg(key(&["conns", ""]))
            .arg(&self.instance)
            .arg(user)
            .arg(max as u64)
            .arg(NODE_TTL.as_millis() as u64)
            .invoke_async(&mut con)
            .await
            .map_err(engine)?;
        if before < 0 {
            return Ok(Slot::Full);
        }
        *self.slots.lock().entry(user.to_string()).or_default() += 1;
        Ok(Slot::Taken { first: before == 0 })
    }

    async fn give_slot(&self, user: &str) -> Result<bool> {
        {
            let mut slots = self.slots.lock();
            if let Some(n) = slots.get_mut(user) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    slots.remove(user);
                }
            }
        }
        let mut con = self.con();
        let left: u64 = redis::Script::new(GIVE)
            .key(key(&["nodes"]))
            .arg(key(&["conns", ""]))
            .arg(&self.instance)
            .arg(user)
            .invoke_async(&mut con)
            .await
            .map_err(engine)?;
        Ok(left == 0)
    }
}
