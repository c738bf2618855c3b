//! Durable logs: resume after reconnect and restart without loss or duplicates, offline queues,
//! acknowledgements, retention, history and long-poll.

mod common;

use std::time::Duration;

use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

const ROOM: &str = "/topic/org/acme/room/ops";
const OTHER_ROOM: &str = "/topic/org/acme/room/yard";

async fn server_with(adjust: impl FnOnce(&mut lookout::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
        adjust(c);
    })
    .await
}

fn supervisor(server: &TestServer, user: &str) -> String {
    server.token(user, Some("acme"), &[Role::Supervisor])
}

/// Reads `count` messages and checks their seqs run consecutively from `first`.
async fn expect_consecutive(client: &mut Client, first: u64, count: u64) {
    for expected in first..first + count {
        let m = client.next_message().await;
        assert_eq!(m["seq"], expected, "{m}");
        assert_eq!(m["data"]["n"], expected, "payload of seq {expected}");
    }
}

async fn publish_numbered(server: &TestServer, user: &str, from: u64, to: u64) {
    let mut publisher = server.connect(&supervisor(server, user)).await;
    for n in from..=to {
        let r = publisher.publish(ROOM, json!({ "n": n })).await;
        assert_eq!(r["seq"], n, "{r}");
    }
}

#[tokio::test]
async fn a_subscriber_resumes_1000_missed_messages_then_live_ones_even_while_publishing_goes_on() {
    let server = server_with(|_| {}).await;
    let mut sub = server.connect(&supervisor(&server, "watcher")).await;
    assert!(ok(&sub.subscribe(ROOM).await));
    publish_numbered(&server, "pub", 1, 5).await;
    expect_consecutive(&mut sub, 1, 5).await;
    let epoch = sub.established["epoch"].clone();
    drop(sub);

    publish_numbered(&server, "pub", 6, 1005).await;

    // Publishing goes on while the subscriber resumes.
    let during = {
        let token = supervisor(&server, "pub2");
        let url_server = server.connect(&token).await;
        tokio::spawn(async move {
            let mut publisher = url_server;
            for n in 1006..=1305u64 {
                let r = publisher.publish(ROOM, json!({ "n": n })).await;
                assert_eq!(r["seq"], n, "{r}");
            }
        })
    };
    let mut resumed = server.connect(&supervisor(&server, "watcher")).await;
    let reply = resumed
        .request(json!({"type":"subscribe","channel":ROOM,"since":5,"epoch":epoch}))
        .await;
    assert!(ok(&reply), "{reply}");
    assert_eq!(reply["recovered"], true, "{reply}");
    assert!(reply["head"].as_u64().expect("head") >= 1005, "{reply}");
    expect_consecutive(&mut resumed, 6, 1300).await;
    during.await.expect("publisher");
    let extra = resumed.drain(Duration::from_millis(300)).await;
    assert!(
        extra.iter().all(|f| f["type"] != "message"),
        "duplicates: {extra:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn after_a_restart_subscribers_resume_from_their_last_seq_with_recovered_true() {
    let server = server_with(|_| {}).await;
    let mut sub = server.connect(&supervisor(&server, "watcher")).await;
    assert!(ok(&sub.subscribe(ROOM).await));
    publish_numbered(&server, "pub", 1, 20).await;
    expect_consecutive(&mut sub, 1, 20).await;
    let epoch = sub.established["epoch"].clone();
    publish_numbered(&server, "pub", 21, 30).await;
    drop(sub);

    let server = server.restart().await;
    publish_numbered(&server, "pub", 31, 35).await;
    let mut sub = server.connect(&supervisor(&server, "watcher")).await;
    assert_eq!(
        sub.established["epoch"], epoch,
        "the epoch survives a restart"
    );
    let reply = sub
        .request(json!({"type":"subscribe","channel":ROOM,"since":20,"epoch":epoch}))
        .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["head"], 35);
    expect_consecutive(&mut sub, 21, 15).await;
    server.stop().await;
}

