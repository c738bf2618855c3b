//! STOMP 1.2 over WebSocket, driven by the real `@stomp/stompjs` client under Node.js
//! (tests/node/stomp.mjs), side by side with native clients on the same channels.

mod common;

use std::time::Duration;

use common::*;
use lookout::auth::Role;
use serde_json::Value;

async fn stomp_server() -> TestServer {
    TestServer::start_with(|c| {
        // Server heart-beats every second, so a few seconds show them flowing.
        c.limits.ping_interval = Duration::from_secs(1);
    })
    .await
}

/// The script's environment; `sockjs` names the one SockJS transport to use, else a plain
/// WebSocket.
fn script_env(server: &TestServer, sockjs: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("LOOKOUT_WS", server.url()),
        ("LOOKOUT_SOCKJS", server.https("/ws")),
        ("LOOKOUT_CA", server.cert_path.display().to_string()),
        (
            "NODE_EXTRA_CA_CERTS",
            server.cert_path.display().to_string(),
        ),
        ("LOOKOUT_LOCATION", location(48.85, 2.35).to_string()),
        (
            "SUP_TOKEN",
            server.token("sup1", Some("acme"), &[Role::Supervisor]),
        ),
        (
            "GUARD_TOKEN",
            server.token("guard1", Some("acme"), &[Role::Guard]),
        ),
        (
            "GUARD2_TOKEN",
            server.token("guard2", Some("acme"), &[Role::Guard]),
        ),
    ];
    if let Some(transport) = sockjs {
        env.push(("LOOKOUT_SOCKJS_TRANSPORT", transport.to_string()));
    }
    env
}

/// Runs the stompjs scenario (over SockJS with `sockjs` as the only transport, else a plain
/// WebSocket) and checks every step against the native view of the same channels.
pub async fn stompjs_scenario(sockjs: Option<&str>) {
    let server = stomp_server().await;
    let epoch = server.state.hub.epoch().to_string();
    // Guards are known to the directory (and so to their org's supervisors) once connected.
    let mut native_guard = server
        .connect(&server.token("guard1", Some("acme"), &[Role::Guard]))
        .await;
    let _guard2 = server
        .connect(&server.token("guard2", Some("acme"), &[Role::Guard]))
        .await;
    // A native supervisor on the same channel sees the same messages and seqs.
    let mut native_sup = server
        .connect(&server.token("sup2", Some("acme"), &[Role::Supervisor]))
        .await;
    assert!(ok(&native_sup.subscribe("/topic/location/guard1").await));

    let mut node = NodeScript::run("stomp.mjs", &script_env(&server, sockjs));

    let connected = node.event("connected").await;
    assert_eq!(connected["version"], "1.2");
    assert_eq!(connected["heartBeat"], "1000,1000", "{connected}");
    assert_eq!(
        connected["transport"],
        sockjs.unwrap_or("plain"),
        "{connected}"
    );

    node.event("ready").await;
    let published = native_guard
        .publish("/topic/location/guard1", location(48.851, 2.351))
        .await;
    assert!(ok(&published), "{published}");
    let seq = published["seq"].as_u64().expect("seq");
    let got = node.event("message").await;
    assert_eq!(got["destination"], "/topic/location/guard1");
    assert_eq!(got["subscription"].as_str().map(str::is_empty), Some(false));
    assert_eq!(got["seq"], seq);
    assert_eq!(got["epoch"], epoch);
    assert_eq!(got["body"]["lat"], 48.851);
    assert_eq!(native_sup.next_message().await["seq"], seq);

    // SEND with a receipt: the receipt carries the seq, and by then the message is in the log.
    let receipt = node.event("receipt").await;
    let sent_seq: u64 = receipt["headers"]["seq"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("receipt without seq: {receipt}"));
    assert_eq!(sent_seq, seq + 1);
    assert_eq!(receipt["headers"]["epoch"], epoch);
    let history = get_json(
        &server.http(),
        &server.https("/api/v1/channels/history?channel=/topic/location/guard1&since=0"),
        &server.token("sup1", Some("acme"), &[Role::Supervisor]),
    )
    .await;
    let seqs: Vec<u64> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["seq"].as_u64())
        .collect();
    assert_eq!(seqs, vec![seq, sent_seq]);
    assert_eq!(node.event("message").await["seq"], sent_seq);
    let native = native_sup.next_message().await;
    assert_eq!(native["seq"], sent_seq);
    assert_eq!(native["channel"], "/topic/location/guard1");

    // Client-individual acks with a NACK: the same message comes again.
    let acks = node.event("client-ack").await;
    let (first, second) = (&acks["first"], &acks["second"]);
    assert_eq!(first["body"]["note"], "m1");
    assert_eq!(second["body"]["note"], "m2");
    assert_eq!(second["seq"].as_u64(), first["seq"].as_u64().map(|s| s + 1));
    assert!(
        first["ack"].is_string(),
        "client modes carry an ack id: {first}"
    );
    let again = node.event("redelivered").await;
    assert_eq!(again["message"]["seq"], first["seq"]);
    assert_eq!(again["message"]["body"], first["body"]);
    assert_eq!(again["message"]["ack"], first["ack"]);
    node.event("acked").await;

    // Heart-beats kept: several each way in 3.5 s at 1 s, and the connection is still up.
    let beats = node.event("heartbeats").await;
    assert!(
        beats["received"].as_u64() >= Some(2),
        "server heart-beats: {beats}"
    );
    assert!(
        beats["sent"].as_u64() >= Some(2),
        "client heart-beats: {beats}"
    );
    assert_eq!(beats["connected"], true, "{beats}");
    assert_eq!(beats["closed"], Value::Null, "{beats}");

    // A forbidden destination: ERROR with a message header, then the connection closes.
    let refused = node.event("forbidden").await;
    assert_eq!(refused["error"]["message"], "forbidden", "{refused}");
    assert!(
        refused["error"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("/topic/location/guard2")),
        "{refused}"
    );

    node.event("done").await;
    node.finish().await;
    server.stop().await;
}

