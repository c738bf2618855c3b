//! The hostile-load soak: 200 well-behaved clients (guards sending locations at 1 Hz,
//! supervisors on the org's alerts, locations and a logged room, a publisher on that room, a
//! PANIC a minute) next to one client of each hostile kind at once — a publish flood, SSE,
//! SockJS and WebSocket connection spam, a STOMP transaction bomb, room spam, a subscriber that
//! never reads, slowloris handshakes, and a resume of 100,000 messages read slowly.
//!
//! `cargo bench --bench soak` runs it for 10 minutes against the built `lookout` binary with
//! its default limits (`SOAK_SECONDS=N` for another length) and prints what the well-behaved
//! clients got (latency percentiles, losses, the PANICs' latency), the server's RSS over time
//! and what each hostile client was refused. Under `cargo test` it runs a 20-second smoke pass
//! that checks the well-behaved clients lost nothing.

mod common;
#[path = "../tests/common/mod.rs"]
mod harness;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use harness::{
    connect_stalled, connect_with_token, http_client, Binary, NextFrameOrEnd, StompClient,
};
use lookout::auth::Role;
use lookout::clock::now_millis;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const ROLL: &str = "/topic/org/acme/room/roll";
const ARCHIVE: &str = "/topic/org/acme/room/archive";

struct Scale {
    guards: usize,
    supervisors: usize,
    seconds: u64,
    panic_every: Duration,
    resume: u64,
    /// Pause between two messages the slow resumer reads.
    resume_pace: Duration,
}

