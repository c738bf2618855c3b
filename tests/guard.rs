//! The guard app: a phone's browser as a guard device. The server side (who watches a guard's
//! camera, the answer to a guard's alarm, the real sender of a private message) with native
//! clients, and the app itself end to end in headless Chromium at a phone's viewport
//! (tests/node/guard.mjs) with a fake position and camera, next to a supervisor's dashboard,
//! through a stop of the appliance. Screenshots: target/artifacts/guard-*.png.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

/// The next `viewers` frame the guard's connection gets.
async fn viewers(guard: &mut Client) -> Value {
    loop {
        let frame = guard.next_frame().await;
        if frame["type"] == "viewers" {
            return frame;
        }
    }
}

#[tokio::test]
async fn a_guards_devices_are_told_when_the_first_viewer_arrives_and_the_last_leaves() {
    let server = TestServer::start().await;
    let guard_token = server.token("g1", Some("acme"), &[Role::Guard]);
    // Nobody watches: a device that connects is told nothing, and keeps its camera off.
    let mut phone = server.connect(&guard_token).await;
    let sup = server.token("s1", Some("acme"), &[Role::Supervisor]);
    let mut first = server.connect(&sup).await;
    assert!(ok(&first.subscribe("/topic/video/g1").await));
    assert_eq!(
        viewers(&mut phone).await,
        json!({"type": "viewers", "channel": "/topic/video/g1", "viewers": 1}),
        "the first viewer is announced"
    );
    let mut second = server
        .connect(&server.token("s2", Some("acme"), &[Role::Supervisor]))
        .await;
    assert!(ok(&second.subscribe("/topic/video/g1").await));
    assert_eq!(viewers(&mut phone).await["viewers"], 2);
    // A device that connects while someone watches is told so on connect.
    let mut tablet = server.connect(&guard_token).await;
    assert_eq!(viewers(&mut tablet).await["viewers"], 2);

    let reply = first
        .request(json!({"type": "unsubscribe", "channel": "/topic/video/g1"}))
        .await;
    assert!(ok(&reply), "{reply}");
    assert_eq!(viewers(&mut phone).await["viewers"], 1);
    // The last viewer leaving by hanging up counts the same as unsubscribing.
    drop(second);
    assert_eq!(viewers(&mut phone).await["viewers"], 0);
    assert_eq!(viewers(&mut tablet).await["viewers"], 1);
    assert_eq!(viewers(&mut tablet).await["viewers"], 0);

    // Other guards hear nothing of it.
    let mut other = server
        .connect(&server.token("g2", Some("acme"), &[Role::Guard]))
        .await;
    assert!(ok(&first.subscribe("/topic/video/g1").await));
    assert_eq!(viewers(&mut phone).await["viewers"], 1);
    let heard: Vec<Value> = other.drain(Duration::from_millis(300)).await;
    assert!(
        heard.iter().all(|f| f["type"] != "viewers"),
        "another guard is told nothing: {heard:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_guard_hears_on_its_own_queue_who_acknowledged_its_alarm_and_the_note() {
    let server = TestServer::start().await;
    let guard_token = server.token("g1", Some("acme"), &[Role::Guard]);
    let mut phone = server.connect(&guard_token).await;
    assert!(ok(&phone.subscribe("/user/queue/alerts").await));
    let reply = phone
        .publish("/topic/emergency/g1", json!({"type": "PANIC"}))
        .await;
    assert!(ok(&reply), "{reply}");
    let id = reply["alertId"].as_str().expect("alertId").to_string();
    let created = phone.next_on("/user/queue/alerts").await;
    assert_eq!(created["data"]["event"], "created");
    assert_eq!(created["data"]["alert"]["id"], id.as_str());

    let sup = server.token("s1", Some("acme"), &[Role::Supervisor]);
    let (status, _) = post_json(
        &server.http(),
        &server.https(&format!("/api/v1/alerts/{id}/ack")),
        &sup,
        json!({"note": "on my way"}),
    )
    .await;
    assert_eq!(status, 200);
    let heard = phone.next_on("/user/queue/alerts").await;
    assert_eq!(heard["data"]["event"], "acknowledged");
    let alert = &heard["data"]["alert"];
    assert_eq!(alert["state"], "acknowledged");
    let last = alert["audit"]
        .as_array()
        .and_then(|a| a.last())
        .expect("audit");
    assert_eq!(last["by"], "s1");
    assert_eq!(last["note"], "on my way");

    // Kept while the phone is away: a device that reconnects hears what it missed.
    drop(phone);
    let (status, _) = post_json(
        &server.http(),
        &server.https(&format!("/api/v1/alerts/{id}/resolve")),
        &sup,
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let mut again = server.connect(&guard_token).await;
    assert!(ok(&again.subscribe("/user/queue/alerts").await));
    let mut events = Vec::new();
    while events.last() != Some(&json!("resolved")) {
        let m = again.next_on("/user/queue/alerts").await;
        events.push(m["data"]["event"].clone());
    }
    assert!(events.contains(&json!("resolved")), "{events:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_private_message_names_its_real_sender_whatever_the_client_claims() {
    let server = TestServer::start().await;
    let mut sup = server
        .connect(&server.token("s1", Some("acme"), &[Role::Supervisor]))
        .await;
    assert!(ok(&sup.subscribe("/user/queue/messages").await));
    let mut guard = server
        .connect(&server.token("g1", Some("acme"), &[Role::Guard]))
        .await;
    let reply = guard
        .request(json!({
            "type": "publish",
            "channel": "/user/queue/messages",
            "to": "s1",
            "data": {"text": "all quiet", "from": "the-boss"},
        }))
        .await;
    assert!(ok(&reply), "{reply}");
    let message = sup.next_on("/user/queue/messages").await;
    assert_eq!(message["data"]["text"], "all quiet");
    assert_eq!(message["data"]["from"], "g1", "the server names the sender");
    server.stop().await;
}

fn go_on(control: &std::path::Path, step: &str) {
    std::fs::write(control.join(step), b"").expect("control file");
}

async fn locations_of(http: &reqwest::Client, base: &str, token: &str, user: &str) -> Vec<Value> {
    let history = get_json(
        http,
        &format!("{base}/api/v1/locations/{user}/history?limit=1000"),
        token,
    )
    .await;
    history["points"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_phone_on_patrol_reports_raises_a_panic_streams_on_demand_and_catches_up_after_an_outage()
{
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let control = tmp.path().join("control");
    std::fs::create_dir_all(&control).expect("control dir");
    let server = Binary::serve(&data, &[]);
    let addr = server.addr;
    let base = format!("https://{addr}");
    let sup = server.token("sup-1", Some("acme"), &[Role::Supervisor]);
    let http = http_client(&server.cert_pem());
    let supervisor_link = format!(
        "{base}/#link={}",
        server.link("sup-1", "acme", Role::Supervisor)
    );
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    let mut node = NodeScript::run(
        "guard.mjs",
        &[
            ("SUPERVISOR_LINK", supervisor_link),
            ("LOOKOUT_ARTIFACTS", artifacts.display().to_string()),
            ("LOOKOUT_CONTROL", control.display().to_string()),
            ("CHROMIUM", chromium()),
        ],
    );

    let enrolled = node.event("enrolled").await;
    let decoded = enrolled["decoded"].as_str().unwrap_or_default();
    assert!(
        decoded.starts_with(&format!("{base}/guard#link=")),
        "the QR code is the guard's one-time link to this appliance: {enrolled}"
    );
    assert_eq!(
        enrolled["shown"], decoded,
        "the page shows the link it encodes"
    );
    let walked = node.event("walked").await;
    assert!(
        !walked["url"].as_str().unwrap_or_default().contains("link="),
        "the link leaves the address bar: {walked}"
    );
    assert_eq!(walked["stored"], true, "the session is kept on the device");
    let points = locations_of(&http, &base, &sup, "g-1").await;
    assert!(points.len() >= 3, "the walk is kept as history: {points:?}");
    let latest = get_json(&http, &format!("{base}/api/v1/locations"), &sup).await;
    let mine = latest
        .as_array()
        .and_then(|all| all.iter().find(|l| l["user"] == "g-1"))
        .unwrap_or_else(|| panic!("g-1 in the latest positions: {latest}"));
    assert_eq!(mine["location"]["lat"], walked["last"][0], "{mine}");
    assert_eq!(mine["location"]["lon"], walked["last"][1], "{mine}");
    assert!(mine["location"]["accuracy"].is_number(), "{mine}");
    node.event("on-dashboard").await;

    let mut desk = server.connect(&sup).await;
    assert!(ok(&desk.subscribe("/user/queue/messages").await));
    let sent = desk
        .request(json!({
            "type": "publish",
            "channel": "/user/queue/messages",
            "to": "g-1",
            "data": {"text": "Check gate 3"},
        }))
        .await;
    assert!(ok(&sent), "{sent}");
    go_on(&control, "message-sent");
    let replied = node.event("replied").await;
    assert!(
        replied["shown"]
            .as_str()
            .is_some_and(|t| t.contains("From sup-1")),
        "the phone names the sender: {replied}"
    );
    let answer = desk.next_on("/user/queue/messages").await;
    assert_eq!(answer["data"]["text"], "Gate 3 is locked");
    assert_eq!(answer["data"]["from"], "g-1", "{answer}");
    drop(desk);

    let tapped = node.event("tapped").await;
    assert_eq!(tapped["shown"], false, "a tap shows no alarm: {tapped}");
    let alerts = get_json(&http, &format!("{base}/api/v1/alerts"), &sup).await;
    assert_eq!(alerts, json!([]), "a short tap raises nothing");
    go_on(&control, "tapped");

    let panic = node.event("panic").await;
    let first_id = panic["id"].as_str().expect("alert id").to_string();
    let acknowledged = node.event("acknowledged").await;
    let text = acknowledged["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("sup-1") && text.contains("on my way"),
        "the guard sees who is coming and the note: {text}"
    );
    let alert = get_json(&http, &format!("{base}/api/v1/alerts/{first_id}"), &sup).await;
    assert_eq!(alert["type"], "PANIC");
    assert_eq!(alert["user"], "g-1");
    assert_eq!(alert["state"], "acknowledged");

    let video = node.event("video").await;
    assert!(video["fps"].as_u64() > Some(0), "{video}");
    assert!(video["framesWhileWatched"].as_u64() > Some(0), "{video}");
    assert!(
        video["lastFrameAfterStopMs"].as_u64() < Some(2000),
        "frames stop within 2 s of the last viewer leaving: {video}"
    );
    assert!(
        video["cameraText"]
            .as_str()
            .is_some_and(|t| t.contains("Camera off")),
        "{video}"
    );
    let (status, _) = post_json(
        &http,
        &format!("{base}/api/v1/alerts/{first_id}/resolve"),
        &sup,
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    go_on(&control, "video");

    node.event("stop-server").await;
    let before_outage = locations_of(&http, &base, &sup, "g-1").await.len();
    let mut server = server;
    server.signal("TERM");
    server.child.wait().expect("reap");
    let stopped = std::time::Instant::now();
    go_on(&control, "server-stopped");
    let offline = node.event("offline").await;
    assert_eq!(
        offline["fromCache"], true,
        "the app reopened without a network: {offline}"
    );
    assert_eq!(offline["alarms"], 1, "{offline}");
    let queued: Vec<u64> = offline["positions"]
        .as_array()
        .expect("queued positions")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(
        queued.len() >= 4,
        "positions queued while offline: {offline}"
    );
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed())).await;
    let server = Binary::serve_at(&data, &addr.to_string(), &[]);
    go_on(&control, "server-back");
    let flushed = node.event("flushed").await;
    let second_id = flushed["id"].as_str().expect("alert id").to_string();
    assert_ne!(second_id, first_id, "the offline PANIC is a new alert");

    let points = locations_of(&http, &base, &sup, "g-1").await;
    let after: Vec<u64> = points[before_outage..]
        .iter()
        .filter_map(|p| p["location"]["ts"].as_u64())
        .collect();
    assert_eq!(after, queued, "every queued position, in order, once");
    let alerts = get_json(&http, &format!("{base}/api/v1/alerts"), &sup).await;
    let panics: Vec<&Value> = alerts
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["type"] == "PANIC")
        .collect();
    assert_eq!(panics.len(), 2, "the offline PANIC arrived once: {alerts}");

    let revoked = node.event("revoked").await;
    assert_eq!(
        revoked["kept"],
        Value::Null,
        "the phone forgets its session: {revoked}"
    );
    assert!(
        revoked["text"]
            .as_str()
            .is_some_and(|t| t.contains("signed out by a supervisor")),
        "{revoked}"
    );
    let devices = get_json(&http, &format!("{base}/api/v1/devices"), &sup).await;
    assert!(
        devices["devices"][0]["revokedAt"].is_u64(),
        "the revocation is on record: {devices}"
    );

    node.finish_clean().await;
    assert_screenshots(
        &artifacts,
        "guard",
        &[
            "patrol",
            "acknowledged",
            "camera",
            "offline",
            "dashboard-video",
        ],
    );
    drop(server);
}
