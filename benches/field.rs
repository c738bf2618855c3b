//! Field operations benchmark, one run:
//! - location ingest: updates/s with 1,000 guards and 50 geofences, in-process through
//!   `Field::publish` (rights, validation, durable log with group commit, org fan-in, geofence
//!   checks and any alerts they raise);
//! - PANIC latency: a guard publishes a PANIC over a real TLS WebSocket until a supervisor,
//!   subscribed to the org's alerts over another, receives it: p50/p99;
//! - disk per location fix: guards publish fixes as the guard app sends them (accuracy,
//!   heading, speed, battery, an idempotency key each), then the store's size on disk (sled's
//!   own count, `lookout_store_size_bytes`, and the files of `data_dir/store`) over the fixes
//!   stored: what docs/install.md's sizing is derived from.
//!
//! `cargo bench --bench field`. Under `cargo test` it only runs a short pass.

mod common;
#[path = "../tests/common/mod.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use lookout::auth::{Identity, Role, Roles};
use lookout::hub::Publish;
use lookout::{Config, Server};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const GUARDS: usize = 1000;
const FENCES: usize = 50;

fn identity(user: &str, role: Role) -> Identity {
    Identity {
        key: Arc::from(lookout::auth::principal_key(Some("bench"), user)),
        user: Arc::from(user),
        org: Some(Arc::from("bench")),
        roles: [role].into_iter().collect::<Roles>(),
        name: None,
        exp: u64::MAX,
        device: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

async fn start() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.jwt.secret = Some("bench-secret-bench-secret-bench-secret".into());
    config.limits.messages_per_second = 1_000_000;
    config.limits.message_burst = 1_000_000;
    config.limits.max_connections_per_user = 10_000;
    // The PANIC latency takes 300 samples from one guard in a few seconds.
    config.limits.alerts_per_minute = 100_000;
    (Server::bind(config).await.expect("bind"), dir)
}

/// A server on a fresh data directory whose store runs its flusher and knows the guards `g0`,
/// `g1`, … of the org `bench`.
async fn with_guards(guards: usize) -> (Server, tempfile::TempDir, lookout::store::Background) {
    let (server, dir) = start().await;
    let store = server.state().store.clone();
    let flusher = store.clone().start();
    for g in 0..guards {
        store
            .remember_user(&format!("g{g}"), "bench", 0)
            .await
            .expect("directory");
    }
    (server, dir, flusher)
}

/// Publishes one location fix of `who` on its own channel, in MessagePack as a phone sends it.
async fn publish_fix(field: &lookout::field::Field, who: &Identity, fix: Value, key: Option<&str>) {
    let req = Publish {
        channel: &format!("/topic/location/{}", who.user),
        to: None,
        owner: None,
        data: rmpv::ext::to_value(fix).expect("data"),
        ack_required: false,
        idempotency_key: key,
    };
    field.publish(who, req).await.expect("publish");
}

async fn ingest(duration: Duration) -> (usize, Duration) {
    let (server, _dir, flusher) = with_guards(GUARDS).await;
    let state = server.state().clone();
    let sup = identity("sup", Role::Supervisor);
    // 50 fences of ~110 m on a grid over the ~2 km square the guards walk in.
    for f in 0..FENCES {
        let (x, y) = (
            13.39 + (f % 10) as f64 * 0.002,
            52.49 + (f / 10) as f64 * 0.004,
        );
        let kind = if f % 2 == 0 { "forbidden" } else { "required" };
        let spec = serde_json::from_value(json!({
            "name": format!("f{f}"), "kind": kind, "guards": [format!("g{f}")],
            "shape": {"type": "Polygon", "coordinates": [[[x, y], [x + 0.001, y], [x + 0.001, y + 0.001], [x, y + 0.001], [x, y]]]}
        }))
        .expect("fence");
        state
            .field
            .put_fence(&sup, None, spec)
            .await
            .expect("fence");
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for g in 0..GUARDS {
        let field = state.field.clone();
        tasks.push(tokio::spawn(async move {
            let who = identity(&format!("g{g}"), Role::Guard);
            let mut n = 0usize;
            while Instant::now() < deadline {
                let step = (n + g) as f64;
                let lat = 52.49 + (step * 0.00037) % 0.02;
                let lon = 13.39 + (step * 0.00053) % 0.02;
                let fix = json!({
                    "lat": lat, "lon": lon, "accuracy": 5.0, "battery": 80,
                    "ts": lookout::clock::now_millis()
                });
                publish_fix(&field, &who, fix, None).await;
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("guard");
    }
    let elapsed = started.elapsed();
    flusher.stop().await;
    (total, elapsed)
}

async fn panic_latency(samples: usize) -> Vec<Duration> {
    let (server, _dir) = start().await;
    let addr = server.local_addr();
    let cert = std::fs::read(&server.certificate.trust_path).expect("cert");
    let state = server.state().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stop_rx.await;
    }));
    let tls = harness::client_tls(&cert);
    let connect = |token: String| {
        let tls = tls.clone();
        async move { common::connect(addr, &tls, &token).await }
    };
    let mint = |user: &str, role: Role| {
        state
            .auth
            .mint(
                user,
                Some("bench"),
                &[role],
                Duration::from_secs(3600),
                None,
            )
            .expect("mint")
    };
    let mut guard = connect(mint("g1", Role::Guard)).await;
    let mut sup = connect(mint("s1", Role::Supervisor)).await;
    sup.send(Message::Text(
        json!({"type":"subscribe","channel":"/topic/org/bench/alerts","id":"s"})
            .to_string()
            .into(),
    ))
    .await
    .expect("subscribe");
    sup.next().await.expect("reply").expect("frame");
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let sent = Instant::now();
        let msg = json!({"type":"publish","channel":"/topic/emergency/g1","data":{"type":"PANIC"},"id":i});
        guard
            .send(Message::Text(msg.to_string().into()))
            .await
            .expect("send");
        loop {
            let Some(Ok(Message::Text(t))) = sup.next().await else {
                panic!("supervisor gone")
            };
            let v: Value = serde_json::from_str(&t).expect("json");
            if v["data"]["event"] == "created" {
                latencies.push(sent.elapsed());
                break;
            }
        }
        // The guard's reply, so the next PANIC starts from a quiet socket.
        guard.next().await.expect("reply").expect("frame");
    }
    let _ = stop_tx.send(());
    let _ = running.await;
    latencies.sort();
    latencies
}

/// Bytes of the files under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => bytes_under(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Stores `fixes` location fixes for each of `guards` guards the way the guard app sends them,
/// and answers (store size before, after as sled counts it, bytes of `data_dir/store` before,
/// after).
async fn disk_per_fix(guards: usize, fixes: usize) -> (u64, u64, u64, u64) {
    let (server, dir, flusher) = with_guards(guards).await;
    let state = server.state().clone();
    let store = state.store.clone();
    let files = dir.path().join("store");
    let (size_before, files_before) = (store.size().await, bytes_under(&files));
    let mut tasks = Vec::new();
    for g in 0..guards {
        let field = state.field.clone();
        tasks.push(tokio::spawn(async move {
            let who = identity(&format!("g{g}"), Role::Guard);
            for n in 0..fixes {
                let step = (n + g) as f64;
                let fix = json!({
                    "lat": 52.49 + (step * 0.000_37) % 0.02, "lon": 13.39 + (step * 0.000_53) % 0.02,
                    "accuracy": 4.8 + (step % 7.0), "heading": (step * 3.1) % 360.0,
                    "speed": 1.2 + (step % 3.0) / 10.0, "battery": 80 - (n * 30 / fixes) as i64,
                    "ts": lookout::clock::now_millis()
                });
                // The guard app's key: `fix-<serial>-<6 random base-36 characters>`.
                let key = format!("fix-{}-{:06x}", n + 1, (g * 7919 + n * 104_729) % 0xff_ffff);
                publish_fix(&field, &who, fix, Some(&key)).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("guard");
    }
    flusher.stop().await;
    let after = (store.size().await, bytes_under(&files));
    (size_before, after.0, files_before, after.1)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (duration, samples) = if full {
        (Duration::from_secs(5), 300)
    } else {
        (Duration::from_millis(300), 5)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (updates, elapsed) = ingest(duration).await;
        println!(
            "location ingest, {GUARDS} guards, {FENCES} geofences: {:.0} updates/s ({updates} in {elapsed:.2?})",
            updates as f64 / elapsed.as_secs_f64()
        );
        let latencies = panic_latency(samples).await;
        println!(
            "PANIC publish -> supervisor, {} samples over TLS WebSockets: p50 {:.2?}  p99 {:.2?}  max {:.2?}",
            latencies.len(),
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies.last().copied().unwrap_or_default()
        );
        assert!(updates > 0 && !latencies.is_empty());
        let (guards, fixes) = if full { (100, 2000) } else { (4, 50) };
        let (before, after, files_before, files_after) = disk_per_fix(guards, fixes).await;
        let stored = (guards * fixes) as f64;
        println!(
            "disk per location fix, {guards} guards x {fixes} fixes with idempotency keys: \
             {:.0} bytes by sled's count ({before} -> {after}), {:.0} bytes of store files \
             ({files_before} -> {files_after})",
            after.saturating_sub(before) as f64 / stored,
            files_after.saturating_sub(files_before) as f64 / stored,
        );
        assert!(after > before, "the fixes take room on disk");
    });
}
