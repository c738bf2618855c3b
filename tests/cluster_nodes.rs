//! Cluster mode with nodes that die: three `lookout` processes (the built binary) on one real
//! `redis-server`, one of them killed with `kill -9` while clients use it. A subscriber of the
//! dead node resumes on another with `since` and loses nothing; an escalation timer of the dead
//! node fires once, on another node, at its due time; a guard's missed check-in raises one
//! alert, not one per node, also when the node holding the guard's connection dies.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::redis::RedisProcess;
use common::*;
use lookout::auth::{Authenticator, Role};
use serde_json::{json, Value};

const ROOM: &str = "/topic/org/acme/room/ops";

/// A node of the cluster: its own data directory (keys, certificate), the shared Redis and
/// the shared token secret.
struct Node {
    binary: Binary,
    _dir: tempfile::TempDir,
}

fn node(redis: &RedisProcess, name: &str, extra: &[(&str, &str)]) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = redis.url();
    let mut env = vec![
        ("LOOKOUT_CLUSTER__REDIS", url.as_str()),
        ("LOOKOUT_CLUSTER__MIN_REPLICAS", "0"),
        ("LOOKOUT_CLUSTER__NODE_ID", name),
        ("LOOKOUT_JWT__SECRET", SECRET),
        ("LOOKOUT_LIMITS__MESSAGES_PER_SECOND", "100000"),
        ("LOOKOUT_LIMITS__MESSAGE_BURST", "100000"),
    ];
    env.extend_from_slice(extra);
    let binary = Binary::serve(&dir.path().join("data"), &env);
    Node { binary, _dir: dir }
}