/// What the hostile clients tried and how the server answered, by kind and outcome.
#[derive(Default)]
struct Tally(Mutex<BTreeMap<(&'static str, String), u64>>);

impl Tally {
    fn add(&self, client: &'static str, outcome: impl Into<String>) {
        *self.0.lock().entry((client, outcome.into())).or_default() += 1;
    }
}

/// What the well-behaved clients saw.
#[derive(Default)]
struct Watch {
    /// Room messages: publish → receipt, ms.
    latencies: Mutex<Vec<u64>>,
    /// PANIC n → receipt, per supervisor.
    panics: Mutex<Vec<(u64, Duration)>>,
    gaps: AtomicU64,
    disconnected: Mutex<Vec<String>>,
    guards: common::GuardCounts,
    positions: AtomicU64,
}

async fn run(scale: Scale) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let server = Arc::new(Binary::serve(
        &dir.path().join("data"),
        &[
            ("LOOKOUT_LIMITS__MAX_CONNECTIONS", "2000"),
            // Rooms keep 10,000 messages by default; the archive to resume is larger.
            ("LOOKOUT_RETENTION__KINDS__ROOM__MAX_MESSAGES", "200000"),
            ("LOOKOUT_RETENTION__KINDS__ROOM__MAX_AGE", "7d"),
        ],
    ));
    let cert = server.cert_pem();
    let addr = server.addr;
    let tally = Arc::new(Tally::default());
    let watch = Arc::new(Watch::default());
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();

    // The archive the slow resumer will read: filled by many users, within the rate limit.
    let filled = fill_archive(&server, &cert, scale.resume).await;
    println!(
        "soak: {} messages in {ARCHIVE} in {filled:.1?}",
        scale.resume
    );

    // Supervisors first, so they see everything published.
    let panics_sent: Arc<Mutex<Vec<Instant>>> = Arc::default();
    for s in 0..scale.supervisors {
        let token = server.token(&format!("sup{s}"), Some("acme"), &[Role::Supervisor]);
        let mut client = connect_with_token(&cert, addr, &token, None)
            .await
            .expect("supervisor");
        for channel in ["/topic/org/acme/alerts", "/topic/org/acme/locations", ROLL] {
            let reply = client.subscribe(channel).await;
            assert_eq!(reply["ok"], true, "{reply}");
        }
        let (watch, stop, sent) = (watch.clone(), stop.clone(), panics_sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut last_roll = 0u64;
            loop {
                let next = tokio::select! {
                    _ = stop.cancelled() => break,
                    next = client.ws.next() => next,
                };
                let text = match next {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(frame))) => {
                        watch.disconnected.lock().push(format!("sup{s}: {frame:?}"));
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        watch.disconnected.lock().push(format!("sup{s}: {e}"));
                        break;
                    }
                    None => {
                        watch.disconnected.lock().push(format!("sup{s}: ended"));
                        break;
                    }
                };
                if text.contains(r#""channel":"/topic/org/acme/locations""#) {
                    watch.positions.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let v: Value = serde_json::from_str(&text).unwrap_or_default();
                if v["type"] != "message" {
                    continue;
                }
                if v["channel"] == ROLL {
                    let seq = v["seq"].as_u64().unwrap_or_default();
                    if seq != last_roll + 1 {
                        watch.gaps.fetch_add(1, Ordering::Relaxed);
                    }
                    last_roll = seq;
                    let t = v["data"]["t"].as_u64().unwrap_or_default();
                    watch.latencies.lock().push(now_millis().saturating_sub(t));
                } else if v["data"]["event"] == "created" && v["data"]["alert"]["type"] == "PANIC" {
                    let n = v["data"]["alert"]["message"]
                        .as_str()
                        .and_then(|m| m.strip_prefix("soak-"))
                        .and_then(|n| n.parse::<u64>().ok());
                    if let Some(n) = n {
                        let at = sent.lock().get(n as usize).copied();
                        if let Some(at) = at {
                            watch.panics.lock().push((n, at.elapsed()));
                        }
                    }
                }
            }
        }));
    }

    // The room's publisher: ten numbered messages a second.
    {
        let token = server.token("roll-caller", Some("acme"), &[Role::Supervisor]);
        let mut client = connect_with_token(&cert, addr, &token, None)
            .await
            .expect("publisher");
        stay_subscribed(&mut client).await;
        let stop = stop.clone();
        let watch = watch.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut n = 0u64;
            while !stop.is_cancelled() {
                tick.tick().await;
                n += 1;
                let reply = client
                    .publish(ROLL, json!({"n": n, "t": now_millis()}))
                    .await;
                if reply["ok"] != true {
                    watch
                        .disconnected
                        .lock()
                        .push(format!("roll publisher refused: {reply}"));
                    break;
                }
            }
        }));
    }

    // Guards at 1 Hz.
    for g in 0..scale.guards {
        let token = server.token(&format!("guard{g}"), Some("acme"), &[Role::Guard]);
        let mut client = connect_with_token(&cert, addr, &token, None)
            .await
            .expect("guard");
        stay_subscribed(&mut client).await;
        let (stop, watch) = (stop.clone(), watch.clone());
        tasks.push(tokio::spawn(async move {
            let phase = Duration::from_millis((g as u64 * 7919) % 1000);
            let tick = tokio::time::interval_at(
                tokio::time::Instant::now() + phase,
                Duration::from_secs(1),
            );
            let mut n = 0u64;
            let next = || {
                n += 1;
                let location = json!({"lat": 52.5 + (n % 100) as f64 * 1e-4, "lon": 13.4, "accuracy": 5.0, "ts": now_millis()});
                let publish = json!({"type": "publish", "channel": format!("/topic/location/guard{g}"), "data": location, "id": n});
                vec![Message::Text(publish.to_string().into())]
            };
            // Replies still on their way when the soak ends count.
            let drain = Duration::from_secs(3);
            if let Some(why) =
                common::publish_every_tick(client.ws, tick, &stop, drain, &watch.guards, next).await
            {
                watch.disconnected.lock().push(format!("guard{g}: {why}"));
            }
        }));
    }

    // The panicker.
    {
        let token = server.token("panicker", Some("acme"), &[Role::Guard]);
        let mut client = connect_with_token(&cert, addr, &token, None)
            .await
            .expect("panicker");
        stay_subscribed(&mut client).await;
        let (stop, sent, every) = (stop.clone(), panics_sent.clone(), scale.panic_every);
        let watch = watch.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            // A phone reads all the time (pings included), not only when it sends.
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let n = sent.lock().len();
                        sent.lock().push(Instant::now());
                        let panic = json!({"type": "publish", "channel": "/topic/emergency/panicker", "id": n,
                            "data": {"type": "PANIC", "message": format!("soak-{n}")}});
                        if client.ws.send(Message::Text(panic.to_string().into())).await.is_err() {
                            watch.disconnected.lock().push("panicker: send failed".into());
                            break;
                        }
                    }
                    next = client.ws.next() => match next {
                        Some(Ok(Message::Text(t))) if t.starts_with(r#"{"type":"error""#) => {
                            watch.disconnected.lock().push(format!("panicker refused: {t}"));
                        }
                        Some(Ok(_)) => {}
                        other => {
                            watch.disconnected.lock().push(format!("panicker: {other:?}"));
                            break;
                        }
                    }
                }
            }
        }));
    }

    let hostile = CancellationToken::new();
    let mut hostiles = vec![
        tokio::spawn(flood(server.clone(), tally.clone(), hostile.clone())),
        tokio::spawn(spam(server.clone(), tally.clone(), hostile.clone())),
        tokio::spawn(stomp_bomb(server.clone(), tally.clone(), hostile.clone())),
        tokio::spawn(room_spam(server.clone(), tally.clone(), hostile.clone())),
        tokio::spawn(never_reads(server.clone(), tally.clone(), hostile.clone())),
        tokio::spawn(slowloris(server.clone(), tally.clone(), hostile.clone())),
    ];
    hostiles.push(tokio::spawn(slow_resume(
        server.clone(),
        tally.clone(),
        hostile.clone(),
        scale.resume,
        scale.resume_pace,
    )));

    let started = Instant::now();
    let mut rss = vec![(0u64, server.rss_kib())];
    let sample = Duration::from_secs(if scale.seconds >= 120 { 30 } else { 5 });
    while started.elapsed() < Duration::from_secs(scale.seconds) {
        tokio::time::sleep(sample).await;
        rss.push((started.elapsed().as_secs(), server.rss_kib()));
    }
    hostile.cancel();
    for h in hostiles {
        let _ = tokio::time::timeout(Duration::from_secs(20), h).await;
    }
    // What was sent arrives before the well-behaved clients stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    rss.push((started.elapsed().as_secs(), server.rss_kib()));
    let metrics = server.metrics().await;

    report(&scale, &watch, &tally, &panics_sent, &rss, &metrics);
}

