//! Lone-worker safety on the server: the alert types, welfare check-ins run by the server,
//! the duress PIN and lost contact.

mod common;

use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

async fn server_with(adjust: impl FnOnce(&mut lookout::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
        adjust(c);
    })
    .await
}

async fn post(server: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    post_json(&server.http(), &server.https(path), token, body).await
}

async fn get(server: &TestServer, path: &str, token: &str) -> Value {
    get_json(&server.http(), &server.https(path), token).await
}

#[tokio::test]
async fn the_app_raises_man_down_with_the_last_position_and_it_is_critical() {
    let server = server_with(|_| {}).await;
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut phone = server.connect(&guard).await;
    let reply = phone
        .publish("/topic/location/g1", location(51.5, -0.12))
        .await;
    assert!(ok(&reply), "{reply}");
    let (status, body) = post(
        &server,
        "/api/v1/alerts",
        &guard,
        json!({"type": "MAN_DOWN"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    let alert = get(&server, &format!("/api/v1/alerts/{id}"), &sup).await;
    assert_eq!(alert["type"], "MAN_DOWN");
    assert_eq!(alert["priority"], "CRITICAL");
    assert_eq!(alert["level"], 1);
    assert_eq!(alert["position"]["lat"], 51.5);
    let listed = get(&server, "/api/v1/alerts?type=MAN_DOWN", &sup).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    server.stop().await;
}
