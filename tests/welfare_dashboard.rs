//! Lone-worker safety on the supervisor's dashboard, end to end in real headless Chromium
//! (tests/node/welfare_dashboard.mjs) against a test server over TLS, the guards driven over
//! REST and WebSocket from here: check-in settings for the org, a site and a guard set and
//! reverted in the settings panel (and read back over REST), a guard in lone work "ok" then
//! "missed" with its CHECK_IN_MISSED row and alarm, LOST_CONTACT and MAN_DOWN rows, and a DURESS
//! first and loudest, acknowledged without the guard's phone hearing a thing of it.
//! Screenshots: target/artifacts/welfare-dashboard-*.png.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use lookout::auth::Role;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const GUARD: &str = "g-lone";
const SITE_GUARD: &str = "g-site";
const FALLEN: &str = "g-fall";
const SITE: &str = "north-gate";

fn now_ms() -> u64 {
    lookout::clock::now_millis()
}

/// A connection kept open (its frames read, so it stays alive) until `stop` is cancelled or
/// the connection ends; the task answers every frame it read.
fn keep_reading(
    mut client: Client,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Vec<Value>> {
    tokio::spawn(async move {
        let mut frames: Vec<Value> = client.inbox.drain(..).collect();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                message = client.ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        frames.push(serde_json::from_str(&text).unwrap_or(Value::Null));
                    }
                    Some(Ok(_)) => {}
                    // Ended: nothing more to read (and no loop spinning on it).
                    Some(Err(_)) | None => break,
                },
            }
        }
        frames
    })
}

