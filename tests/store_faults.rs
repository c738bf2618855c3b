//! A store that fails: with `testing.store_faults`, a trigger file in the data directory makes
//! the real binary's flushes or writes fail. What was acknowledged before stays; what the
//! failure touched is never acknowledged; health checks say so; the process exits non-zero
//! instead of carrying on.

mod common;

use std::time::Duration;

use common::*;
use lookout::auth::Role;
use serde_json::json;

const ROOM: &str = "/topic/org/acme/room/ops";

async fn a_failing_store_stops_the_node(trigger: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let env = [("LOOKOUT_TESTING__STORE_FAULTS", "true")];
    let mut server = Binary::serve(&data, &env);
    let token = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut client = server.connect(&token).await;
    let first = client.publish(ROOM, json!({"n": 1})).await;
    assert!(ok(&first), "{first}");
    assert_eq!(first["seq"], 1);

    std::fs::write(data.join(trigger), b"").expect("trigger");
    let failed = client
        .try_request(json!({"type": "publish", "channel": ROOM, "data": {"n": 2}}))
        .await;
    // The answer is an error, or none at all (the node closing): never an acknowledgement.
    if let Some(reply) = &failed {
        assert!(
            !ok(reply),
            "acknowledged after the {trigger} fault: {reply}"
        );
        assert_eq!(error_code(reply), "internal", "{reply}");
    }

    let http = http_client(&server.cert_pem());
    for path in ["/healthz", "/readyz"] {
        let status = http
            .get(format!("https://{}{path}", server.addr))
            .send()
            .await
            .expect(path)
            .status();
        assert_eq!(status, 503, "{path} after the {trigger} fault");
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after the {trigger} fault"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        !status.success(),
        "exited with {status} after the {trigger} fault"
    );

    // Without the fault, the node comes back with what it acknowledged.
    std::fs::remove_file(data.join(trigger)).expect("untrigger");
    let server = Binary::serve(&data, &[]);
    let history = get_json(
        &http_client(&server.cert_pem()),
        &format!(
            "https://{}/api/v1/channels/history?channel={ROOM}&since=0",
            server.addr
        ),
        &token,
    )
    .await;
    assert_eq!(history["messages"][0]["seq"], 1, "{history}");
    assert_eq!(history["messages"][0]["data"]["n"], 1, "{history}");
}

#[tokio::test]
async fn a_failed_flush_acknowledges_nothing_turns_health_checks_503_and_exits_non_zero() {
    a_failing_store_stops_the_node(lookout::store::sled::faults::FAIL_FLUSH).await;
}

#[tokio::test]
async fn a_failed_write_acknowledges_nothing_turns_health_checks_503_and_exits_non_zero() {
    a_failing_store_stops_the_node(lookout::store::sled::faults::FAIL_WRITE).await;
}
