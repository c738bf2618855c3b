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
