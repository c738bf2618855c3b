//! PANIC to the alarm receiving centre's ACK, under field load: `lookout serve` (the binary) with
//! one DC-09 receiver — pysiaalarm 3.2.2 (tests/arc/receiver.py), TCP, AES-128, SIA DCS —
//! while 1,000 guards send positions at 1 Hz over TLS WebSockets. One more guard publishes a
//! PANIC on `/topic/emergency/…` every 200 ms, one at a time; each sample is the time from
//! the publish leaving the guard to the receiver reading the message (the moment it answers
//! ACK: both clocks are this machine's). Lookout's own measure (the alert's commit to the ACK
//! read back, `GET /api/v1/arc/status`) is printed beside it.
//!
//! `cargo bench --bench arc`. Under `cargo test` it only runs a short pass (20 guards,
//! 5 PANICs).

mod common;
#[path = "../tests/common/mod.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use harness::dc09::Receiver;
use harness::{config_file, get_json, Binary};
use lookout::auth::Role;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (guards, warm, samples) = if full {
        (1000, Duration::from_secs(5), 200)
    } else {
        (20, Duration::from_millis(500), 5)
    };
    common::block_on(async move {
        let receiver = Receiver::start(0, false, Some("0123456789ABCDEF")).await;
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let data = dir.path().join("data");
        let config = config_file(
            &data,
            &format!(
                "[limits]\nalerts_per_minute = 100000\n\
                 [[arc.receivers]]\nname = \"arc1\"\nhost = \"127.0.0.1\"\nport = {}\n\
                 receiver_number = \"1\"\nline_number = \"2\"\naccount = \"{}\"\n\
                 key = \"30313233343536373839414243444546\"\nsupervision = \"60s\"\n",
                receiver.port,
                harness::dc09::ACCOUNT
            ),
        );
        let node = Binary::serve(&data, &[("LOOKOUT_CONFIG", config.as_str())]);
        let tls = harness::client_tls(&node.cert_pem());
        let addr = node.addr;

        // The guards: each its own connection, a fix every second.
        let stop = CancellationToken::new();
        let counts = Arc::new(common::GuardCounts::default());
        let connecting = Arc::new(tokio::sync::Semaphore::new(50));
        let mut tasks = Vec::new();
        for g in 0..guards {
            let token = node.token(&format!("g{g}"), Some("acme"), &[Role::Guard]);
            let (tls, stop, counts, connecting) = (
                tls.clone(),
                stop.clone(),
                counts.clone(),
                connecting.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let permit = connecting.acquire_owned().await.expect("semaphore");
                let ws = common::connect(addr, &tls, &token).await;
                drop(permit);
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                // Spread over the second, as phones are.
                tick.reset_after(Duration::from_millis((g as u64 * 997) % 1000));
                let channel = format!("/topic/location/g{g}");
                let mut n = 0u64;
                let next = move || {
                    n += 1;
                    let lat = 51.5 + (g as f64) * 1e-4;
                    let msg = json!({"type": "publish", "channel": channel, "id": n,
                        "data": {"lat": lat, "lon": -0.1, "accuracy": 5.0, "ts": now_ms()}});
                    vec![Message::Text(msg.to_string().into())]
                };
                common::publish_every_tick(ws, tick, &stop, Duration::ZERO, &counts, next).await
            }));
        }
        // Every guard connected before the PANICs start.
        let _all = connecting.acquire_many(50).await.expect("semaphore");
        drop(_all);
        tokio::time::sleep(warm).await;

        let mut panicker =
            common::connect(addr, &tls, &node.token("p1", Some("acme"), &[Role::Guard])).await;
        let mut latencies: Vec<Duration> = Vec::with_capacity(samples);
        for i in 0..samples {
            let sent = now_ms();
            let msg = json!({"type": "publish", "channel": "/topic/emergency/p1",
                "data": {"type": "PANIC"}, "id": format!("panic-{i}")});
            panicker
                .send(Message::Text(msg.to_string().into()))
                .await
                .expect("send");
            let event = receiver
                .wait_events(i + 1, "the PANIC at the receiver")
                .await
                .pop()
                .expect("an event");
            let received = event["t"].as_u64().expect("t");
            latencies.push(Duration::from_millis(received.saturating_sub(sent)));
            // The guard's reply, so the next PANIC starts from a quiet socket.
            let _ = tokio::time::timeout(Duration::from_secs(5), panicker.next()).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        stop.cancel();
        for t in tasks {
            let _ = t.await;
        }
        let admin = node.token("root", None, &[Role::Admin]);
        let http = harness::http_client(&node.cert_pem());
        let status = get_json(&http, &format!("https://{addr}/api/v1/arc/status"), &admin).await;
        latencies.sort();
        let (p50, p99, max) = common::spread(&latencies);
        println!(
            "PANIC -> ARC ACK (pysiaalarm, TCP, AES-128, SIA-DCS), {} samples while {guards} guards \
             send positions at 1 Hz: p50 {p50:?}  p99 {p99:?}  max {max:?}",
            latencies.len()
        );
        println!(
            "  Lookout's own measure (alert committed -> ACK read), ms [p50, p99]: {}; \
             fixes sent {}, answered {}, refused {}",
            status["receivers"][0]["latency_ms"],
            counts.sent.load(std::sync::atomic::Ordering::Relaxed),
            counts
                .acknowledged
                .load(std::sync::atomic::Ordering::Relaxed),
            counts.refused.load(std::sync::atomic::Ordering::Relaxed),
        );
        assert_eq!(latencies.len(), samples);
        assert_eq!(status["receivers"][0]["pending"], 0, "{status}");
        drop(node);
        receiver.stop().await;
    });
}
