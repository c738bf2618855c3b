//! Fan-out: every subscriber gets every message exactly once, in order, with consecutive seqs;
//! user queues reach every connection of their user and nobody else; dialect frames.

mod common;

use std::time::Duration;

use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

async fn fast_server() -> TestServer {
    TestServer::start_with(|c| {
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
    })
    .await
}

#[tokio::test]
async fn a_topic_message_reaches_every_subscriber_once_in_order_with_consecutive_seqs() {
    let server = fast_server().await;
    let room = "/topic/org/acme/room/ops";
    let mut subscribers = Vec::new();
    for i in 0..20 {
        let token = server.token(&format!("m{i}"), Some("acme"), &[Role::Guard]);
        // Every fourth subscriber speaks MessagePack: same messages, same seqs.
        let proto = if i % 4 == 0 {
            "lookout.msgpack"
        } else {
            "lookout.json"
        };
        let mut c = server
            .connect_as(&token, Some(proto))
            .await
            .expect("connect");
        let reply = c.subscribe(room).await;
        assert!(ok(&reply), "{reply}");
        assert_eq!(reply["head"], 0);
        subscribers.push(c);
    }
    let mut publisher = server
        .connect(&server.token("pub", Some("acme"), &[Role::Supervisor]))
        .await;
    const N: u64 = 200;
    for i in 1..=N {
        let reply = publisher.publish(room, json!({"n": i})).await;
        assert_eq!(reply["seq"], i, "{reply}");
    }
    for (i, s) in subscribers.iter_mut().enumerate() {
        for expected in 1..=N {
            let m = s.next_message().await;
            assert_eq!(m["channel"], room);
            assert_eq!(m["seq"], expected, "subscriber {i}");
            assert_eq!(m["data"]["n"], expected, "subscriber {i}");
        }
        let extra = s.drain(Duration::from_millis(200)).await;
        assert!(
            extra.iter().all(|f| f["type"] != "message"),
            "duplicates: {extra:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_user_queue_reaches_every_connection_of_that_user_and_no_one_else() {
    let server = fast_server().await;
    let alice = server.token("alice", Some("acme"), &[Role::Guard]);
    let bob = server.token("bob", Some("acme"), &[Role::Guard]);
    let mut alices = Vec::new();
    for _ in 0..3 {
        let mut c = server.connect(&alice).await;
        assert!(ok(&c.subscribe("/user/queue/jobs").await));
        alices.push(c);
    }
    let mut bobs = server.connect(&bob).await;
    assert!(ok(&bobs.subscribe("/user/queue/jobs").await));

    let svc = server.token("svc", Some("acme"), &[Role::Service]);
    for n in 1..=3 {
        let r = server
            .http()
            .post(server.https("/api/v1/publish"))
            .bearer_auth(&svc)
            .json(&json!({"channel":"/user/queue/jobs","user":"alice","data":{"job":n}}))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["seq"], n);
        assert_eq!(body["channel"], "/user/queue/jobs");
    }
    for c in alices.iter_mut() {
        for n in 1..=3 {
            let m = c.next_message().await;
            assert_eq!(
                m["channel"], "/user/queue/jobs",
                "the queue never names its user"
            );
            assert_eq!(m["data"]["job"], n);
            assert_eq!(m["seq"], n);
        }
        let extra = c.drain(Duration::from_millis(200)).await;
        assert!(extra.iter().all(|f| f["type"] != "message"), "{extra:?}");
    }
    let bob_frames = bobs.drain(Duration::from_millis(300)).await;
    assert!(
        bob_frames.iter().all(|f| f["type"] != "message"),
        "bob got {bob_frames:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_private_message_is_addressed_with_to_and_stays_in_the_org() {
    let server = fast_server().await;
    let mut alice = server
        .connect(&server.token("alice", Some("acme"), &[Role::Guard]))
        .await;
    let mut bob = server
        .connect(&server.token("bob", Some("acme"), &[Role::Supervisor]))
        .await;
    let mut eve = server
        .connect(&server.token("eve", Some("globex"), &[Role::Supervisor]))
        .await;
    assert!(ok(&alice.subscribe("/user/queue/messages").await));
    let r = bob
        .request(json!({"type":"publish","channel":"/user/queue/messages","to":"alice","data":{"text":"hi"}}))
        .await;
    assert!(ok(&r), "{r}");
    let m = alice.next_message().await;
    assert_eq!(m["data"]["text"], "hi");
    // globex's eve naming "alice" writes to globex's alice: acme's alice hears nothing.
    let r = eve
        .request(json!({"type":"publish","channel":"/user/queue/messages","to":"alice","data":{"text":"psst"}}))
        .await;
    assert!(ok(&r), "{r}");
    let frames = alice.drain(Duration::from_millis(300)).await;
    assert!(
        frames.iter().all(|f| f["type"] != "message"),
        "acme's alice got {frames:?}"
    );
    let r = bob
        .request(
            json!({"type":"publish","channel":"/user/queue/messages","data":{"text":"to whom?"}}),
        )
        .await;
    assert_eq!(error_code(&r), "bad_request", "{r}");
    server.stop().await;
}

#[tokio::test]
async fn job_status_dialect_clients_get_status_updates_completion_and_system_notices() {
    let server = fast_server().await;
    let mut alice = server
        .connect(&server.token("alice", Some("acme"), &[Role::Guard]))
        .await;
    let svc = server.token("svc", Some("acme"), &[Role::Service]);
    let http = server.http();
    let publish = |body: Value| {
        http.post(server.https("/api/v1/publish"))
            .bearer_auth(&svc)
            .json(&body)
            .send()
    };
    let r = publish(json!({"channel":"/topic/job/j1","owner":"alice","data":{"status":"queued"}}))
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let reply = alice
        .request(json!({"type":"subscribe_job","jobId":"j1"}))
        .await;
    assert!(ok(&reply), "{reply}");
    assert_eq!(reply["head"], 1);
    let reply = alice
        .request(json!({"type":"subscribe_channel","channel":"/topic/system"}))
        .await;
    assert!(ok(&reply), "{reply}");

    publish(json!({"channel":"/topic/job/j1","data":{"status":"running","progress":40}}))
        .await
        .expect("post");
    let f = alice.next_frame().await;
    assert_eq!(f["type"], "job_status_update", "{f}");
    assert_eq!(f["jobId"], "j1");
    assert_eq!(f["status"], "running");
    assert_eq!(f["progress"], 40);
    assert_eq!(f["seq"], 2);

    publish(json!({"channel":"/topic/job/j1","data":{"status":"completed"}}))
        .await
        .expect("post");
    let f = alice.next_frame().await;
    assert_eq!(
        (f["type"].as_str(), f["status"].as_str()),
        (Some("job_status_update"), Some("completed"))
    );
    let f = alice.next_frame().await;
    assert_eq!(f["type"], "job_completed", "{f}");
    assert_eq!(f["seq"], 3);

    let admin = server.token("root", None, &[Role::Admin]);
    let r = http
        .post(server.https("/api/v1/broadcast/maintenance"))
        .bearer_auth(&admin)
        .json(&json!({"message":"restart at 02:00"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let f = alice.next_frame().await;
    assert_eq!(f["type"], "system_notification", "{f}");
    assert_eq!(f["data"]["kind"], "maintenance");
    assert_eq!(f["message"], "restart at 02:00");

    let reply = alice
        .request(json!({"type":"unsubscribe_job","jobId":"j1"}))
        .await;
    assert!(ok(&reply), "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn a_subscribe_with_since_replays_what_was_missed_then_goes_live() {
    let server = fast_server().await;
    let room = "/topic/org/acme/room/ops";
    let mut publisher = server
        .connect(&server.token("pub", Some("acme"), &[Role::Supervisor]))
        .await;
    for n in 1..=10 {
        assert!(ok(&publisher.publish(room, json!({"n": n})).await));
    }
    let mut late = server
        .connect(&server.token("late", Some("acme"), &[Role::Guard]))
        .await;
    let epoch = late.established["epoch"].clone();
    let reply = late
        .request(json!({"type":"subscribe","channel":room,"since":4,"epoch":epoch}))
        .await;
    assert!(ok(&reply), "{reply}");
    assert_eq!(reply["recovered"], true);
    assert_eq!(reply["head"], 10);
    assert!(ok(&publisher.publish(room, json!({"n": 11})).await));
    for expected in 5..=11 {
        assert_eq!(late.next_message().await["seq"], expected);
    }

    let mut stranger = server
        .connect(&server.token("s", Some("acme"), &[Role::Guard]))
        .await;
    let reply = stranger
        .request(json!({"type":"subscribe","channel":room,"since":4,"epoch":"another-epoch"}))
        .await;
    assert_eq!(
        reply["recovered"], false,
        "a foreign epoch cannot be resumed: {reply}"
    );
    server.stop().await;
}

#[tokio::test]
async fn subscribing_twice_conflicts_and_unsubscribing_stops_delivery() {
    let server = fast_server().await;
    let mut c = server
        .connect(&server.token("a", Some("acme"), &[Role::Guard]))
        .await;
    assert!(ok(&c.subscribe("/topic/system").await));
    assert_eq!(error_code(&c.subscribe("/topic/system").await), "conflict");
    let r = c
        .request(json!({"type":"unsubscribe","channel":"/topic/system"}))
        .await;
    assert!(ok(&r), "{r}");
    let r = c
        .request(json!({"type":"unsubscribe","channel":"/topic/system"}))
        .await;
    assert_eq!(error_code(&r), "not_found");
    // Every org receives /topic/system: an admin speaks there.
    let mut admin = server
        .connect(&server.token("root", None, &[Role::Admin]))
        .await;
    assert!(ok(&admin.publish("/topic/system", json!("after")).await));
    let frames = c.drain(Duration::from_millis(300)).await;
    assert!(frames.iter().all(|f| f["type"] != "message"), "{frames:?}");
    server.stop().await;
}
