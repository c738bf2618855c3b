//! Idle connections: what one authenticated, subscribed TLS WebSocket costs the server.
//!
//! `cargo bench --bench connections` opens `CONNECTIONS_N` (default 19,000, the open-file cap
//! here) connections to the built `lookout` binary, from 16 loopback source addresses
//! (127.0.0.1–16, past the ephemeral-port limit of one), each subscribed to a room, then holds
//! them for `CONNECTIONS_HOLD` seconds (default 30) with the server's pings running. It prints
//! the server's RSS per connection (growth over the idle server, divided by the count) and its
//! CPU while they idle. Under `cargo test` it only runs a short pass (200 connections, 2 s).
//! The server is a separate process: both sides' sockets would not fit one process's files.

mod common;
#[path = "../tests/common/mod.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use harness::Binary;
use lookout::auth::Role;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;
use tokio_util::sync::CancellationToken;

/// One connection from `source`, subscribed, answering pings until `stop`.
async fn hold(
    server: std::net::SocketAddr,
    source: std::net::IpAddr,
    tls: Arc<rustls::ClientConfig>,
    token: String,
    connected: tokio::sync::mpsc::Sender<()>,
    stop: CancellationToken,
) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind((source, 0).into()).expect("bind");
    let stream = socket.connect(server).await.expect("connect");
    let mut req = format!("wss://{server}/ws")
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
        Some(Connector::Rustls(tls)),
    )
    .await
    .expect("handshake");
    ws.next().await.expect("established").expect("frame");
    let subscribe = json!({"type": "subscribe", "id": 1, "channel": "/topic/org/acme/room/lobby"});
    ws.send(Message::Text(subscribe.to_string().into()))
        .await
        .expect("subscribe");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let reply: Value = serde_json::from_str(&text).expect("json");
                if reply["id"] == 1 {
                    assert!(reply["ok"] == true, "{reply}");
                    break;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("connection ended while subscribing: {other:?}"),
        }
    }
    let _ = connected.send(()).await;
    // Reading answers the server's pings (tungstenite queues the pong and sends it here).
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            frame = ws.next() => match frame {
                Some(Ok(_)) => {}
                other => panic!("an idle connection ended: {other:?}"),
            },
        }
    }
    let _ = ws.close(None).await;
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let env_or = |name: &str, full_default: u64, smoke: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if full { full_default } else { smoke })
    };
    let count = env_or("CONNECTIONS_N", 19_000, 200) as usize;
    let hold_for = Duration::from_secs(env_or("CONNECTIONS_HOLD", 30, 2));
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Binary::serve(
        &data,
        &[
            ("LOOKOUT_LIMITS__MAX_CONNECTIONS", "20000"),
            ("LOOKOUT_LIMITS__PING_INTERVAL", "10s"),
        ],
    );
    let tls = harness::client_tls(&server.cert_pem());
    let tokens: Vec<String> = (0..count)
        .map(|i| server.token(&format!("u{i}"), Some("acme"), &[Role::Guard]))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // One connection first, so what is measured is connections, not start-up allocations.
        let stop = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel(count + 1);
        let mut tasks = Vec::new();
        let warm = tokio::spawn(hold(
            server.addr,
            [127, 0, 0, 1].into(),
            tls.clone(),
            server.token("warm", Some("acme"), &[Role::Guard]),
            tx.clone(),
            stop.clone(),
        ));
        rx.recv().await.expect("warm-up connection");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_before = server.rss_kib();
        let started = Instant::now();
        for (i, token) in tokens.into_iter().enumerate() {
            let source = std::net::IpAddr::from([127, 0, 0, 1 + (i % 16) as u8]);
            tasks.push(tokio::spawn(hold(
                server.addr,
                source,
                tls.clone(),
                token,
                tx.clone(),
                stop.clone(),
            )));
            // At most a few hundred handshakes in flight.
            if i >= 256 {
                rx.recv().await.expect("connected");
            }
        }
        for _ in 0..count.min(256) {
            rx.recv().await.expect("connected");
        }
        let connect_time = started.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pid = server.child.id();
        let cpu_start = common::cpu_seconds_of(&pid.to_string());
        let idle_started = Instant::now();
        tokio::time::sleep(hold_for).await;
        let idle_cpu = (common::cpu_seconds_of(&pid.to_string()) - cpu_start) / idle_started.elapsed().as_secs_f64();
        let rss_after = server.rss_kib();
        let per = (rss_after.saturating_sub(rss_before)) as f64 / count as f64;
        println!(
            "connections: {count} TLS WebSocket connections, authenticated and subscribed, \
             from 16 source addresses, connected in {connect_time:.1?}, held {hold_for:?}"
        );
        println!(
            "  server RSS {:.0} MiB idle with one connection, {:.0} MiB with all: {per:.1} KiB per connection",
            rss_before as f64 / 1024.0,
            rss_after as f64 / 1024.0
        );
        println!(
            "  server CPU while they idle (pings every 10 s): {:.1} % of one core",
            idle_cpu * 100.0
        );
        stop.cancel();
        for t in tasks {
            t.await.expect("connection");
        }
        let _ = warm.await;
        assert!(per > 0.0);
    });
    drop(server);
}
