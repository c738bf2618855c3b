//! The lookout-client package (web/lookout-client/) under Node.js (tests/node/client.mjs,
//! which imports it by its name): reconnection with resume across a `kill -9` of the real
//! binary, and the long-poll fallback when WebSocket is blocked.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

const CHANNEL: &str = "/topic/org/acme/room/ops";
/// The client's backoff cap in these tests, in ms.
const BACKOFF_CAP: u64 = 2000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn client_env(
    ws: String,
    cert_path: String,
    token: String,
    mode: &str,
    expect: usize,
) -> Vec<(&'static str, String)> {
    vec![
        ("LOOKOUT_WS", ws),
        ("LOOKOUT_CA", cert_path.clone()),
        ("NODE_EXTRA_CA_CERTS", cert_path),
        ("SUP_TOKEN", token),
        ("LOOKOUT_MODE", mode.to_string()),
        ("LOOKOUT_EXPECT", expect.to_string()),
        ("LOOKOUT_CHANNEL", CHANNEL.to_string()),
        ("LOOKOUT_BACKOFF_CAP", BACKOFF_CAP.to_string()),
    ]
}

/// The `i`s received, in order, checking seqs are consecutive (nothing lost or repeated).
fn received_is(report: &Value) -> Vec<u64> {
    let received = report["received"].as_array().expect("received");
    let seqs: Vec<u64> = received.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(seqs.len(), received.len(), "every message has a seq");
    for pair in seqs.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "seqs are consecutive: {seqs:?}");
    }
    received.iter().filter_map(|m| m["i"].as_u64()).collect()
}

/// Publishes `{i}` for each `i` in `range`, each acknowledged by the server.
async fn publish_range(publisher: &mut Client, range: std::ops::Range<u64>) {
    for i in range {
        let reply = publisher.publish(CHANNEL, json!({ "i": i })).await;
        assert!(ok(&reply), "{reply}");
    }
}

#[tokio::test]
async fn the_client_library_resumes_without_loss_across_a_kill_9_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    // The publisher goes as fast as the server acknowledges.
    let env = UNLIMITED_RATE;
    let server = Binary::serve(&data, &env);
    let addr = server.addr;
    let cert_path = data.join("tls/cert.pem").display().to_string();
    let sup = server.token("sup1", Some("acme"), &[Role::Supervisor]);
    let mut publisher = server.connect(&sup).await;

    let mut node = NodeScript::run(
        "client.mjs",
        &client_env(
            format!("wss://{addr}/ws"),
            cert_path,
            sup.clone(),
            "resume",
            200,
        ),
    );
    node.event("ready").await;
    publish_range(&mut publisher, 0..100).await;

    // Mid-stream: the client has some of the 100, not necessarily all.
    let server = server.kill_9_and_restart_after(Duration::from_millis(1500), &env);
    let back_at = now_ms();
    let mut publisher = server.connect(&sup).await;
    publish_range(&mut publisher, 100..200).await;

    let report = node.event("received").await;
    node.finish().await;
    assert_eq!(received_is(&report), (0..200).collect::<Vec<u64>>());

    // It went offline and came back once the server was, within the backoff cap (plus the
    // time a TLS connection and a subscribe take on a busy machine).
    let reconnects = report["reconnects"].as_array().expect("reconnects");
    assert_eq!(reconnects.len(), 1, "{report:#}");
    let open_at = reconnects[0]["openAt"].as_u64().expect("openAt");
    eprintln!(
        "client reopened {} ms after the restarted server listened (cap {BACKOFF_CAP} ms)",
        open_at.saturating_sub(back_at)
    );
    assert!(
        open_at.saturating_sub(back_at) <= BACKOFF_CAP + 3000,
        "reopened {} ms after the server was back",
        open_at.saturating_sub(back_at)
    );
    drop(server);
}

#[tokio::test]
async fn the_client_library_long_polls_while_websocket_is_blocked_then_goes_back() {
    let server = TestServer::start().await;
    let sup = server.token("sup1", Some("acme"), &[Role::Supervisor]);
    let mut publisher = server.connect(&sup).await;
    let mut node = NodeScript::run(
        "client.mjs",
        &client_env(
            server.url(),
            server.cert_path.display().to_string(),
            sup.clone(),
            "fallback",
            40,
        ),
    );
    node.event("ready").await;
    publish_range(&mut publisher, 0..20).await;
    let back = node.event("websocket-again").await;
    assert!(back["attemptsBlocked"].as_u64() >= Some(2), "{back}");
    publish_range(&mut publisher, 20..40).await;

    let report = node.event("received").await;
    node.finish().await;
    assert_eq!(received_is(&report), (0..40).collect::<Vec<u64>>());
    let received = report["received"].as_array().expect("received");
    assert!(
        received[..20].iter().all(|m| m["via"] == "polling"),
        "the first half came over long-poll: {report:#}"
    );
    assert!(
        received[20..].iter().all(|m| m["via"] == "open"),
        "the second half came over WebSocket: {report:#}"
    );
    let states: Vec<&str> = report["states"]
        .as_array()
        .expect("states")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let polling = states.iter().position(|s| *s == "polling");
    let open = states.iter().rposition(|s| *s == "open");
    assert!(
        matches!((polling, open), (Some(p), Some(o)) if p < o),
        "{states:?}"
    );
    server.stop().await;
}
