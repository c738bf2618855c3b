//! Scenario 1, connections: N connections (authenticated for Lookout), each subscribed, held
//! for T s with the server's heartbeats running (WebSocket pings every 10 s for Lookout and
//! Nchan, STOMP heart-beats every 10 s for RabbitMQ): the server's RSS per connection (growth
//! over the server with one connection, divided by N) and its CPU while they idle.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::fanout::open_all;
use crate::servers::{Server, Ws, ENGINE_IO_PING, ENGINE_IO_PONG};

pub struct Run {
    pub count: usize,
    pub connect_seconds: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub idle_cpu_percent: f64,
    pub dropped: usize,
}

impl Run {
    pub fn kib_per_connection(&self) -> f64 {
        self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64 / self.count.max(1) as f64
    }
}

/// Reads (which answers pings) until `stop`; whether the server ended the connection first.
async fn hold(mut ws: Ws, stop: CancellationToken) -> bool {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(t))) if t.as_str() == ENGINE_IO_PING => {
                    if ws.send(Message::Text(ENGINE_IO_PONG.into())).await.is_err() {
                        return true;
                    }
                }
                Some(Ok(_)) => {}
                _ => return true,
            },
        }
    }
    let _ = ws.close(None).await;
    false
}

pub async fn run(server: &Server, count: usize, hold_for: Duration) -> Result<Run, String> {
    let stop = CancellationToken::new();
    // One connection first, so what is measured is connections, not start-up allocations.
    let warm = open_all(server, 1, "lobby", |ws| {
        tokio::spawn(hold(ws, stop.clone()))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before_kib = server.rss_kib();
    let started = Instant::now();
    let tasks = open_all(server, count, "lobby", |ws| {
        tokio::spawn(hold(ws, stop.clone()))
    })
    .await?;
    let connect_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_start = server.cpu_seconds();
    let idle_started = Instant::now();
    tokio::time::sleep(hold_for).await;
    let idle_cpu_percent =
        100.0 * (server.cpu_seconds() - cpu_start) / idle_started.elapsed().as_secs_f64();
    let rss_after_kib = server.rss_kib();
    stop.cancel();
    let mut dropped = 0;
    for t in tasks.into_iter().chain(warm) {
        dropped += usize::from(t.await.unwrap_or(true));
    }
    Ok(Run {
        count,
        connect_seconds,
        rss_before_kib,
        rss_after_kib,
        idle_cpu_percent,
        dropped,
    })
}