fn report(
    scale: &Scale,
    watch: &Watch,
    tally: &Tally,
    panics_sent: &Mutex<Vec<Instant>>,
    rss: &[(u64, u64)],
    metrics: &str,
) {
    let mut latencies = watch.latencies.lock().clone();
    latencies.sort_unstable();
    let mut panics: Vec<u64> = watch
        .panics
        .lock()
        .iter()
        .map(|(_, d)| d.as_millis() as u64)
        .collect();
    panics.sort_unstable();
    let sent_panics = panics_sent.lock().len() as u64;
    let expected_panics = sent_panics * scale.supervisors as u64;
    let (sent, acked, refused) = (
        watch.guards.sent.load(Ordering::Relaxed),
        watch.guards.acknowledged.load(Ordering::Relaxed),
        watch.guards.refused.load(Ordering::Relaxed),
    );
    let gaps = watch.gaps.load(Ordering::Relaxed);
    let disconnected = watch.disconnected.lock().clone();
    println!(
        "soak: {} s; well-behaved: {} guards at 1 Hz, {} supervisors, 1 room publisher at 10/s, 1 PANIC every {:?}",
        scale.seconds, scale.guards, scale.supervisors, scale.panic_every
    );
    println!("| well-behaved clients | |\n| --- | --- |");
    println!(
        "| room messages received (all supervisors) | {} , gaps {gaps} |",
        latencies.len()
    );
    let (p50, p99, max) = common::spread(&latencies);
    println!("| room delivery latency p50 / p99 / max | {p50} / {p99} / {max} ms |");
    println!("| locations sent / acknowledged / refused | {sent} / {acked} / {refused} |");
    println!(
        "| positions fanned in to supervisors | {} |",
        watch.positions.load(Ordering::Relaxed)
    );
    println!(
        "| PANICs delivered | {} of {expected_panics} ({sent_panics} sent × {} supervisors) |",
        panics.len(),
        scale.supervisors
    );
    let (p50, p99, max) = common::spread(&panics);
    println!("| PANIC latency p50 / p99 / max | {p50} / {p99} / {max} ms |");
    println!(
        "| well-behaved clients disconnected | {} {:?} |",
        disconnected.len(),
        disconnected
    );
    let rss_text: Vec<String> = rss
        .iter()
        .map(|(at, kib)| format!("{at}s {} MiB", kib / 1024))
        .collect();
    println!("| server RSS over time | {} |", rss_text.join(", "));
    println!("\n| hostile client | outcome | count |\n| --- | --- | --- |");
    for ((client, outcome), count) in tally.0.lock().iter() {
        println!("| {client} | {outcome} | {count} |");
    }
    println!("\nserver metrics:");
    for line in metrics.lines().filter(|l| {
        l.starts_with("lookout_budget_refusals_total")
            || l.starts_with("lookout_rate_limited")
            || l.starts_with("lookout_deliveries_dropped")
    }) {
        println!("  {line}");
    }
    if scale.seconds < 120 {
        // The smoke pass checks the scenario, not its figures.
        assert!(disconnected.is_empty(), "{disconnected:?}");
        assert_eq!(gaps, 0);
        assert!(!latencies.is_empty());
        assert_eq!(panics.len() as u64, expected_panics);
        assert_eq!(refused, 0);
        let refusals = tally.0.lock();
        for client in ["flood", "stomp bomb", "room spam"] {
            assert!(
                refusals
                    .iter()
                    .any(|((c, outcome), _)| *c == client && outcome.starts_with("refused")),
                "{client} was never refused: {refusals:?}"
            );
        }
    }
}