#[tokio::test]
async fn stompjs_talks_to_lookout_over_websocket() {
    stompjs_scenario(None).await;
}

#[tokio::test]
async fn stompjs_through_sockjs_websocket() {
    stompjs_scenario(Some("websocket")).await;
}

#[tokio::test]
async fn stompjs_through_sockjs_xhr_streaming() {
    stompjs_scenario(Some("xhr-streaming")).await;
}

#[tokio::test]
async fn stompjs_through_sockjs_xhr_polling() {
    stompjs_scenario(Some("xhr-polling")).await;
}

#[tokio::test]
async fn stompjs_through_sockjs_eventsource() {
    stompjs_scenario(Some("eventsource")).await;
}

#[tokio::test]
async fn stomp_subscribers_resume_with_since_and_see_native_seqs() {
    let server = stomp_server().await;
    let guard = server.token("guard1", Some("acme"), &[Role::Guard]);
    let mut native = server.connect(&guard).await;
    for i in 0..5 {
        let reply = native
            .publish(
                "/topic/location/guard1",
                location(48.0 + f64::from(i) / 100.0, 2.0),
            )
            .await;
        assert!(ok(&reply), "{reply}");
    }
    let sup = server.token("sup1", Some("acme"), &[Role::Supervisor]);
    let mut stomp = StompClient::connect(&server, &sup).await;
    stomp
        .send_frame(
            "SUBSCRIBE",
            &[
                ("id", "s1"),
                ("destination", "/topic/location/guard1"),
                ("since", "2"),
                ("receipt", "r1"),
            ],
            b"",
        )
        .await;
    let receipt = stomp.next_frame().await;
    assert_eq!(receipt.command, "RECEIPT");
    assert_eq!(receipt.get("receipt-id"), Some("r1"));
    assert_eq!(receipt.get("head"), Some("5"));
    assert_eq!(receipt.get("recovered"), Some("true"));
    for seq in 3..=5 {
        let m = stomp.next_frame().await;
        assert_eq!(m.command, "MESSAGE");
        assert_eq!(m.get("seq"), Some(seq.to_string().as_str()));
        assert_eq!(m.get("subscription"), Some("s1"));
        assert_eq!(m.get("content-type"), Some("application/json"));
    }
    server.stop().await;
}

