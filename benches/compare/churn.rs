//! Scenario 6, a day's churn (Lookout only: what it keeps per user and room is its own): 24
//! rounds, one per hour of a site's day, each of new users (a new org per round, so rooms of
//! their own) who connect over TLS, join one of the round's rooms, publish a few messages,
//! read their room's and leave. The server's RSS after every round, with every connection of
//! the round closed: what stays is the store's cache, the user directory and the allocator's
//! keep, and it must stay within the budget docs/performance.md documents.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lookout::auth::Role;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::servers::{next_text, send, websocket, Server, Ws};

pub struct Scale {
    pub rounds: usize,
    pub users: usize,
    pub rooms: usize,
    pub messages: usize,
}

pub struct Run {
    /// Server RSS before the first round and after each (KiB).
    pub rss_kib: Vec<u64>,
    pub published: u64,
    pub seconds: f64,
}

async fn user(server: &Server, round: usize, u: usize, scale: &Scale) -> Result<u64, String> {
    let org = format!("site{round}");
    let token = server
        .token_in(&format!("r{round}u{u}"), &org, Role::Supervisor)
        .unwrap_or_default();
    let source = crate::servers::phone_address(u);
    let mut ws: Ws = websocket(
        server.addr,
        server.tls.clone(),
        "/ws",
        source,
        Some(&token),
        None,
    )
    .await?;
    next_text(&mut ws).await?;
    let channel = format!("/topic/org/{org}/room/r{}", u % scale.rooms);
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "s", "channel": channel}).to_string(),
    )
    .await?;
    for n in 0..scale.messages {
        let publish = json!({"type": "publish", "id": n, "channel": channel,
                             "data": {"from": u, "n": n, "note": "on patrol, all quiet"}});
        send(&mut ws, publish.to_string()).await?;
    }
    // Every publish answered (and the subscription's reply): the round's work is done.
    let mut replies = 0;
    while replies < scale.messages + 1 {
        if next_text(&mut ws).await?.starts_with(r#"{"type":"reply""#) {
            replies += 1;
        }
    }
    let _ = ws.close(None).await;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
        if matches!(frame, Message::Close(_)) {
            break;
        }
    }
    Ok(scale.messages as u64)
}

pub async fn run(server: &Server, scale: &Scale) -> Result<Run, String> {
    let started = Instant::now();
    let mut run = Run {
        rss_kib: vec![server.rss_kib()],
        published: 0,
        seconds: 0.0,
    };
    for round in 0..scale.rounds {
        let mut u = 0;
        while u < scale.users {
            let end = (u + 200).min(scale.users);
            let batch = (u..end).map(|u| user(server, round, u, scale));
            for outcome in futures_util::future::join_all(batch).await {
                run.published += outcome?;
            }
            u = end;
        }
        // The server's side of the closes settles.
        tokio::time::sleep(Duration::from_millis(500)).await;
        run.rss_kib.push(server.rss_kib());
    }
    run.seconds = started.elapsed().as_secs_f64();
    Ok(run)
}