/// A phone's app holds its own message queue: a connection without any subscription is
/// closed as idle (`limits.idle_timeout`).
async fn stay_subscribed(client: &mut harness::Client) {
    let reply = client.subscribe("/user/queue/messages").await;
    assert_eq!(reply["ok"], true, "{reply}");
}

/// Fills the archive with `count` messages, many users at once within the rate limit.
async fn fill_archive(server: &Binary, cert: &[u8], count: u64) -> Duration {
    let started = Instant::now();
    let fillers = 100u64;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for f in 0..fillers {
        let token = server.token(&format!("filler{f}"), Some("acme"), &[Role::Supervisor]);
        let mut client = connect_with_token(cert, server.addr, &token, None)
            .await
            .expect("filler");
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    break;
                }
                loop {
                    let reply = client.publish(ARCHIVE, json!({ "n": n })).await;
                    if reply["ok"] == true {
                        break;
                    }
                    // Over the rate limit: wait for the bucket to refill.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("filler");
    }
    started.elapsed()
}

/// Publishes to a room as fast as the socket takes it, never waiting for a reply.
async fn flood(server: Arc<Binary>, tally: Arc<Tally>, stop: CancellationToken) {
    let token = server.token("flooder", Some("acme"), &[Role::Guard]);
    while !stop.is_cancelled() {
        let Ok(client) = connect_with_token(&server.cert_pem(), server.addr, &token, None).await
        else {
            tally.add("flood", "connect refused");
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let (mut tx, mut rx) = client.ws.split();
        let payload = json!({"type": "publish", "channel": "/topic/org/acme/room/flood", "data": {"x": "y".repeat(200)}}).to_string();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                sent = tx.send(Message::Text(payload.clone().into())) => if sent.is_err() {
                    tally.add("flood", "connection dropped");
                    break;
                },
                next = rx.next() => match next {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t).unwrap_or_default();
                        match v["type"].as_str() {
                            Some("reply") => tally.add("flood", "accepted"),
                            Some("error") => tally.add("flood", format!("refused: {}", v["code"].as_str().unwrap_or("?"))),
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        tally.add("flood", format!("closed: {}", frame.map_or(0, |f| u16::from(f.code))));
                        break;
                    }
                    Some(Ok(_)) => {}
                    _ => { tally.add("flood", "connection dropped"); break; }
                },
            }
        }
    }
}

