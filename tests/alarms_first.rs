//! Alarms first: an emergency is read, stored and fanned out while guards' positions wait,
//! and when fixes come faster than the server processes them only each guard's latest is
//! processed.
//!
//! The position pipeline is saturated deterministically: its one worker
//! (`limits.positions_in_flight = 1`) is held inside the store while it appends a position, by
//! a store that holds appends to location channels until the test lets them go. Nothing here
//! measures time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use lookout::auth::Role;
use lookout::store::{
    Appended, Background, Draft, Record, Records, Remembered, RetentionOf, Store, StoredMessage,
    Ticket,
};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// A memory store whose appends to `/topic/location/…` channels each wait for a permit.
struct HeldPositions {
    inner: Arc<lookout::store::MemoryStore>,
    gate: Arc<Semaphore>,
    /// Told when an append starts waiting.
    held: Arc<tokio::sync::Notify>,
}

type Result<T> = lookout::store::error::Result<T>;
type Messages = Vec<Arc<StoredMessage>>;

#[async_trait::async_trait]
impl Store for HeldPositions {
    fn epoch(&self) -> &str {
        self.inner.epoch()
    }
    fn healthy(&self) -> bool {
        self.inner.healthy()
    }
    fn failed(&self) -> &tokio_util::sync::CancellationToken {
        self.inner.failed()
    }
    fn commit_latency(&self) -> &lookout::counters::Latency {
        self.inner.commit_latency()
    }
    fn start(self: Arc<Self>) -> Background {
        self.inner.clone().start()
    }
    async fn size(&self) -> u64 {
        self.inner.size().await
    }
    fn head(&self, channel: &str) -> u64 {
        self.inner.head(channel)
    }
    async fn append(&self, channel: &str, draft: Draft) -> Result<(Arc<StoredMessage>, Ticket)> {
        if channel.contains("/topic/location/") {
            self.held.notify_one();
            // Held until the test lets one position through; never closed.
            let _ = self.gate.acquire().await.map(|p| p.forget());
        }
        self.inner.append(channel, draft).await
    }
    async fn append_once(&self, channel: &str, draft: Draft, key: &str) -> Result<Appended> {
        self.inner.append_once(channel, draft, key).await
    }
    async fn count_channels(&self, prefix: &str) -> Result<usize> {
        self.inner.count_channels(prefix).await
    }
    async fn first_retained(&self, channel: &str) -> Result<Option<u64>> {
        self.inner.first_retained(channel).await
    }
    async fn read(&self, channel: &str, after: u64, upto: u64, limit: usize) -> Result<Messages> {
        self.inner.read(channel, after, upto, limit).await
    }
    async fn get(&self, channel: &str, seq: u64) -> Result<Option<Arc<StoredMessage>>> {
        self.inner.get(channel, seq).await
    }
    async fn trim(&self, rule: RetentionOf) -> Result<u64> {
        self.inner.trim(rule).await
    }
    async fn unacknowledged(&self, user: &str, channel: &str, upto: u64) -> Result<Vec<u64>> {
        self.inner.unacknowledged(user, channel, upto).await
    }
    async fn acknowledge(&self, user: &str, channel: &str, seq: u64) -> Result<Option<Ticket>> {
        self.inner.acknowledge(user, channel, seq).await
    }
    async fn advance_cursor(&self, user: &str, channel: &str, seq: u64) -> Result<Option<Ticket>> {
        self.inner.advance_cursor(user, channel, seq).await
    }
    async fn cursor(&self, user: &str, channel: &str) -> Result<u64> {
        self.inner.cursor(user, channel).await
    }
    async fn remember_user(&self, user: &str, org: &str, now: u64) -> Result<Remembered> {
        self.inner.remember_user(user, org, now).await
    }
    async fn user_org(&self, user: &str) -> Result<Option<Arc<str>>> {
        self.inner.user_org(user).await
    }
    async fn last_seen(&self, user: &str) -> Result<Option<u64>> {
        self.inner.last_seen(user).await
    }
    async fn job_owner(&self, job: &str) -> Result<Option<Arc<str>>> {
        self.inner.job_owner(job).await
    }
    async fn claim_job(&self, job: &str, owner: &str) -> Result<Arc<str>> {
        self.inner.claim_job(job, owner).await
    }
    async fn record(&self, key: Record<'_>) -> Result<Option<Vec<u8>>> {
        self.inner.record(key).await
    }
    async fn records(&self, set: Records<'_>) -> Result<Vec<Vec<u8>>> {
        self.inner.records(set).await
    }
    async fn write(&self, changes: &[lookout::store::Change<'_>]) -> Result<Ticket> {
        self.inner.write(changes).await
    }
    async fn put_new(&self, key: Record<'_>, value: Vec<u8>) -> Result<Option<Ticket>> {
        self.inner.put_new(key, value).await
    }
    async fn write_if(
        &self,
        guard: Record<'_>,
        expected: Option<&[u8]>,
        changes: &[lookout::store::Change<'_>],
    ) -> Result<Option<Ticket>> {
        self.inner.write_if(guard, expected, changes).await
    }
    async fn due_timers(&self, now: u64) -> Result<Vec<lookout::store::Timer>> {
        self.inner.due_timers(now).await
    }
    async fn next_timer(&self) -> Result<Option<u64>> {
        self.inner.next_timer().await
    }
    fn is_durable(&self, ticket: Ticket) -> bool {
        self.inner.is_durable(ticket)
    }
    async fn durable(&self, ticket: Ticket) -> Result<()> {
        self.inner.durable(ticket).await
    }
    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }
}

/// A server with one position worker on a store that holds location appends: the gate
/// that lets them through, and the notice that one is held.
async fn held_positions() -> (TestServer, Arc<Semaphore>, Arc<tokio::sync::Notify>) {
    let gate = Arc::new(Semaphore::new(0));
    let held = Arc::new(tokio::sync::Notify::new());
    let store = Arc::new(HeldPositions {
        inner: Arc::new(lookout::store::MemoryStore::new()),
        gate: gate.clone(),
        held: held.clone(),
    });
    let server = TestServer::start_on_with(store, |c| c.limits.positions_in_flight = 1).await;
    (server, gate, held)
}

/// Waits until the server has answered `n` fixes shed: every fix that replaces another has been
/// read and handed over, whatever the machine's load (the gate opens only then).
async fn until_shed(server: &TestServer, n: u64) {
    let sup = server.token("shed-watch", Some("acme"), &[Role::Supervisor]);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let stats: Value = server
            .http()
            .get(server.https("/api/v1/websocket/stats"))
            .bearer_auth(&sup)
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("json");
        if stats["positions_shed"] == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {n} shed: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fix(n: u64) -> Value {
    json!({"lat": 52.5 + n as f64 * 1e-4, "lon": 13.4, "accuracy": 5.0, "ts": lookout::clock::now_millis()})
}

/// The next frame on `client` that is a message on `channel`.
async fn next_on(client: &mut Client, channel: &str) -> Value {
    loop {
        let frame = client.next_frame().await;
        if frame["type"] == "message" && frame["channel"] == channel {
            return frame;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_stored_and_delivered_before_the_positions_queued_ahead_of_it() {
    let (server, gate, held) = held_positions().await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut supervisor = server.connect(&sup).await;
    for channel in ["/topic/org/acme/alerts", "/topic/org/acme/locations"] {
        assert!(ok(&supervisor.subscribe(channel).await), "{channel}");
    }

    // Two guards stream fixes without waiting for replies. g1's first is taken by the one
    // worker and held in the store: the pipeline is saturated, and every later fix waits,
    // each guard's newest replacing the one before it.
    let mut g1 = server
        .connect(&server.token("g1", Some("acme"), &[Role::Guard]))
        .await;
    let mut g2 = server
        .connect(&server.token("g2", Some("acme"), &[Role::Guard]))
        .await;
    let publish = |name: &str, n: u64| json!({"type": "publish", "id": format!("{name}-{n}"), "channel": format!("/topic/location/{name}"), "data": fix(n)});
    g1.send(publish("g1", 1)).await;
    held.notified().await;
    for n in 2..=5u64 {
        g1.send(publish("g1", n)).await;
    }
    for n in 1..=5u64 {
        g2.send(publish("g2", n)).await;
    }
    // g1 then presses PANIC on the same connection, behind its fixes.
    let panic = json!({"type": "publish", "id": "panic", "channel": "/topic/emergency/g1", "data": {"type": "PANIC"}});
    g1.send(panic).await;

    // The supervisor has the PANIC while every position is still held.
    let alert = next_on(&mut supervisor, "/topic/org/acme/alerts").await;
    assert_eq!(alert["data"]["event"], "created", "{alert}");
    assert_eq!(alert["data"]["alert"]["type"], "PANIC", "{alert}");
    assert_eq!(alert["data"]["alert"]["user"], "g1", "{alert}");
    // And it is stored: the alert list has it.
    let listed = server
        .http()
        .get(server.https("/api/v1/alerts"))
        .bearer_auth(&sup)
        .send()
        .await
        .expect("alerts")
        .json::<Value>()
        .await
        .expect("json");
    let alerts = listed.as_array().cloned().unwrap_or_default();
    assert!(
        alerts
            .iter()
            .any(|a| a["type"] == "PANIC" && a["user"] == "g1"),
        "{listed}"
    );
    // g1's reply to the PANIC is the first answer it gets: its fixes, sent before, wait.
    let reply = g1.next_frame().await;
    assert_eq!(reply["id"], "panic", "{reply}");
    assert_eq!(reply["type"], "reply", "{reply}");
    assert!(reply["alertId"].is_string(), "{reply}");

    // Let the positions through: g1's first (held all along) and each guard's latest are
    // processed; g2's first was still waiting, not taken, when its second came, so it was shed.
    // (The supervisor's queue may merge g1's two into the newer: positions are live-only.)
    until_shed(&server, 7).await;
    gate.add_permits(1_000);
    let mut delivered = Vec::new();
    while !(delivered.contains(&("g1".to_string(), 5))
        && delivered.contains(&("g2".to_string(), 5)))
    {
        let position = next_on(&mut supervisor, "/topic/org/acme/locations").await;
        let user = position["data"]["user"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let lat = position["data"]["lat"].as_f64().unwrap_or_default();
        delivered.push((user, ((lat - 52.5) * 1e4).round() as u64));
    }
    assert!(
        delivered.iter().all(|(_, n)| *n == 1 || *n == 5),
        "shed fixes are never fanned out: {delivered:?}"
    );
    // g1's first and last fixes are answered like any stored publish; its second to fourth,
    // each replaced by a newer one while the first was held, are answered shed.
    let (mut stored, mut shed) = (Vec::new(), Vec::new());
    while stored.len() + shed.len() < 5 {
        let frame = g1.next_frame().await;
        assert_eq!(frame["type"], "reply", "{frame}");
        let id = frame["id"].as_str().unwrap_or_default().to_string();
        if frame["shed"] == true {
            assert!(frame["seq"].is_null(), "a shed fix has no seq: {frame}");
            shed.push(id);
        } else {
            assert!(frame["seq"].as_u64().is_some(), "{frame}");
            stored.push(id);
        }
    }
    stored.sort();
    assert_eq!(stored, ["g1-1", "g1-5"]);
    assert_eq!(shed, ["g1-2", "g1-3", "g1-4"]);
    let metrics = scrape(&server).await;
    assert_eq!(value(&metrics, "lookout_positions_shed_total", &[]), 7.0);
    assert_eq!(
        value(&metrics, "lookout_positions_processed_total", &[]),
        3.0
    );
    // Another client's ordinary work went on the whole time: g2's fifth fix was answered with
    // its seq like any stored publish.
    let mut answered = None;
    while answered.is_none() {
        let frame = g2.next_frame().await;
        if frame["id"] == "g2-5" {
            answered = Some(frame);
        }
    }
    let answered = answered.unwrap_or_default();
    assert_eq!(answered["type"], "reply", "{answered}");
    assert!(answered["seq"].as_u64().is_some(), "{answered}");
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("stops");
}

/// A connection holds one slot: a service streaming fixes for two guards has only the first
/// guard's shed under load; the second's take the ordinary publish path, each stored in turn.
/// (So the slots are at most one per connection, whatever a client sends.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_sheds_fixes_of_one_location_channel_only() {
    let (server, gate, held) = held_positions().await;
    let mut tracker = server
        .connect(&server.token("tracker", Some("acme"), &[Role::Service]))
        .await;
    let publish = |user: &str, n: u64| json!({"type": "publish", "id": format!("{user}-{n}"), "channel": format!("/topic/location/{user}"), "data": fix(n)});
    tracker.send(publish("u1", 1)).await;
    held.notified().await;
    for n in 1..=3u64 {
        tracker.send(publish("u1", n + 1)).await;
        tracker.send(publish("u2", n)).await;
    }
    until_shed(&server, 2).await;
    gate.add_permits(1_000);
    let mut stored = Vec::new();
    let mut shed = Vec::new();
    while stored.len() + shed.len() < 7 {
        let frame = tracker.next_frame().await;
        assert_eq!(frame["type"], "reply", "{frame}");
        let id = frame["id"].as_str().unwrap_or_default().to_string();
        if frame["shed"] == true {
            shed.push(id);
        } else {
            assert!(frame["seq"].as_u64().is_some(), "{frame}");
            stored.push(id);
        }
    }
    assert_eq!(shed, ["u1-2", "u1-3"]);
    stored.sort();
    assert_eq!(stored, ["u1-1", "u1-4", "u2-1", "u2-2", "u2-3"]);
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("stops");
}