#[tokio::test]
async fn stomp_errors_name_the_problem_and_close() {
    let server = stomp_server().await;
    let sup = server.token("sup1", Some("acme"), &[Role::Supervisor]);

    // No token at the upgrade nor in CONNECT.
    let mut anonymous = StompClient::open(&server, None).await;
    anonymous
        .send_frame("CONNECT", &[("accept-version", "1.2")], b"")
        .await;
    let error = anonymous.next_frame().await;
    assert_eq!(error.command, "ERROR");
    assert_eq!(error.get("message"), Some("unauthorized"));
    anonymous.closed().await;

    // A CONNECT token for the same user with other roles: the session stays what it was
    // admitted as.
    let guard = server.token("sup1", Some("acme"), &[Role::Guard]);
    let mut upgraded = StompClient::open(&server, Some(&guard)).await;
    let bearer = format!("Bearer {sup}");
    upgraded
        .send_frame(
            "CONNECT",
            &[("accept-version", "1.2"), ("Authorization", &bearer)],
            b"",
        )
        .await;
    let error = upgraded.next_frame().await;
    assert_eq!(error.command, "ERROR");
    assert_eq!(error.get("message"), Some("unauthorized"));
    upgraded.closed().await;

    // A version nobody speaks.
    let mut old = StompClient::open(&server, Some(&sup)).await;
    old.send_frame("CONNECT", &[("accept-version", "2.0")], b"")
        .await;
    let error = old.next_frame().await;
    assert_eq!(error.get("message"), Some("unsupported version"));
    old.closed().await;

    // A SEND whose body is not JSON and says nothing else; the receipt id is echoed.
    let mut sloppy = StompClient::connect(&server, &sup).await;
    sloppy
        .send_frame(
            "SEND",
            &[
                ("destination", "/topic/org/acme/room/ops"),
                ("receipt", "77"),
            ],
            b"not json",
        )
        .await;
    let error = sloppy.next_frame().await;
    assert_eq!(error.get("message"), Some("bad body"));
    assert_eq!(error.get("receipt-id"), Some("77"));
    sloppy.closed().await;

    // A frame over the size limit.
    let mut big = StompClient::connect(&server, &sup).await;
    let body = vec![b'x'; server.config.limits.max_message_size + 1];
    big.send_frame(
        "SEND",
        &[
            ("destination", "/topic/org/acme/room/ops"),
            ("content-type", "text/plain"),
        ],
        &body,
    )
    .await;
    let error = big.next_frame().await;
    assert_eq!(error.get("message"), Some("malformed frame"));
    big.closed().await;
    server.stop().await;
}

