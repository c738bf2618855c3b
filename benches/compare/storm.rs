//! Scenario 4, reconnect storm (Lookout only: of the peers, neither resumes a subscription from
//! a sequence number with a reply saying whether it recovered): N clients subscribed to one
//! logged room while a publisher goes on, all dropped at once (their TCP connections closed);
//! each reconnects after the first retry delay `web/lookout-client.js` uses (500 ms less up to
//! 50 % jitter) and resubscribes with `since` and `epoch`. Drop -> resubscribed percentiles,
//! time until all resumed, messages lost and duplicated over the whole run, and a PANIC raised
//! 1 s into the storm: how long until a supervisor (not part of the storm) has it. Each client
//! keeps its own TLS sessions, as each phone does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lookout::auth::Role;
use rand::Rng;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::fanout::number_after;
use crate::servers::{room, websocket, websocket_staged, Server, Ws};

/// Where a resuming client's time went, each from the drop (µs), sorted per stage.
#[derive(Default)]
pub struct StageTimes {
    /// Its last attempt began (after its jitter and any failed attempts).
    pub attempt: Vec<u64>,
    /// TCP connected.
    pub tcp: Vec<u64>,
    /// TLS handshake done.
    pub tls: Vec<u64>,
    /// The upgrade's 101 read.
    pub upgrade: Vec<u64>,
    /// `connection_established` read (token checked, admitted).
    pub established: Vec<u64>,
    /// The subscribe's reply read (its replay queued before it).
    pub subscribed: Vec<u64>,
    /// The first message after the reply.
    pub first_message: Vec<u64>,
    /// Attempts that failed before the last, summed over the clients.
    pub retries: u64,
    /// Why they failed: each kind of error, how often.
    pub retry_reasons: std::collections::BTreeMap<String, u64>,
}

pub struct Run {
    pub stages: StageTimes,
    pub clients: usize,
    pub rate: u64,
    pub published: u64,
    /// Drop -> resubscribed, per client that resumed, sorted (µs).
    pub resumed_us: Vec<u64>,
    pub not_recovered: usize,
    pub failed: Vec<String>,
    pub lost: u64,
    pub duplicated: u64,
    pub panic_us: Option<u64>,
    /// CPU from the drop until all resumed: the server's and the load generator's, in cores.
    pub cores: (f64, f64),
}

struct Client {
    seqs: Vec<u64>,
    resumed_after: Option<Duration>,
    /// From the drop: attempt, tcp, tls, upgrade, established, subscribed; and the first
    /// message after the reply, if one came.
    stages: Option<([Duration; 6], Option<Duration>)>,
    retries: Vec<String>,
    recovered: bool,
    failure: Option<String>,
}

const TOPIC: &str = "storm";

async fn subscribe(ws: &mut Ws, since: Option<(u64, &str)>) -> Result<Value, String> {
    let mut request = json!({"type": "subscribe", "id": "s", "channel": room(TOPIC)});
    if let Some((seq, epoch)) = since {
        request["since"] = seq.into();
        request["epoch"] = epoch.into();
    }
    crate::servers::send(ws, request.to_string()).await?;
    loop {
        let text = crate::servers::next_text(ws).await?;
        if text.starts_with(r#"{"type":"reply""#) {
            let reply: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            if reply["ok"] != true {
                return Err(format!("subscribe refused: {reply}"));
            }
            return Ok(reply);
        }
    }
}

/// Reads messages into `seqs` until `until` fires; `first` is set when the first one comes.
async fn receive(
    ws: &mut Ws,
    seqs: &mut Vec<u64>,
    until: &CancellationToken,
    mut first: Option<&mut Option<Instant>>,
) -> Result<(), String> {
    loop {
        let frame = tokio::select! {
            _ = until.cancelled() => return Ok(()),
            frame = ws.next() => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                if text.starts_with(r#"{"type":"message""#) {
                    if let Some(seq) = number_after(&text, "\"seq\"") {
                        seqs.push(seq);
                    }
                    if let Some(first) = first.take() {
                        first.get_or_insert_with(Instant::now);
                    }
                }
            }
            Some(Ok(_)) => {}
            other => return Err(format!("connection ended: {other:?}")),
        }
    }
}

struct Shared {
    addr: std::net::SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    drop_now: CancellationToken,
    stop: CancellationToken,
    subscribed: AtomicUsize,
    resumed: AtomicUsize,
    dropped_at: parking_lot::Mutex<Option<Instant>>,
}