#[tokio::test]
async fn an_offline_user_gets_its_queued_job_updates_in_order_once_and_not_again_after_acking() {
    let server = server_with(|_| {}).await;
    // The user is known (it connected once), then goes offline.
    drop(
        server
            .connect(&server.token("alice", Some("acme"), &[Role::Guard]))
            .await,
    );
    let svc = server.token("svc", Some("acme"), &[Role::Service]);
    for (n, status) in ["queued", "running", "completed"].iter().enumerate() {
        let r = server
            .http()
            .post(server.https("/api/v1/publish"))
            .bearer_auth(&svc)
            .json(&json!({"channel":"/user/queue/jobs","user":"alice","data":{"n": n + 1, "status": status}}))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
    }
    let alice = server.token("alice", Some("acme"), &[Role::Guard]);
    let mut first = server.connect(&alice).await;
    let reply = first.subscribe("/user/queue/jobs").await;
    assert!(ok(&reply), "{reply}");
    assert_eq!(reply["recovered"], true);
    expect_consecutive(&mut first, 1, 3).await;
    let ack = first
        .request(json!({"type":"ack","channel":"/user/queue/jobs","seq":3}))
        .await;
    assert!(ok(&ack), "{ack}");
    drop(first);

    let mut second = server.connect(&alice).await;
    assert!(ok(&second.subscribe("/user/queue/jobs").await));
    let frames = second.drain(Duration::from_millis(300)).await;
    assert!(
        frames.iter().all(|f| f["type"] != "message"),
        "delivered again: {frames:?}"
    );
    // New messages still arrive live.
    server
        .http()
        .post(server.https("/api/v1/publish"))
        .bearer_auth(&svc)
        .json(&json!({"channel":"/user/queue/jobs","user":"alice","data":{"n": 4}}))
        .send()
        .await
        .expect("post");
    assert_eq!(second.next_message().await["seq"], 4);
    server.stop().await;
}

#[tokio::test]
async fn an_unacknowledged_ack_required_message_is_redelivered_on_every_reconnect_until_acked() {
    let server = server_with(|_| {}).await;
    let mut guard = server
        .connect(&server.token("g1", Some("acme"), &[Role::Guard]))
        .await;
    let channel = "/topic/org/acme/room/incidents";
    let r = guard
        .request(json!({"type":"publish","channel":channel,"data":{"alert":"PANIC"},"ack":true}))
        .await;
    assert!(ok(&r), "{r}");
    let r = guard
        .publish(channel, json!({"note":"no ack needed"}))
        .await;
    assert!(ok(&r), "{r}");

    let sup = supervisor(&server, "s1");
    for round in 0..2 {
        let mut s = server.connect(&sup).await;
        assert!(ok(&s.subscribe(channel).await));
        let m = s.next_message().await;
        assert_eq!(m["seq"], 1, "round {round}: {m}");
        assert_eq!(m["ack_required"], true);
        let rest = s.drain(Duration::from_millis(200)).await;
        assert!(rest.iter().all(|f| f["type"] != "message"), "{rest:?}");
    }
    let mut s = server.connect(&sup).await;
    assert!(ok(&s.subscribe(channel).await));
    assert_eq!(s.next_message().await["seq"], 1);
    let ack = s
        .request(json!({"type":"ack","channel":channel,"seq":1}))
        .await;
    assert!(ok(&ack), "{ack}");
    // Only ack_required messages can be acknowledged here.
    let bad = s
        .request(json!({"type":"ack","channel":channel,"seq":2}))
        .await;
    assert_eq!(error_code(&bad), "not_found", "{bad}");
    drop(s);
    let mut s = server.connect(&sup).await;
    assert!(ok(&s.subscribe(channel).await));
    let frames = s.drain(Duration::from_millis(300)).await;
    assert!(
        frames.iter().all(|f| f["type"] != "message"),
        "redelivered after ack: {frames:?}"
    );
    // Another supervisor has not acknowledged it yet.
    let mut other = server.connect(&supervisor(&server, "s9")).await;
    assert!(ok(&other.subscribe(channel).await));
    assert_eq!(other.next_message().await["seq"], 1);
    server.stop().await;
}

