//! A guard tour end to end, in real headless Chromium against a real server over TLS
//! (tests/node/patrol.mjs drives the browsers): the supervisor prints the checkpoints' QR sheet
//! from the dashboard; a phone-sized guard app whose fake camera shows a code from that sheet
//! scans it (recorded with the phone's position); a second checkpoint scanned offline arrives
//! once after the phone is back online, although its first answer is lost on the way; the
//! checkpoint nobody scanned raises TOUR_MISSED at the window's end, on the dashboard too.
//! Screenshots: target/artifacts/patrol-*.png.

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

/// A schedule minute of 100 ms: a "day" of 144 s.
const MINUTE_MS: u64 = 100;
const GUARD: &str = "g-ana";
/// Where the checkpoints are (a few tens of metres apart) and where the phone is at each scan.
const NORTH_GATE: (f64, f64) = (51.50070, -0.12460);
const LOADING_BAY: (f64, f64) = (51.50040, -0.12400);
const ROOF: (f64, f64) = (51.50010, -0.12480);

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms")
}

async fn checkpoint(server: &TestServer, sup: &str, name: &str, at: (f64, f64)) -> Value {
    let body = json!({"name": name, "site": "hq", "lat": at.0, "lon": at.1, "radius_m": 25.0});
    let (status, made) = post_json(
        &server.http(),
        &server.https("/api/v1/checkpoints"),
        sup,
        body,
    )
    .await;
    assert_eq!(status, 201, "{made}");
    made
}

/// The tour's one round a (shortened) day: open from the current schedule minute, for
/// `window` minutes.
fn schedule(window: u64) -> Value {
    let minute = now_ms() % (1440 * MINUTE_MS) / MINUTE_MS;
    json!({
        "start": format!("{:02}:{:02}", minute / 60, minute % 60),
        "every_minutes": 1440,
        "rounds": 1,
        "window_minutes": window,
    })
}

fn position(at: (f64, f64)) -> String {
    json!({"latitude": at.0, "longitude": at.1}).to_string()
}

