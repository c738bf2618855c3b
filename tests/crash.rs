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
    let restarted_at = lookout::protocol::now_millis();
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