#[tokio::test]
async fn retention_trims_to_the_configured_count_and_a_resume_from_before_says_so() {
    let server = server_with(|c| {
        c.retention.interval = Duration::from_millis(100);
        c.retention.default.max_messages = 10;
    })
    .await;
    publish_numbered(&server, "pub", 1, 30).await;
    let sup = supervisor(&server, "s1");
    let http = server.http();
    let history = |since: u64| {
        http.get(server.https(&format!(
            "/api/v1/channels/history?channel={ROOM}&since={since}"
        )))
        .bearer_auth(&sup)
        .send()
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let h: Value = history(0)
            .await
            .expect("history")
            .json()
            .await
            .expect("json");
        if h["messages"].as_array().is_some_and(|m| m.len() == 10) {
            assert_eq!(h["messages"][0]["seq"], 21);
            assert_eq!(h["recovered"], false);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never trimmed: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = server.connect(&sup).await;
    let reply = c
        .request(json!({"type":"subscribe","channel":ROOM,"since":5}))
        .await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["reset"], "trimmed");
    assert_eq!(reply["first"], 21);
    expect_consecutive(&mut c, 21, 10).await;
    let h: Value = history(25)
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    assert_eq!(h["recovered"], true, "nothing after 25 was trimmed: {h}");
    server.stop().await;
}

#[tokio::test]
async fn retention_trims_by_age_per_channel_kind() {
    let server = server_with(|c| {
        c.retention.interval = Duration::from_millis(100);
        c.retention.kinds.insert(
            "room".into(),
            lookout::config::RetentionRule {
                max_messages: 1000,
                max_age: Duration::from_millis(500),
            },
        );
    })
    .await;
    publish_numbered(&server, "pub", 1, 3).await;
    let mut svc = server
        .connect(&server.token("svc", Some("acme"), &[Role::Service]))
        .await;
    assert!(ok(&svc
        .publish("/topic/org/acme/tasks", json!({"task": 1}))
        .await));
    let sup = supervisor(&server, "s1");
    let http = server.http();
    let count = |channel: &'static str| {
        let http = http.clone();
        let sup = sup.clone();
        let url = server.https(&format!("/api/v1/channels/history?channel={channel}"));
        async move {
            let h: Value = get_json(&http, &url, &sup).await;
            h["messages"].as_array().map_or(0, Vec::len)
        }
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while count(ROOM).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "room messages never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count("/topic/org/acme/tasks").await,
        1,
        "tasks keep the default rule"
    );
    server.stop().await;
}

#[tokio::test]
async fn history_and_long_poll_follow_the_subscribe_rights() {
    let server = server_with(|_| {}).await;
    publish_numbered(&server, "pub", 1, 3).await;
    let sup = supervisor(&server, "s1");
    let outsider = server.token("eve", Some("globex"), &[Role::Supervisor]);
    let http = server.http();

    let r = http
        .get(server.https(&format!("/api/v1/channels/history?channel={ROOM}&since=1")))
        .bearer_auth(&sup)
        .send()
        .await
        .expect("history");
    assert_eq!(r.status(), 200);
    let h: Value = r.json().await.expect("json");
    let seqs: Vec<u64> = h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [2, 3]);
    assert_eq!(h["head"], 3);

    let r = http
        .get(server.https(&format!("/api/v1/channels/history?channel={ROOM}")))
        .bearer_auth(&outsider)
        .send()
        .await
        .expect("history");
    assert_eq!(r.status(), 403);

    // A poll with nothing new waits, and returns as soon as something is published.
    let poll = {
        let http = http.clone();
        let url = server.https(&format!("/api/v1/poll?channels={ROOM}&since=3&timeout=20"));
        let sup = sup.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let body: Value = get_json(&http, &url, &sup).await;
            (body, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !poll.is_finished(),
        "the poll returned before anything was published"
    );
    publish_numbered(&server, "pub", 4, 4).await;
    let (body, waited) = poll.await.expect("poll task");
    assert_eq!(body["channels"][0]["messages"][0]["seq"], 4, "{body}");
    assert!(
        waited < Duration::from_secs(15),
        "poll returned only after {waited:?}"
    );

    // An empty poll ends at its timeout with no messages.
    let r: Value = get_json(
        &http,
        &server.https(&format!("/api/v1/poll?channels={ROOM}&since=4&timeout=1")),
        &sup,
    )
    .await;
    assert_eq!(r["channels"][0]["messages"], json!([]));
    let r = http
        .get(server.https(&format!("/api/v1/poll?channels={ROOM}&timeout=1")))
        .bearer_auth(&outsider)
        .send()
        .await
        .expect("poll");
    assert_eq!(r.status(), 403);
    server.stop().await;
}