/// Opens SSE streams, SockJS sessions and WebSockets for one user, far beyond its limit.
async fn spam(server: Arc<Binary>, tally: Arc<Tally>, stop: CancellationToken) {
    let cert = server.cert_pem();
    let token = server.token("spammer", Some("acme"), &[Role::Supervisor]);
    let http = http_client(&cert);
    let mut round = 0u64;
    while !stop.is_cancelled() {
        round += 1;
        let mut held = Vec::new();
        for _ in 0..8 {
            let sse = http
                .get(format!(
                    "https://{}/api/v1/events?channels={ROLL}",
                    server.addr
                ))
                .bearer_auth(&token)
                .send()
                .await;
            match sse {
                Ok(r) if r.status() == 200 => {
                    tally.add("sse spam", "accepted");
                    held.push(r);
                }
                Ok(r) => tally.add("sse spam", format!("refused: {}", r.status().as_u16())),
                Err(_) => tally.add("sse spam", "failed"),
            }
        }
        let mut sockets = Vec::new();
        for _ in 0..8 {
            match connect_with_token(&cert, server.addr, &token, None).await {
                Ok(c) => {
                    tally.add("websocket spam", "accepted");
                    sockets.push(c);
                }
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => tally.add(
                    "websocket spam",
                    format!("refused: {}", r.status().as_u16()),
                ),
                Err(_) => tally.add("websocket spam", "failed"),
            }
        }
        for s in 0..8 {
            let url = format!(
                "https://{}/ws/000/spam{round}x{s}/xhr?token={token}&protocol=lookout.json",
                server.addr
            );
            match http.post(url).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body = r.text().await.unwrap_or_default();
                    if status == 200 && body.starts_with('o') {
                        tally.add("sockjs spam", "accepted");
                    } else if body.starts_with("c[") {
                        tally.add(
                            "sockjs spam",
                            format!("refused: {}", &body[..body.len().min(12)]),
                        );
                    } else {
                        tally.add("sockjs spam", format!("refused: {status}"));
                    }
                }
                Err(_) => tally.add("sockjs spam", "failed"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        drop(held);
        drop(sockets);
    }
}

/// STOMP transactions of 60 KiB SENDs until the server refuses, again and again.
async fn stomp_bomb(server: Arc<Binary>, tally: Arc<Tally>, stop: CancellationToken) {
    let url = format!("wss://{}/ws", server.addr);
    let cert = server.cert_pem();
    let token = server.token("bomber", Some("acme"), &[Role::Guard]);
    let body = vec![b'x'; 60 * 1024];
    while !stop.is_cancelled() {
        let mut bomber = StompClient::connect_at(&url, &cert, &token).await;
        for t in 0..16 {
            let tx = format!("t{t}");
            bomber
                .try_send_frame("BEGIN", &[("transaction", &tx)], b"")
                .await;
        }
        'bomb: for _ in 0..256 {
            for t in 0..16 {
                let tx = format!("t{t}");
                let headers = [
                    ("destination", "/topic/org/acme/room/bomb"),
                    ("transaction", tx.as_str()),
                    ("content-type", "text/plain"),
                ];
                if stop.is_cancelled() || !bomber.try_send_frame("SEND", &headers, &body).await {
                    break 'bomb;
                }
            }
        }
        if stop.is_cancelled() {
            // Cut short by the soak's end: no refusal to wait for.
            return;
        }
        let answer = tokio::time::timeout(Duration::from_secs(15), bomber.next_frame()).await;
        match answer {
            Ok(frame) if frame.command == "ERROR" => tally.add(
                "stomp bomb",
                format!("refused: ERROR {}", frame.get("message").unwrap_or("?")),
            ),
            Ok(frame) => tally.add("stomp bomb", format!("answered {}", frame.command)),
            Err(_) => tally.add("stomp bomb", "no answer"),
        }
    }
}