/// The guard's scans of `checkpoint`, as the supervisor lists them.
async fn scans_of(server: &TestServer, sup: &str, checkpoint: &Value) -> Vec<Value> {
    let listed = get_json(
        &server.http(),
        &server.https(&format!("/api/v1/patrols/scans?user={GUARD}")),
        sup,
    )
    .await;
    listed
        .as_array()
        .expect("a list of scans")
        .iter()
        .filter(|s| s["checkpoint"] == checkpoint["id"])
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_scans_a_printed_checkpoint_offline_scans_arrive_once_and_the_unscanned_one_raises_tour_missed(
) {
    let server = TestServer::start_with(|c| {
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
        c.limits.dead_peer_timeout = Duration::from_secs(600);
        c.testing.patrol_minute = Duration::from_millis(MINUTE_MS);
    })
    .await;
    let http = server.http();
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let guard = server.token(GUARD, Some("acme"), &[Role::Guard]);

    let north = checkpoint(&server, &sup, "North gate", NORTH_GATE).await;
    let bay = checkpoint(&server, &sup, "Loading bay", LOADING_BAY).await;
    let roof = checkpoint(&server, &sup, "Roof access", ROOF).await;
    // Long enough for any machine to get through the scans; shortened once they are in (below),
    // so the test never races the machine's speed.
    let mut tour = json!({
        "name": "Night round",
        "site": "hq",
        "checkpoints": [north["id"], bay["id"], roof["id"]],
        "guards": [GUARD],
        "schedule": schedule(1200),
    });
    let (status, made) = post_json(&http, &server.https("/api/v1/tours"), &sup, tour.clone()).await;
    assert_eq!(status, 201, "{made}");
    let tour_id = made["id"].as_str().expect("tour id").to_string();

    let tmp = tempfile::tempdir().expect("tempdir");
    let control = tmp.path().join("control");
    std::fs::create_dir_all(&control).expect("control dir");
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    let mut node = NodeScript::run(
        "patrol.mjs",
        &[
            ("ORIGIN", server.https("")),
            ("LOOKOUT_ARTIFACTS", artifacts.display().to_string()),
            ("LOOKOUT_CONTROL", control.display().to_string()),
            ("SUPERVISOR_TOKEN", sup.clone()),
            ("GUARD_TOKEN", guard.clone()),
            ("FIRST_CHECKPOINT", north["id"].as_str().expect("id").into()),
            ("SECOND_CHECKPOINT", bay["id"].as_str().expect("id").into()),
            ("FIRST_POSITION", position(NORTH_GATE)),
            ("SECOND_POSITION", position(LOADING_BAY)),
            ("CHROMIUM", chromium()),
        ],
    );
    let go_on = |step: &str| std::fs::write(control.join(step), b"").expect("control file");

    // The sheet printed from the dashboard, styled.
    let sheet = node.event("sheet").await;
    assert_eq!(sheet["styled"], "rgb(255, 255, 255)", "{sheet}");

    // 1. Online: the phone's camera read the printed code; the scan is recorded once, where
    //    the phone was, and counted for the round.
    let scanned = node.event("scanned-first").await;
    eprintln!("patrol app: {scanned}");
    assert!(
        scanned["result"]
            .as_str()
            .is_some_and(|r| r.contains("North gate scanned")),
        "{scanned}"
    );
    assert_eq!(
        scanned["stop"], "scanned",
        "the tour card ticks it: {scanned}"
    );
    let first = scans_of(&server, &sup, &north).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["via"], "qr");
    assert_eq!(first[0]["tour"], tour_id.as_str());
    assert_eq!(first[0]["far"], false, "{}", first[0]);
    let lat = first[0]["lat"].as_f64().expect("the scan's position");
    let lon = first[0]["lon"].as_f64().expect("the scan's position");
    assert!(
        (lat - NORTH_GATE.0).abs() < 1e-6 && (lon - NORTH_GATE.1).abs() < 1e-6,
        "{}",
        first[0]
    );
    go_on("first-checked");

    // 2. Offline: the second scan waits on the phone; nothing reached the server.
    let queued = node.event("queued-second").await;
    assert!(scans_of(&server, &sup, &bay).await.is_empty());
    go_on("go-online");

    // 3. Back online: sent twice (the first answer lost), recorded once, with the time it was
    //    made offline, and counted for the round that was open then.
    let sent = node.event("sent-second").await;
    eprintln!("patrol app: {sent}");
    assert!(sent["posts"].as_u64().unwrap_or(0) >= 2, "{sent}");
    assert_eq!(sent["lost"], 1, "{sent}");
    assert!(
        sent["result"]
            .as_str()
            .is_some_and(|r| r.contains("Loading bay scanned")),
        "{sent}"
    );
    let second = scans_of(&server, &sup, &bay).await;
    assert_eq!(
        second.len(),
        1,
        "sent many times, recorded once: {second:?}"
    );
    let scanned_at = second[0]["scanned_at"].as_u64().expect("scanned_at");
    let back_at = sent["back_at"].as_u64().expect("back_at");
    assert!(
        scanned_at <= queued["at"].as_u64().expect("at") && scanned_at < back_at,
        "the scan keeps the time it was made offline: {}",
        second[0]
    );
    assert_eq!(second[0]["tour"], tour_id.as_str(), "{}", second[0]);
    let (status, round) = server
        .get(&format!("/api/v1/tours/{tour_id}/round"), &sup)
        .await;
    assert_eq!(status, 200, "{round}");
    assert!(
        round["scanned"]
            .get(north["id"].as_str().expect("id"))
            .is_some(),
        "{round}"
    );
    assert!(
        round["scanned"]
            .get(bay["id"].as_str().expect("id"))
            .is_some(),
        "{round}"
    );

    // 4. The round's window now ends in a few schedule minutes (the same round: its scans are
    //    kept); at its end the roof, never scanned, raises TOUR_MISSED once.
    let round_start = round["round_start"].as_u64().expect("round_start");
    let window = (now_ms() - round_start) / MINUTE_MS + 30;
    tour["schedule"]["window_minutes"] = json!(window);
    let (status, body) = put_json(
        &http,
        &server.https(&format!("/api/v1/tours/{tour_id}")),
        &sup,
        tour.clone(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, round) = server
        .get(&format!("/api/v1/tours/{tour_id}/round"), &sup)
        .await;
    assert_eq!(round["round_start"].as_u64(), Some(round_start), "{round}");
    let window_end = round["window_end"].as_u64().expect("window_end");
    let missed = loop {
        let listed = get_json(
            &http,
            &server.https("/api/v1/alerts?type=TOUR_MISSED"),
            &sup,
        )
        .await;
        let listed = listed.as_array().cloned().unwrap_or_default();
        if !listed.is_empty() {
            break listed;
        }
        assert!(
            now_ms() < window_end + PATIENCE.as_millis() as u64,
            "no TOUR_MISSED after the window's end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(missed.len(), 1, "{missed:?}");
    let alert = &missed[0];
    assert!(
        alert["created_at"].as_u64().expect("created_at") >= window_end,
        "{alert}"
    );
    assert_eq!(alert["user"], GUARD, "{alert}");
    let message = alert["message"].as_str().expect("message");
    assert!(
        message.contains("missed 1 of 3") && message.contains("Roof access"),
        "{message}"
    );
    assert!(
        !message.contains("North gate") && !message.contains("Loading bay"),
        "{message}"
    );
    go_on("missed");

    let shown = node.event("dashboard-missed").await;
    assert!(
        shown["text"]
            .as_str()
            .is_some_and(|t| t.contains("Roof access") || t.contains("Tour missed")),
        "{shown}"
    );
    node.finish_clean().await;
    assert_screenshots(
        &artifacts,
        "patrol",
        &[
            "dashboard",
            "sheet",
            "phone-tour",
            "phone-scanned",
            "phone-offline",
            "missed",
        ],
    );
    server.stop().await;
}
