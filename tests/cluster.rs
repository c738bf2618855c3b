//! Cluster mode on Redis: with `cluster.redis` set, all durable state is in a real
//! `redis-server` (tests/common/redis.rs: a Unix socket of its own, no TCP port) and no sled
//! store is opened. What a node keeps there, another node on the same Redis finds; a Redis that
//! would lose acknowledged writes is refused; a write that does not reach
//! `cluster.min_replicas` is an error, never an acknowledgement.

mod common;

use std::time::Duration;

use common::redis::RedisProcess;
use common::*;
use lookout::auth::Role;
use serde_json::json;

const ROOM: &str = "/topic/org/acme/room/ops";

fn on(redis: &RedisProcess) -> impl FnOnce(&mut lookout::Config) + '_ {
    move |c| {
        c.cluster.redis = Some(redis.url());
        // One Redis without replicas: nothing to wait for.
        c.cluster.min_replicas = 0;
    }
}

#[tokio::test]
async fn a_node_on_redis_keeps_no_sled_store_and_another_node_resumes_from_what_it_wrote() {
    let redis = RedisProcess::start();
    let first = TestServer::start_with(on(&redis)).await;
    assert!(
        !first.config.data_dir.join("db").exists(),
        "no sled store is opened in cluster mode"
    );
    let sup = first.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut publisher = first.connect(&sup).await;
    for n in 1..=5u64 {
        let reply = publisher.publish(ROOM, json!({ "n": n })).await;
        assert!(ok(&reply), "{reply}");
        assert_eq!(reply["seq"], n);
    }
    let epoch = publisher.established["epoch"].clone();
    drop(publisher);
    first.stop().await;

    // Another node, its own data directory, the same Redis: same epoch, same log.
    let second = TestServer::start_with(on(&redis)).await;
    let sup = second.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut reader = second.connect(&sup).await;
    assert_eq!(reader.established["epoch"], epoch, "one store, one epoch");
    let reply = reader
        .request(json!({"type": "subscribe", "channel": ROOM, "since": 2, "epoch": epoch}))
        .await;
    assert!(ok(&reply), "{reply}");
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["head"], 5);
    for n in 3..=5u64 {
        let m = reader.next_message().await;
        assert_eq!(m["seq"], n);
        assert_eq!(m["data"]["n"], n);
    }
    let reply = reader.publish(ROOM, json!({ "n": 6 })).await;
    assert_eq!(reply["seq"], 6, "seqs go on from the shared log: {reply}");
    second.stop().await;
}

#[tokio::test]
async fn a_redis_that_does_not_fsync_every_write_is_refused_with_the_fix() {
    let message = refusal_on(&RedisProcess::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
    ]))
    .await;
    assert!(
        message.contains("appendfsync") && message.contains("always"),
        "names the setting and the fix: {message}"
    );
    let message = refusal_on(&RedisProcess::start_with(&["--appendonly", "no"])).await;
    assert!(message.contains("appendonly"), "{message}");
}

/// Why a node on `redis` does not start.
async fn refusal_on(redis: &RedisProcess) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    on(redis)(&mut config);
    lookout::server::Server::bind(config)
        .await
        .err()
        .expect("refused")
        .to_string()
}

#[tokio::test]
async fn a_write_that_reaches_fewer_replicas_than_required_is_an_error_not_an_acknowledgement() {
    let redis = RedisProcess::start();
    let server = TestServer::start_with(|c| {
        c.cluster.redis = Some(redis.url());
        c.cluster.min_replicas = 1;
        c.cluster.wait_timeout = Duration::from_millis(100);
    })
    .await;
    // A connection records its user durably first: it is refused rather than half admitted.
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let refused = connect_with_token(&server.cert_pem, server.addr, &sup, None).await;
    let (status, body) = refusal(refused.err().expect("refused"));
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "internal");
    // A publish gets an error, never an acknowledgement.
    let svc = server.token("svc", Some("acme"), &[Role::Service]);
    let (status, body) = post_json(
        &server.http(),
        &server.https("/api/v1/publish"),
        &svc,
        json!({"channel": ROOM, "data": {"n": 1}}),
    )
    .await;
    assert_eq!(status, 500, "no replica has it: {body}");
    assert!(body.get("seq").is_none(), "{body}");
    let health = server
        .http()
        .get(server.https("/healthz"))
        .send()
        .await
        .expect("health");
    assert_eq!(
        health.status(),
        503,
        "the node says it cannot make writes durable"
    );
    let ended = server.stop_with_result().await;
    assert!(
        ended.is_err_and(|e| e.to_string().contains("unhealthy")),
        "it ends saying writes were not made durable"
    );
}

#[tokio::test]
async fn a_second_node_on_the_same_redis_is_refused_while_the_first_runs() {
    let redis = RedisProcess::start();
    let first = TestServer::start_with(on(&redis)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    on(&redis)(&mut config);
    let err = lookout::server::Server::bind(config.clone())
        .await
        .err()
        .expect("refused while the first node holds the lease");
    assert!(err.to_string().contains("another Lookout node"), "{err}");
    // A clean stop gives the lease back at once.
    first.stop().await;
    let second = lookout::server::Server::bind(config)
        .await
        .expect("the next node starts");
    drop(second);
}

#[tokio::test]
async fn a_panic_raised_on_a_node_escalates_on_the_next_node_from_the_timers_in_redis() {
    let redis = RedisProcess::start();
    let adjust = |c: &mut lookout::Config| {
        on(&redis)(c);
        c.alerts.level2_after = Duration::from_millis(1500);
        c.alerts.level3_after = Duration::from_secs(60);
    };
    let first = TestServer::start_with(adjust).await;
    let mut guard = first
        .connect(&first.token("g1", Some("acme"), &[Role::Guard]))
        .await;
    assert!(ok(&guard
        .publish("/topic/location/g1", location(52.5, 13.4))
        .await));
    let raised = guard
        .publish("/topic/emergency/g1", json!({"type": "PANIC"}))
        .await;
    assert!(ok(&raised), "{raised}");
    let id = raised["alertId"].as_str().expect("alert id").to_string();
    drop(guard);
    // The node goes away before the level-2 due time; the next one finds the timer in Redis.
    first.stop().await;
    let second = TestServer::start_with(adjust).await;
    let sup = second.token("s1", Some("acme"), &[Role::Supervisor]);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let alert = loop {
        let alert = get_json(
            &second.http(),
            &second.https(&format!("/api/v1/alerts/{id}")),
            &sup,
        )
        .await;
        if alert["level"] == 2 || tokio::time::Instant::now() > deadline {
            break alert;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        alert["level"], 2,
        "escalated once, by the next node: {alert}"
    );
    let escalations = alert["audit"]
        .as_array()
        .expect("audit")
        .iter()
        .filter(|e| e["action"] == "escalated")
        .count();
    assert_eq!(escalations, 1, "{alert}");
    second.stop().await;
}
