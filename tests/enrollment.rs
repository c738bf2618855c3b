//! Enrolling a guard's phone: supervisors and admins mint one-time links to the guard app for
//! guards of their own organization; the link opens a session as long as a shift.

mod common;

use std::time::Duration;

use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

async fn mint(server: &TestServer, token: &str, body: Value) -> (u16, Value) {
    post_json(
        &server.http(),
        &server.https("/api/v1/guard-links"),
        token,
        body,
    )
    .await
}

async fn exchange(server: &TestServer, link: &str) -> (u16, Value) {
    let response = server
        .http()
        .post(server.https("/api/v1/auth/link"))
        .json(&json!({ "token": link }))
        .send()
        .await
        .expect("exchange");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_supervisor_mints_a_guard_link_that_opens_a_shift_long_guard_session_once() {
    let server =
        TestServer::start_with(|c| c.field.guard_session = Duration::from_secs(10 * 3600)).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let (status, minted) = mint(&server, &sup, json!({"guard": "g-7", "name": "Ana"})).await;
    assert_eq!(status, 201, "{minted}");
    let link = minted["link"].as_str().expect("link");
    assert_eq!(minted["path"], format!("/guard#link={link}"));
    // The link itself is no credential.
    let mut refused = server
        .http()
        .get(server.https("/api/v1/alerts"))
        .bearer_auth(link)
        .send()
        .await
        .expect("alerts");
    assert_eq!(refused.status(), 401);
    refused = server
        .http()
        .get(server.https("/api/v1/alerts"))
        .send()
        .await
        .expect("alerts");
    assert_eq!(refused.status(), 401);

    let (status, session) = exchange(&server, link).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(
        session["expiresIn"],
        10 * 3600,
        "field.guard_session: {session}"
    );
    let token = session["token"].as_str().expect("token");
    let mut guard = server.connect(token).await;
    assert_eq!(guard.established["userId"], "g-7", "{}", guard.established);
    let reply = guard
        .publish("/topic/location/g-7", location(52.5, 13.4))
        .await;
    assert!(ok(&reply), "a guard publishes its own position: {reply}");
    let reply = guard.subscribe("/topic/org/acme/alerts").await;
    assert_eq!(
        error_code(&reply),
        "forbidden",
        "a guard, not a supervisor: {reply}"
    );

    let (status, again) = exchange(&server, link).await;
    assert_eq!(status, 401, "a link works once: {again}");
    server.stop().await;
}

#[tokio::test]
async fn guard_links_are_minted_for_the_minters_own_organization_only() {
    let server = TestServer::start().await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let (status, body) = mint(&server, &sup, json!({"guard": "g1", "org": "other"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, body) = mint(&server, &sup, json!({"guard": "g1", "org": "acme"})).await;
    assert_eq!(status, 201, "repeating one's own org is fine: {body}");

    let guard = server.token("g2", Some("acme"), &[Role::Guard]);
    let (status, body) = mint(&server, &guard, json!({"guard": "g3"})).await;
    assert_eq!(status, 403, "guards do not enroll guards: {body}");
    let service = server.token("svc", Some("acme"), &[Role::Service]);
    let (status, body) = mint(&server, &service, json!({"guard": "g3"})).await;
    assert_eq!(status, 403, "{body}");

    let admin = server.token("root", None, &[Role::Admin]);
    let (status, body) = mint(&server, &admin, json!({"guard": "g3"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    let (status, body) = mint(&server, &admin, json!({"guard": "g3", "org": "beta"})).await;
    assert_eq!(status, 201, "{body}");
    let (_, session) = exchange(&server, body["link"].as_str().expect("link")).await;
    let guard = server
        .connect(session["token"].as_str().expect("token"))
        .await;
    assert_eq!(guard.established["userId"], "g3");

    for bad in [
        json!({"guard": "a/b"}),
        json!({"guard": ""}),
        json!({"guard": "g", "x": 1}),
    ] {
        let (status, body) = mint(&server, &sup, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    server.stop().await;
}

#[test]
fn token_link_for_a_guard_opens_the_guard_app() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["token", "--sub", "g1", "--org", "demo", "--role", "guard"])
        .args(["--link", "https://appliance:8443/", "--data-dir"])
        .arg(tmp.path().join("data"))
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8_lossy(&out.stdout);
    let token = line
        .trim()
        .strip_prefix("https://appliance:8443/guard#link=")
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
}

/// Enrolls a phone for `guard`: its session token.
async fn enroll(server: &TestServer, supervisor: &str, guard: &str) -> String {
    let (status, minted) = mint(server, supervisor, json!({ "guard": guard })).await;
    assert_eq!(status, 201, "{minted}");
    let (status, session) = exchange(server, minted["link"].as_str().expect("link")).await;
    assert_eq!(status, 200, "{session}");
    session["token"].as_str().expect("token").to_string()
}

async fn devices(server: &TestServer, token: &str) -> Vec<Value> {
    let list = get_json(&server.http(), &server.https("/api/v1/devices"), token).await;
    list["devices"].as_array().cloned().unwrap_or_default()
}

async fn revoke(server: &TestServer, token: &str, device: &str) -> (u16, Value) {
    let response = server
        .http()
        .post(server.https(&format!("/api/v1/devices/{device}/revoke")))
        .bearer_auth(token)
        .send()
        .await
        .expect("revoke");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_revoked_phone_is_cut_off_at_once_and_after_a_restart_while_the_guards_other_phone_works()
{
    let server = TestServer::start().await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let lost = enroll(&server, &sup, "g1").await;
    let spare = enroll(&server, &sup, "g1").await;
    let enrolled = devices(&server, &sup).await;
    assert_eq!(enrolled.len(), 2, "{enrolled:?}");
    assert!(enrolled
        .iter()
        .all(|d| d["guard"] == "g1" && d["org"] == "acme"));

    let mut lost_socket = server.connect(&lost).await;
    let mut spare_socket = server.connect(&spare).await;
    // Which record is the lost phone's: the one whose revocation closes its socket.
    // A session token carries its device id as `jti`.
    assert_eq!(lost_socket.established["userId"], "g1");
    let lost_id = jwt_claim(&lost, "jti");
    assert!(
        enrolled.iter().any(|d| d["id"] == lost_id.as_str()),
        "{lost_id} among {enrolled:?}"
    );

    // Another org's supervisor cannot see or revoke it.
    let stranger = server.token("sup2", Some("beta"), &[Role::Supervisor]);
    assert!(devices(&server, &stranger).await.is_empty());
    assert_eq!(revoke(&server, &stranger, &lost_id).await.0, 404);

    // The lost phone also holds a STOMP session and an event stream: every transport is cut.
    let mut lost_stomp = StompClient::connect(&server, &lost).await;
    let stream = server
        .http()
        .get(server.https("/api/v1/events?channels=/topic/location/g1"))
        .bearer_auth(&lost)
        .send()
        .await
        .expect("sse");
    assert_eq!(stream.status(), 200);
    let mut lost_events = EventReader::new(stream);
    let waiting_poll = tokio::spawn(
        server
            .http()
            .get(server.https("/api/v1/poll?channels=/topic/location/g1&since=0&timeout=20"))
            .bearer_auth(&lost)
            .send(),
    );
    server
        .wait_stats("the long-poll waits", |s| s["connections"] == 5)
        .await;

    let revoked_at = std::time::Instant::now();
    let (status, body) = revoke(&server, &sup, &lost_id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["closed"], 4,
        "WebSocket, STOMP, SSE and a waiting long-poll: {body}"
    );
    match lost_socket.ended().await {
        Ended::Closed(code, reason) => {
            assert_eq!(code, 4005, "{reason}");
            assert!(revoked_at.elapsed() < Duration::from_secs(1));
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert_eq!(lost_stomp.close_code().await, Some(4005));
    let mut last_event = None;
    while let Some(event) = lost_events.next_event().await {
        last_event = Some(event);
    }
    let (event, _, data) = last_event.expect("an error event before the end");
    assert_eq!(event, "error");
    assert!(data.contains("4005"), "{data}");
    let polled = waiting_poll.await.expect("join").expect("poll");
    assert_eq!(polled.status(), 401, "the waiting long-poll ends, refused");
    assert!(
        revoked_at.elapsed() < Duration::from_secs(1),
        "every transport closed within a second: {:?}",
        revoked_at.elapsed()
    );
    let reply = spare_socket
        .publish("/topic/location/g1", location(52.5, 13.4))
        .await;
    assert!(ok(&reply), "the other phone is unaffected: {reply}");
    drop(spare_socket);

    let refused = connect_with_token(&server.cert_pem, server.addr, &lost, None).await;
    let (status, _) = refusal(refused.err().expect("refused"));
    assert_eq!(status, 401);
    let listed = devices(&server, &sup).await;
    assert!(listed
        .iter()
        .any(|d| d["id"] == lost_id.as_str() && d["revokedAt"].is_u64()));

    let server = server.restart().await;
    let refused = connect_with_token(&server.cert_pem, server.addr, &lost, None).await;
    let (status, _) = refusal(refused.err().expect("still refused after a restart"));
    assert_eq!(status, 401);
    let mut spare_socket = server.connect(&spare).await;
    let reply = spare_socket
        .publish("/topic/location/g1", location(52.5, 13.4))
        .await;
    assert!(ok(&reply), "{reply}");
    server.stop().await;
}

/// A claim of a JWT's payload (the test's own reading; the server never trusts one unverified).
fn jwt_claim(token: &str, claim: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    let claims: Value = serde_json::from_slice(&bytes).expect("json");
    claims[claim].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn an_org_at_its_device_budget_enrolls_no_more_until_it_revokes_one_and_other_orgs_go_on() {
    let server = TestServer::start_with(|c| c.limits.max_devices_per_org = 2).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let first = enroll(&server, &sup, "g1").await;
    enroll(&server, &sup, "g2").await;

    let (_, minted) = mint(&server, &sup, json!({ "guard": "g3" })).await;
    let link = minted["link"].as_str().expect("link");
    let (status, body) = exchange(&server, link).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("limits.max_devices_per_org"),
        "{body}"
    );

    // Another org is not held back by this one's budget.
    let other = server.token("sup2", Some("beta"), &[Role::Supervisor]);
    enroll(&server, &other, "b1").await;

    // A revoke frees a place; the refused link was not used up.
    let (status, _) = revoke(&server, &sup, &jwt_claim(&first, "jti")).await;
    assert_eq!(status, 200);
    let (status, body) = exchange(&server, link).await;
    assert_eq!(status, 200, "{body}");

    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"lookout_budget_refusals_total{budget="limits.max_devices_per_org"} 1"#),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_device_whose_shift_session_ran_out_holds_no_place_under_the_budget() {
    let server = TestServer::start_with(|c| {
        c.limits.max_devices_per_org = 1;
        c.field.guard_session = std::time::Duration::from_secs(2);
    })
    .await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    enroll(&server, &sup, "g1").await;
    let (_, minted) = mint(&server, &sup, json!({ "guard": "g2" })).await;
    let link = minted["link"].as_str().expect("link");
    let (status, _) = exchange(&server, link).await;
    assert_eq!(status, 429, "the first phone's session is still running");
    // The shift is over: its session has expired, so its place is free.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = exchange(&server, link).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_guard_link_is_never_minted_for_an_id_that_holds_another_role_in_the_org() {
    let server = TestServer::start().await;
    let sup1 = server.token("sup1", Some("acme"), &[Role::Supervisor]);
    let _seen = server.connect(&sup1).await;
    let sup2 = server.token("sup2", Some("acme"), &[Role::Supervisor]);
    // Another acme supervisor's id, and the minter's own.
    for guard in ["sup1", "sup2"] {
        let (status, body) = mint(&server, &sup2, json!({ "guard": guard })).await;
        assert_eq!(status, 409, "{guard}: {body}");
        assert_eq!(body["error"]["code"], "conflict");
    }
    // A service that only ever used REST is known too.
    let svc = server.token("billing", Some("acme"), &[Role::Service]);
    let (status, _) = post_json(
        &server.http(),
        &server.https("/api/v1/publish"),
        &svc,
        json!({"channel": "/topic/org/acme/tasks", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(status, 200);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, body) = mint(&server, &sup2, json!({ "guard": "billing" })).await;
        if status == 409 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a link for the service's id: {status} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The same id in another org is that org's own guard.
    let globex = server.token("boss", Some("globex"), &[Role::Supervisor]);
    let (status, body) = mint(&server, &globex, json!({ "guard": "sup1" })).await;
    assert_eq!(status, 201, "{body}");
    server.stop().await;
}
