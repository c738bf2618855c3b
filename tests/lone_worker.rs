//! Lone-worker safety on the server: the alert types, welfare check-ins run by the server,
//! the duress PIN and lost contact.

mod common;

use std::time::Duration;

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

async fn put(server: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    server.put_json(path, token, body).await
}

/// Check-ins of 1 s with a 0.4 s pre-alarm and 0.5 s grace (the shortest interval lowered).
async fn short_check_ins() -> TestServer {
    server_with(|c| c.field.check_in_min_interval = Duration::from_millis(500)).await
}

async fn turn_check_ins_on(server: &TestServer, org: &str) {
    let sup = server.token("sup", Some(org), &[Role::Supervisor]);
    let settings =
        json!({"enabled": true, "interval_ms": 1000, "pre_alarm_ms": 400, "grace_ms": 500});
    let (status, body) = put(server, "/api/v1/welfare/settings", &sup, settings).await;
    assert_eq!(status, 200, "{body}");
}

async fn missed(server: &TestServer, org: &str) -> Vec<Value> {
    let sup = server.token("sup", Some(org), &[Role::Supervisor]);
    let listed = get(server, "/api/v1/alerts?type=CHECK_IN_MISSED", &sup).await;
    listed.as_array().cloned().unwrap_or_default()
}