fn token(sub: &str, org: &str, role: Role) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    Authenticator::from_config(&test_config(dir.path()))
        .expect("auth")
        .mint(sub, Some(org), &[role], Duration::from_secs(3600), None)
        .expect("mint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_whose_node_is_killed_resumes_on_another_node_losing_and_doubling_nothing() {
    let redis = RedisProcess::start();
    let a = node(&redis, "a", &[]);
    let b = node(&redis, "b", &[]);
    let c = node(&redis, "c", &[]);
    let sup = token("sup", "acme", Role::Supervisor);

    let mut subscriber = b.binary.connect(&sup).await;
    let epoch = subscriber.established["epoch"].clone();
    assert!(ok(&subscriber.subscribe(ROOM).await));

    // Publishing on a goes on the whole time.
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut publisher = a.binary.connect(&sup).await;
    let publishing = {
        let (acked, stop) = (acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let reply = publisher.publish(ROOM, json!({ "n": n })).await;
                assert!(ok(&reply), "{reply}");
                acked
                    .lock()
                    .expect("lock")
                    .push(reply["seq"].as_u64().expect("seq"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let mut received: Vec<u64> = Vec::new();
    while received.len() < 50 {
        received.push(subscriber.next_on(ROOM).await["seq"].as_u64().expect("seq"));
    }
    let mut b = b;
    b.binary.child.kill().expect("kill -9");
    b.binary.child.wait().expect("reap");
    // What was already on its way arrives; then the connection ends.
    for m in std::mem::take(&mut subscriber.inbox) {
        if m["channel"] == ROOM {
            received.push(m["seq"].as_u64().expect("seq"));
        }
    }
    while let Ok(Ok(m)) = tokio::time::timeout(PATIENCE, subscriber.ws.next_frame_or_end()).await {
        if m["type"] == "message" && m["channel"] == ROOM {
            received.push(m["seq"].as_u64().expect("seq"));
        }
    }
    let last = *received.last().expect("received");
    let mut resumed = c.binary.connect(&sup).await;
    let reply = resumed
        .request(json!({"type": "subscribe", "channel": ROOM, "since": last, "epoch": epoch}))
        .await;
    assert!(ok(&reply), "{reply}");
    assert_eq!(reply["recovered"], true, "{reply}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    publishing.await.expect("publisher");
    let acked = acked.lock().expect("lock").clone();
    let last_acked = *acked.last().expect("acked");
    while *received.last().expect("received") < last_acked {
        received.push(resumed.next_on(ROOM).await["seq"].as_u64().expect("seq"));
    }
    let extra = resumed.drain(Duration::from_millis(300)).await;
    assert!(extra.iter().all(|f| f["type"] != "message"), "{extra:?}");
    assert_eq!(
        received,
        (1..=last_acked).collect::<Vec<_>>(),
        "every acknowledged seq once, in order, across the node's death"
    );
    let acked: BTreeSet<u64> = acked.into_iter().collect();
    assert_eq!(acked.len() as u64, last_acked);
    eprintln!(
        "node b killed after {} deliveries; resumed on c from seq {last}; {last_acked} messages, 0 lost, 0 doubled",
        50
    );
    drop(a);
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_raised_on_a_node_killed_before_its_due_time_escalates_once_per_level_on_the_others(
) {
    let redis = RedisProcess::start();
    let escalate = [
        ("LOOKOUT_ALERTS__LEVEL2_AFTER", "3s"),
        ("LOOKOUT_ALERTS__LEVEL3_AFTER", "6s"),
    ];
    let a = node(&redis, "a", &escalate);
    let b = node(&redis, "b", &escalate);
    let c = node(&redis, "c", &escalate);
    let sup = token("s1", "acme", Role::Supervisor);
    // A supervisor on b and one on c watch the org's alerts.
    let mut watchers = Vec::new();
    for n in [&b, &c] {
        let mut watcher = n.binary.connect(&sup).await;
        assert!(ok(&watcher.subscribe("/topic/org/acme/alerts").await));
        watchers.push(watcher);
    }
    let mut guard = a.binary.connect(&token("g1", "acme", Role::Guard)).await;
    let raised = guard
        .publish("/topic/emergency/g1", json!({"type": "PANIC"}))
        .await;
    assert!(ok(&raised), "{raised}");
    let id = raised["alertId"].as_str().expect("alert id").to_string();
    drop(guard);
    let raised_at = lookout::clock::now_millis();
    let mut a = a;
    a.binary.child.kill().expect("kill -9");
    a.binary.child.wait().expect("reap");

    // Each watcher sees created, then level 2 and level 3 once each.
    for watcher in &mut watchers {
        let mut events: Vec<(String, u64)> = Vec::new();
        while events.iter().filter(|e| e.0 == "escalated").count() < 2 {
            let m = watcher.next_on("/topic/org/acme/alerts").await;
            if m["data"]["alert"]["id"] == json!(id) {
                let event = m["data"]["event"].as_str().expect("event").to_string();
                events.push((event, m["data"]["alert"]["level"].as_u64().expect("level")));
            }
        }
        let more = watcher.drain(Duration::from_secs(2)).await;
        let doubled: Vec<&Value> = more
            .iter()
            .filter(|f| f["data"]["alert"]["id"] == json!(id))
            .collect();
        assert!(doubled.is_empty(), "an escalation fired twice: {doubled:?}");
        assert_eq!(
            events,
            vec![
                ("created".to_string(), 1),
                ("escalated".to_string(), 2),
                ("escalated".to_string(), 3)
            ]
        );
    }
    let alert = get_json(
        &http_client(&b.binary.cert_pem()),
        &format!("https://{}/api/v1/alerts/{id}", b.binary.addr),
        &sup,
    )
    .await;
    let escalations: Vec<AuditStep> = audit_trail(&alert)
        .into_iter()
        .filter(|s| s.action == "escalated")
        .collect();
    assert_eq!(
        escalations.iter().map(|s| s.level).collect::<Vec<_>>(),
        vec![2, 3],
        "{alert}"
    );
    // Not before its due time, and by another node while a is dead.
    let level2 = escalations[0].at.saturating_sub(raised_at);
    assert!(level2 >= 2_900, "level 2 fired {level2} ms after the PANIC");
    drop(b);
    drop(c);
}

/// Issue 30: a stolen phone stops working everywhere at once, and a sign-in link is good for
/// one exchange across the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_on_one_node_cuts_the_phone_off_on_all_three_and_a_link_is_exchanged_once() {
    let redis = RedisProcess::start();
    let nodes = [
        node(&redis, "a", &[]),
        node(&redis, "b", &[]),
        node(&redis, "c", &[]),
    ];
    let sup = token("sup", "acme", Role::Supervisor);
    let http = |n: &Node| http_client(&n.binary.cert_pem());
    let url = |n: &Node, path: &str| format!("https://{}{path}", n.binary.addr);

    // One link, exchanged on two nodes at the same moment: one session, one refusal. Tried
    // with several links, so that the two requests really meet.
    let mut phone = None;
    for _ in 0..5 {
        let (status, minted) = post_json(
            &http(&nodes[0]),
            &url(&nodes[0], "/api/v1/guard-links"),
            &sup,
            json!({"guard": "carol"}),
        )
        .await;
        assert_eq!(status, 201, "{minted}");
        let link = minted["link"].as_str().expect("link").to_string();
        let exchange = |n: &Node| {
            let (http, url) = (http(n), url(n, "/api/v1/auth/link"));
            let body = json!({ "token": link });
            async move {
                let r = http.post(url).json(&body).send().await.expect("exchange");
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        let (first, second) = tokio::join!(exchange(&nodes[1]), exchange(&nodes[2]));
        let mut statuses = [first.0, second.0];
        statuses.sort();
        assert_eq!(statuses, [200, 401], "{first:?} {second:?}");
        let session = if first.0 == 200 { first.1 } else { second.1 };
        phone = Some(session["token"].as_str().expect("token").to_string());
    }
    let phone = phone.expect("a session");

    // The phone is connected to all three nodes; a supervisor revokes it on the first.
    let mut connections = Vec::new();
    for n in &nodes {
        connections.push(n.binary.connect(&phone).await);
    }
    let (status, listed) = {
        let r = http(&nodes[0])
            .get(url(&nodes[0], "/api/v1/devices"))
            .bearer_auth(&sup)
            .send()
            .await
            .expect("devices");
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.expect("json"))
    };
    assert_eq!(status, 200);
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&phone)
        .expect("claims")
        .claims;
    let device = claims["jti"].as_str().expect("jti").to_string();
    assert!(
        listed["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .any(|d| d["id"] == device.as_str()),
        "{listed}"
    );
    let (status, revoked) = post_json(
        &http(&nodes[0]),
        &url(&nodes[0], &format!("/api/v1/devices/{device}/revoke")),
        &sup,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    for (i, mut c) in connections.into_iter().enumerate() {
        let ended = tokio::time::timeout(Duration::from_secs(1), c.ended())
            .await
            .unwrap_or_else(|_| panic!("node {i} still serves the revoked phone after 1 s"));
        assert!(
            matches!(ended, Ended::Closed(4005, _)),
            "node {i}: {ended:?}"
        );
    }
    for n in &nodes {
        let r = http(n)
            .get(url(
                n,
                "/api/v1/channels/history?channel=/user/queue/messages",
            ))
            .bearer_auth(&phone)
            .send()
            .await
            .expect("history");
        assert_eq!(r.status().as_u16(), 401, "{}", n.binary.addr);
    }
}

/// Issue 35: the server runs check-ins; each node could fire a guard's deadline, one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_check_in_raises_one_alert_on_three_nodes_also_when_the_guards_node_is_killed() {
    let redis = RedisProcess::start();
    let short = [("LOOKOUT_FIELD__CHECK_IN_MIN_INTERVAL", "1s")];
    let a = node(&redis, "a", &short);
    let mut b = node(&redis, "b", &short);
    let c = node(&redis, "c", &short);
    let sup = token("s1", "acme", Role::Supervisor);
    let on = |n: &Node, path: &str| format!("https://{}{path}", n.binary.addr);
    let http_a = http_client(&a.binary.cert_pem());
    let settings =
        json!({"enabled": true, "interval_ms": 2000, "pre_alarm_ms": 500, "grace_ms": 500});
    let response = http_a
        .put(on(&a, "/api/v1/welfare/settings"))
        .bearer_auth(&sup)
        .json(&settings)
        .send()
        .await
        .expect("PUT settings");
    assert_eq!(response.status().as_u16(), 200);
    let missed = |user: &'static str| {
        let http = http_a.clone();
        let url = on(&a, "/api/v1/alerts?type=CHECK_IN_MISSED");
        let sup = sup.clone();
        async move {
            let listed = get_json(&http, &url, &sup).await;
            listed
                .as_array()
                .expect("alerts")
                .iter()
                .filter(|a| a["user"] == user)
                .cloned()
                .collect::<Vec<Value>>()
        }
    };
    let wait_for = |user: &'static str| {
        let missed = &missed;
        async move {
            for _ in 0..150 {
                if !missed(user).await.is_empty() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("no CHECK_IN_MISSED for {user} within 15 s");
        }
    };

    // g1, connected to c, starts lone work there: three nodes watch its deadline, one fires.
    let g1 = token("g1", "acme", Role::Guard);
    let _phone1 = c.binary.connect(&g1).await;
    let (status, body) = post_json(
        &http_client(&c.binary.cert_pem()),
        &on(&c, "/api/v1/welfare/start"),
        &g1,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_for("g1").await;

    // g2, connected to b, starts lone work there; b dies before the deadline.
    let g2 = token("g2", "acme", Role::Guard);
    let phone2 = b.binary.connect(&g2).await;
    let (status, body) = post_json(
        &http_client(&b.binary.cert_pem()),
        &on(&b, "/api/v1/welfare/start"),
        &g2,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let deadline = body["deadline"].as_u64().expect("armed");
    b.binary.child.kill().expect("kill -9");
    b.binary.child.wait().expect("reap");
    drop(phone2);
    wait_for("g2").await;
    // Time for every surviving node to have fired too, had the claim let it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (one, two) = (missed("g1").await, missed("g2").await);
    assert_eq!(one.len(), 1, "one alert for g1, not one per node: {one:?}");
    assert_eq!(
        two.len(),
        1,
        "one alert for g2 after its node died: {two:?}"
    );
    let raised = two[0]["created_at"].as_u64().expect("created_at");
    assert!(
        raised >= deadline + 500,
        "raised at {raised}, not before deadline {deadline} + grace"
    );
    drop(a);
    drop(c);
}

/// Issue 35: two nodes changing one guard's lone-worker state at once lose neither change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_ins_on_one_node_and_changes_on_another_lose_neither() {
    let redis = RedisProcess::start();
    let short = [("LOOKOUT_FIELD__CHECK_IN_MIN_INTERVAL", "1s")];
    let a = node(&redis, "a", &short);
    let b = node(&redis, "b", &short);
    let sup = token("s1", "acme", Role::Supervisor);
    let g1 = token("g1", "acme", Role::Guard);
    let (http_a, http_b) = (
        http_client(&a.binary.cert_pem()),
        http_client(&b.binary.cert_pem()),
    );
    let url = |n: &Node, path: &str| format!("https://{}{path}", n.binary.addr);
    let interval =
        |ms: u64| json!({"enabled": true, "interval_ms": ms, "pre_alarm_ms": 0, "grace_ms": 0});
    let response = http_a
        .put(url(&a, "/api/v1/welfare/settings"))
        .bearer_auth(&sup)
        .json(&interval(60_000))
        .send()
        .await
        .expect("PUT settings");
    assert_eq!(response.status().as_u16(), 200);
    let (status, body) =
        post_json(&http_a, &url(&a, "/api/v1/welfare/start"), &g1, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let pins = json!({"pin": "2468", "duress_pin": "9999"});
    let response = http_b
        .put(url(&b, "/api/v1/welfare/pin"))
        .bearer_auth(&g1)
        .json(&pins)
        .send()
        .await
        .expect("PUT pin");
    assert_eq!(response.status().as_u16(), 200);
    // Each round: "I'm OK" on a and a supervisor's new interval for g1 on b, at once.
    let (ok_url, own_url) = (
        url(&a, "/api/v1/welfare/ok"),
        url(&b, "/api/v1/welfare/settings?user=g1"),
    );
    for round in 0..40u64 {
        let ms = 60_000 + round * 1000;
        let (ok, set) = tokio::join!(post_json(&http_a, &ok_url, &g1, json!({})), async {
            let response = http_b
                .put(&own_url)
                .bearer_auth(&sup)
                .json(&interval(ms))
                .send()
                .await
                .expect("PUT own settings");
            response.status().as_u16()
        });
        assert_eq!(ok.0, 200, "round {round}: {}", ok.1);
        assert_eq!(set, 200, "round {round}: the new interval");
        let checked_in = ok.1["checkedInAt"].as_u64().expect("checkedInAt");
        let status = get_json(&http_a, &url(&a, "/api/v1/welfare/status"), &g1).await;
        assert_eq!(
            status["intervalMs"], ms,
            "round {round}: the change on b kept: {status}"
        );
        assert!(
            status["checkedInAt"].as_u64() >= Some(checked_in),
            "round {round}: the check-in on a kept: {status}"
        );
        assert_eq!(status["loneWork"], true, "round {round}: {status}");
        assert_eq!(status["pinSet"], true, "round {round}: {status}");
    }
    let entry = json!({"pin": "2468", "action": "cancel"});
    let (status, body) = post_json(&http_b, &url(&b, "/api/v1/welfare/pin"), &g1, entry).await;
    assert_eq!(status, 200, "the PIN still works: {body}");
}
