//! Idempotent publish: a client that lost a reply retries with the same `idempotency_key` and
//! gets the first reply; the message is stored and delivered once — over the native protocol,
//! REST (body or `Idempotency-Key` header) and STOMP, across a restart, and for emergencies,
//! whose retry never raises a second alert.

mod common;

use std::time::Duration;

use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

const ROOM: &str = "/topic/org/acme/room/ops";

async fn history(server: &TestServer, token: &str, channel: &str) -> Vec<Value> {
    let page = get_json(
        &server.http(),
        &server.https(&format!(
            "/api/v1/channels/history?channel={channel}&since=0"
        )),
        token,
    )
    .await;
    page["messages"].as_array().expect("messages").clone()
}

fn keyed(channel: &str, n: u64, key: &str) -> Value {
    json!({"type": "publish", "channel": channel, "data": {"n": n}, "idempotency_key": key})
}

#[tokio::test]
async fn a_native_retry_gets_the_first_reply_and_the_message_is_stored_and_delivered_once() {
    let server = TestServer::start().await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut watcher = server.connect(&sup).await;
    assert!(ok(&watcher.subscribe(ROOM).await));
    let mut publisher = server.connect(&sup).await;

    let first = publisher.request(keyed(ROOM, 1, "k-1")).await;
    let retry = publisher.request(keyed(ROOM, 1, "k-1")).await;
    assert!(ok(&first), "{first}");
    assert_eq!(
        (&retry["seq"], &retry["epoch"]),
        (&first["seq"], &first["epoch"])
    );
    // A retry on a new connection (the usual case: the old one broke) too.
    let mut reconnected = server.connect(&sup).await;
    let again = reconnected.request(keyed(ROOM, 1, "k-1")).await;
    assert_eq!(again["seq"], first["seq"], "{again}");

    // Another key, another message; the same key from another user is that user's own.
    let second = publisher.request(keyed(ROOM, 2, "k-2")).await;
    assert_eq!(second["seq"], 2);
    let other = server.token("sup2", Some("acme"), &[Role::Supervisor]);
    let theirs = server
        .connect(&other)
        .await
        .request(keyed(ROOM, 3, "k-1"))
        .await;
    assert_eq!(theirs["seq"], 3, "{theirs}");

    let seen = watcher.drain(Duration::from_millis(500)).await;
    let seqs: Vec<&Value> = seen.iter().map(|m| &m["seq"]).collect();
    assert_eq!(
        seqs,
        [&json!(1), &json!(2), &json!(3)],
        "delivered once each"
    );
    assert_eq!(
        history(&server, &sup, ROOM).await.len(),
        3,
        "stored once each"
    );
    let metrics = server
        .http()
        .get(server.https("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await;
    let text = metrics.expect("metrics").text().await.expect("text");
    assert!(
        text.lines()
            .any(|l| l.starts_with("lookout_idempotent_repeats_total") && l.ends_with(" 2")),
        "two repeats counted: {}",
        text.lines()
            .filter(|l| l.contains("idempotent"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_key_outlives_a_restart() {
    let server = TestServer::start().await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let first = server
        .connect(&sup)
        .await
        .request(keyed(ROOM, 1, "once"))
        .await;
    assert!(ok(&first), "{first}");
    let server = server.restart().await;
    let retry = server
        .connect(&sup)
        .await
        .request(keyed(ROOM, 1, "once"))
        .await;
    assert_eq!(
        (&retry["seq"], &retry["epoch"]),
        (&first["seq"], &first["epoch"])
    );
    assert_eq!(history(&server, &sup, ROOM).await.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_rest_retry_by_header_or_body_gets_the_first_reply() {
    let server = TestServer::start().await;
    let service = server.token("svc", Some("acme"), &[Role::Service]);
    let post = |body: Value, header: Option<&'static str>| {
        let mut req = server
            .http()
            .post(server.https("/api/v1/publish"))
            .bearer_auth(&service)
            .json(&body);
        if let Some(key) = header {
            req = req.header("Idempotency-Key", key);
        }
        async move {
            let r = req.send().await.expect("post");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }
    };
    let body = json!({"channel": ROOM, "data": {"n": 1}});
    let (s1, first) = post(body.clone(), Some("rest-1")).await;
    let (s2, retry) = post(body.clone(), Some("rest-1")).await;
    assert_eq!((s1, s2), (200, 200), "{first} {retry}");
    assert_eq!(first, retry, "the retry's reply is the first reply");
    let mut in_body = body.clone();
    in_body["idempotency_key"] = json!("rest-1");
    assert_eq!(
        post(in_body.clone(), None).await.1,
        first,
        "the body's key is the same key"
    );
    let (status, refused) = post(in_body, Some("rest-other")).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{refused}"
    );
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    assert_eq!(history(&server, &sup, ROOM).await.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_bad_key_or_a_key_on_a_live_channel_is_refused_clearly() {
    let server = TestServer::start().await;
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let mut client = server.connect(&guard).await;
    let long = "k".repeat(201);
    let reply = client.request(keyed(ROOM, 1, &long)).await;
    assert_eq!(error_code(&reply), "bad_request", "{reply}");
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut viewer = server.connect(&sup).await;
    let reply = viewer
        .request(
            json!({"type": "publish", "channel": "/topic/org/acme/presence",
                        "data": {}, "idempotency_key": "x"}),
        )
        .await;
    assert!(!ok(&reply), "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn a_retried_panic_raises_one_alert_and_gets_its_id_again() {
    let server = TestServer::start().await;
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let mut phone = server.connect(&guard).await;
    let panic = json!({"type": "publish", "channel": "/topic/emergency/g1",
                       "data": {"type": "PANIC"}, "idempotency_key": "panic-1"});
    let first = phone.request(panic.clone()).await;
    let retry = server.connect(&guard).await.request(panic).await;
    assert!(ok(&first), "{first}");
    assert_eq!(
        (&retry["seq"], &retry["alertId"]),
        (&first["seq"], &first["alertId"])
    );
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let alerts = get_json(&server.http(), &server.https("/api/v1/alerts"), &sup).await;
    let list = alerts["alerts"]
        .as_array()
        .or(alerts.as_array())
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 1, "one alert: {alerts}");
    server.stop().await;
}
