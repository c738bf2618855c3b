//! Cluster mode through Redis failovers: a primary with one replica, three real
//! `redis-sentinel`s (all on 127.0.0.1 ports of their own), three Lookout nodes that find the
//! primary through the Sentinels with `cluster.min_replicas = 1`. The primary is killed with
//! `kill -9` during a storm of publishes from several clients on every node; the Sentinels
//! promote the replica, the killed server comes back as the new replica, and so on.
//!
//! After each failover publishing resumes on every node without a restart, and at the end
//! every acknowledged message is in the log under the seq it was acknowledged with.
//! `FAILOVERS=N` sets how many (the suite runs 2; the closing note's figures come from
//! `FAILOVERS=10 cargo test --release --test cluster_failover -- --nocapture`).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::redis::{free_port, RedisProcess, Sentinel};
use common::*;
use lookout::auth::Role;
use serde_json::json;

const MASTER: &str = "lookout";

/// (channel, seq) → the `n` acknowledged under it, per publisher.
type Acked = Arc<Mutex<BTreeMap<(String, u64), (String, u64)>>>;

fn failovers() -> usize {
    std::env::var("FAILOVERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2)
}

/// Which of the two servers the Sentinels name as the primary now.
async fn primary_port(sentinel: &Sentinel) -> Option<u16> {
    let client = ::redis::Client::open(format!("redis://{}", sentinel.addr())).ok()?;
    let mut con = client.get_multiplexed_async_connection().await.ok()?;
    let addr: Vec<String> = ::redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(MASTER)
        .query_async(&mut con)
        .await
        .ok()?;
    addr.get(1)?.parse().ok()
}

/// How far each node has delivered `room`: the head its history answers with.
async fn delivered_heads(nodes: &[TestServer], room: &str, token: &str) -> Vec<serde_json::Value> {
    let mut heads = Vec::new();
    for node in nodes {
        let url = node.https(&format!(
            "/api/v1/channels/history?channel={room}&since=0&limit=1"
        ));
        heads.push(get_json(&node.http(), &url, token).await["head"].clone());
    }
    heads
}

/// Waits until `primary` reports `n` connected replicas, online.
async fn wait_for_replicas(primary: &RedisProcess, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let info: Option<String> = async {
            let client = ::redis::Client::open(primary.tcp_url()).ok()?;
            let mut con = client.get_multiplexed_async_connection().await.ok()?;
            ::redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut con)
                .await
                .ok()
        }
        .await;
        let online = info.as_deref().map_or(0, |i| {
            i.lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .count()
        });
        if online >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica never synced: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_publishes_survive_primary_failovers_and_every_node_goes_on_without_a_restart()
{
    let (p1, p2) = (free_port(), free_port());
    let mut servers = [
        RedisProcess::start_tcp(p1, &[]),
        RedisProcess::start_tcp(p2, &["--replicaof", "127.0.0.1", &p1.to_string()]),
    ];
    let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(MASTER, p1, 2)).collect();
    let sentinel_addrs: Vec<String> = sentinels.iter().map(Sentinel::addr).collect();
    // The replica has synced before the first node opens.
    wait_for_replicas(&servers[0], 1).await;

    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let addrs = sentinel_addrs.clone();
        nodes.push(
            TestServer::start_with(move |c| {
                c.cluster.sentinels = addrs;
                c.cluster.master_name = Some(MASTER.into());
                c.cluster.node_id = Some(name.into());
                c.cluster.min_replicas = 1;
                c.limits.messages_per_second = 10_000;
                c.limits.message_burst = 10_000;
                // Retention must not trim what the end of the test checks.
                c.retention.default.max_messages = 10_000_000;
            })
            .await,
        );
    }
    let sup = nodes[0].token("sup", Some("acme"), &[Role::Supervisor]);

    // Two publishers per node, on two rooms; each records what it got acknowledged.
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let last_ok: Arc<Mutex<BTreeMap<String, std::time::Instant>>> = Arc::default();
    let mut publishers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for k in 0..2 {
            let me = format!("{}-{k}", ["a", "b", "c"][i]);
            let room = format!("/topic/org/acme/room/storm-{k}");
            let token = node.token(&format!("sup-{me}"), Some("acme"), &[Role::Supervisor]);
            let mut client = node.connect(&token).await;
            let (acked, stop, last_ok) = (acked.clone(), stop.clone(), last_ok.clone());
            publishers.push(tokio::spawn(async move {
                let (mut n, mut refused) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let reply = client
                        .request(
                            json!({"type": "publish", "channel": room, "data": {"n": n, "by": me}}),
                        )
                        .await;
                    if ok(&reply) {
                        let seq = reply["seq"].as_u64().expect("seq");
                        let earlier = acked
                            .lock()
                            .expect("lock")
                            .insert((room.clone(), seq), (me.clone(), n));
                        assert!(earlier.is_none(), "seq {seq} of {room} acknowledged twice");
                        last_ok
                            .lock()
                            .expect("lock")
                            .insert(me.clone(), std::time::Instant::now());
                    } else {
                        // Refused while there is no primary or no replica: never acknowledged.
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                refused
            }));
        }
    }

    let mut current = 0usize; // index of the primary in `servers`
    for round in 1..=failovers() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = acked.lock().expect("lock").len();
        let killed_at = std::time::Instant::now();
        servers[current].kill();
        // The Sentinels promote the other one.
        let promoted = servers[1 - current].port.expect("port");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while primary_port(&sentinels[0]).await != Some(promoted) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: no failover"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The killed one comes back; the Sentinels make it the new primary's replica.
        servers[current].restart();
        current = 1 - current;
        // Every publisher gets acknowledgements again, without a restart of any node.
        let resumed = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let all_back = {
                let last = last_ok.lock().expect("lock");
                last.len() == 6 && last.values().all(|t| *t > resumed)
            };
            if all_back {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: publishing did not resume on every node"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let after = acked.lock().expect("lock").len();
        let mut fills = Vec::new();
        for node in &nodes {
            fills.push(value(
                &scrape(node).await,
                "lookout_cluster_gap_fills_total",
                &[],
            ));
        }
        eprintln!("gap fills per node so far: {fills:?}");
        eprintln!(
            "failover {round}: primary killed, {promoted} promoted; every node publishing again {:.1} s after the kill; {} acknowledged so far (+{})",
            killed_at.elapsed().as_secs_f64(),
            after,
            after - before
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut refused = 0;
    for p in publishers {
        refused += p.await.expect("publisher");
    }

    // What the primary holds, read directly, and how far each node's history reaches: a
    // mismatch below then tells a lost write from a node that stopped delivering.
    let primary = &servers[current];
    for k in 0..2 {
        let room = format!("/topic/org/acme/room/storm-{k}");
        let client = ::redis::Client::open(primary.tcp_url()).expect("client");
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .expect("primary");
        let head: Option<u64> = ::redis::cmd("HGET")
            .arg("lookout:head")
            .arg(&room)
            .query_async(&mut con)
            .await
            .expect("head");
        let len: u64 = ::redis::cmd("XLEN")
            .arg(format!("lookout:log:{room}"))
            .query_async(&mut con)
            .await
            .expect("xlen");
        let reached = delivered_heads(&nodes, &room, &sup).await;
        eprintln!(
            "{room}: the primary's head {head:?}, {len} entries; the nodes' heads {reached:?}"
        );
        // A node that missed a publish (its PUBLISH never went out because the WAIT failed,
        // or its pub/sub connection was moving to the new primary) fills the gap from the
        // stream after a grace period: every node catches up with the primary.
        let caught_up = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let heads = delivered_heads(&nodes, &room, &sup).await;
            if heads.iter().all(|h| h.as_u64() == head) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{room}: the nodes never caught up with the primary's head {head:?}: {heads:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "{room}: every node at the primary's head {:.1} s later",
            caught_up.elapsed().as_secs_f64()
        );
    }

    // Every acknowledged message is in the log, under its seq.
    let acked = acked.lock().expect("lock").clone();
    let http = nodes[2].http();
    let mut checked = 0usize;
    for k in 0..2 {
        let room = format!("/topic/org/acme/room/storm-{k}");
        let mut logged: BTreeMap<u64, (String, u64)> = BTreeMap::new();
        let mut since = 0u64;
        loop {
            let url = nodes[2].https(&format!(
                "/api/v1/channels/history?channel={room}&since={since}&limit=1000"
            ));
            let page = get_json(&http, &url, &sup).await;
            let messages = page["messages"].as_array().expect("messages").clone();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                since = m["seq"].as_u64().expect("seq");
                let earlier = logged.insert(
                    since,
                    (
                        m["data"]["by"].as_str().expect("by").to_string(),
                        m["data"]["n"].as_u64().expect("n"),
                    ),
                );
                assert!(earlier.is_none(), "seq {since} twice in the log");
            }
        }
        // Every mismatch is reported with what the log holds instead, before the test fails.
        let mut wrong = Vec::new();
        let mut in_room = 0usize;
        for ((_, seq), expected) in acked.iter().filter(|((c, _), _)| *c == room) {
            in_room += 1;
            if logged.get(seq) != Some(expected) {
                let elsewhere = logged.iter().find(|(_, m)| *m == expected).map(|(s, _)| *s);
                wrong.push(format!(
                    "seq {seq}: acknowledged {expected:?}, logged {:?}, that message logged at {elsewhere:?}",
                    logged.get(seq)
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "{room}: {} of {} logged, head {:?}; acknowledged but not in the log under their seq: {wrong:#?}",
            logged.len(),
            in_room,
            logged.keys().next_back()
        );
        checked += in_room;
    }
    assert_eq!(checked, acked.len());
    eprintln!(
        "{} failovers: {} acknowledged publishes, all in the log under their seqs; {refused} refused while there was no primary or replica",
        failovers(),
        acked.len()
    );
    for node in nodes {
        node.stop().await;
    }
    drop(sentinels);
}
