//! The crowd: many guards sending locations at 1 Hz, supervisors on the org's alerts and
//! locations, and a PANIC a second — does every PANIC reach every supervisor live, and does
//! any supervisor get disconnected?
//!
//! `cargo bench --bench crowd` runs 10,000 guards (over TLS, JSON), 50 geofences, 10
//! supervisors and one PANIC a second for 30 s against the built `lookout` binary, and prints
//! what the supervisors got. Under `cargo test` it only runs a short pass (50 guards, 3 s).
//! The server is a separate process: 10,000 guards on each side would not fit one process's
//! 20,000 open files.

mod common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use lookout::auth::{Authenticator, Role};
use lookout::Config;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

struct Scale {
    guards: usize,
    supervisors: usize,
    fences: usize,
    seconds: u64,
}

/// The server process, stopped by its own pid when dropped.
struct ServerProcess {
    child: std::process::Child,
    addr: SocketAddr,
    data_dir: std::path::PathBuf,
}

impl ServerProcess {
    fn start(data_dir: std::path::PathBuf) -> Self {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .env("LOOKOUT_LIMITS__MAX_CONNECTIONS", "20000")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn lookout");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines.next().expect("listening line").expect("stdout");
            if let Some(url) = line.strip_prefix("lookout listening on https://") {
                break url.parse().expect("address");
            }
        };
        std::thread::spawn(move || for _ in lines {});
        ServerProcess {
            child,
            addr,
            data_dir,
        }
    }

    fn token(&self, user: &str, role: Role) -> String {
        let config = Config {
            data_dir: self.data_dir.clone(),
            ..Config::default()
        };
        Authenticator::from_config(&config)
            .expect("auth")
            .mint(user, Some("acme"), &[role], Duration::from_secs(3600), None)
            .expect("mint")
    }

    fn cpu_seconds(&self) -> f64 {
        common::cpu_seconds_of(&self.child.id().to_string())
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn own_cpu_seconds() -> f64 {
    common::cpu_seconds_of("self")
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where guard `i` is `n` seconds in: walking a ~2 km square.
fn location(i: usize, n: u64) -> Value {
    let step = (n as usize + i) as f64;
    json!({
        "lat": 52.49 + (step * 0.00037) % 0.02,
        "lon": 13.39 + (step * 0.00053) % 0.02,
        "accuracy": 5.0,
        "ts": lookout::protocol::now_millis(),
    })
}

#[derive(Default)]
struct Counts {
    guards: common::GuardCounts,
    guards_lost: AtomicU64,
}

/// What one supervisor saw.
#[derive(Default)]
struct Watch {
    panics: Vec<Instant>,
    positions: u64,
    closed: Option<String>,
}

async fn fences(server: &ServerProcess, cert: &[u8], count: usize) {
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert).expect("cert"))
        .tls_built_in_root_certs(false)
        .build()
        .expect("client");
    let sup = server.token("planner", Role::Supervisor);
    for f in 0..count {
        let (x, y) = (
            13.39 + (f % 10) as f64 * 0.002,
            52.49 + (f / 10) as f64 * 0.004,
        );
        let kind = if f % 2 == 0 { "forbidden" } else { "required" };
        let fence = json!({
            "name": format!("f{f}"), "kind": kind, "guards": [format!("g{f}")],
            "shape": {"type": "Polygon", "coordinates": [[[x, y], [x + 0.001, y], [x + 0.001, y + 0.001], [x, y + 0.001], [x, y]]]}
        });
        let response = http
            .post(format!("https://{}/api/v1/geofences", server.addr))
            .bearer_auth(&sup)
            .json(&fence)
            .send()
            .await
            .expect("fence");
        assert_eq!(response.status(), 201, "fence {f}");
    }
}