#[tokio::test]
async fn server_sent_events_resume_with_last_event_id_and_lose_nothing() {
    let server = server_with(|c| c.limits.ping_interval = Duration::from_secs(1)).await;
    publish_numbered(&server, "pub", 1, 3).await;
    let sup = supervisor(&server, "s1");
    let url = server.https(&format!("/api/v1/events?channels={ROOM}"));
    let response = server
        .http()
        .get(&url)
        .bearer_auth(&sup)
        .send()
        .await
        .expect("sse");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = EventReader::new(response);
    let mut last_id = String::new();
    for n in 1..=3u64 {
        let (id, data) = events.next_message().await;
        assert_eq!(data["seq"], n);
        assert_eq!(data["data"]["n"], n);
        last_id = id;
    }
    assert_eq!(last_id, "3");
    drop(events);

    // Missed while disconnected, then live after the reconnect.
    publish_numbered(&server, "pub", 4, 6).await;
    let response = server
        .http()
        .get(&url)
        .bearer_auth(&sup)
        .header("last-event-id", &last_id)
        .send()
        .await
        .expect("sse");
    let mut events = EventReader::new(response);
    for n in 4..=6u64 {
        let (id, data) = events.next_message().await;
        assert_eq!((id, data["seq"].as_u64()), (n.to_string(), Some(n)));
    }
    publish_numbered(&server, "pub", 7, 7).await;
    let (id, data) = events.next_message().await;
    assert_eq!(
        (id.as_str(), data["seq"].as_u64()),
        ("7", Some(7)),
        "no duplicate, no gap"
    );

    let r = server
        .http()
        .get(&url)
        .bearer_auth(server.token("eve", Some("globex"), &[Role::Supervisor]))
        .send()
        .await
        .expect("sse");
    assert_eq!(r.status(), 403);
    server.stop().await;
}

#[tokio::test]
async fn a_real_event_source_reconnects_with_last_event_id_across_kill_9_and_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let env = UNLIMITED_RATE;
    let server = Binary::serve(&data, &env);
    let addr = server.addr;
    let sup = server.token("sup1", Some("acme"), &[Role::Supervisor]);
    let cert = data.join("tls/cert.pem").display().to_string();
    let mut node = NodeScript::run(
        "sse.mjs",
        &[
            (
                "LOOKOUT_EVENTS",
                format!("https://{addr}/api/v1/events?channels={ROOM}"),
            ),
            ("LOOKOUT_CA", cert),
            ("SUP_TOKEN", sup.clone()),
            ("LOOKOUT_EXPECT", "100".into()),
        ],
    );
    node.event("open").await;
    let mut publisher = server.connect(&sup).await;
    for i in 0..50 {
        assert!(ok(&publisher.publish(ROOM, json!({ "i": i })).await));
    }
    let server = server.kill_9_and_restart(&env);
    let mut publisher = server.connect(&sup).await;
    for i in 50..100 {
        assert!(ok(&publisher.publish(ROOM, json!({ "i": i })).await));
    }
    let report = node.event("received").await;
    node.finish().await;
    assert!(
        report["opens"].as_u64() >= Some(2),
        "the EventSource reconnected: {report}"
    );
    let received = report["received"].as_array().expect("received");
    let is: Vec<u64> = received.iter().filter_map(|m| m["i"].as_u64()).collect();
    assert_eq!(is, (0..100).collect::<Vec<u64>>());
    let seqs: Vec<u64> = received.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<u64>>());
    drop(server);
}

