//! Alert notifications out: a local HTTP receiver plays the site's paging gateway. It fails
//! its first attempts; Lookout retries with backoff until a 2xx, so the receiver gets every
//! alert event (created, escalated, acknowledged, resolved) once by event id, in order per
//! alert, each with a valid `X-Lookout-Signature`; a `kill -9` of Lookout between an alert
//! change and its delivery still delivers it after the restart.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use lookout::auth::Role;
use ring::hmac;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "a webhook secret of the site's gateway";

/// What the receiver saw: every attempt, and the bodies it accepted.
#[derive(Default)]
struct Seen {
    attempts: usize,
    accepted: Vec<Value>,
    bad_signatures: usize,
}

/// One HTTP request off `tcp`: its head (lower case) and its body; `None` when the peer went
/// away first.
async fn read_request(tcp: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            return Some((head, buf[end + 4..end + 4 + length].to_vec()));
        }
    }
}

/// An HTTP receiver on 127.0.0.1 at `/hooks/lookout{query}`: each request (its head in lower
/// case, its body) is answered with the status `answer` gives.
async fn listen(
    query: &str,
    answer: impl Fn(&str, &[u8]) -> u16 + Send + Sync + 'static,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://127.0.0.1:{}/hooks/lookout{query}",
        listener.local_addr().expect("addr").port()
    );
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let Some((head, body)) = read_request(&mut tcp).await else {
                    return;
                };
                let status = answer(&head, &body);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = tcp.write_all(reply.as_bytes()).await;
            });
        }
    });
    url
}

/// A receiver answering 500 to its first `fail_first` attempts, and to every attempt while
/// `up` is false; it checks every signature.
async fn receiver(fail_first: usize, up: Arc<AtomicBool>) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    let url = listen("", move |head, body| {
        let signature = head
            .lines()
            .find_map(|l| l.strip_prefix("x-lookout-signature:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
        let expected = format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()));
        let mut seen = shared.lock().expect("lock");
        seen.attempts += 1;
        if signature != expected {
            seen.bad_signatures += 1;
        }
        if seen.attempts <= fail_first || !up.load(Ordering::SeqCst) {
            500
        } else {
            seen.accepted
                .push(serde_json::from_slice(body).unwrap_or(Value::Null));
            200
        }
    })
    .await;
    (url, seen)
}