/// A new room with every publish.
async fn room_spam(server: Arc<Binary>, tally: Arc<Tally>, stop: CancellationToken) {
    let token = server.token("roomer", Some("acme"), &[Role::Guard]);
    let mut n = 0u64;
    while !stop.is_cancelled() {
        let Ok(mut client) =
            connect_with_token(&server.cert_pem(), server.addr, &token, None).await
        else {
            tally.add("room spam", "connect refused");
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        while !stop.is_cancelled() {
            n += 1;
            let publish = json!({"type": "publish", "channel": format!("/topic/org/acme/room/spam{n}"), "data": {"n": n}, "id": n});
            if client
                .ws
                .send(Message::Text(publish.to_string().into()))
                .await
                .is_err()
            {
                tally.add("room spam", "connection lost");
                break;
            }
            let reply = loop {
                match tokio::time::timeout(Duration::from_secs(15), client.ws.next_frame_or_end())
                    .await
                {
                    Ok(Ok(v)) if v["type"] == "reply" || v["type"] == "error" => break v,
                    Ok(Ok(_)) => continue,
                    Ok(Err(end)) => break json!({ "ended": format!("{end:?}") }),
                    Err(_) => break json!({ "ended": "no answer within 15 s" }),
                }
            };
            match reply["type"].as_str() {
                Some("reply") => tally.add("room spam", "room created"),
                Some("error") => {
                    let code = reply["code"].as_str().unwrap_or("?").to_string();
                    tally.add("room spam", format!("refused: {code}"));
                    if code == "rate_limited" {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                _ => {
                    tally.add("room spam", format!("connection lost: {}", reply["ended"]));
                    break;
                }
            }
        }
    }
}

/// Subscribes to busy channels and never reads; looks after a while how it was ended.
async fn never_reads(server: Arc<Binary>, tally: Arc<Tally>, stop: CancellationToken) {
    let token = server.token("stuck", Some("acme"), &[Role::Supervisor]);
    while !stop.is_cancelled() {
        let mut client = connect_stalled(&server.cert_pem(), server.addr, &token).await;
        for channel in [
            "/topic/org/acme/locations",
            ROLL,
            "/topic/org/acme/room/flood",
        ] {
            let _ = client
                .ws
                .send(Message::Text(
                    json!({"type": "subscribe", "channel": channel})
                        .to_string()
                        .into(),
                ))
                .await;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        // Now read what is there, quickly, to see how the server ended it.
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match client.ws.next().await {
                    Some(Ok(Message::Close(frame))) => {
                        break format!(
                            "closed by the server: {}",
                            frame.map_or(0, |f| u16::from(f.code))
                        )
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => break "dropped by the server".to_string(),
                }
            }
        })
        .await
        .unwrap_or_else(|_| "still open after 30 s unread".into());
        tally.add("never reads", outcome);
    }
}

/// Connections that send a byte a second and never finish their handshake.
async fn slowloris(server: Arc<Binary>, tally: Arc<Tally>, stop: CancellationToken) {
    let mut trickles = tokio::task::JoinSet::new();
    while !stop.is_cancelled() {
        while trickles.len() < 50 {
            let (addr, stop) = (server.addr, stop.clone());
            trickles.spawn(async move {
                let Ok(mut socket) = tokio::net::TcpStream::connect(addr).await else {
                    return "connect refused".to_string();
                };
                let opened = Instant::now();
                // The start of a TLS ClientHello, a byte at a time.
                for byte in [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01].iter().cycle() {
                    if stop.is_cancelled() {
                        return "gave up".to_string();
                    }
                    if socket.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    let mut probe = [0u8; 64];
                    match tokio::time::timeout(Duration::from_secs(1), socket.peek(&mut probe))
                        .await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        _ => {}
                    }
                }
                format!(
                    "closed by the server after {} s",
                    opened.elapsed().as_secs()
                )
            });
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            done = trickles.join_next() => if let Some(Ok(outcome)) = done {
                tally.add("slowloris", outcome);
            },
        }
    }
    trickles.abort_all();
}

/// Resumes the whole archive from seq 0 and reads it slowly.
async fn slow_resume(
    server: Arc<Binary>,
    tally: Arc<Tally>,
    stop: CancellationToken,
    count: u64,
    pace: Duration,
) {
    let token = server.token("resumer", Some("acme"), &[Role::Supervisor]);
    let Ok(mut client) = connect_with_token(&server.cert_pem(), server.addr, &token, None).await
    else {
        tally.add("slow resume", "connect refused");
        return;
    };
    let subscribe = json!({"type": "subscribe", "channel": ARCHIVE, "since": 0});
    if client
        .ws
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .is_err()
    {
        tally.add("slow resume", "subscribe failed");
        return;
    }
    let started = Instant::now();
    let mut last = 0u64;
    let mut out_of_order = 0u64;
    let mut got = 0u64;
    let outcome = loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break "stopped by the soak's end".to_string(),
            next = client.ws.next() => next,
        };
        match next {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap_or_default();
                if v["type"] != "message" {
                    continue;
                }
                let seq = v["seq"].as_u64().unwrap_or_default();
                if seq != last + 1 {
                    out_of_order += 1;
                }
                last = seq;
                got += 1;
                if seq == count {
                    break format!(
                        "read {got} of {count}, {out_of_order} out of order, in {} s",
                        started.elapsed().as_secs()
                    );
                }
                tokio::time::sleep(pace).await;
            }
            Some(Ok(Message::Close(frame))) => {
                break format!(
                    "closed by the server at seq {last}: {}",
                    frame.map_or(0, |f| u16::from(f.code))
                )
            }
            Some(Ok(_)) => {}
            _ => break format!("dropped at seq {last}"),
        }
    };
    tally.add("slow resume", outcome);
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let seconds = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let scale = if full {
        let seconds = seconds.unwrap_or(600);
        Scale {
            guards: 139,
            supervisors: 59,
            seconds,
            panic_every: Duration::from_secs(60),
            resume: env_number("SOAK_RESUME").unwrap_or(100_000),
            // The whole archive in about 80 % of the run.
            resume_pace: Duration::from_micros(
                env_number("SOAK_RESUME_PACE_US").unwrap_or(seconds * 8_000 / 1_000),
            ),
        }
    } else {
        Scale {
            guards: 20,
            supervisors: 5,
            seconds: seconds.unwrap_or(20),
            panic_every: Duration::from_secs(3),
            resume: 2_000,
            resume_pace: Duration::from_millis(5),
        }
    };
    common::block_on(run(scale));
}
