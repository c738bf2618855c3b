//! Scenario 3, field load (Lookout only: the peers have no geofences, alerts or rights): G
//! guards streaming locations (JSON or MessagePack) at 1 Hz over TLS with 50 geofences, 10
//! supervisors on the org's alerts and locations, and a PANIC a second raised in turn by the
//! guards themselves, on the connection they stream on. Guards load like devices at their
//! worst: none waits for a reply before its next fix, and a fix that could not be sent on time
//! is sent late, not skipped, so the offered load does not fall when the server slows. Ingest
//! rate, what the supervisors got, whether any was disconnected, PANIC -> supervisor latency
//! (durable write included), and what the server shed (`lookout_positions_shed_total`).

use std::collections::HashMap;
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    MsgPack,
}

impl Encoding {
    pub fn parse(name: &str) -> Option<Encoding> {
        match name {
            "json" => Some(Encoding::Json),
            "msgpack" => Some(Encoding::MsgPack),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "JSON",
            Encoding::MsgPack => "MessagePack",
        }
    }

    fn subprotocol(self) -> Option<&'static str> {
        match self {
            Encoding::Json => None,
            Encoding::MsgPack => Some("lookout.msgpack"),
        }
    }

    fn message(self, value: &Value) -> Message {
        match self {
            Encoding::Json => Message::Text(value.to_string().into()),
            Encoding::MsgPack => {
                Message::Binary(rmp_serde::to_vec_named(value).unwrap_or_default().into())
            }
        }
    }
}

#[derive(Clone, Copy)]
pub struct Scale {
    pub guards: usize,
    pub supervisors: usize,
    pub fences: usize,
    pub seconds: u64,
    pub encoding: Encoding,
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
    /// A position's `ts` -> a supervisor's receipt, for a sample of them, sorted.
    pub position_lag: Vec<Duration>,
    /// Positions the server shed under load (from its metrics), and its overload gauge's
    /// highest reading.
    pub shed: u64,
    pub server_cores: f64,
    pub generator_cores: f64,
    pub rss_mib: (f64, f64),
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
        "ts": lookout::clock::now_millis(),
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
    /// The guard who raised it, and when it came.
    panics: Vec<(String, Instant)>,
    positions: u64,
    /// `ts` of every 100th position -> its receipt.
    lag: Vec<Duration>,
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
                        // Positions are most of the traffic: counted without parsing most of
                        // them, so the load generator spends its CPU on sending, not on JSON.
                        if t.contains(r#""channel":"/topic/org/acme/locations""#) {
                            watch.positions += 1;
                            if watch.positions % 100 == 0 {
                                if let Some(ts) = crate::fanout::number_after(&t, "\"ts\"") {
                                    let now = lookout::clock::now_millis();
                                    watch
                                        .lag
                                        .push(Duration::from_millis(now.saturating_sub(ts)));
                                }
                            }
                            continue;
                        }
                        let v: Value = serde_json::from_str(&t).unwrap_or_default();
                        if v["type"] != "message" {
                            continue;
                        }
                        let alert = &v["data"]["alert"];
                        if v["data"]["event"] == "created" && alert["type"] == "PANIC" {
                            let user = alert["user"].as_str().unwrap_or_default().to_string();
                            watch.panics.push((user, Instant::now()));
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
    // Second t of the run, guard `panicker(t)` raises a PANIC on its own stream.
    let panicker = |t: u64| ((t as usize) * 7919 + 13) % scale.guards;
    let panics_sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let encoding = scale.encoding;
    for i in 0..scale.guards {
        let permit = handshakes.clone().acquire_owned().await.expect("semaphore");
        let token = token(&format!("g{i}"), Role::Guard);
        let tls = tls.clone();
        let counts = counts.clone();
        let stop = stop_guards.clone();
        let mut go = start.subscribe();
        let panics_at: Vec<u64> = (0..scale.seconds).filter(|t| panicker(*t) == i).collect();
        let sent = panics_sent.clone();
        guards.push(tokio::spawn(async move {
            let ws =
                common::connect_speaking(addr, &tls, &token, encoding.subprotocol()).await;
            drop(permit);
            // Everyone starts together, once all are connected, spread over the second as
            // real guards are; a guard that falls behind sends its late fixes as soon as it
            // can (a device queues them), it does not skip them.
            let _ = go.wait_for(|go| *go).await;
            let began = Instant::now();
            let phase = Duration::from_millis((i as u64 * 7919) % 1000);
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + phase,
                Duration::from_secs(1),
            );
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = 0u64;
            let user = format!("g{i}");
            let mut panics_at = panics_at.into_iter().peekable();
            let next = || {
                n += 1;
                let publish = json!({"type": "publish", "channel": format!("/topic/location/{user}"), "data": location(i, n), "id": n});
                let mut messages = vec![encoding.message(&publish)];
                // Its PANIC goes out on the stream, after the fix it is due with.
                if panics_at.next_if(|t| began.elapsed() >= Duration::from_secs(*t)).is_some() {
                    let panic = json!({"type": "publish", "channel": format!("/topic/emergency/{user}"), "data": {"type": "PANIC"}, "id": format!("panic-{n}")});
                    messages.push(encoding.message(&panic));
                    sent.lock().insert(user.clone(), Instant::now());
                }
                messages
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
    let shed_start = server.shed_positions().await;
    start.send_replace(true);
    let cpu_start = (server.cpu_seconds(), own_cpu_seconds(), Instant::now());

    tokio::time::sleep(Duration::from_secs(scale.seconds)).await;
    let cpu_end = (server.cpu_seconds(), own_cpu_seconds(), Instant::now());
    stop_guards.cancel();
    for g in guards {
        let _ = g.await;
    }
    // What is on its way arrives before the supervisors stop looking.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_watch.cancel();
    let rss_end = server.rss_kib() as f64 / 1024.0;
    let shed = server.shed_positions().await.saturating_sub(shed_start);
    let sent = panics_sent.lock().clone();
    let mut latencies = Vec::new();
    let mut delivered = 0;
    let mut disconnected = Vec::new();
    let mut positions = 0;
    let mut lag = Vec::new();
    for (s, w) in watchers.into_iter().enumerate() {
        let watch = w.await.expect("watcher");
        positions += watch.positions;
        lag.extend(watch.lag);
        for (user, got) in &watch.panics {
            if let Some(at) = sent.get(user) {
                delivered += 1;
                latencies.push(got.saturating_duration_since(*at));
            }
        }
        if let Some(why) = watch.closed {
            disconnected.push(format!("s{s}: {why}"));
        }
    }
    lag.sort();
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
        position_lag: lag,
        shed,
        server_cores: (cpu_end.0 - cpu_start.0) / wall,
        generator_cores: (cpu_end.1 - cpu_start.1) / wall,
        rss_mib: (rss_start, rss_end),
        connect_seconds: connected_in.as_secs_f64(),
    }
}
