//! Fan-out: S subscribers on one logged room, one publisher at R msgs/s with ~100-byte
//! payloads carrying their send time, over TLS against the built `lookout` binary.
//!
//! `cargo bench --bench fanout` runs 1,000 subscribers at 100, 150 and 200 msgs/s for 10 s
//! each (`FANOUT_SUBSCRIBERS`, `FANOUT_RATES=100,200`, `FANOUT_SECONDS`) and prints, per rate:
//! deliveries/s, messages undelivered (a gap in a subscriber's seqs, or what had not arrived
//! 2 s after the last publish: a server that falls behind shows here), latency
//! p50/p99/p99.9/max from publish to receipt, and the server's CPU per delivery (from `/proc`).
//! `SERVER_UNDER_TEST=path/to/lookout` measures another build with the same load. Under
//! `cargo test` it only runs a short pass (20 subscribers, 50 msgs/s, 1 s).

mod common;
#[path = "../tests/common/mod.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use harness::Binary;
use lookout::auth::Role;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

const ROOM: &str = "/topic/org/acme/room/fanout";

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &Binary, tls: &Arc<rustls::ClientConfig>, user: &str, i: usize) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    let source = std::net::IpAddr::from([127, 0, 0, 1 + (i % 16) as u8]);
    socket.bind((source, 0).into()).expect("bind");
    let stream = socket.connect(server.addr).await.expect("connect");
    let token = server.token(user, Some("acme"), &[Role::Supervisor]);
    let mut req = format!("wss://{}/ws", server.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::client_async_tls_with_config(
        req,
        stream,
        None,
        Some(Connector::Rustls(tls.clone())),
    )
    .await
    .expect("handshake");
    ws.next().await.expect("established").expect("frame");
    ws
}

/// The number after `"key":` in `text`, without parsing the whole frame.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .skip_while(|c| *c == ':' || *c == ' ')
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

struct Received {
    latencies_us: Vec<u64>,
    gaps: u64,
    last_seq: u64,
}

async fn subscriber(mut ws: Ws, base: Instant, stop: CancellationToken) -> Received {
    let subscribe = json!({"type": "subscribe", "id": "s", "channel": ROOM});
    ws.send(Message::Text(subscribe.to_string().into()))
        .await
        .expect("subscribe");
    let mut got = Received {
        latencies_us: Vec::new(),
        gaps: 0,
        last_seq: 0,
    };
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => break,
            frame = ws.next() => frame,
        };
        let Some(Ok(Message::Text(text))) = frame else {
            match frame {
                Some(Ok(_)) => continue,
                other => panic!("a subscriber was disconnected: {other:?}"),
            }
        };
        if !text.starts_with("{\"type\":\"message\"") {
            continue;
        }
        let (Some(seq), Some(sent)) =
            (number_after(&text, "\"seq\""), number_after(&text, "\"t\""))
        else {
            continue;
        };
        if seq != got.last_seq + 1 {
            got.gaps += seq.saturating_sub(got.last_seq + 1);
        }
        got.last_seq = seq;
        let now = base.elapsed().as_micros() as u64;
        got.latencies_us.push(now.saturating_sub(sent));
    }
    got
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let var = |name: &str| std::env::var(name).ok();
    let subscribers: usize = var("FANOUT_SUBSCRIBERS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 1000 } else { 20 });
    let rates: Vec<u64> = var("FANOUT_RATES")
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| if full { vec![100, 150, 200] } else { vec![50] });
    let seconds: u64 = var("FANOUT_SECONDS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 10 } else { 1 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "fan-out: {subscribers} TLS subscribers on one logged room, {seconds} s per rate, ~100-byte messages{}",
        var("SERVER_UNDER_TEST").map_or(String::new(), |b| format!(", server {b}"))
    );
    println!(
        "| msgs/s | deliveries/s | undelivered | p50 | p99 | p99.9 | max | server CPU per delivery |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for rate in rates {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Binary::serve(
            &dir.path().join("data"),
            &[
                ("LOOKOUT_LIMITS__MAX_CONNECTIONS", "20000"),
                ("LOOKOUT_LIMITS__MESSAGES_PER_SECOND", "100000"),
                ("LOOKOUT_LIMITS__MESSAGE_BURST", "100000"),
            ],
        );
        let tls = harness::client_tls(&server.cert_pem());
        runtime.block_on(async {
            let base = Instant::now();
            let stop = CancellationToken::new();
            let mut tasks = Vec::new();
            for i in 0..subscribers {
                let ws = connect(&server, &tls, &format!("s{i}"), i).await;
                tasks.push(tokio::spawn(subscriber(ws, base, stop.clone())));
            }
            // Every subscription is in place before the first publish.
            tokio::time::sleep(Duration::from_millis(500 + subscribers as u64)).await;
            let publisher = connect(&server, &tls, "publisher", 0).await;
            let (mut write, mut read) = publisher.split();
            let replies = tokio::spawn(async move {
                let mut ok = 0u64;
                while let Some(Ok(frame)) = read.next().await {
                    if let Message::Text(text) = frame {
                        ok += u64::from(text.contains("\"ok\":true"));
                    }
                }
                ok
            });
            let pid = server.child.id();
            let cpu_start = common::cpu_seconds_of(&pid.to_string());
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
            let mut sent = 0u64;
            let pad = "x".repeat(40);
            while started.elapsed() < Duration::from_secs(seconds) {
                tick.tick().await;
                sent += 1;
                let t = base.elapsed().as_micros() as u64;
                let publish = json!({"type": "publish", "id": sent, "channel": ROOM,
                                     "data": {"t": t, "n": sent, "pad": pad}});
                write
                    .send(Message::Text(publish.to_string().into()))
                    .await
                    .expect("publish");
            }
            // Let the last deliveries arrive.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let cpu = common::cpu_seconds_of(&pid.to_string()) - cpu_start;
            stop.cancel();
            let mut latencies = Vec::new();
            let mut undelivered = 0u64;
            for t in tasks {
                let got = t.await.expect("subscriber");
                undelivered += got.gaps + sent.saturating_sub(got.last_seq);
                latencies.extend(got.latencies_us);
            }
            let _ = write.close().await;
            let _ = replies.await;
            latencies.sort_unstable();
            let deliveries = latencies.len() as u64;
            let ms = |us: u64| format!("{:.1} ms", us as f64 / 1000.0);
            println!(
                "| {rate} | {:.0} | {undelivered} | {} | {} | {} | {} | {:.2} µs |",
                deliveries as f64 / seconds as f64,
                ms(percentile(&latencies, 0.50)),
                ms(percentile(&latencies, 0.99)),
                ms(percentile(&latencies, 0.999)),
                ms(latencies.last().copied().unwrap_or(0)),
                cpu * 1e6 / deliveries.max(1) as f64,
            );
            assert!(deliveries > 0, "nothing was delivered");
        });
        drop(server);
    }
}