/// The settings of `query` over REST, and where they come from.
async fn settings(server: &TestServer, query: &str, token: &str) -> (Value, String) {
    let response = server
        .http()
        .get(server.https(&format!("/api/v1/welfare/settings{query}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET settings");
    assert_eq!(response.status(), 200, "{query}");
    let from = response
        .headers()
        .get("lookout-settings-from")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (response.json().await.expect("settings JSON"), from)
}

fn go_on(control: &std::path::Path, name: &str) {
    std::fs::write(control.join(name), b"").expect("control file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_sets_check_ins_and_sees_missed_lost_contact_man_down_and_duress_first() {
    let server = TestServer::start_with(|c| {
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
        // Check-ins of seconds, and a guard on shift lost after 2 s of silence.
        c.field.check_in_min_interval = Duration::from_secs(1);
        c.field.lost_contact_after = Duration::from_secs(2);
        // The guards' connections here read only now and then.
        c.limits.dead_peer_timeout = Duration::from_secs(600);
    })
    .await;
    let http = server.http();
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let guard = server.token(GUARD, Some("acme"), &[Role::Guard]);

    // The guard on shift at the site, connected (so not lost) until the test drops it.
    let site_token = server.token(SITE_GUARD, Some("acme"), &[Role::Guard]);
    let site_stop = CancellationToken::new();
    let site_phone = keep_reading(server.connect(&site_token).await, site_stop.clone());
    let now = now_ms();
    let shift = json!({"user": SITE_GUARD, "site": SITE, "start": now, "end": now + 3_600_000});
    let (status, body) = post_json(&http, &server.https("/api/v1/shifts"), &sup, shift).await;
    assert_eq!(status, 201, "{body}");

    // The lone worker's phone: on the map, and listening on everything a guard hears.
    let mut phone = server.connect(&guard).await;
    for channel in [
        "/user/queue/alerts",
        "/user/queue/welfare",
        "/user/queue/messages",
        "/topic/system",
    ] {
        assert!(ok(&phone.subscribe(channel).await), "{channel}");
    }
    assert!(ok(&phone
        .publish(
            &format!("/topic/location/{GUARD}"),
            location(51.5007, -0.1246)
        )
        .await));
    let phone_stop = CancellationToken::new();
    let phone = keep_reading(phone, phone_stop.clone());

    let tmp = tempfile::tempdir().expect("tempdir");
    let control = tmp.path().join("control");
    std::fs::create_dir_all(&control).expect("control dir");
    let link = server
        .auth
        .mint_link(
            "sup",
            Some("acme"),
            &[Role::Supervisor],
            Duration::from_secs(3600),
            None,
        )
        .expect("sign-in link");
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    let mut node = NodeScript::run(
        "welfare_dashboard.mjs",
        &[
            ("LOOKOUT_LINK", server.https(&format!("/#link={link}"))),
            ("LOOKOUT_ARTIFACTS", artifacts.display().to_string()),
            ("LOOKOUT_CONTROL", control.display().to_string()),
            ("GUARD", GUARD.to_string()),
            ("SITE_GUARD", SITE_GUARD.to_string()),
            ("FALLEN_GUARD", FALLEN.to_string()),
            ("SITE", SITE.to_string()),
            ("CHROMIUM", chromium()),
        ],
    );

    // ---- Settings: refusals shown, the org's and the site's saved.
    let saved = node.event("settings-saved").await;
    eprintln!("welfare dashboard: {saved}");
    let refused = saved["refused"].as_str().unwrap_or_default();
    assert!(
        refused.contains("interval_ms must be between 1000"),
        "the server's 400 message is shown: {saved}"
    );
    assert!(
        saved["invalid"]
            .as_str()
            .unwrap_or_default()
            .contains("before the deadline"),
        "{saved}"
    );
    assert_eq!(
        saved["putsAfterInvalid"], saved["putsAfterRefusal"],
        "what the form refuses is not sent: {saved}"
    );
    assert_eq!(saved["orgError"], false, "{saved}");
    let (org, from) = settings(&server, "", &sup).await;
    assert_eq!(from, "org");
    assert_eq!(org["enabled"], true, "{org}");
    assert_eq!(org["interval_ms"], 3_600_000, "{org}");
    assert_eq!(org["pre_alarm_ms"], 120_000, "{org}");
    assert_eq!(org["grace_ms"], 120_000, "{org}");
    let (own, from) = settings(&server, &format!("?site={SITE}"), &sup).await;
    assert_eq!(from, "site", "the site has its own: {own}");
    assert_eq!(own["interval_ms"], 2_700_000, "{own}");
    assert_eq!(own["enabled"], true, "{own}");

    // ---- The guard starts lone work: "ok", then its own 3 s check-in is missed.
    let (status, body) = post_json(
        &http,
        &server.https("/api/v1/welfare/start"),
        &guard,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    go_on(&control, "lone-work");
    let fine = node.event("ok").await;
    eprintln!("welfare dashboard: {fine}");
    let text = fine["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("ok · due in ") && text.ends_with(" min"),
        "{fine}"
    );
    assert!(
        fine["lone"]
            .as_str()
            .unwrap_or_default()
            .contains("lone work"),
        "{fine}"
    );
    node.event("guard-saved").await;
    let missed = node.event("missed").await;
    eprintln!("welfare dashboard: {missed}");
    assert_eq!(missed["text"], "missed", "{missed}");
    assert_eq!(missed["row"]["icon"], "CHECK_IN_MISSED", "{missed}");
    assert_eq!(missed["row"]["label"], "Check-in missed", "{missed}");
    assert_eq!(missed["row"]["alarm"], "sounded", "{missed}");
    assert_eq!(missed["row"]["state"], "open", "{missed}");
    let sounded: u64 = missed["sound"]["alarms"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(sounded >= 1, "the alarm sounded: {missed}");
    assert_eq!(missed["sound"]["audio"], "running", "{missed}");
    let alert_id = missed["row"]["id"].as_str().expect("alert id");
    let alert = get_json(
        &http,
        &server.https(&format!("/api/v1/alerts/{alert_id}")),
        &sup,
    )
    .await;
    assert_eq!(alert["type"], "CHECK_IN_MISSED", "{alert}");
    assert_eq!(alert["user"], GUARD, "{alert}");

    // ---- The site reverted to the org's; the guard keeps its own.
    let reverted = node.event("reverted").await;
    assert_eq!(reverted["guardFrom"], "guard", "{reverted}");
    let (site, from) = settings(&server, &format!("?site={SITE}"), &sup).await;
    assert_eq!(from, "org", "reverted: {site}");
    assert_eq!(site["interval_ms"], 3_600_000, "{site}");
    let (own, from) = settings(&server, &format!("?user={GUARD}"), &sup).await;
    assert_eq!(from, "guard", "{own}");
    assert_eq!(
        (
            own["interval_ms"].as_u64(),
            own["pre_alarm_ms"].as_u64(),
            own["grace_ms"].as_u64()
        ),
        (Some(3000), Some(1000), Some(1000)),
        "{own}"
    );

    // ---- The guard on shift goes silent: LOST_CONTACT.
    site_stop.cancel();
    site_phone.await.expect("site phone");
    go_on(&control, "dropped");
    let lost = node.event("lost-contact").await;
    eprintln!("welfare dashboard: {lost}");
    assert_eq!(lost["row"]["icon"], "LOST_CONTACT", "{lost}");
    assert_eq!(lost["row"]["label"], "Lost contact", "{lost}");
    assert_eq!(lost["row"]["alarm"], "sounded", "{lost}");

    // ---- Man down.
    let fallen = server.token(FALLEN, Some("acme"), &[Role::Guard]);
    let mut fallen_phone = server.connect(&fallen).await;
    assert!(ok(&fallen_phone
        .publish(
            &format!("/topic/location/{FALLEN}"),
            location(51.5010, -0.1240)
        )
        .await));
    let (status, body) = post_json(
        &http,
        &server.https("/api/v1/alerts"),
        &fallen,
        json!({"type": "MAN_DOWN"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    go_on(&control, "man-down");
    let down = node.event("man-down").await;
    eprintln!("welfare dashboard: {down}");
    assert_eq!(down["row"]["icon"], "MAN_DOWN", "{down}");
    assert_eq!(down["row"]["label"], "Man down", "{down}");
    assert_eq!(down["row"]["alarm"], "sounded", "{down}");
    assert_eq!(down["row"]["id"], body["id"], "{down}");

    // ---- Duress: the PIN and the duress PIN set, the duress PIN entered.
    let client = server.http();
    let response = client
        .put(server.https("/api/v1/welfare/pin"))
        .bearer_auth(&guard)
        .json(&json!({"pin": "1234", "duress_pin": "9876"}))
        .send()
        .await
        .expect("PUT pin");
    assert_eq!(response.status(), 200);
    let (status, body) = post_json(
        &http,
        &server.https("/api/v1/welfare/pin"),
        &guard,
        json!({"pin": "9876"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    go_on(&control, "duress");
    let duress = node.event("duress").await;
    eprintln!("welfare dashboard: {duress}");
    let id = duress["row"]["id"].as_str().expect("duress id").to_string();
    assert_eq!(duress["first"], id.as_str(), "first of the list: {duress}");
    assert_eq!(
        duress["firstAfterAck"],
        id.as_str(),
        "still first once acknowledged: {duress}"
    );
    assert_eq!(duress["row"]["icon"], "DURESS", "{duress}");
    assert_eq!(duress["row"]["alarm"], "sounded", "{duress}");
    assert_eq!(duress["sound"]["alarmType"], "DURESS", "{duress}");
    assert!(
        duress["row"]["className"]
            .as_str()
            .unwrap_or_default()
            .contains("t-duress"),
        "{duress}"
    );
    let px = |v: &Value| {
        v.as_str()
            .and_then(|s| s.strip_suffix("px"))
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        px(&duress["row"]["border"]) > px(&duress["otherBorder"]),
        "a duress row stands out of a critical MAN_DOWN's: {duress}"
    );
    assert!(
        duress["banner"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("DURESS — {GUARD}")),
        "{duress}"
    );
    assert_eq!(duress["rosterBadge"], 1, "{duress}");
    assert!(
        duress["row"]["silentHint"]
            .as_str()
            .unwrap_or_default()
            .contains("Silent alarm"),
        "{duress}"
    );
    let alert = get_json(&http, &server.https(&format!("/api/v1/alerts/{id}")), &sup).await;
    assert_eq!(alert["type"], "DURESS", "{alert}");
    assert_eq!(alert["state"], "acknowledged", "{alert}");
    assert!(
        alert["audit"]
            .as_array()
            .expect("audit")
            .iter()
            .any(|e| e["action"] == "acknowledged"
                && e["by"] == "sup"
                && e["note"] == "police called"),
        "{alert}"
    );

    let log = node.event("log").await;
    let types: Vec<&str> = log["types"]
        .as_array()
        .expect("types")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in [
        "CHECK_IN_MISSED",
        "LOST_CONTACT",
        "MAN_DOWN",
        "DURESS",
        "PANIC",
    ] {
        assert!(types.contains(&t), "the log's filter offers {t}: {log}");
    }
    assert_eq!(log["listed"], json!([id]), "filtered to DURESS: {log}");
    assert_eq!(log["logIcon"], 1, "{log}");

    node.finish_clean().await;

    // The guard's phone heard its check-in's pre-alarm and the miss, and nothing of the duress
    // alarm nor of the supervisor's acknowledgement of it.
    phone_stop.cancel();
    let heard = phone.await.expect("phone");
    let text = serde_json::to_string(&heard).expect("frames");
    assert!(
        !text.contains("DURESS") && !text.contains(&id) && !text.contains("police called"),
        "the guard's phone heard of the duress alarm: {text}"
    );
    assert!(
        heard
            .iter()
            .any(|f| f["data"]["alert"]["type"] == "CHECK_IN_MISSED"),
        "the phone did hear its missed check-in (it was listening): {text}"
    );
    assert_screenshots(
        &artifacts,
        "welfare-dashboard",
        &[
            "refused",
            "settings",
            "guards-ok",
            "missed",
            "missed-alert",
            "reverted",
            "guards",
            "duress",
            "log",
        ],
    );
    drop(fallen_phone);
    server.stop().await;
}
