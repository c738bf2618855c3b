//! Scenario 2, fan-out: S subscribers on one channel, one publisher at R msgs/s with ~100-byte
//! payloads carrying their send time and number. Deliveries/s, messages undelivered (a gap in a
//! subscriber's numbers, or what had not arrived 2 s after the last publish: a server that falls
//! behind shows here), latency p50/p99/p99.9/max from publish to receipt, and the server's CPU
//! per delivery from `/proc`. The same load for every server.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use lookout::auth::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::common::percentile;
use crate::servers::{Server, Ws, ENGINE_IO_PING, ENGINE_IO_PONG};

pub struct Run {
    pub rate: u64,
    pub sent: u64,
    pub deliveries: u64,
    pub undelivered: u64,
    pub disconnected: usize,
    pub seconds: u64,
    pub cpu_per_delivery_us: f64,
    pub sorted_us: Vec<u64>,
}

impl Run {
    pub fn p(&self, q: f64) -> u64 {
        percentile(&self.sorted_us, q)
    }

    /// Held the rate: nothing lost, nobody disconnected, p99 under 100 ms.
    pub fn held(&self) -> bool {
        self.undelivered == 0 && self.disconnected == 0 && self.p(0.99) < 100_000
    }
}

/// The number after `"key":` in `text`, without parsing the whole frame.
pub fn number_after(text: &str, key: &str) -> Option<u64> {
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
    /// The message numbers received (a peer publishing concurrently may reorder them).
    numbers: Vec<u64>,
    disconnected: bool,
}

async fn subscriber(mut ws: Ws, base: Instant, stop: CancellationToken) -> Received {
    let mut got = Received {
        latencies_us: Vec::new(),
        numbers: Vec::new(),
        disconnected: false,
    };
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => break,
            frame = ws.next() => frame,
        };
        let text = match frame {
            Some(Ok(Message::Text(t))) if t.as_str() == ENGINE_IO_PING => {
                if ws.send(Message::Text(ENGINE_IO_PONG.into())).await.is_err() {
                    got.disconnected = true;
                    break;
                }
                continue;
            }
            Some(Ok(Message::Text(t))) => t.to_string(),
            Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
            Some(Ok(_)) => continue,
            _ => {
                got.disconnected = true;
                break;
            }
        };
        let (Some(n), Some(sent)) = (number_after(&text, "\"n\""), number_after(&text, "\"t\""))
        else {
            continue;
        };
        got.numbers.push(n);
        let now = base.elapsed().as_micros() as u64;
        got.latencies_us.push(now.saturating_sub(sent));
    }
    got
}

pub async fn run(
    server: &Server,
    subscribers: usize,
    rate: u64,
    seconds: u64,
    topic: &str,
) -> Result<Run, String> {
    let base = Instant::now();
    let stop = CancellationToken::new();
    let tasks = open_all(server, subscribers, topic, |ws| {
        tokio::spawn(subscriber(ws, base, stop.clone()))
    })
    .await?;
    // Every subscription is in place before the first publish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut publisher = server.publisher(topic).await?;
    let cpu_start = server.cpu_seconds();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut sent = 0u64;
    let pad = "x".repeat(40);
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        sent += 1;
        let t = base.elapsed().as_micros() as u64;
        let payload = format!(r#"{{"t":{t},"n":{sent},"pad":"{pad}"}}"#);
        publisher.publish(&payload).await?;
    }
    // Let the last deliveries arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = server.cpu_seconds() - cpu_start;
    stop.cancel();
    let mut latencies = Vec::new();
    let mut undelivered = 0u64;
    let mut disconnected = 0;
    for t in tasks {
        let mut got = t.await.map_err(|e| e.to_string())?;
        got.numbers.sort_unstable();
        got.numbers.dedup();
        let unique = got
            .numbers
            .iter()
            .filter(|n| (1..=sent).contains(*n))
            .count() as u64;
        undelivered += sent - unique;
        disconnected += usize::from(got.disconnected);
        latencies.extend(got.latencies_us);
    }
    if let Some(acknowledged) = publisher.close(sent, Duration::from_secs(5)).await {
        if acknowledged < sent {
            return Err(format!("{sent} published, {acknowledged} acknowledged"));
        }
    }
    latencies.sort_unstable();
    let deliveries = latencies.len() as u64;
    Ok(Run {
        rate,
        sent,
        deliveries,
        undelivered,
        disconnected,
        seconds,
        cpu_per_delivery_us: cpu * 1e6 / deliveries.max(1) as f64,
        sorted_us: latencies,
    })
}

/// Opens `count` subscribers of `topic`, at most 200 handshakes at a time (a new one as soon
/// as one is done), each from an address of its own, and hands each to `each`, in order.
pub async fn open_all<T: Send + 'static>(
    server: &Server,
    count: usize,
    topic: &str,
    each: impl Fn(Ws) -> tokio::task::JoinHandle<T>,
) -> Result<Vec<tokio::task::JoinHandle<T>>, String> {
    let opening = futures_util::stream::iter(0..count).map(|i| {
        let user = format!("s{i}");
        let token = server.token(&user, Role::Supervisor);
        let source = crate::servers::phone_address(i);
        async move {
            server
                .subscriber(&user, token.as_deref(), topic, source)
                .await
        }
    });
    let mut opened = opening.buffered(200);
    let mut tasks = Vec::with_capacity(count);
    while let Some(ws) = opened.next().await {
        tasks.push(each(ws?));
    }
    Ok(tasks)
}