#[tokio::test]
async fn a_rest_publish_whose_client_hangs_up_before_its_flush_is_still_delivered_at_once() {
    let store = std::sync::Arc::new(lookout::store::MemoryStore::new());
    let server = TestServer::start_on(store.clone()).await;
    let room = "/topic/org/acme/room/incidents";
    let mut watcher = server.connect(&supervisor(&server, "sup")).await;
    assert!(ok(&watcher.subscribe(room).await));

    store.hold_commits();
    let http = server.http();
    let svc = server.token("svc", Some("acme"), &[Role::Service]);
    let url = server.https("/api/v1/publish");
    let publishing = tokio::spawn(async move {
        http.post(url)
            .bearer_auth(svc)
            .json(&json!({"channel": room, "data": {"alert": "PANIC"}}))
            .send()
            .await
    });
    // The server has the message (its seq is taken) but cannot make it durable yet...
    let taken = tokio::time::timeout(PATIENCE, async {
        while lookout::store::Store::head(&*store, room) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(taken.is_ok(), "the publish never reached the store");
    // ...when its HTTP client goes away: the request's handler is dropped with the connection.
    publishing.abort();
    assert!(publishing.await.is_err_and(|e| e.is_cancelled()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        watcher.drain(Duration::from_millis(100)).await.is_empty(),
        "nothing is delivered before it is durable"
    );

    store.commit_held();
    let message = watcher.next_message().await;
    assert_eq!(message["seq"], 1);
    assert_eq!(message["data"]["alert"], "PANIC");
    server.stop().await;
}

/// A client sends publishes without waiting for replies. Their commits overlap, but their seqs
/// follow the sending order, their replies come in that order, and a request sent after them
/// is answered after them — with a pipeline as shallow as 3, so it fills up and drains again.
#[tokio::test]
async fn pipelined_publishes_get_seqs_and_replies_in_sending_order() {
    let server = server_with(|c| {
        c.limits.max_publishes_in_flight = 3;
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
    })
    .await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut watcher = server.connect(&sup).await;
    assert!(ok(&watcher.subscribe(ROOM).await));
    let mut publisher = server.connect(&sup).await;
    const COUNT: u64 = 200;
    for n in 1..=COUNT {
        // Two channels interleaved: seqs are per channel, order is per connection.
        let channel = if n % 2 == 0 { ROOM } else { OTHER_ROOM };
        publisher
            .send(json!({"type": "publish", "id": n, "channel": channel, "data": {"n": n}}))
            .await;
    }
    publisher.send(json!({"type": "ping", "id": "last"})).await;
    let mut seqs = (0u64, 0u64);
    for n in 1..=COUNT {
        let reply = publisher.next_frame().await;
        assert_eq!(reply["id"], n, "replies in sending order: {reply}");
        assert!(ok(&reply), "{reply}");
        let seq = if n % 2 == 0 { &mut seqs.0 } else { &mut seqs.1 };
        *seq += 1;
        assert_eq!(reply["seq"], *seq, "seq of publish {n}");
    }
    let pong = publisher.next_frame().await;
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_str()),
        (Some("pong"), Some("last"))
    );
    for n in (2..=COUNT).step_by(2) {
        let message = watcher.next_message().await;
        assert_eq!(message["data"]["n"], n, "delivered in order");
    }
    server.stop().await;
}
