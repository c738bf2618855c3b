//! Scenario 5, durable publish (Lookout only: the peers acknowledge nothing durable): publishes
//! on a logged room acknowledged per second, from 1 and from 32 publishers, over TLS WebSocket
//! (each keeping up to 64 publishes unanswered: the server pipelines them) and over REST
//! (`POST /api/v1/publish`, each publisher one request at a time on a kept-alive connection).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use lookout::auth::Role;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::servers::{room, websocket, Server};

pub struct Run {
    pub transport: &'static str,
    pub publishers: usize,
    pub acknowledged: u64,
    pub refused: u64,
    pub seconds: f64,
    /// Publish -> acknowledgement, sorted (µs).
    pub sorted_us: Vec<u64>,
}

const WINDOW: usize = 64;

async fn websocket_publisher(
    server: &Server,
    p: usize,
    until: Instant,
) -> Result<(Vec<u64>, u64), String> {
    let token = server.token(&format!("pub{p}"), Role::Supervisor);
    let source = crate::servers::phone_address(p);
    let ws = websocket(
        server.addr,
        server.tls.clone(),
        "/ws",
        source,
        token.as_deref(),
        None,
    )
    .await?;
    let (mut write, mut read) = ws.split();
    read.next().await; // connection_established
    let channel = room("durable");
    let mut in_flight: VecDeque<Instant> = VecDeque::new();
    let (mut latencies, mut refused, mut n) = (Vec::new(), 0u64, 0u64);
    loop {
        let sending = Instant::now() < until;
        while sending && in_flight.len() < WINDOW {
            n += 1;
            let publish = json!({"type": "publish", "id": n, "channel": channel, "data": {"n": n}});
            write
                .feed(Message::Text(publish.to_string().into()))
                .await
                .map_err(|e| e.to_string())?;
            in_flight.push_back(Instant::now());
        }
        write.flush().await.map_err(|e| e.to_string())?;
        if in_flight.is_empty() {
            break;
        }
        match read.next().await {
            Some(Ok(Message::Text(text))) if text.starts_with(r#"{"type":"reply""#) => {
                let at = in_flight.pop_front().ok_or("a reply nobody waited for")?;
                if text.contains(r#""ok":true"#) {
                    latencies.push(at.elapsed().as_micros() as u64);
                } else {
                    refused += 1;
                }
            }
            Some(Ok(_)) => {}
            other => return Err(format!("publisher {p}: {other:?}")),
        }
    }
    Ok((latencies, refused))
}

async fn rest_publisher(
    server: &Server,
    p: usize,
    until: Instant,
) -> Result<(Vec<u64>, u64), String> {
    let http = crate::harness::http_client(server.cert_pem());
    // REST publish is for back-end services (and admins).
    let token = server
        .token(&format!("svc{p}"), Role::Service)
        .unwrap_or_default();
    let url = format!("https://{}/api/v1/publish", server.addr);
    let channel = room("durable");
    let (mut latencies, mut refused, mut n) = (Vec::new(), 0u64, 0u64);
    while Instant::now() < until {
        n += 1;
        let at = Instant::now();
        let response = http
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({"channel": channel, "data": {"n": n}}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            latencies.push(at.elapsed().as_micros() as u64);
        } else if refused == 0 {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(format!("REST publish refused: {status} {body}"));
        } else {
            refused += 1;
        }
    }
    Ok((latencies, refused))
}

pub async fn run(
    server: &Server,
    transport: &'static str,
    publishers: usize,
    duration: Duration,
) -> Result<Run, String> {
    let started = Instant::now();
    let until = started + duration;
    let all = (0..publishers).map(|p| async move {
        if transport == "REST" {
            rest_publisher(server, p, until).await
        } else {
            websocket_publisher(server, p, until).await
        }
    });
    let mut run = Run {
        transport,
        publishers,
        acknowledged: 0,
        refused: 0,
        seconds: 0.0,
        sorted_us: Vec::new(),
    };
    for outcome in futures_util::future::join_all(all).await {
        let (latencies, refused) = outcome?;
        run.acknowledged += latencies.len() as u64;
        run.refused += refused;
        run.sorted_us.extend(latencies);
    }
    run.seconds = started.elapsed().as_secs_f64();
    run.sorted_us.sort_unstable();
    Ok(run)
}
