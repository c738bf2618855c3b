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

/// Three in-process nodes on one Redis, named a, b and c.
async fn three_nodes(redis: &RedisProcess) -> [TestServer; 3] {
    let node = |name: &'static str| {
        move |c: &mut lookout::Config| {
            on(redis)(c);
            c.cluster.node_id = Some(name.into());
            c.limits.messages_per_second = 10_000;
            c.limits.message_burst = 10_000;
        }
    };
    [
        TestServer::start_with(node("a")).await,
        TestServer::start_with(node("b")).await,
        TestServer::start_with(node("c")).await,
    ]
}

/// Reads `n` messages of `channel`, returning (seq, data.n, data.from) in arrival order.
async fn read_n(client: &mut Client, channel: &str, n: usize) -> Vec<(u64, u64, String)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let m = client.next_on(channel).await;
        got.push((
            m["seq"].as_u64().expect("seq"),
            m["data"]["n"].as_u64().expect("n"),
            m["data"]["from"].as_str().unwrap_or_default().to_string(),
        ));
    }
    got
}

#[tokio::test]
async fn three_nodes_deliver_every_message_to_every_node_once_in_order_with_the_same_seqs() {
    let redis = RedisProcess::start();
    let nodes = three_nodes(&redis).await;
    let sup = nodes[0].token("sup", Some("acme"), &[Role::Supervisor]);
    let mut subscribers = Vec::new();
    for node in &nodes {
        let mut client = node.connect(&sup).await;
        let reply = client.subscribe(ROOM).await;
        assert!(ok(&reply), "{reply}");
        subscribers.push(client);
    }
    // Publishers on a and b at once: one seq order for the whole cluster.
    let per_publisher = 40u64;
    let mut publishers = Vec::new();
    for (i, node) in nodes[..2].iter().enumerate() {
        let mut publisher = node.connect(&sup).await;
        let from = format!("node-{i}");
        publishers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for n in 1..=per_publisher {
                let reply = publisher
                    .publish(ROOM, json!({ "n": n, "from": from }))
                    .await;
                assert!(ok(&reply), "{reply}");
                seqs.push(reply["seq"].as_u64().expect("seq"));
            }
            seqs
        }));
    }
    let mut acknowledged = Vec::new();
    for p in publishers {
        acknowledged.extend(p.await.expect("publisher"));
    }
    acknowledged.sort();
    let total = (2 * per_publisher) as usize;
    assert_eq!(acknowledged, (1..=total as u64).collect::<Vec<_>>());
    let mut seen = Vec::new();
    for client in &mut subscribers {
        let got = read_n(client, ROOM, total).await;
        let seqs: Vec<u64> = got.iter().map(|m| m.0).collect();
        assert_eq!(
            seqs,
            (1..=total as u64).collect::<Vec<_>>(),
            "every node delivers every seq once, in order"
        );
        // Each publisher's messages in its own order.
        for from in ["node-0", "node-1"] {
            let ns: Vec<u64> = got.iter().filter(|m| m.2 == from).map(|m| m.1).collect();
            assert_eq!(ns, (1..=per_publisher).collect::<Vec<_>>());
        }
        seen.push(got);
        let extra = client.drain(Duration::from_millis(300)).await;
        assert!(extra.iter().all(|f| f["type"] != "message"), "{extra:?}");
    }
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "the same message under the same seq on every node"
    );
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_users_queue_reaches_all_its_connections_on_every_node_and_nothing_crosses_orgs() {
    let redis = RedisProcess::start();
    let nodes = three_nodes(&redis).await;
    let guard = nodes[0].token("g1", Some("acme"), &[Role::Guard]);
    let mut devices = Vec::new();
    for node in &nodes {
        let mut device = node.connect(&guard).await;
        let reply = device.subscribe("/user/queue/notifications").await;
        assert!(ok(&reply), "{reply}");
        devices.push(device);
    }
    // Another org's supervisor on every node, on its own room and on acme's.
    let other = nodes[0].token("s9", Some("globex"), &[Role::Supervisor]);
    let mut outsiders = Vec::new();
    for node in &nodes {
        let mut outsider = node.connect(&other).await;
        let mine = outsider.subscribe("/topic/org/globex/room/ops").await;
        assert!(ok(&mine), "{mine}");
        let theirs = outsider.subscribe(ROOM).await;
        assert_eq!(error_code(&theirs), "forbidden", "{theirs}");
        outsiders.push(outsider);
    }
    let svc = nodes[1].token("svc", Some("acme"), &[Role::Service]);
    let mut service = nodes[1].connect(&svc).await;
    let reply = service
        .request(
            json!({"type": "publish", "channel": "/user/queue/notifications", "to": "g1",
                        "data": {"n": 1, "text": "shift starts at 6"}}),
        )
        .await;
    assert!(ok(&reply), "{reply}");
    let sup = nodes[2].token("sup", Some("acme"), &[Role::Supervisor]);
    let mut acme = nodes[2].connect(&sup).await;
    assert!(ok(&acme.publish(ROOM, json!({"n": 2})).await));
    for device in &mut devices {
        let m = device.next_on("/user/queue/notifications").await;
        assert_eq!(m["seq"], reply["seq"], "{m}");
        assert_eq!(m["data"]["text"], "shift starts at 6");
    }
    for outsider in &mut outsiders {
        let frames = outsider.drain(Duration::from_millis(500)).await;
        assert!(
            frames.iter().all(|f| f["type"] != "message"),
            "nothing of acme reaches globex on any node: {frames:?}"
        );
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn the_sixth_connection_of_a_user_is_refused_when_its_five_others_are_on_other_nodes() {
    let redis = RedisProcess::start();
    let nodes = three_nodes(&redis).await;
    let max = nodes[0].config.limits.max_connections_per_user;
    assert_eq!(max, 5, "the default budget");
    let token = nodes[0].token("g1", Some("acme"), &[Role::Guard]);
    // Five on b and c.
    let mut held = Vec::new();
    for i in 0..max {
        held.push(nodes[1 + i % 2].connect(&token).await);
    }
    let refused = nodes[0]
        .connect_as(&token, None)
        .await
        .err()
        .expect("the sixth connection, on a node where the user has none, is refused");
    let (status, body) = refusal(refused);
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let scrape = scrape(&nodes[0]).await;
    assert_eq!(
        value(
            &scrape,
            "lookout_budget_refusals_total",
            &[("budget", "limits.max_connections_per_user")]
        ),
        1.0
    );
    // Another user is not affected.
    let other = nodes[0].token("g2", Some("acme"), &[Role::Guard]);
    let mut g2 = nodes[0].connect(&other).await;
    assert!(ok(&g2.subscribe("/user/queue/notifications").await));
    // One closes on b: its slot is given back, the next connection on a gets in.
    let mut leaving = held.remove(0);
    leaving.ws.close(None).await.expect("close");
    drop(leaving);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match nodes[0].connect_as(&token, None).await {
            Ok(_) => break,
            Err(e) => {
                let (status, _) = refusal(e);
                assert_eq!(status, 429);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the slot was never given back"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    for node in nodes {
        node.stop().await;
    }
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

/// `lookout check-config` with these variables: whether it passed, and what it printed.
fn check_config(data_dir: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .arg("check-config")
        .arg("--data-dir")
        .arg(data_dir)
        .envs(env.iter().copied())
        .output()
        .expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_config_says_whether_a_node_could_run_on_the_redis_and_why_not() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let check = |redis: &RedisProcess, min_replicas: &str| {
        check_config(
            &data,
            &[
                ("LOOKOUT_CLUSTER__REDIS", &redis.url()),
                ("LOOKOUT_CLUSTER__MIN_REPLICAS", min_replicas),
            ],
        )
    };
    let durable = RedisProcess::start();
    let (fine, text) = check(&durable, "0");
    assert!(fine, "{text}");
    assert!(text.contains("the Redis is usable"), "{text}");
    let (fine, text) = check(&durable, "1");
    assert!(!fine, "no replica for min_replicas 1: {text}");
    assert!(text.contains("connected replica"), "{text}");
    let (fine, text) = check(
        &RedisProcess::start_with(&["--appendonly", "yes", "--appendfsync", "no"]),
        "0",
    );
    assert!(!fine, "{text}");
    assert!(text.contains("appendfsync always"), "{text}");
}

#[tokio::test]
async fn when_redis_lost_all_its_data_the_store_is_a_new_epoch_and_clients_are_told_so() {
    let redis = RedisProcess::start();
    let server = TestServer::start_with(on(&redis)).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut client = server.connect(&sup).await;
    for n in 1..=3u64 {
        assert!(ok(&client.publish(ROOM, json!({ "n": n })).await));
    }
    let old_epoch = client.established["epoch"].clone();
    drop(client);
    server.stop().await;
    // The whole data set is gone (a Redis rebuilt empty, no backup).
    let wiped = std::process::Command::new("redis-cli")
        .arg("-s")
        .arg(&redis.socket)
        .arg("FLUSHALL")
        .output()
        .expect("redis-cli");
    assert!(wiped.status.success());

    let server = TestServer::start_with(on(&redis)).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut client = server.connect(&sup).await;
    assert_ne!(client.established["epoch"], old_epoch, "a new epoch");
    let reply = client
        .request(json!({"type": "subscribe", "channel": ROOM, "since": 3, "epoch": old_epoch}))
        .await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["reset"], "epoch", "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn migrate_moves_a_stopped_appliance_into_redis_and_its_clients_resume_there() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let escalate = [("LOOKOUT_ALERTS__LEVEL2_AFTER", "4s")];
    let appliance = Binary::serve(&data, &escalate);
    let sup = appliance.token("sup", Some("acme"), &[Role::Supervisor]);
    let svc = appliance.token("svc", Some("acme"), &[Role::Service]);
    let mut client = appliance.connect(&sup).await;
    let epoch = client.established["epoch"].clone();
    for n in 1..=5u64 {
        assert!(ok(&client.publish(ROOM, json!({ "n": n })).await));
    }
    let keyed = client
        .request(
            json!({"type": "publish", "channel": ROOM, "data": {"n": 6}, "idempotency_key": "k-6"}),
        )
        .await;
    assert_eq!(keyed["seq"], 6, "{keyed}");
    // A message for a user's queue, acknowledged: the cursor moves with the store.
    let http = http_client(&appliance.cert_pem());
    for n in 1..=2u64 {
        let (status, body) = post_json(
            &http,
            &format!("https://{}/api/v1/publish", appliance.addr),
            &svc,
            json!({"channel": "/user/queue/jobs", "user": "sup", "data": {"job": n}}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(ok(&client.subscribe("/user/queue/jobs").await));
    let first = client.next_on("/user/queue/jobs").await;
    assert!(ok(&client
        .request(json!({"type": "ack", "channel": "/user/queue/jobs", "seq": first["seq"]}))
        .await));
    // A PANIC whose level-2 escalation is due after the move.
    let mut guard = appliance
        .connect(&appliance.token("g1", Some("acme"), &[Role::Guard]))
        .await;
    let raised = guard
        .publish("/topic/emergency/g1", json!({"type": "PANIC"}))
        .await;
    let alert_id = raised["alertId"].as_str().expect("alert id").to_string();
    drop((client, guard));
    let mut appliance = appliance;
    appliance.signal("TERM");
    appliance.child.wait().expect("reap");

    let redis = RedisProcess::start();
    let migrate = |data: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(["migrate", "--to-redis", &redis.url(), "--data-dir"])
            .arg(data)
            .env("LOOKOUT_CLUSTER__MIN_REPLICAS", "0")
            .output()
            .expect("run migrate")
    };
    let out = migrate(&data);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("messages"), "{said}");
    let again = migrate(&data);
    assert!(
        !again.status.success(),
        "an already filled Redis is refused"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));

    // The first node of the cluster: the same data directory's keys, the state from Redis.
    let node = Binary::serve(
        &data,
        &[
            ("LOOKOUT_CLUSTER__REDIS", redis.url().as_str()),
            ("LOOKOUT_CLUSTER__MIN_REPLICAS", "0"),
            escalate[0],
        ],
    );
    let mut client = node.connect(&sup).await;
    assert_eq!(client.established["epoch"], epoch, "the appliance's epoch");
    let reply = client
        .request(json!({"type": "subscribe", "channel": ROOM, "since": 2, "epoch": epoch}))
        .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    for n in 3..=6u64 {
        assert_eq!(client.next_message().await["seq"], n);
    }
    let retried = client
        .request(
            json!({"type": "publish", "channel": ROOM, "data": {"n": 6}, "idempotency_key": "k-6"}),
        )
        .await;
    assert_eq!(retried["seq"], 6, "the key came along: {retried}");
    assert!(ok(&client.subscribe("/user/queue/jobs").await));
    let next = client.next_on("/user/queue/jobs").await;
    assert_eq!(
        next["data"]["job"], 2,
        "the queue resumes after what was acknowledged"
    );
    let http = http_client(&node.cert_pem());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let alert = loop {
        let alert = get_json(
            &http,
            &format!("https://{}/api/v1/alerts/{alert_id}", node.addr),
            &sup,
        )
        .await;
        if alert["level"] == 2 || tokio::time::Instant::now() > deadline {
            break alert;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(alert["level"], 2, "the timer came along: {alert}");
    drop(node);
}

/// `rediss://`: the node verifies the Redis's certificate against the system's roots, or the
/// bundle `SSL_CERT_FILE` names; a Redis it cannot verify is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_its_redis_over_tls_and_refuses_one_it_cannot_verify() {
    let port = common::redis::free_port();
    let (redis, ca_pem) = RedisProcess::start_tls(port);
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = tmp.path().join("site-ca.pem");
    std::fs::write(&ca, ca_pem).expect("write");
    let other_ca = tmp.path().join("other-ca.pem");
    let other_key = rcgen::KeyPair::generate().expect("key");
    let mut other = rcgen::CertificateParams::new(Vec::new()).expect("params");
    other.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other = other.self_signed(&other_key).expect("CA");
    std::fs::write(&other_ca, other.pem()).expect("write");
    let url = format!("rediss://localhost:{port}");
    let check = |roots: &std::path::Path| {
        check_config(
            &tmp.path().join("check"),
            &[
                ("LOOKOUT_CLUSTER__REDIS", &url),
                ("LOOKOUT_CLUSTER__MIN_REPLICAS", "0"),
                ("SSL_CERT_FILE", &roots.display().to_string()),
            ],
        )
    };
    let (fine, text) = check(&other_ca);
    assert!(!fine, "a certificate of another CA: {text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    let (fine, text) = check(&ca);
    assert!(fine, "{text}");
    assert!(text.contains("the Redis is usable"), "{text}");

    let ca_env = ca.display().to_string();
    let node = Binary::serve(
        &tmp.path().join("data"),
        &[
            ("LOOKOUT_CLUSTER__REDIS", url.as_str()),
            ("LOOKOUT_CLUSTER__MIN_REPLICAS", "0"),
            ("SSL_CERT_FILE", ca_env.as_str()),
        ],
    );
    let sup = node.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut client = node.connect(&sup).await;
    let reply = client.publish(ROOM, json!({ "over": "tls" })).await;
    assert!(ok(&reply), "{reply}");
    // It is in that Redis, read through its plain local socket.
    let head = std::process::Command::new("redis-cli")
        .arg("-s")
        .arg(&redis.socket)
        .args(["HGET", "lookout:head", ROOM])
        .output()
        .expect("redis-cli");
    assert_eq!(
        String::from_utf8_lossy(&head.stdout).trim(),
        reply["seq"].to_string()
    );
}

/// Sentinels and the primary they name behind passwords and TLS (issue 30): a node reaches
/// both with `cluster.sentinel_tls`, `cluster.sentinel_password` and `cluster.password`; with
/// a wrong password it is refused, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_sentinels_and_their_primary_with_passwords_over_tls() {
    use common::redis::{Sentinel, TlsFiles};
    let tls = TlsFiles::new();
    let port = common::redis::free_port();
    let _primary = RedisProcess::start_secured(port, &tls, "node-secret-1");
    let sentinel =
        Sentinel::start_secured("site", port, &tls, "node-secret-1", "sentinel-secret-2");
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = |name: &str, node_password: &str| {
        config_file(
            &tmp.path().join(name),
            &format!(
                "[cluster]\nsentinels = [\"{}\"]\nmaster_name = \"site\"\nmin_replicas = 0\n\
                 sentinel_tls = true\nsentinel_password = \"sentinel-secret-2\"\n\
                 password = \"{node_password}\"\n",
                sentinel.addr()
            ),
        )
    };
    let ca = tls.ca.clone();
    let wrong = config("wrong", "not-the-password");
    let (fine, text) = check_config(
        &tmp.path().join("wrong"),
        &[
            ("LOOKOUT_CONFIG", wrong.as_str()),
            ("SSL_CERT_FILE", ca.as_str()),
        ],
    );
    assert!(!fine, "a wrong password: {text}");
    assert!(
        text.contains("WRONGPASS") || text.to_lowercase().contains("auth"),
        "{text}"
    );
    assert!(
        !text.contains("not-the-password"),
        "a password is never printed: {text}"
    );
    let right = config("right", "node-secret-1");
    let (fine, text) = check_config(
        &tmp.path().join("right"),
        &[
            ("LOOKOUT_CONFIG", right.as_str()),
            ("SSL_CERT_FILE", ca.as_str()),
        ],
    );
    assert!(fine, "{text}");
    let node = Binary::serve(
        &tmp.path().join("right"),
        &[
            ("LOOKOUT_CONFIG", right.as_str()),
            ("SSL_CERT_FILE", ca.as_str()),
        ],
    );
    let sup = node.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut client = node.connect(&sup).await;
    assert!(ok(&client.subscribe(ROOM).await));
    let reply = client
        .publish(ROOM, json!({ "over": "sentinels and tls" }))
        .await;
    assert!(ok(&reply), "{reply}");
    assert_eq!(
        client.next_message().await["data"]["over"],
        "sentinels and tls"
    );
}
