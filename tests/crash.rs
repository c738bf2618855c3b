//! Crash safety with the real binary: publish with several concurrent clients, `kill -9` at a
//! point that differs every round, restart on the same data directory, and check that every
//! acknowledged message is in the log with its seq, that no seq is reused and that the epoch
//! stayed.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

const CHANNELS: [&str; 2] = ["/topic/org/acme/room/a", "/topic/org/acme/room/b"];
const PUBLISHERS: usize = 4;
const ROUNDS: u64 = 5;

type Acked = Arc<Mutex<Vec<(String, u64, String)>>>;

async fn read_log(server: &Binary, token: &str, channel: &str) -> BTreeMap<u64, String> {
    let http = http_client(&server.cert_pem());
    let mut log = BTreeMap::new();
    let mut since = 0;
    loop {
        let url = format!(
            "https://{}/api/v1/channels/history?channel={channel}&since={since}&limit=1000",
            server.addr
        );
        let page: Value = get_json(&http, &url, token).await;
        let messages = page["messages"].as_array().expect("messages").clone();
        if messages.is_empty() {
            return log;
        }
        for m in messages {
            let seq = m["seq"].as_u64().expect("seq");
            let tag = m["data"]["tag"].as_str().expect("tag").to_string();
            assert!(log.insert(seq, tag).is_none(), "seq {seq} twice in the log");
            since = seq;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9_with_their_seqs_and_no_seq_is_reused() {
    let env = [
        ("LOOKOUT_LIMITS__MESSAGES_PER_SECOND", "100000"),
        ("LOOKOUT_LIMITS__MESSAGE_BURST", "100000"),
    ];
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let mut server = Binary::serve(&data, &env);
        let reader = server.token("auditor", Some("acme"), &[Role::Supervisor]);
        let epoch = server.connect(&reader).await.established["epoch"].clone();

        let acked: Acked = Arc::default();
        let mut tasks = Vec::new();
        for p in 0..PUBLISHERS {
            let mut client = server
                .connect(&server.token(&format!("pub{p}"), Some("acme"), &[Role::Supervisor]))
                .await;
            let acked = acked.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    let channel = CHANNELS[(p + n) % CHANNELS.len()];
                    let tag = format!("p{p}-n{n}");
                    let request = json!({"type":"publish","channel":channel,"data":{"tag":tag}});
                    match client.try_request(request).await {
                        Some(reply) if ok(&reply) => {
                            let seq = reply["seq"].as_u64().expect("seq");
                            acked
                                .lock()
                                .expect("lock")
                                .push((channel.to_string(), seq, tag));
                        }
                        Some(reply) => panic!("publish refused: {reply}"),
                        None => return,
                    }
                }
            }));
        }
        // A different kill point every round, between 0.3 s and 1.5 s of publishing.
        let kill_after = Duration::from_millis(300 + round * 300);
        tokio::time::sleep(kill_after).await;
        server.child.kill().expect("kill -9");
        let _ = server.child.wait();
        for t in tasks {
            t.await.expect("publisher");
        }
        let acked = std::mem::take(&mut *acked.lock().expect("lock"));
        assert!(
            !acked.is_empty(),
            "round {round}: nothing was acknowledged before the kill"
        );

        let server = Binary::serve(&data, &env);
        let after = server.connect(&reader).await;
        assert_eq!(
            after.established["epoch"], epoch,
            "round {round}: epoch changed"
        );
        for channel in CHANNELS {
            let log = read_log(&server, &reader, channel).await;
            let head = log.keys().next_back().copied().unwrap_or(0);
            // Seqs in the log run 1..=head without a gap.
            assert_eq!(
                log.keys().copied().collect::<Vec<_>>(),
                (1..=head).collect::<Vec<_>>(),
                "round {round}: gap in {channel}"
            );
            for (ch, seq, tag) in acked.iter().filter(|(ch, ..)| ch == channel) {
                assert_eq!(
                    log.get(seq),
                    Some(tag),
                    "round {round}: acknowledged {tag} (seq {seq} on {ch}) lost or changed"
                );
            }
            // The next publish gets a fresh seq.
            let mut publisher = server
                .connect(&server.token("after", Some("acme"), &[Role::Supervisor]))
                .await;
            let reply = publisher
                .publish(channel, json!({"tag":"after-restart"}))
                .await;
            assert_eq!(
                reply["seq"],
                head + 1,
                "round {round}: seq reused on {channel}"
            );
        }
        eprintln!(
            "round {round}: killed after {kill_after:?}, {} acknowledged messages all present",
            acked.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_timers_survive_kill_9_firing_once_at_start_up_if_overdue_and_later_on_time() {
    let env = [
        ("LOOKOUT_ALERTS__LEVEL2_AFTER", "2s"),
        ("LOOKOUT_ALERTS__LEVEL3_AFTER", "6s"),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Binary::serve(&data, &env);
    let mut guard = server
        .connect(&server.token("g1", Some("acme"), &[Role::Guard]))
        .await;
    let reply = guard
        .publish("/topic/emergency/g1", json!({"type": "PANIC"}))
        .await;
    assert!(ok(&reply), "{reply}");
    let id = reply["alertId"].as_str().expect("alert id").to_string();
    server.child.kill().expect("kill -9");
    let _ = server.child.wait();

    // Restart after the level-2 due time.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let restarted_at = lookout::clock::now_millis();
    let server = Binary::serve(&data, &env);
    let sup = server.token("s1", Some("acme"), &[Role::Supervisor]);
    let http = http_client(&server.cert_pem());
    let url = format!("https://{}/api/v1/alerts/{id}", server.addr);
    let steps = |alert: &Value| -> Vec<(String, u64, u64)> {
        audit_trail(alert)
            .into_iter()
            .map(|s| (s.action, s.level, s.at))
            .collect()
    };
    let wait_for = |level: u64| {
        let http = http.clone();
        let url = url.clone();
        let sup = sup.clone();
        async move {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            loop {
                let alert = get_json(&http, &url, &sup).await;
                if alert["level"].as_u64() >= Some(level) {
                    return alert;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never reached level {level}: {alert}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let at_2 = wait_for(2).await;
    let trail = steps(&at_2);
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert_eq!((trail[1].0.as_str(), trail[1].1), ("escalated", 2));
    assert!(
        trail[1].2 >= restarted_at,
        "level 2 fired at start-up, after the restart"
    );
    assert!(at_2["level"] == 2, "level 3 is not due yet: {at_2}");

    let at_3 = wait_for(3).await;
    let trail = steps(&at_3);
    let actions: Vec<(&str, u64)> = trail.iter().map(|(a, l, _)| (a.as_str(), *l)).collect();
    assert_eq!(
        actions,
        [("created", 1), ("escalated", 2), ("escalated", 3)],
        "each step once"
    );
    // Measured from the alert's own creation time, on the server's clock.
    let created = at_3["created_at"].as_u64().expect("created_at");
    assert!(
        trail[2].2 >= created + 6000,
        "level 3 fired on time, not early: {} ms after creation",
        trail[2].2 - created
    );
    assert_eq!(at_3["pending"], json!([]));
    eprintln!(
        "level 2 fired {} ms after the restart; level 3 {} ms after creation (due 6000)",
        trail[1].2 - restarted_at,
        trail[2].2 - created
    );
}

/// What the storm had acknowledged when the server was killed.
#[derive(Default)]
struct Storm {
    /// (channel, seq, tag) of every acknowledged publish.
    messages: Vec<(String, u64, String)>,
    /// Ids of the alerts whose PANIC was acknowledged.
    alerts: Vec<String>,
}

/// `kill -9` at a random point of a mixed storm, over and over on one data directory:
/// publishers on two rooms (some with `ack_required`), guards raising PANICs whose escalations
/// come due across the kills, and a guard crossing a forbidden fence back and forth. After
/// each restart every acknowledged message is in its log with its seq, no seq is reused and
/// the epoch is the one of the first start; at the end every alert escalated through each
/// level exactly once. `KILL_LOOP_ROUNDS` sets the rounds (3 in the suite; the documented
/// long run is 100: see docs/development.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_loop_under_a_mixed_storm_loses_nothing_acknowledged_and_escalates_each_level_once(
) {
    let rounds: u64 = std::env::var("KILL_LOOP_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let env = [
        ("LOOKOUT_LIMITS__MESSAGES_PER_SECOND", "100000"),
        ("LOOKOUT_LIMITS__MESSAGE_BURST", "100000"),
        ("LOOKOUT_ALERTS__LEVEL2_AFTER", "1s"),
        ("LOOKOUT_ALERTS__LEVEL3_AFTER", "2s"),
        // A hundred rounds publish more than the default 10,000 per channel: nothing may be
        // trimmed, or a lost message could hide behind retention.
        ("LOOKOUT_RETENTION__DEFAULT__MAX_MESSAGES", "100000000"),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Binary::serve(&data, &env);
    let reader = server.token("auditor", Some("acme"), &[Role::Supervisor]);
    let epoch = server.connect(&reader).await.established["epoch"].clone();
    let http = http_client(&server.cert_pem());
    let fence = json!({
        "name": "vault", "kind": "forbidden",
        "shape": {"type": "Polygon", "coordinates": [[[13.395, 52.495], [13.405, 52.495], [13.405, 52.505], [13.395, 52.505], [13.395, 52.495]]]}
    });
    let created = http
        .post(format!("https://{}/api/v1/geofences", server.addr))
        .bearer_auth(&reader)
        .json(&fence)
        .send()
        .await
        .expect("fence");
    assert_eq!(created.status(), 201);

    let mut all = Storm::default();
    let mut kills = Vec::new();
    for round in 0..rounds {
        let storm: Arc<Mutex<Storm>> = Arc::default();
        let mut tasks = Vec::new();
        for p in 0..PUBLISHERS {
            let token = server.token(&format!("pub{p}"), Some("acme"), &[Role::Supervisor]);
            let mut client = server.connect(&token).await;
            let storm = storm.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0.. {
                    let channel = CHANNELS[(p + n) % CHANNELS.len()];
                    let tag = format!("r{round}-p{p}-n{n}");
                    let request = json!({"type": "publish", "channel": channel,
                                         "data": {"tag": tag}, "ack": n % 5 == 0});
                    match client.try_request(request).await {
                        Some(reply) if ok(&reply) => {
                            let seq = reply["seq"].as_u64().expect("seq");
                            let mut s = storm.lock().expect("lock");
                            s.messages.push((channel.to_string(), seq, tag));
                        }
                        Some(reply) => panic!("publish refused: {reply}"),
                        None => return,
                    }
                }
            }));
        }
        // A PANIC from a guard of its own each round, its escalations due 1 s and 2 s later:
        // some fire before the kill, some across it.
        let guard = format!("g{round}");
        let mut phone = server
            .connect(&server.token(&guard, Some("acme"), &[Role::Guard]))
            .await;
        let storm_panic = storm.clone();
        let channel = format!("/topic/emergency/{guard}");
        tasks.push(tokio::spawn(async move {
            let panic = json!({"type": "publish", "channel": channel, "data": {"type": "PANIC"}});
            if let Some(reply) = phone.try_request(panic).await {
                assert!(ok(&reply), "{reply}");
                let id = reply["alertId"].as_str().expect("alert id").to_string();
                storm_panic.lock().expect("lock").alerts.push(id);
            }
        }));
        // A publisher that keeps 16 publishes unanswered (the server pipelines them): only
        // what was answered counts as acknowledged, in the order it was sent.
        let pipelined = server
            .connect(&server.token("piper", Some("acme"), &[Role::Supervisor]))
            .await;
        let storm_pipe = storm.clone();
        tasks.push(tokio::spawn(async move {
            use futures_util::{SinkExt, StreamExt};
            use tokio_tungstenite::tungstenite::Message;
            let (mut write, mut read) = pipelined.ws.split();
            let channel = CHANNELS[0];
            let mut in_flight = std::collections::VecDeque::new();
            let mut n = 0u64;
            loop {
                while in_flight.len() < 16 {
                    n += 1;
                    let tag = format!("r{round}-pipe{n}");
                    let publish = json!({"type": "publish", "id": n, "channel": channel,
                                         "data": {"tag": tag}});
                    if write
                        .send(Message::Text(publish.to_string().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    in_flight.push_back((n, tag));
                }
                let reply: Value = match read.next().await {
                    Some(Ok(Message::Text(text))) => serde_json::from_str(&text).expect("json"),
                    Some(Ok(_)) => continue,
                    _ => return,
                };
                if reply["type"] != "reply" {
                    continue;
                }
                let (id, tag) = in_flight.pop_front().expect("a publish in flight");
                assert_eq!(reply["id"], id, "replies in sending order");
                assert!(ok(&reply), "{reply}");
                let seq = reply["seq"].as_u64().expect("seq");
                storm_pipe
                    .lock()
                    .expect("lock")
                    .messages
                    .push((channel.to_string(), seq, tag));
            }
        }));
        // A guard walking in and out of the forbidden fence.
        let mut walker = server
            .connect(&server.token("walker", Some("acme"), &[Role::Guard]))
            .await;
        let storm_walk = storm.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let lat = if n % 2 == 0 { 52.5 } else { 52.6 };
                let mut loc = location(lat, 13.4);
                loc["tag"] = json!(format!("r{round}-w{n}"));
                let request =
                    json!({"type": "publish", "channel": "/topic/location/walker", "data": loc});
                match walker.try_request(request).await {
                    Some(reply) if ok(&reply) => {
                        let seq = reply["seq"].as_u64().expect("seq");
                        let mut s = storm_walk.lock().expect("lock");
                        let tag = format!("r{round}-w{n}");
                        s.messages.push(("/topic/location/walker".into(), seq, tag));
                    }
                    Some(reply) => panic!("location refused: {reply}"),
                    None => return,
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));

        // A different point every round, 0.2 s to 1.5 s into the storm.
        let kill_after = Duration::from_millis(200 + (round * 7919) % 1300);
        tokio::time::sleep(kill_after).await;
        server.child.kill().expect("kill -9");
        let _ = server.child.wait();
        for t in tasks {
            t.await.expect("storm task");
        }
        let storm = std::mem::take(&mut *storm.lock().expect("lock"));
        kills.push(kill_after);
        all.messages.extend(storm.messages);
        all.alerts.extend(storm.alerts);

        server = Binary::serve(&data, &env);
        let after = server.connect(&reader).await;
        assert_eq!(
            after.established["epoch"], epoch,
            "round {round}: epoch changed"
        );
        let channels = CHANNELS
            .iter()
            .map(|c| c.to_string())
            .chain(["/topic/location/walker".to_string()]);
        for channel in channels {
            let log = read_log(&server, &reader, &channel).await;
            let head = log.keys().next_back().copied().unwrap_or(0);
            assert_eq!(
                log.keys().copied().collect::<Vec<_>>(),
                (1..=head).collect::<Vec<_>>(),
                "round {round}: gap in {channel}"
            );
            for (_, seq, tag) in all.messages.iter().filter(|(ch, ..)| *ch == channel) {
                assert_eq!(
                    log.get(seq),
                    Some(tag),
                    "round {round}: acknowledged {tag} (seq {seq} on {channel}) lost or changed"
                );
            }
            // Seqs go on from the head: the next one is fresh.
            if !channel.starts_with("/topic/location/") {
                let mut publisher = server
                    .connect(&server.token("after", Some("acme"), &[Role::Supervisor]))
                    .await;
                let tag = format!("r{round}-after");
                let reply = publisher.publish(&channel, json!({"tag": tag})).await;
                assert_eq!(
                    reply["seq"],
                    head + 1,
                    "round {round}: seq reused on {channel}"
                );
                all.messages.push((channel.clone(), head + 1, tag));
            }
        }
    }

    // Every alert — the PANICs and the fence's — escalates through each level exactly once.
    let http = http_client(&server.cert_pem());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let alerts = loop {
        let list = get_json(
            &http,
            &format!("https://{}/api/v1/alerts", server.addr),
            &reader,
        )
        .await;
        let list = list.as_array().expect("alerts").clone();
        // Open alerts escalate to the top; a fence alert resolves when its guard walks out.
        if list
            .iter()
            .all(|a| a["level"] == 3 || a["state"] == "resolved")
        {
            break list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alerts still below level 3: {:?}",
            list.iter()
                .map(|a| (&a["id"], &a["level"]))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for id in &all.alerts {
        assert!(
            alerts.iter().any(|a| a["id"] == json!(id)),
            "acknowledged PANIC {id} has no alert"
        );
    }
    let mut escalations = 0;
    for alert in &alerts {
        let steps: Vec<(String, u64)> = audit_trail(alert)
            .into_iter()
            .map(|s| (s.action, s.level))
            .filter(|(action, _)| action != "resolved")
            .collect();
        let reached = alert["level"].as_u64().expect("level");
        let expected: Vec<(String, u64)> = std::iter::once(("created".to_string(), 1))
            .chain((2..=reached).map(|l| ("escalated".to_string(), l)))
            .collect();
        assert_eq!(
            steps, expected,
            "alert {}: each step once, in order",
            alert["id"]
        );
        if alert["state"] == "open" {
            assert_eq!(reached, 3, "open alert {} stopped escalating", alert["id"]);
        }
        escalations += reached - 1;
    }
    let fence_alerts = alerts.iter().filter(|a| a["type"] == "GEOFENCE").count();
    eprintln!(
        "kill -9 loop: {rounds} rounds (killed {:?} to {:?} into the storm); {} acknowledged \
         messages, 0 lost, no seq reused, epoch unchanged; {} alerts ({} PANIC acknowledged, \
         {fence_alerts} geofence), {escalations} escalations, each fired once",
        kills.iter().min(),
        kills.iter().max(),
        all.messages.len(),
        alerts.len(),
        all.alerts.len(),
    );
}
