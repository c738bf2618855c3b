//! What the benchmarks share: native WebSocket clients, the guards' publishing loop, percentiles
//! and CPU readings. (Their TLS configuration is the tests' `client_tls`.)

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// A native-protocol WebSocket to `addr` with `token`, past its `connection_established`.
pub async fn connect(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    token: &str,
) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    connect_speaking(addr, tls, token, None).await
}

/// Like [`connect`], asking for `subprotocol` (`lookout.msgpack` for MessagePack).
pub async fn connect_speaking(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    token: &str,
    subprotocol: Option<&str>,
) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let mut req = format!("wss://{addr}/ws")
        .into_client_request()
        .expect("req");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("h"),
    );
    if let Some(p) = subprotocol {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().expect("h"));
    }
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        req,
        None,
        true,
        Some(Connector::Rustls(tls.clone())),
    )
    .await
    .expect("connect");
    ws.next().await.expect("established").expect("frame");
    ws
}

/// What a guard's publishes got.
#[derive(Default)]
pub struct GuardCounts {
    pub sent: AtomicU64,
    pub acknowledged: AtomicU64,
    pub refused: AtomicU64,
}

/// A guard's life: `messages()` published at every tick (a fix, sometimes with more after it)
/// and the answers counted, until `stop` (then answers still on their way are counted for
/// `drain`). The guard never waits for an answer before its next fix. Returns why it ended
/// early, if the connection did.
pub async fn publish_every_tick<S>(
    ws: WebSocketStream<S>,
    mut tick: tokio::time::Interval,
    stop: &CancellationToken,
    drain: Duration,
    counts: &GuardCounts,
    mut messages: impl FnMut() -> Vec<Message>,
) -> Option<String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut tx, mut rx) = ws.split();
    let count = |frame: &Message| {
        let kind = match frame {
            Message::Text(text) if text.starts_with(r#"{"type":"reply""#) => "reply",
            Message::Text(text) if text.starts_with(r#"{"type":"error""#) => "error",
            // A MessagePack connection's answers: a map with a `type`.
            Message::Binary(bytes) => match rmpv::decode::read_value(&mut &bytes[..]) {
                Ok(rmpv::Value::Map(fields)) => fields
                    .iter()
                    .find(|(k, _)| k.as_str() == Some("type"))
                    .and_then(|(_, v)| v.as_str())
                    .map_or("", |t| {
                        if t == "reply" {
                            "reply"
                        } else if t == "error" {
                            "error"
                        } else {
                            ""
                        }
                    }),
                _ => "",
            },
            _ => "",
        };
        match kind {
            "reply" => counts.acknowledged.fetch_add(1, Ordering::Relaxed),
            "error" => counts.refused.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                for message in messages() {
                    if tx.feed(message).await.is_err() {
                        return Some("send failed".into());
                    }
                    counts.sent.fetch_add(1, Ordering::Relaxed);
                }
                if tx.flush().await.is_err() {
                    return Some("send failed".into());
                }
            }
            next = rx.next() => match next {
                Some(Ok(frame)) => count(&frame),
                other => return Some(format!("{other:?}")),
            }
        }
    }
    let _ = tokio::time::timeout(drain, async {
        while let Some(Ok(next)) = rx.next().await {
            count(&next);
        }
    })
    .await;
    None
}

/// The `p` quantile (0–1) of sorted samples.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// p50, p99 and the largest of sorted samples.
pub fn spread<T: Copy + Default>(sorted: &[T]) -> (T, T, T) {
    (
        percentile(sorted, 0.5),
        percentile(sorted, 0.99),
        sorted.last().copied().unwrap_or_default(),
    )
}

/// Runs a load generator on two worker threads (as many as the machine has cores).
pub fn block_on<F: std::future::Future>(load: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(load)
}

/// User plus system CPU seconds of the process `pid` (from `/proc`).
pub fn cpu_seconds_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}
