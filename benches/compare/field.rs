//! Scenario 3, field load (Lookout only: the peers have no geofences, alerts or rights): G
//! guards sending MessagePack locations at 1 Hz over TLS with 50 geofences, 10 supervisors on the org's
//! alerts and locations, and a PANIC a second. Ingest rate, what the supervisors got, whether
//! any was disconnected, and PANIC -> supervisor latency (durable write included).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use lookout::auth::Role;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::common;
use crate::servers::Server;

pub struct Scale {
    pub guards: usize,
    pub supervisors: usize,
    pub fences: usize,
    pub seconds: u64,
}

pub struct Run {
    pub locations_sent: u64,
    pub locations_acknowledged: u64,
    pub locations_refused: u64,
    pub guards_lost: u64,
    pub seconds: f64,
    pub disconnected: Vec<String>,
    pub panics_sent: usize,
    pub panics_delivered: usize,
    /// PANIC sent -> each supervisor's receipt, sorted.
    pub panic_latencies: Vec<Duration>,
    pub positions_delivered: u64,
    pub server_cores: f64,
    pub generator_cores: f64,
    pub rss_mib: (f64, f64),
    /// PANIC sent -> the panicker's reply (stored and fanned out), sorted.
    pub panic_replies: Vec<Duration>,
    pub connect_seconds: f64,
}

fn own_cpu_seconds() -> f64 {
    common::cpu_seconds_of("self")
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

async fn fences(server: &Server, count: usize) {
    let http = crate::harness::http_client(server.cert_pem());
    let sup = server
        .token("planner", Role::Supervisor)
        .unwrap_or_default();
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

pub async fn run(server: &Server, scale: &Scale) -> Run {
    let token = |user: &str, role| server.token(user, role).unwrap_or_default();
    let tls = server.tls.clone().expect("Lookout speaks TLS");
    let addr = server.addr;
    fences(server, scale.fences).await;
    let stop_guards = CancellationToken::new();
    let stop_watch = CancellationToken::new();
    let counts = Arc::new(Counts::default());

    // Supervisors first, so they see the guards join.
    let mut watchers = Vec::new();
    for s in 0..scale.supervisors {
        let mut ws = common::connect(addr, &tls, &token(&format!("s{s}"), Role::Supervisor)).await;
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
        let token = token(&format!("g{i}"), Role::Guard);
        let tls = tls.clone();
        let counts = counts.clone();
        let stop = stop_guards.clone();
        let mut go = start.subscribe();
        guards.push(tokio::spawn(async move {
            let ws = common::connect_speaking(addr, &tls, &token, Some("lookout.msgpack")).await;
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
                let publish = json!({"type": "publish", "channel": format!("/topic/location/g{i}"), "data": location(i, n), "id": n});
                Message::Binary(rmp_serde::to_vec_named(&publish).unwrap_or_default().into())
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
    let rss_start = server.rss_kib() as f64 / 1024.0;
    start.send_replace(true);

    let panics_sent: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let mut panicker = common::connect(addr, &tls, &token("panicker", Role::Guard)).await;
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
    let rss_end = server.rss_kib() as f64 / 1024.0;
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
    let wall = cpu_end.2.duration_since(cpu_start.2).as_secs_f64();
    let c = &counts;
    Run {
        locations_sent: c.guards.sent.load(Ordering::Relaxed),
        locations_acknowledged: c.guards.acknowledged.load(Ordering::Relaxed),
        locations_refused: c.guards.refused.load(Ordering::Relaxed),
        guards_lost: c.guards_lost.load(Ordering::Relaxed),
        seconds: wall,
        disconnected,
        panics_sent: sent.len(),
        panics_delivered: delivered,
        panic_latencies: latencies,
        positions_delivered: positions,
        server_cores: (cpu_end.0 - cpu_start.0) / wall,
        generator_cores: (cpu_end.1 - cpu_start.1) / wall,
        rss_mib: (rss_start, rss_end),
        panic_replies: replied,
        connect_seconds: connected_in.as_secs_f64(),
    }
}
