//! The SockJS protocol at the HTTP level (the real sockjs-client runs in tests/stomp.rs): info,
//! polling with the native protocol, one receiver at a time, auth and unknown sessions.

mod common;

use std::time::Duration;

use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

/// One SockJS poll: the frame, without its trailing newline.
async fn poll(http: &reqwest::Client, url: &str) -> String {
    let response = http.post(url).send().await.expect("poll");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/javascript; charset=UTF-8")
    );
    let text = response.text().await.expect("body");
    text.strip_suffix('\n')
        .unwrap_or_else(|| panic!("frame without newline: {text:?}"))
        .to_string()
}

/// The messages of an `a[…]` frame, each parsed as JSON.
fn messages(frame: &str) -> Vec<Value> {
    let array = frame
        .strip_prefix('a')
        .unwrap_or_else(|| panic!("not a message frame: {frame}"));
    let strings: Vec<String> = serde_json::from_str(array).expect("array of strings");
    strings
        .iter()
        .map(|s| serde_json::from_str(s).expect("native JSON"))
        .collect()
}

#[tokio::test]
async fn info_describes_the_server() {
    let server = TestServer::start().await;
    let info: Value = server
        .http()
        .get(server.https("/ws/info"))
        .send()
        .await
        .expect("info")
        .json()
        .await
        .expect("json");
    assert_eq!(info["websocket"], true);
    assert_eq!(info["cookie_needed"], false);
    assert!(info["entropy"].is_u64());
    server.stop().await;
}

#[tokio::test]
async fn xhr_polling_carries_the_native_protocol() {
    let server = TestServer::start_with(|c| c.limits.ping_interval = Duration::from_secs(1)).await;
    let http = server.http();
    let sup = server.token("sup1", Some("acme"), &[Role::Supervisor]);
    let base = server.https("/ws/000/sess1");
    let query = format!("?token={sup}&protocol=lookout.json");

    assert_eq!(poll(&http, &format!("{base}/xhr{query}")).await, "o");
    let first = poll(&http, &format!("{base}/xhr{query}")).await;
    assert_eq!(messages(&first)[0]["type"], "connection_established");

    // A second receiving request while one is waiting is refused with 2010.
    let waiting = {
        let http = http.clone();
        let url = format!("{base}/xhr{query}");
        tokio::spawn(async move { poll(&http, &url).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        poll(&http, &format!("{base}/xhr{query}")).await,
        r#"c[2010,"Another connection still open"]"#
    );

    let subscribe = json!({"type": "subscribe", "id": 1, "channel": "/topic/org/acme/room/ops"});
    let body = serde_json::to_string(&[subscribe.to_string()]).expect("json");
    let sent = http
        .post(format!("{base}/xhr_send{query}"))
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status(), 204);
    let reply = messages(&waiting.await.expect("poll task"));
    assert_eq!(reply[0]["type"], "reply", "{reply:?}");
    assert_eq!(reply[0]["id"], 1);

    let mut publisher = server.connect(&sup).await;
    let published = publisher
        .publish("/topic/org/acme/room/ops", json!({"text": "hello"}))
        .await;
    assert!(ok(&published), "{published}");
    let mut got = Vec::new();
    while got.is_empty() {
        let frame = poll(&http, &format!("{base}/xhr{query}")).await;
        // Idle polls end with a heart-beat after the ping interval.
        if frame != "h" {
            got = messages(&frame);
        }
    }
    assert_eq!(got[0]["type"], "message");
    assert_eq!(got[0]["seq"], published["seq"]);
    assert_eq!(got[0]["data"]["text"], "hello");
    server.stop().await;
}

#[tokio::test]
async fn sessions_need_a_token_and_belong_to_their_user() {
    let server = TestServer::start().await;
    let http = server.http();
    let base = server.https("/ws/000/sess2");
    let missing = http.post(format!("{base}/xhr")).send().await.expect("poll");
    assert_eq!(missing.status(), 401);

    let sup = server.token("sup1", Some("acme"), &[Role::Supervisor]);
    assert_eq!(poll(&http, &format!("{base}/xhr?token={sup}")).await, "o");
    let other = server.token("sup2", Some("acme"), &[Role::Supervisor]);
    let stolen = http
        .post(format!("{base}/xhr?token={other}"))
        .send()
        .await
        .expect("poll");
    assert_eq!(stolen.status(), 403);

    let unknown = http
        .post(server.https(&format!("/ws/000/nope/xhr_send?token={sup}")))
        .body(r#"["x"]"#)
        .send()
        .await
        .expect("send");
    assert_eq!(unknown.status(), 404);

    let broken = http
        .post(format!("{base}/xhr_send?token={sup}"))
        .body("[not json")
        .send()
        .await
        .expect("send");
    assert_eq!(broken.status(), 500);
    assert_eq!(broken.text().await.expect("body"), "Broken JSON encoding.");
    server.stop().await;
}