#[tokio::test]
async fn stomp_transactions_apply_on_commit_only() {
    let server = stomp_server().await;
    let sup = server.token("sup1", Some("acme"), &[Role::Supervisor]);
    let mut watcher = server.connect(&sup).await;
    assert!(ok(&watcher.subscribe("/topic/org/acme/room/ops").await));
    let mut stomp = StompClient::connect(&server, &sup).await;
    let send = |n: &'static str, tx: &'static str| {
        [
            ("destination", "/topic/org/acme/room/ops"),
            ("transaction", tx),
            ("content-type", "text/plain"),
            ("n", n),
        ]
    };
    stomp
        .send_frame("BEGIN", &[("transaction", "t1")], b"")
        .await;
    stomp.send_frame("SEND", &send("1", "t1"), b"aborted").await;
    stomp
        .send_frame("ABORT", &[("transaction", "t1")], b"")
        .await;
    stomp
        .send_frame("BEGIN", &[("transaction", "t2")], b"")
        .await;
    stomp.send_frame("SEND", &send("2", "t2"), b"first").await;
    let mut with_receipt = send("3", "t2").to_vec();
    with_receipt.push(("receipt", "s3"));
    stomp.send_frame("SEND", &with_receipt, b"second").await;
    assert!(
        watcher.drain(Duration::from_millis(300)).await.is_empty(),
        "nothing before COMMIT"
    );
    stomp
        .send_frame("COMMIT", &[("transaction", "t2"), ("receipt", "c")], b"")
        .await;
    // The SEND's receipt (with its seq) comes when the COMMIT makes it durable, before the
    // COMMIT's own.
    let sent = stomp.next_frame().await;
    assert_eq!(sent.get("receipt-id"), Some("s3"));
    assert!(sent.get("seq").is_some(), "{sent:?}");
    assert_eq!(stomp.next_frame().await.get("receipt-id"), Some("c"));
    let a = watcher.next_message().await;
    let b = watcher.next_message().await;
    assert_eq!(
        (a["data"].clone(), b["data"].clone()),
        ("first".into(), "second".into())
    );
    assert!(watcher.drain(Duration::from_millis(300)).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn in_auto_mode_written_messages_of_a_users_queue_count_as_consumed() {
    let server = TestServer::start().await;
    let alice = server.token("alice", Some("acme"), &[Role::Guard]);
    let mut stomp = StompClient::connect(&server, &alice).await;
    stomp
        .send_frame(
            "SUBSCRIBE",
            &[
                ("id", "jobs"),
                ("destination", "/user/queue/jobs"),
                ("receipt", "r"),
            ],
            b"",
        )
        .await;
    assert_eq!(stomp.next_frame().await.command, "RECEIPT");
    let mut service = server
        .connect(&server.token("svc", Some("acme"), &[Role::Service]))
        .await;
    for n in 1..=5 {
        let reply = service
            .request(serde_json::json!({"type": "publish", "channel": "/user/queue/jobs", "to": "alice", "data": {"n": n}}))
            .await;
        assert!(ok(&reply), "{reply}");
    }
    for n in 1..=5 {
        let message = stomp.next_frame().await;
        assert_eq!(message.command, "MESSAGE");
        assert_eq!(message.get("seq"), Some(n.to_string().as_str()));
    }
    drop(stomp);
    // The offline queue resumes after what was written: once the acknowledgements are
    // recorded, nothing is replayed.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut native = server.connect(&alice).await;
        let reply = native.subscribe("/user/queue/jobs").await;
        assert!(ok(&reply), "{reply}");
        let replayed = native
            .drain(Duration::from_millis(300))
            .await
            .into_iter()
            .filter(|f| f["type"] == "message")
            .count();
        if replayed == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "auto acknowledgements were never recorded"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_stomp_send_retried_with_its_idempotency_key_header_is_stored_and_delivered_once() {
    let server = stomp_server().await;
    let sup = server.token("sup1", Some("acme"), &[Role::Supervisor]);
    let mut watcher = server.connect(&sup).await;
    assert!(ok(&watcher.subscribe("/topic/org/acme/room/ops").await));
    let mut seqs = Vec::new();
    for receipt in ["r1", "r2"] {
        let mut stomp = StompClient::connect(&server, &sup).await;
        let headers = [
            ("destination", "/topic/org/acme/room/ops"),
            ("content-type", "text/plain"),
            ("idempotency-key", "stomp-1"),
            ("receipt", receipt),
        ];
        stomp.send_frame("SEND", &headers, b"once").await;
        let sent = stomp.next_frame().await;
        assert_eq!(sent.get("receipt-id"), Some(receipt), "{sent:?}");
        seqs.push(sent.get("seq").map(str::to_string));
    }
    assert_eq!(
        seqs[0], seqs[1],
        "the retry's receipt carries the first seq"
    );
    assert_eq!(seqs[0].as_deref(), Some("1"));
    let seen = watcher.drain(Duration::from_millis(500)).await;
    assert_eq!(seen.len(), 1, "delivered once: {seen:?}");
    server.stop().await;
}