/// `lookout serve` with the webhook and quick escalations (level 2 after 2 s, 3 after 4 s).
fn lookout(data: &std::path::Path, url: &str) -> (Binary, String) {
    let config = config_file(
        data,
        &format!(
            "[alerts]\nlevel2_after = \"2s\"\nlevel3_after = \"4s\"\n\
             [[notify.webhooks]]\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n\
             events = [\"alert.created\", \"alert.escalated\", \"alert.acknowledged\", \"alert.resolved\"]\n"
        ),
    );
    let node = Binary::serve(data, &[("LOOKOUT_CONFIG", config.as_str())]);
    (node, config)
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The accepted events of `alert`, in the order they arrived.
fn events_of(seen: &Seen, alert: &str) -> Vec<String> {
    seen.accepted
        .iter()
        .filter(|b| b["alert"]["id"] == alert)
        .map(|b| b["event"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_event_reaches_a_failing_webhook_once_in_order_and_signed() {
    let (url, seen) = receiver(2, Arc::new(AtomicBool::new(true))).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (node, _) = lookout(&tmp.path().join("data"), &url);
    let http = http_client(&node.cert_pem());
    let guard = node.token("g1", Some("acme"), &[Role::Guard]);
    let sup = node.token("sup", Some("acme"), &[Role::Supervisor]);
    let admin = node.token("root", None, &[Role::Admin]);
    let base = format!("https://{}", node.addr);
    // A guard is known once it has connected.
    drop(node.connect(&guard).await);

    // Alert A escalates to 3 and is then resolved; alert B is acknowledged and resolved.
    let (status, a) = post_json(
        &http,
        &format!("{base}/api/v1/alerts"),
        &guard,
        json!({"type": "PANIC"}),
    )
    .await;
    assert_eq!(status, 201, "{a}");
    let (status, b) = post_json(
        &http,
        &format!("{base}/api/v1/alerts"),
        &guard,
        json!({"type": "MEDICAL"}),
    )
    .await;
    assert_eq!(status, 201, "{b}");
    let (a, b) = (
        a["id"].as_str().expect("id").to_string(),
        b["id"].as_str().expect("id").to_string(),
    );
    let (status, _) = post_json(
        &http,
        &format!("{base}/api/v1/alerts/{b}/ack"),
        &sup,
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    until("alert A at level 3", || {
        events_of(&seen.lock().expect("lock"), &a).len() >= 3
    })
    .await;
    for id in [&a, &b] {
        let (status, body) = post_json(
            &http,
            &format!("{base}/api/v1/alerts/{id}/resolve"),
            &sup,
            json!({}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    until("both resolutions", || {
        let seen = seen.lock().expect("lock");
        events_of(&seen, &a).len() == 4 && events_of(&seen, &b).len() == 3
    })
    .await;

    // What a consumer dedupes by and orders by, checked on a copy (no lock across an await).
    let seen = {
        let seen = seen.lock().expect("lock");
        Seen {
            attempts: seen.attempts,
            accepted: seen.accepted.clone(),
            bad_signatures: seen.bad_signatures,
        }
    };
    assert_eq!(
        events_of(&seen, &a),
        [
            "alert.created",
            "alert.escalated",
            "alert.escalated",
            "alert.resolved"
        ]
    );
    assert_eq!(
        events_of(&seen, &b),
        ["alert.created", "alert.acknowledged", "alert.resolved"]
    );
    let levels: Vec<Value> = seen
        .accepted
        .iter()
        .filter(|e| e["alert"]["id"] == a.as_str())
        .map(|e| e["alert"]["level"].clone())
        .collect();
    assert_eq!(levels, [json!(1), json!(2), json!(3), json!(3)]);
    let mut ids: Vec<&str> = seen
        .accepted
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    let all = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all, "each event once by id");
    assert_eq!(
        seen.bad_signatures, 0,
        "every attempt signed with the secret"
    );
    assert_eq!(
        seen.attempts,
        all + 2,
        "the two failed attempts were retried"
    );

    // The receiver counts a delivery as it answers; Lookout removes it from the outbox once
    // it has read that answer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = get_json(&http, &format!("{base}/api/v1/notify/status"), &admin).await;
        if status["outbox"] == 0 || tokio::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["outbox"], 0, "{status}");
    assert_eq!(status["webhooks"][0]["failures"], 2, "{status}");
    assert_eq!(status["webhooks"][0]["delivered"], 7, "{status}");
    assert!(!status.to_string().contains(SECRET), "{status}");
    let refused = http
        .get(format!("{base}/api/v1/notify/status"))
        .bearer_auth(&sup)
        .send()
        .await
        .expect("status");
    assert_eq!(refused.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_change_made_just_before_a_kill_9_is_delivered_after_the_restart() {
    // The receiver refuses until Lookout has been killed.
    let up = Arc::new(AtomicBool::new(false));
    let (url, seen) = receiver(0, up.clone()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (node, config) = lookout(&tmp.path().join("data"), &url);
    let http = http_client(&node.cert_pem());
    let guard = node.token("g1", Some("acme"), &[Role::Guard]);
    let base = format!("https://{}", node.addr);
    // A guard is known once it has connected.
    drop(node.connect(&guard).await);
    let (status, alert) = post_json(
        &http,
        &format!("{base}/api/v1/alerts"),
        &guard,
        json!({"type": "FIRE"}),
    )
    .await;
    assert_eq!(status, 201, "{alert}");
    let id = alert["id"].as_str().expect("id").to_string();
    until("a first, refused attempt", || {
        seen.lock().expect("lock").attempts >= 1
    })
    .await;

    let node = node.kill_9_and_restart(&[("LOOKOUT_CONFIG", config.as_str())]);
    up.store(true, Ordering::SeqCst);
    until("the creation delivered after the restart", || {
        !events_of(&seen.lock().expect("lock"), &id).is_empty()
    })
    .await;
    let seen = seen.lock().expect("lock");
    assert_eq!(events_of(&seen, &id), ["alert.created"]);
    assert_eq!(seen.bad_signatures, 0);
    drop(node);
}

/// Three nodes on one Redis share the outbox: one of them at a time delivers it (a lease), so
/// the receiver gets each event once, not once per node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_each_event_is_posted_once_not_once_per_node() {
    let (url, seen) = receiver(0, Arc::new(AtomicBool::new(true))).await;
    let redis = common::redis::RedisProcess::start();
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let (redis_url, url) = (redis.url(), url.clone());
        nodes.push(
            TestServer::start_with(move |c| {
                c.cluster.redis = Some(redis_url);
                c.cluster.min_replicas = 0;
                c.cluster.node_id = Some(name.into());
                c.alerts.level2_after = Duration::from_secs(1);
                c.alerts.level3_after = Duration::from_secs(2);
                c.notify.webhooks = vec![lookout::config::Webhook {
                    url,
                    events: vec!["alert.created".into(), "alert.escalated".into()],
                    min_level: None,
                    secret: SECRET.into(),
                }];
            })
            .await,
        );
    }
    let mut guard = nodes[1]
        .connect(&nodes[1].token("g1", Some("acme"), &[Role::Guard]))
        .await;
    let raised = guard
        .publish("/topic/emergency/g1", json!({"type": "PANIC"}))
        .await;
    assert!(ok(&raised), "{raised}");
    let id = raised["alertId"].as_str().expect("alert id").to_string();
    until("level 3 posted", || {
        events_of(&seen.lock().expect("lock"), &id).len() >= 3
    })
    .await;
    // Every node has had several looks at the outbox since (they look every second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        events_of(&seen.lock().expect("lock"), &id),
        ["alert.created", "alert.escalated", "alert.escalated"]
    );
    drop(guard);
    for node in nodes {
        node.stop().await;
    }
}

/// A receiver (its URL carrying a token in its query) that answers each POST with what
/// `answer` says of its body, and keeps the bodies it accepted (2xx).
async fn judging_receiver(
    answer: impl Fn(&Value) -> u16 + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Value>>>) {
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let shared = accepted.clone();
    let url = listen("?token=s3cret-query-token", move |_, body| {
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let status = answer(&body);
        if (200..300).contains(&status) {
            shared.lock().expect("lock").push(body);
        }
        status
    })
    .await;
    (url, accepted)
}

fn webhook(url: &str) -> lookout::config::Webhook {
    lookout::config::Webhook {
        url: url.to_string(),
        events: vec!["alert.created".into()],
        min_level: None,
        secret: SECRET.into(),
    }
}

async fn raise(server: &TestServer, user: &str, org: &str, message: &str) {
    let token = server.token(user, Some(org), &[Role::Guard]);
    let (status, body) = post_json(
        &server.http(),
        &server.https("/api/v1/alerts"),
        &token,
        json!({"type": "GENERAL", "message": message}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

fn messages(accepted: &Mutex<Vec<Value>>) -> Vec<String> {
    accepted
        .lock()
        .expect("lock")
        .iter()
        .map(|b| {
            b["alert"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn a_notification_the_receiver_refuses_becomes_a_dead_letter_and_the_next_ones_go_on() {
    let (url, accepted) = judging_receiver(|body| match body["alert"]["message"].as_str() {
        Some("poison") => 400,
        _ => 200,
    })
    .await;
    let server = TestServer::start_with(|c| c.notify.webhooks = vec![webhook(&url)]).await;
    raise(&server, "g1", "acme", "poison").await;
    raise(&server, "g2", "acme", "fine").await;
    until(
        "the notification after the refused one is delivered",
        || messages(&accepted) == ["fine"],
    )
    .await;
    let admin = server.token("root", None, &[Role::Admin]);
    let status = get_json(
        &server.http(),
        &server.https("/api/v1/notify/status"),
        &admin,
    )
    .await;
    let hook = &status["webhooks"][0];
    assert_eq!(hook["dead_letters"], 1, "{status}");
    assert_eq!(hook["pending"], 0, "{status}");
    let shown = status.to_string();
    assert!(
        !shown.contains("s3cret-query-token") && !shown.contains("token="),
        "the receiver's query is never shown: {shown}"
    );
    assert!(hook["url"]
        .as_str()
        .expect("url")
        .ends_with("/hooks/lookout"));
    server.stop().await;
}

#[tokio::test]
async fn one_orgs_flood_of_alerts_never_drops_another_orgs_notifications() {
    // The receiver is down for acme's notifications: they wait, up to acme's budget.
    let (url, accepted) = judging_receiver(|body| match body["alert"]["org"].as_str() {
        Some("acme") => 503,
        _ => 200,
    })
    .await;
    let server = TestServer::start_with(|c| {
        c.notify.webhooks = vec![webhook(&url)];
        c.notify.max_outbox = 3;
    })
    .await;
    for n in 0..8 {
        raise(&server, &format!("g{n}"), "acme", "flood").await;
    }
    raise(&server, "g1", "globex", "globex's own").await;
    until("globex's notification is delivered", || {
        messages(&accepted) == ["globex's own"]
    })
    .await;
    let admin = server.token("root", None, &[Role::Admin]);
    let status = get_json(
        &server.http(),
        &server.https("/api/v1/notify/status"),
        &admin,
    )
    .await;
    assert_eq!(status["webhooks"][0]["pending"], 3, "{status}");
    assert_eq!(status["dropped"], 5, "{status}");
    server.stop().await;
}