async fn client(
    shared: Arc<Shared>,
    i: usize,
    token: String,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Client {
    let mut got = Client {
        seqs: Vec::new(),
        resumed_after: None,
        stages: None,
        retries: Vec::new(),
        recovered: false,
        failure: None,
    };
    let source = crate::servers::phone_address(i);
    // A TLS session cache of its own, as every phone has: a reconnect resumes the session the
    // server gave a ticket for, where it offers tickets.
    let tls = shared.tls.as_ref().map(|shared| {
        let mut own = (**shared).clone();
        own.resumption = rustls::client::Resumption::in_memory_sessions(4);
        Arc::new(own)
    });
    let outcome: Result<(), String> = async {
        let (mut ws, _) =
            websocket_staged(shared.addr, tls.clone(), "/ws", source, Some(&token), None).await?;
        crate::servers::next_text(&mut ws).await?;
        let reply = subscribe(&mut ws, None).await?;
        let epoch = reply["epoch"].as_str().unwrap_or_default().to_string();
        shared.subscribed.fetch_add(1, Ordering::Relaxed);
        drop(permit);
        receive(&mut ws, &mut got.seqs, &shared.drop_now, None).await?;
        // The network goes: no close handshake, the socket just closes.
        drop(ws);
        let jitter = rand::rng().random_range(250..=500);
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        // Retries as the client library does, doubling from 500 ms, for as long as it takes.
        let mut backoff = Duration::from_millis(500);
        let (mut ws, attempt, stages, established) = loop {
            let attempt = Instant::now();
            match websocket_staged(shared.addr, tls.clone(), "/ws", source, Some(&token), None)
                .await
            {
                Ok((mut ws, stages)) => match crate::servers::next_text(&mut ws).await {
                    Ok(_) => break (ws, attempt, stages, Instant::now()),
                    Err(e) => got.retries.push(e),
                },
                Err(e) => got.retries.push(e),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        };
        let since = got.seqs.iter().copied().max().unwrap_or(0);
        let reply = subscribe(&mut ws, Some((since, &epoch))).await?;
        let subscribed = Instant::now();
        let dropped_at = (*shared.dropped_at.lock()).unwrap_or_else(Instant::now);
        got.resumed_after = Some(dropped_at.elapsed());
        got.recovered = reply["recovered"] == true;
        shared.resumed.fetch_add(1, Ordering::Relaxed);
        let mut first = None;
        receive(&mut ws, &mut got.seqs, &shared.stop, Some(&mut first)).await?;
        let from_drop = |at: Instant| at.saturating_duration_since(dropped_at);
        let began = from_drop(attempt);
        got.stages = Some((
            [
                began,
                began + stages.tcp,
                began + stages.tls,
                began + stages.upgrade,
                from_drop(established),
                from_drop(subscribed),
            ],
            first.map(from_drop),
        ));
        let _ = ws.close(None).await;
        Ok(())
    }
    .await;
    got.failure = outcome.err();
    got
}

pub async fn run(server: &Server, clients: usize, rate: u64) -> Result<Run, String> {
    let shared = Arc::new(Shared {
        addr: server.addr,
        tls: server.tls.clone(),
        drop_now: CancellationToken::new(),
        stop: CancellationToken::new(),
        subscribed: AtomicUsize::new(0),
        resumed: AtomicUsize::new(0),
        dropped_at: parking_lot::Mutex::new(None),
    });
    let token = |user: &str, role| server.token(user, role).unwrap_or_default();
    let native = |user: &str, role| {
        let token = token(user, role);
        async move {
            let local = [127, 0, 0, 1].into();
            let mut ws = websocket(
                server.addr,
                server.tls.clone(),
                "/ws",
                local,
                Some(&token),
                None,
            )
            .await?;
            crate::servers::next_text(&mut ws).await?;
            Ok::<Ws, String>(ws)
        }
    };
    // The supervisor and the guard who raises the PANIC are not part of the storm.
    let mut supervisor = native("watcher", Role::Supervisor).await?;
    let alerts = json!({"type": "subscribe", "id": "a", "channel": "/topic/org/acme/alerts"});
    crate::servers::send(&mut supervisor, alerts.to_string()).await?;
    let mut panicker = native("panicker", Role::Guard).await?;

    let mut tasks = Vec::with_capacity(clients);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(200));
    for i in 0..clients {
        // At most 200 first subscriptions at a time; the storm itself is not throttled.
        let permit = handshakes.clone().acquire_owned().await.expect("semaphore");
        let shared = shared.clone();
        let token = token(&format!("c{i}"), Role::Supervisor);
        tasks.push(tokio::spawn(client(shared, i, token, permit)));
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while shared.subscribed.load(Ordering::Relaxed) < clients {
        if let Some(ended) = tasks.iter().position(|t| t.is_finished()) {
            let got = tasks.swap_remove(ended).await.map_err(|e| e.to_string())?;
            return Err(format!(
                "client c{ended} before the storm: {:?}",
                got.failure
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {clients} subscribed",
                shared.subscribed.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut publisher = server.publisher(TOPIC).await?;
    let stop_publishing = CancellationToken::new();
    let publishing = {
        let stop = stop_publishing.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
            let mut n = 0u64;
            while !stop.is_cancelled() {
                tick.tick().await;
                n += 1;
                if publisher.publish(&format!(r#"{{"n":{n}}}"#)).await.is_err() {
                    break;
                }
            }
            let acknowledged = publisher.close(n, Duration::from_secs(30)).await;
            (n, acknowledged.unwrap_or(0))
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The storm.
    let dropped_at = Instant::now();
    *shared.dropped_at.lock() = Some(dropped_at);
    shared.drop_now.cancel();
    let cpu_at_drop = (server.cpu_seconds(), crate::common::cpu_seconds_of("self"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let panic = json!({"type": "publish", "id": "p", "channel": "/topic/emergency/panicker", "data": {"type": "PANIC"}});
    let panic_sent = Instant::now();
    crate::servers::send(&mut panicker, panic.to_string()).await?;
    let mut panic_us = None;
    let panic_deadline = panic_sent + Duration::from_secs(30);
    while panic_us.is_none() && Instant::now() < panic_deadline {
        let frame = tokio::time::timeout_at(panic_deadline.into(), supervisor.next()).await;
        match frame {
            Ok(Some(Ok(Message::Text(text)))) => {
                if text.contains(r#""type":"PANIC""#) && text.contains(r#""event":"created""#) {
                    panic_us = Some(panic_sent.elapsed().as_micros() as u64);
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    // Everyone back (or given up on), then a little more publishing.
    let patience = dropped_at + Duration::from_secs(120);
    while shared.resumed.load(Ordering::Relaxed) < clients && Instant::now() < patience {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let storm_seconds = dropped_at.elapsed().as_secs_f64();
    let cores = (
        (server.cpu_seconds() - cpu_at_drop.0) / storm_seconds,
        (crate::common::cpu_seconds_of("self") - cpu_at_drop.1) / storm_seconds,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_publishing.cancel();
    let (sent, acknowledged) = publishing.await.map_err(|e| e.to_string())?;
    if acknowledged != sent {
        return Err(format!("{sent} published, {acknowledged} acknowledged"));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    shared.stop.cancel();
    let _ = supervisor.close(None).await;
    let _ = panicker.close(None).await;

    let mut run = Run {
        stages: StageTimes::default(),
        clients,
        rate,
        published: sent,
        resumed_us: Vec::new(),
        not_recovered: 0,
        failed: Vec::new(),
        lost: 0,
        duplicated: 0,
        panic_us,
        cores,
    };
    for (i, t) in tasks.into_iter().enumerate() {
        let mut got = t.await.map_err(|e| e.to_string())?;
        if let Some(why) = got.failure {
            run.failed.push(format!("c{i}: {why}"));
        }
        run.stages.retries += got.retries.len() as u64;
        for why in got.retries {
            // The kind of error, without the details that differ per connection.
            let kind: String = why.chars().take(60).collect();
            *run.stages.retry_reasons.entry(kind).or_default() += 1;
        }
        if let Some((stages, first)) = got.stages {
            let times = &mut run.stages;
            let lists = [
                &mut times.attempt,
                &mut times.tcp,
                &mut times.tls,
                &mut times.upgrade,
                &mut times.established,
                &mut times.subscribed,
            ];
            for (list, at) in lists.into_iter().zip(stages) {
                list.push(at.as_micros() as u64);
            }
            if let Some(first) = first {
                times.first_message.push(first.as_micros() as u64);
            }
        }
        if let Some(after) = got.resumed_after {
            run.resumed_us.push(after.as_micros() as u64);
            run.not_recovered += usize::from(!got.recovered);
        }
        let received = got.seqs.len() as u64;
        got.seqs.sort_unstable();
        got.seqs.dedup();
        run.duplicated += received - got.seqs.len() as u64;
        // Every client subscribed before the first publish: it should have seqs 1..=sent.
        let unique_in_range = got.seqs.iter().filter(|s| (1..=sent).contains(*s)).count() as u64;
        run.lost += sent - unique_in_range;
    }
    run.resumed_us.sort_unstable();
    for list in [
        &mut run.stages.attempt,
        &mut run.stages.tcp,
        &mut run.stages.tls,
        &mut run.stages.upgrade,
        &mut run.stages.established,
        &mut run.stages.subscribed,
        &mut run.stages.first_message,
    ] {
        list.sort_unstable();
    }
    Ok(run)
}