async fn run(scale: Scale) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let server = ServerProcess::start(dir.path().join("data"));
    let cert = std::fs::read(server.data_dir.join("tls/cert.pem")).expect("cert");
    let tls = common::tls(&cert);
    let addr = server.addr;
    fences(&server, &cert, scale.fences).await;
    let stop_guards = CancellationToken::new();
    let stop_watch = CancellationToken::new();
    let counts = Arc::new(Counts::default());

    // Supervisors first, so they see the guards join.
    let mut watchers = Vec::new();
    for s in 0..scale.supervisors {
        let mut ws = common::connect(
            addr,
            &tls,
            &server.token(&format!("s{s}"), Role::Supervisor),
        )
        .await;
        for channel in ["/topic/org/acme/alerts", "/topic/org/acme/locations"] {
            let sub = json!({"type": "subscribe", "channel": channel, "id": channel});
            ws.send(Message::Text(sub.to_string().into()))
                .await
                .expect("subscribe");
        }
        let stop = stop_watch.clone();
        watchers.push(tokio::spawn(async move {
            let mut watch = Watch::default();
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => break,
                    next = ws.next() => next,
                };
                match next {
                    Some(Ok(Message::Text(t))) => {
                        // Positions are most of the traffic: counted without parsing them, so
                        // the load generator spends its CPU on sending, not on JSON.
                        if t.contains(r#""channel":"/topic/org/acme/locations""#) {
                            watch.positions += 1;
                            continue;
                        }
                        let v: Value = serde_json::from_str(&t).unwrap_or_default();
                        if v["type"] != "message" {
                            continue;
                        }
                        if v["data"]["event"] == "created" && v["data"]["alert"]["type"] == "PANIC"
                        {
                            watch.panics.push(Instant::now());
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        watch.closed = Some(format!("{frame:?}"));
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        watch.closed = Some(e.to_string());
                        break;
                    }
                    None => {
                        watch.closed = Some("stream ended".into());
                        break;
                    }
                }
            }
            watch
        }));
    }

    let start = tokio::sync::watch::channel(false).0;
    let connecting = Instant::now();
    let handshakes = Arc::new(tokio::sync::Semaphore::new(200));
    let mut guards = Vec::new();
    for i in 0..scale.guards {
        let permit = handshakes.clone().acquire_owned().await.expect("semaphore");
        let token = server.token(&format!("g{i}"), Role::Guard);
        let tls = tls.clone();
        let counts = counts.clone();
        let stop = stop_guards.clone();
        let mut go = start.subscribe();
        guards.push(tokio::spawn(async move {
            let ws = common::connect(addr, &tls, &token).await;
            drop(permit);
            // Everyone starts together, once all are connected, spread over the second as
            // real guards are; a guard that falls behind skips, it does not catch up.
            let _ = go.wait_for(|go| *go).await;
            let phase = Duration::from_millis((i as u64 * 7919) % 1000);
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + phase,
                Duration::from_secs(1),
            );
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n = 0u64;
            let next = || {
                n += 1;
                json!({"type": "publish", "channel": format!("/topic/location/g{i}"), "data": location(i, n), "id": n}).to_string()
            };
            let drain = Duration::ZERO;
            if common::publish_every_tick(ws, tick, &stop, drain, &counts.guards, next)
                .await
                .is_some()
            {
                counts.guards_lost.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Every guard connected (the last permits back) before the measured load starts.
    let _all = handshakes.acquire_many(200).await.expect("semaphore");
    let connected_in = connecting.elapsed();
    let rss_start = server.rss_mib();
    start.send_replace(true);

    let panics_sent: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let mut panicker = common::connect(addr, &tls, &server.token("panicker", Role::Guard)).await;
    let sent = panics_sent.clone();
    let stop = stop_guards.clone();
    let cpu_start = (server.cpu_seconds(), own_cpu_seconds(), Instant::now());
    // The panicker's replies tell the server's part (read, alert stored, fanned out) from the
    // way to the supervisors.
    let panicking = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut replied = Vec::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    let n = sent.lock().len();
                    let msg = json!({"type": "publish", "channel": "/topic/emergency/panicker", "data": {"type": "PANIC"}, "id": n});
                    sent.lock().push(Instant::now());
                    if panicker.send(Message::Text(msg.to_string().into())).await.is_err() {
                        break;
                    }
                }
                next = panicker.next() => match next {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).unwrap_or_default();
                        if let (Some("reply"), Some(n)) = (v["type"].as_str(), v["id"].as_u64()) {
                            if let Some(at) = sent.lock().get(n as usize) {
                                replied.push(at.elapsed());
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                },
            }
        }
        replied
    });

    tokio::time::sleep(Duration::from_secs(scale.seconds)).await;
    let cpu_end = (server.cpu_seconds(), own_cpu_seconds(), Instant::now());
    stop_guards.cancel();
    let mut replied = panicking.await.unwrap_or_default();
    replied.sort();
    for g in guards {
        let _ = g.await;
    }
    // What is on its way arrives before the supervisors stop looking.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_watch.cancel();
    let rss_end = server.rss_mib();
    let metrics = common::metrics(&cert, addr).await;
    let sent = panics_sent.lock().clone();
    let mut latencies = Vec::new();
    let mut delivered = 0;
    let mut disconnected = Vec::new();
    let mut positions = 0;
    for (s, w) in watchers.into_iter().enumerate() {
        let watch = w.await.expect("watcher");
        delivered += watch.panics.len().min(sent.len());
        positions += watch.positions;
        latencies.extend(
            watch
                .panics
                .iter()
                .zip(&sent)
                .map(|(got, sent)| got.saturating_duration_since(*sent)),
        );
        if let Some(why) = watch.closed {
            disconnected.push(format!("s{s}: {why}"));
        }
    }
    latencies.sort();
    let c = &counts;
    println!(
        "crowd: {} guards at 1 Hz (connected in {connected_in:.1?}), {} geofences, {} supervisors, a PANIC a second, {} s",
        scale.guards, scale.fences, scale.supervisors, scale.seconds
    );
    println!(
        "  locations: {} sent, {} acknowledged, {} refused; guards lost: {}",
        c.guards.sent.load(Ordering::Relaxed),
        c.guards.acknowledged.load(Ordering::Relaxed),
        c.guards.refused.load(Ordering::Relaxed),
        c.guards_lost.load(Ordering::Relaxed)
    );
    println!(
        "  supervisors disconnected: {} {:?}",
        disconnected.len(),
        disconnected
    );
    let (p50, p99, max) = common::spread(&latencies);
    println!(
        "  PANICs delivered live: {delivered} of {} ({} sent x {} supervisors); latency p50 {:.1?} p99 {:.1?} max {:.1?}",
        sent.len() * scale.supervisors,
        sent.len(),
        scale.supervisors,
        p50,
        p99,
        max
    );
    println!(
        "  PANIC replies to the panicker: {} of {}; latency p50 {:.1?} p99 {:.1?}",
        replied.len(),
        sent.len(),
        common::percentile(&replied, 0.50),
        common::percentile(&replied, 0.99)
    );
    let wall = cpu_end.2.duration_since(cpu_start.2).as_secs_f64();
    println!(
        "  CPU while loaded: server {:.2} cores, load generator {:.2} cores (of 2)",
        (cpu_end.0 - cpu_start.0) / wall,
        (cpu_end.1 - cpu_start.1) / wall
    );
    for family in [
        "lookout_flush_latency_seconds",
        "lookout_publish_latency_seconds",
    ] {
        let (sum, count) = (
            metric(&metrics, &format!("{family}_sum")),
            metric(&metrics, &format!("{family}_count")),
        );
        println!(
            "  {family}: {count} observations, mean {:.1} ms",
            1000.0 * sum / count.max(1.0)
        );
    }
    println!("  positions delivered to supervisors: {positions}; server RSS {rss_start:.0} MiB after connecting, {rss_end:.0} MiB at the end");
    if scale.guards <= 100 {
        // The short pass checks that the scenario works, not how fast.
        assert!(disconnected.is_empty(), "{disconnected:?}");
        assert_eq!(delivered, sent.len() * scale.supervisors);
        assert!(c.guards.acknowledged.load(Ordering::Relaxed) > 0);
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let guards = std::env::var("CROWD_GUARDS")
        .ok()
        .and_then(|g| g.parse().ok())
        .unwrap_or(10_000);
    let scale = if full {
        Scale {
            guards,
            supervisors: 10,
            fences: 50,
            seconds: 30,
        }
    } else {
        Scale {
            guards: 50,
            supervisors: 2,
            fences: 5,
            seconds: 3,
        }
    };
    common::block_on(run(scale));
}
