//! Durable publish throughput, on the same machine in one run:
//! - in the hub: group commit against one flush per message, with 32 concurrent publishers;
//! - over TLS WebSocket: one client publishing on a logged room, waiting for each reply
//!   against keeping up to 64 publishes in flight (the server pipelines them).
//!
//! `cargo bench --bench durable_publish` — measures each mode for 5 s and prints acknowledged
//! messages/s, publish latency percentiles and the ratios. Under `cargo test` it only runs a
//! short pass to check that it works.

#[path = "../tests/common/mod.rs"]
mod harness;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use lookout::auth::Role;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use lookout::config::Limits;
use lookout::hub::{Hub, Target};
use lookout::store::{open_data_dir, StoreOptions};

const PUBLISHERS: usize = 32;

struct Outcome {
    messages: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Outcome {
    fn per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l.get(((l.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or_default()
    }
}

async fn run(group_commit: bool, duration: Duration) -> Outcome {
    // On the target directory's disk, not a tmpfs: fsync has to cost what it costs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let (store, _) = open_data_dir(
        dir.path(),
        StoreOptions {
            group_commit,
            ..StoreOptions::default()
        },
    )
    .expect("store");
    let flusher = store.clone().start();
    let hub = Hub::new(store.clone(), Limits::default());
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            let target = Target::parse(&format!("/topic/org/bench/room/r{p}"), Some("bench"), None)
                .expect("channel");
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let data = rmpv::Value::from(format!("message from publisher {p}"));
                hub.publish_as_lookout(&target, data, false)
                    .await
                    .expect("publish");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("publisher"));
    }
    let elapsed = started.elapsed();
    flusher.stop().await;
    Outcome {
        messages: latencies.len(),
        elapsed,
        latencies,
    }
}

/// One WebSocket publisher keeping up to `window` publishes unanswered, for `duration`.
async fn websocket(window: usize, duration: Duration) -> Outcome {
    let server = harness::TestServer::start_with(|c| {
        c.limits.messages_per_second = 1_000_000;
        c.limits.message_burst = 1_000_000;
    })
    .await;
    let token = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let (mut write, mut read) = server.connect(&token).await.ws.split();
    let mut sent: VecDeque<Instant> = VecDeque::new();
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut n = 0u64;
    loop {
        let sending = started.elapsed() < duration;
        while sending && sent.len() < window {
            n += 1;
            let publish = json!({"type": "publish", "id": n, "channel": "/topic/org/acme/room/bench",
                                 "data": {"n": n}});
            write
                .feed(Message::Text(publish.to_string().into()))
                .await
                .expect("send");
            sent.push_back(Instant::now());
        }
        write.flush().await.expect("flush");
        if sent.is_empty() {
            break;
        }
        let Some(Ok(Message::Text(text))) = read.next().await else {
            panic!("the connection ended");
        };
        let reply: Value = serde_json::from_str(&text).expect("json");
        if reply["type"] != "reply" {
            continue;
        }
        assert!(reply["ok"] == true, "{reply}");
        let at = sent.pop_front().expect("a publish in flight");
        latencies.push(at.elapsed());
    }
    let elapsed = started.elapsed();
    server.stop().await;
    Outcome {
        messages: latencies.len(),
        elapsed,
        latencies,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let duration = if full {
        Duration::from_secs(5)
    } else {
        Duration::from_millis(200)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let group = run(true, duration).await;
        let single = run(false, duration).await;
        println!("durable publish, {PUBLISHERS} concurrent publishers, {duration:?} per mode");
        for (name, o) in [("group commit", &group), ("flush per message", &single)] {
            println!(
                "  {name:<18} {:>9.0} msg/s  ({} messages)  latency p50 {:>8.2?} p99 {:>8.2?}",
                o.per_second(),
                o.messages,
                o.percentile(0.50),
                o.percentile(0.99)
            );
        }
        let ratio = group.per_second() / single.per_second();
        println!("  group commit / flush per message = {ratio:.1}x");
        assert!(group.messages > 0 && single.messages > 0);

        let one = websocket(1, duration).await;
        let pipelined = websocket(64, duration).await;
        println!("one TLS WebSocket publisher on a logged room, {duration:?} per mode");
        for (name, o) in [("reply by reply", &one), ("64 in flight", &pipelined)] {
            println!(
                "  {name:<18} {:>9.0} msg/s  ({} acknowledged)  latency p50 {:>8.2?} p99 {:>8.2?}",
                o.per_second(),
                o.messages,
                o.percentile(0.50),
                o.percentile(0.99)
            );
        }
        let ratio = pipelined.per_second() / one.per_second();
        println!("  64 in flight / reply by reply = {ratio:.1}x");
        assert!(one.messages > 0 && pipelined.messages > 0);
    });
}