async fn wait_missed(server: &TestServer, org: &str, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let alerts = missed(server, org).await;
        if alerts.len() >= n {
            return alerts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {n} CHECK_IN_MISSED alerts within 10 s");
}

#[tokio::test]
async fn check_ins_are_off_by_default_and_refuse_intervals_out_of_bounds() {
    let server = server_with(|_| {}).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let settings = get(&server, "/api/v1/welfare/settings", &sup).await;
    assert_eq!(settings["enabled"], false, "{settings}");
    let (status, _) = post(&server, "/api/v1/welfare/start", &guard, json!({})).await;
    assert_eq!(status, 200);
    let status = get(&server, "/api/v1/welfare/status", &guard).await;
    assert_eq!(status["deadline"], Value::Null, "off: no deadline {status}");
    let short = json!({"enabled": true, "interval_ms": 1000});
    let (code, body) = put(&server, "/api/v1/welfare/settings", &sup, short).await;
    assert_eq!(code, 400, "below field.check_in_min_interval: {body}");
    let (code, _) = put(
        &server,
        "/api/v1/welfare/settings",
        &guard,
        json!({"enabled": true}),
    )
    .await;
    assert_eq!(code, 403, "a guard does not set check-ins");
    server.stop().await;
}

#[tokio::test]
async fn im_ok_resets_the_deadline_and_a_missed_check_in_raises_one_alert_for_its_org_only() {
    let server = short_check_ins().await;
    turn_check_ins_on(&server, "acme").await;
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let mut phone = server.connect(&guard).await;
    assert!(ok(&phone.subscribe("/user/queue/welfare").await));
    let (status, body) = post(&server, "/api/v1/welfare/start", &guard, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["deadline"].as_u64().is_some(), "armed: {body}");
    // Checking in every 0.7 s keeps the 1 s deadline (+0.5 s grace) from ever passing.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (status, body) = post(&server, "/api/v1/welfare/ok", &guard, json!({})).await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(
        missed(&server, "acme").await.is_empty(),
        "checked in: no alert"
    );
    // Silence: the pre-alarm reaches the phone (after the notices of each new deadline),
    // then one CHECK_IN_MISSED.
    let pre = loop {
        let heard = tokio::time::timeout(Duration::from_secs(5), phone.next_message())
            .await
            .expect("a pre-alarm");
        if heard["data"]["kind"] != "armed" {
            break heard;
        }
    };
    assert_eq!(pre["data"]["kind"], "check_in_due", "{pre}");
    let alerts = wait_missed(&server, "acme", 1).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let alerts_later = missed(&server, "acme").await;
    assert_eq!(alerts_later.len(), 1, "raised once: {alerts_later:?}");
    let alert = &alerts[0];
    assert_eq!(alert["user"], "g1");
    assert_eq!(alert["priority"], "HIGH");
    assert_eq!(alert["level"], 1);
    // Another org sees nothing of it.
    assert!(missed(&server, "other").await.is_empty());
    let other = server.token("sup", Some("other"), &[Role::Supervisor]);
    let all = get(&server, "/api/v1/alerts", &other).await;
    assert_eq!(all.as_array().map(Vec::len), Some(0), "{all}");
    // "I'm OK" arms the next deadline again.
    let (_, body) = post(&server, "/api/v1/welfare/ok", &guard, json!({})).await;
    assert!(body["deadline"].as_u64().is_some(), "{body}");
    assert_eq!(body["missedAlert"], Value::Null, "{body}");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("lookout_welfare_missed_total 1"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_deadline_pending_across_restarts_fires_once() {
    let server = short_check_ins().await;
    turn_check_ins_on(&server, "acme").await;
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let (status, _) = post(&server, "/api/v1/welfare/start", &guard, json!({})).await;
    assert_eq!(status, 200);
    // Down across the deadline: it fires once after the restart, overdue.
    let server = server.restart().await;
    let server = server.restart().await;
    wait_missed(&server, "acme", 1).await;
    let server = server.restart().await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(missed(&server, "acme").await.len(), 1, "never twice");
    server.stop().await;
}

#[tokio::test]
async fn a_shift_arms_check_ins_and_its_end_disarms_them() {
    let server = short_check_ins().await;
    turn_check_ins_on(&server, "acme").await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let shift = json!({"user": "g2", "site": "hq", "start": now, "end": now + 60_000});
    let (status, body) = post(&server, "/api/v1/shifts", &sup, shift).await;
    assert_eq!(status, 201, "{body}");
    let status = get(&server, "/api/v1/welfare/status?user=g2", &sup).await;
    assert!(
        status["deadline"].as_u64().is_some(),
        "on shift: armed {status}"
    );
    let alerts = wait_missed(&server, "acme", 1).await;
    assert_eq!(alerts[0]["user"], "g2");
    // Off shift (the shift removed): "I'm OK" does not arm again.
    let id = body["id"].as_str().expect("shift id");
    let response = server
        .http()
        .delete(server.https(&format!("/api/v1/shifts/{id}")))
        .bearer_auth(&sup)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status().as_u16(), 200);
    let g2 = server.token("g2", Some("acme"), &[Role::Guard]);
    let (_, body) = post(&server, "/api/v1/welfare/ok", &g2, json!({})).await;
    assert_eq!(body["deadline"], Value::Null, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn the_duress_pin_looks_like_the_pin_and_silently_raises_duress_to_supervisors_only() {
    // Escalation within the test, so that its level-3 notice would show if it leaked.
    let server = server_with(|c| {
        c.alerts.level2_after = Duration::from_millis(300);
        c.alerts.level3_after = Duration::from_millis(600);
    })
    .await;
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut phone = server.connect(&guard).await;
    for channel in ["/user/queue/alerts", "/user/queue/welfare", "/topic/system"] {
        assert!(ok(&phone.subscribe(channel).await), "{channel}");
    }
    let mut desk = server.connect(&sup).await;
    assert!(ok(&desk.subscribe("/topic/org/acme/alerts").await));
    let pins = json!({"pin": "1234", "duress_pin": "9876"});
    let (status, body) = put(&server, "/api/v1/welfare/pin", &guard, pins).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = post(&server, "/api/v1/welfare/start", &guard, json!({})).await;
    assert_eq!(status, 200);

    let entry = |pin: &str| json!({"pin": pin, "action": "end_lone_work"});
    let (real_status, real) = post(&server, "/api/v1/welfare/pin", &guard, entry("1234")).await;
    let (status, _) = post(&server, "/api/v1/welfare/start", &guard, json!({})).await;
    assert_eq!(status, 200);
    let (duress_status, duress) = post(&server, "/api/v1/welfare/pin", &guard, entry("9876")).await;
    assert_eq!(
        (real_status, &real),
        (duress_status, &duress),
        "the same answer"
    );
    assert_eq!(real_status, 200, "{real}");
    let (wrong, _) = post(&server, "/api/v1/welfare/pin", &guard, entry("5555")).await;
    assert_eq!(wrong, 403);

    let heard = tokio::time::timeout(Duration::from_secs(5), desk.next_message())
        .await
        .expect("the supervisor hears of it");
    assert_eq!(heard["data"]["alert"]["type"], "DURESS", "{heard}");
    assert_eq!(heard["data"]["alert"]["priority"], "CRITICAL");
    assert_eq!(heard["data"]["alert"]["user"], "g1");
    // Past level 3: the guard's connection heard nothing at all.
    let frames = phone.drain(Duration::from_millis(1500)).await;
    let messages: Vec<&Value> = frames.iter().filter(|f| f["type"] == "message").collect();
    assert!(messages.is_empty(), "the phone heard {messages:?}");
    let alert = get(&server, "/api/v1/alerts?type=DURESS", &sup).await;
    assert_eq!(alert[0]["level"], 3, "{alert}");
    // Nor do its queues keep anything, nor its listing show it.
    let mine = get(&server, "/api/v1/alerts", &guard).await;
    assert_eq!(mine.as_array().map(Vec::len), Some(0), "{mine}");
    for queue in ["/user/queue/alerts", "/user/queue/welfare"] {
        let history = get(
            &server,
            &format!("/api/v1/channels/history?channel={queue}"),
            &guard,
        )
        .await;
        let kept = history["messages"].as_array().expect("a page of the log");
        assert!(kept.is_empty(), "{queue}: {history}");
    }
    assert!(server
        .metrics()
        .await
        .contains("lookout_duress_alarms_total 1"));
    server.stop().await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

async fn lost_contact(server: &TestServer, sup: &str) -> Vec<Value> {
    let listed = get(server, "/api/v1/alerts?type=LOST_CONTACT", sup).await;
    listed.as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_silent_guard_on_shift_raises_lost_contact_once_and_it_resolves_when_the_phone_is_back() {
    let server = server_with(|c| c.field.lost_contact_after = Duration::from_secs(1)).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let now = now_ms();
    for user in ["silent", "online"] {
        let shift = json!({"user": user, "site": "hq", "start": now, "end": now + 60_000});
        let (status, body) = post(&server, "/api/v1/shifts", &sup, shift).await;
        assert_eq!(status, 201, "{body}");
    }
    // One phone stays connected; the other was last heard of at a fix, then nothing.
    let online = server.token("online", Some("acme"), &[Role::Guard]);
    let _online_phone = server.connect(&online).await;
    let silent = server.token("silent", Some("acme"), &[Role::Guard]);
    let mut phone = server.connect(&silent).await;
    assert!(ok(&phone
        .publish("/topic/location/silent", location(51.5, -0.1))
        .await));
    drop(phone);
    let mut alerts = Vec::new();
    for _ in 0..60 {
        alerts = lost_contact(&server, &sup).await;
        if !alerts.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["user"], "silent");
    assert_eq!(
        alerts[0]["position"]["lat"], 51.5,
        "the last known position"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(lost_contact(&server, &sup).await.len(), 1, "raised once");
    let id = alerts[0]["id"].as_str().expect("id").to_string();
    let (status, _) = post(
        &server,
        &format!("/api/v1/alerts/{id}/ack"),
        &sup,
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    // The phone comes back: the alert resolves itself, the acknowledgement kept in its trail.
    let _back = server.connect(&silent).await;
    let mut alert = Value::Null;
    for _ in 0..60 {
        alert = get(&server, &format!("/api/v1/alerts/{id}"), &sup).await;
        if alert["state"] == "resolved" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(alert["state"], "resolved", "{alert}");
    let actions: Vec<&str> = alert["audit"]
        .as_array()
        .expect("audit")
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert_eq!(actions, ["created", "acknowledged", "resolved"], "{alert}");
    assert_eq!(alert["audit"][2]["by"], "lookout");
    assert!(server
        .metrics()
        .await
        .contains("lookout_lost_contact_total 1"));
    server.stop().await;
}

/// The CHECK_IN_MISSED alerts of acme, as the binary's REST API lists them.
async fn missed_on(server: &Binary, http: &reqwest::Client) -> Vec<Value> {
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let url = format!("https://{}/api/v1/alerts?type=CHECK_IN_MISSED", server.addr);
    let listed = get_json(http, &url, &sup).await;
    listed.as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_in_deadline_survives_kill_9_and_fires_once() {
    let env = [("LOOKOUT_FIELD__CHECK_IN_MIN_INTERVAL", "500ms")];
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Binary::serve(&data, &env);
    let http = http_client(&server.cert_pem());
    let base = format!("https://{}", server.addr);
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let settings =
        json!({"enabled": true, "interval_ms": 1000, "pre_alarm_ms": 400, "grace_ms": 500});
    let response = http
        .put(format!("{base}/api/v1/welfare/settings"))
        .bearer_auth(&sup)
        .json(&settings)
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status().as_u16(), 200);
    let (status, body) = post_json(
        &http,
        &format!("{base}/api/v1/welfare/start"),
        &guard,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Killed during the countdown, down past deadline and grace: fires once at start-up.
    let server = server.kill_9_and_restart_after(Duration::from_millis(2000), &env);
    let mut alerts = Vec::new();
    for _ in 0..100 {
        alerts = missed_on(&server, &http).await;
        if !alerts.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    // Killed again right after: nothing fires twice.
    let server = server.kill_9_and_restart(&env);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(missed_on(&server, &http).await.len(), 1, "never twice");
}

#[tokio::test]
async fn wrong_pins_lock_entries_out_and_the_duress_pin_still_raises_behind_the_lock() {
    let server = server_with(|_| {}).await;
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let pins = json!({"pin": "1234", "duress_pin": "9876"});
    let (status, _) = put(&server, "/api/v1/welfare/pin", &guard, pins).await;
    assert_eq!(status, 200);
    for _ in 0..5 {
        let (status, _) = post(
            &server,
            "/api/v1/welfare/pin",
            &guard,
            json!({"pin": "0000"}),
        )
        .await;
        assert_eq!(status, 403);
    }
    let (locked, _) = post(
        &server,
        "/api/v1/welfare/pin",
        &guard,
        json!({"pin": "0000"}),
    )
    .await;
    assert_eq!(locked, 429);
    let (real, _) = post(
        &server,
        "/api/v1/welfare/pin",
        &guard,
        json!({"pin": "1234"}),
    )
    .await;
    let (duress, _) = post(
        &server,
        "/api/v1/welfare/pin",
        &guard,
        json!({"pin": "9876"}),
    )
    .await;
    assert_eq!((real, duress), (429, 429), "the same refusal for both");
    let mut raised = Value::Null;
    for _ in 0..50 {
        raised = get(&server, "/api/v1/alerts?type=DURESS", &sup).await;
        if raised.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(raised.as_array().map(Vec::len), Some(1), "{raised}");
    server.stop().await;
}

/// The settings that apply to `user` as a supervisor reads them, with where they come from.
async fn settings_of(server: &TestServer, sup: &str, query: &str) -> (Value, String) {
    let response = server
        .http()
        .get(server.https(&format!("/api/v1/welfare/settings?{query}")))
        .bearer_auth(sup)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 200);
    let from = response
        .headers()
        .get("lookout-settings-from")
        .and_then(|v| v.to_str().ok())
        .expect("Lookout-Settings-From")
        .to_string();
    (response.json().await.expect("settings"), from)
}

#[tokio::test]
async fn a_guard_follows_its_own_settings_else_its_shifts_site_else_its_org_and_overrides_revert() {
    let server = short_check_ins().await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    turn_check_ins_on(&server, "acme").await;
    let now = now_ms();
    for (user, site) in [("g1", "harbour"), ("g2", "depot")] {
        let shift = json!({"user": user, "site": site, "start": now, "end": now + 600_000});
        let (status, body) = post(&server, "/api/v1/shifts", &sup, shift).await;
        assert_eq!(status, 201, "{body}");
    }
    // The harbour has its own, slower check-ins and a shorter man-down watch.
    let harbour = json!({"enabled": true, "interval_ms": 60_000, "pre_alarm_ms": 10_000,
        "grace_ms": 5_000, "man_down_after_ms": 30_000, "man_down_countdown_ms": 10_000});
    let (status, body) = put(
        &server,
        "/api/v1/welfare/settings?site=harbour",
        &sup,
        harbour,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (g1, from) = settings_of(&server, &sup, "user=g1").await;
    assert_eq!(
        (g1["interval_ms"].as_u64(), from.as_str()),
        (Some(60_000), "site")
    );
    assert_eq!(g1["man_down_after_ms"], 30_000);
    let (g2, from) = settings_of(&server, &sup, "user=g2").await;
    assert_eq!(
        (g2["interval_ms"].as_u64(), from.as_str()),
        (Some(1000), "org")
    );
    // A site without settings of its own reads as the org's.
    let (_, from) = settings_of(&server, &sup, "site=depot").await;
    assert_eq!(from, "org");

    // g1's own settings win over its site's; removing them, the site's apply again.
    let own = json!({"enabled": true, "interval_ms": 120_000, "pre_alarm_ms": 0, "grace_ms": 0});
    let (status, _) = put(&server, "/api/v1/welfare/settings?user=g1", &sup, own).await;
    assert_eq!(status, 200);
    let (g1, from) = settings_of(&server, &sup, "user=g1").await;
    assert_eq!(
        (g1["interval_ms"].as_u64(), from.as_str()),
        (Some(120_000), "guard")
    );
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let status = get(&server, "/api/v1/welfare/status", &guard).await;
    assert_eq!(status["settingsFrom"], "guard", "{status}");
    assert_eq!(status["site"], "harbour");
    for query in ["user=g1", "site=harbour"] {
        let response = server
            .http()
            .delete(server.https(&format!("/api/v1/welfare/settings?{query}")))
            .bearer_auth(&guard)
            .send()
            .await
            .expect("DELETE");
        assert_eq!(response.status().as_u16(), 403, "a guard removes nothing");
    }
    let delete = |query: &'static str| {
        server
            .http()
            .delete(server.https(&format!("/api/v1/welfare/settings?{query}")))
            .bearer_auth(&sup)
            .send()
    };
    assert_eq!(
        delete("user=g1").await.expect("DELETE").status().as_u16(),
        200
    );
    let (_, from) = settings_of(&server, &sup, "user=g1").await;
    assert_eq!(from, "site");
    assert_eq!(
        delete("site=harbour")
            .await
            .expect("DELETE")
            .status()
            .as_u16(),
        200
    );
    let (_, from) = settings_of(&server, &sup, "user=g1").await;
    assert_eq!(from, "org");
    // The org's settings are changed, never removed; naming both a site and a user is an error.
    assert_eq!(delete("").await.expect("DELETE").status().as_u16(), 400);
    let both = json!({"enabled": true, "interval_ms": 60_000});
    let (status, _) = put(
        &server,
        "/api/v1/welfare/settings?site=a&user=g1",
        &sup,
        both,
    )
    .await;
    assert_eq!(status, 400);
    server.stop().await;
}

#[tokio::test]
async fn man_down_timings_out_of_bounds_are_refused_with_the_bounds() {
    let server = server_with(|_| {}).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    for (field, value) in [
        ("man_down_after_ms", 1_000),
        ("man_down_after_ms", 3_600_001),
        ("man_down_countdown_ms", 999),
        ("man_down_countdown_ms", 300_001),
    ] {
        let mut settings = json!({"enabled": false});
        settings[field] = json!(value);
        let (status, body) = put(&server, "/api/v1/welfare/settings", &sup, settings).await;
        assert_eq!(status, 400, "{field}={value}: {body}");
        assert!(body.to_string().contains(field), "names {field}: {body}");
    }
    let defaults = get(&server, "/api/v1/welfare/settings", &sup).await;
    assert_eq!(
        (
            &defaults["man_down"],
            &defaults["man_down_after_ms"],
            &defaults["man_down_countdown_ms"]
        ),
        (&json!(true), &json!(120_000), &json!(15_000)),
        "{defaults}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_dashboard_lists_each_guards_check_in_state_for_its_own_org_only() {
    let server = short_check_ins().await;
    turn_check_ins_on(&server, "acme").await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let g1 = server.token("g1", Some("acme"), &[Role::Guard]);
    let (status, _) = post(&server, "/api/v1/welfare/start", &g1, json!({})).await;
    assert_eq!(status, 200);
    let other = server.token("x1", Some("other"), &[Role::Guard]);
    let (status, _) = post(&server, "/api/v1/welfare/start", &other, json!({})).await;
    assert_eq!(status, 200);
    let listed = get(&server, "/api/v1/welfare/guards", &sup).await;
    let guards = listed["guards"].as_array().expect("guards");
    assert_eq!(guards.len(), 1, "acme's only: {listed}");
    assert_eq!(guards[0]["user"], "g1");
    assert_eq!(guards[0]["loneWork"], true);
    assert_eq!(guards[0]["checkIn"], "ok", "{listed}");
    wait_missed(&server, "acme", 1).await;
    let listed = get(&server, "/api/v1/welfare/guards", &sup).await;
    assert_eq!(listed["guards"][0]["checkIn"], "missed", "{listed}");
    let response = server
        .http()
        .get(server.https("/api/v1/welfare/guards"))
        .bearer_auth(&g1)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 403, "a guard lists nobody");
    server.stop().await;
}

#[tokio::test]
async fn where_the_site_counts_activity_a_fix_is_a_check_in() {
    let server = short_check_ins().await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let settings = json!({"enabled": true, "interval_ms": 1000, "pre_alarm_ms": 0,
        "grace_ms": 500, "activity_resets": true});
    let (status, body) = put(&server, "/api/v1/welfare/settings", &sup, settings).await;
    assert_eq!(status, 200, "{body}");
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let (_, started) = post(&server, "/api/v1/welfare/start", &guard, json!({})).await;
    let first = started["deadline"].as_u64().expect("armed");
    let mut phone = server.connect(&guard).await;
    // A fix every 0.3 s for 3 s: twice the interval plus its grace, and never missed.
    for i in 0..10 {
        let reply = phone
            .publish(
                "/topic/location/g1",
                location(51.5 + f64::from(i) * 1e-4, -0.12),
            )
            .await;
        assert!(ok(&reply), "{reply}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let status = get(&server, "/api/v1/welfare/status", &guard).await;
    assert!(
        status["deadline"].as_u64() > Some(first),
        "the fixes moved the deadline on: {status}"
    );
    assert!(missed(&server, "acme").await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn the_phone_hears_when_its_deadline_moves_and_ends_lone_work_without_a_pin_only_if_it_has_none(
) {
    let server = short_check_ins().await;
    turn_check_ins_on(&server, "acme").await;
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut phone = server.connect(&guard).await;
    assert!(ok(&phone.subscribe("/user/queue/welfare").await));
    // A shift planned on the dashboard arms the guard: the phone is told, not left to poll.
    let now = now_ms();
    let shift = json!({"user": "g1", "site": "hq", "start": now, "end": now + 600_000});
    let (status, body) = post(&server, "/api/v1/shifts", &sup, shift).await;
    assert_eq!(status, 201, "{body}");
    let armed = phone.next_on("/user/queue/welfare").await;
    assert_eq!(armed["data"]["kind"], "armed", "{armed}");
    assert!(armed["data"]["deadline"].as_u64() > Some(now), "{armed}");
    let (status, body) = post(&server, "/api/v1/welfare/start", &guard, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(&server, "/api/v1/welfare/stop", &guard, json!({})).await;
    assert_eq!(status, 200, "no PIN: lone work ends as asked {body}");
    assert_eq!(body["loneWork"], false, "{body}");
    let pins = json!({"pin": "1234", "duress_pin": "9876"});
    let (status, _) = put(&server, "/api/v1/welfare/pin", &guard, pins).await;
    assert_eq!(status, 200);
    let (status, _) = post(&server, "/api/v1/welfare/start", &guard, json!({})).await;
    assert_eq!(status, 200);
    let (status, body) = post(&server, "/api/v1/welfare/stop", &guard, json!({})).await;
    assert_eq!(status, 403, "with a PIN, only the PIN ends it: {body}");
    let status = get(&server, "/api/v1/welfare/status", &guard).await;
    assert_eq!(status["loneWork"], true, "{status}");
    server.stop().await;
}

#[tokio::test]
async fn guards_with_lone_worker_state_are_bounded_per_org_and_others_keep_working() {
    let server = server_with(|c| c.field.max_welfare_guards_per_org = 2).await;
    for user in ["g1", "g2"] {
        let guard = server.token(user, Some("acme"), &[Role::Guard]);
        let (status, body) = post(&server, "/api/v1/welfare/start", &guard, json!({})).await;
        assert_eq!(status, 200, "{user}: {body}");
    }
    let third = server.token("g3", Some("acme"), &[Role::Guard]);
    let (status, body) = post(&server, "/api/v1/welfare/start", &third, json!({})).await;
    assert_eq!(status, 429, "the org's budget is spent: {body}");
    assert!(
        body.to_string()
            .contains("field.max_welfare_guards_per_org"),
        "names its key: {body}"
    );
    // The guards within the budget, and another org, go on.
    let g1 = server.token("g1", Some("acme"), &[Role::Guard]);
    let (status, body) = post(&server, "/api/v1/welfare/ok", &g1, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let other = server.token("x1", Some("other"), &[Role::Guard]);
    let (status, body) = post(&server, "/api/v1/welfare/start", &other, json!({})).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}
