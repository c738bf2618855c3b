//! Patrols on the server: checkpoints and their signed codes, tours with a schedule, scans
//! (idempotent, flagged when far), TOUR_MISSED at a round's window end (once, across restarts)
//! and the patrol budgets.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

/// A schedule minute of 50 ms: a "day" of 72 s.
const MINUTE_MS: u64 = 50;

async fn server_with(adjust: impl FnOnce(&mut lookout::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
        c.testing.patrol_minute = Duration::from_millis(MINUTE_MS);
        adjust(c);
    })
    .await
}

async fn post(server: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    post_json(&server.http(), &server.https(path), token, body).await
}

async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server
        .http()
        .request(method, server.https(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms")
}

async fn checkpoint(server: &TestServer, sup: &str, name: &str, lat: f64, lon: f64) -> Value {
    let (status, body) = post(
        server,
        "/api/v1/checkpoints",
        sup,
        json!({"name": name, "site": "hq", "lat": lat, "lon": lon, "radius_m": 20.0}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// A tour of `checkpoints` for guard `g1` with one round a (shortened) day, starting
/// `lead_minutes` schedule minutes from now and `window` minutes long.
async fn tour(
    server: &TestServer,
    sup: &str,
    checkpoints: &[&Value],
    lead: u64,
    window: u32,
) -> Value {
    let minute_of_day = now_ms() % (1440 * MINUTE_MS) / MINUTE_MS;
    let start = (minute_of_day + lead) % 1440;
    let ids: Vec<&Value> = checkpoints.iter().map(|c| &c["id"]).collect();
    let (status, body) = post(
        server,
        "/api/v1/tours",
        sup,
        json!({
            "name": "Night round",
            "site": "hq",
            "checkpoints": ids,
            "ordered": true,
            "guards": ["g1"],
            "schedule": {
                "start": format!("{:02}:{:02}", start / 60, start % 60),
                "every_minutes": 1440,
                "rounds": 1,
                "window_minutes": window,
            },
        }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
}

fn scan_body(code: &Value, key: &str, at: u64, lat: f64, lon: f64) -> Value {
    json!({"code": code, "key": key, "scanned_at": at, "lat": lat, "lon": lon, "accuracy": 5.0})
}

async fn missed(server: &TestServer, sup: &str) -> Vec<Value> {
    let (status, body) = server.get("/api/v1/alerts?type=TOUR_MISSED", sup).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().cloned().unwrap_or_default()
}

async fn sleep_until(at_ms: u64) {
    let now = now_ms();
    if at_ms > now {
        tokio::time::sleep(Duration::from_millis(at_ms - now)).await;
    }
}

#[tokio::test]
async fn checkpoints_are_managed_by_supervisors_of_their_org_only() {
    let server = server_with(|_| {}).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let other = server.token("sup", Some("other"), &[Role::Supervisor]);
    let admin = server.token("root", None, &[Role::Admin]);

    let gate = checkpoint(&server, &sup, "Gate", 51.5, -0.12).await;
    let id = gate["id"].as_str().expect("id");
    assert!(
        gate["code"]
            .as_str()
            .expect("code")
            .starts_with("LKCP1.acme."),
        "{gate}"
    );
    assert_eq!(gate["radius_m"], 20.0);

    // A guard reads them (its app shows the tour) without their codes (a guard who could read
    // them could scan without going there), and makes none.
    let (status, listed) = server.get("/api/v1/checkpoints", &guard).await;
    assert_eq!(
        (status, listed[0]["id"].clone(), listed[0].get("code")),
        (200, gate["id"].clone(), None),
        "{listed}"
    );
    let (status, body) = post(
        &server,
        "/api/v1/checkpoints",
        &guard,
        json!({"name": "X", "lat": 1.0, "lon": 1.0}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    // Another org sees none of them and cannot touch them.
    let (_, theirs) = server.get("/api/v1/checkpoints", &other).await;
    assert_eq!(theirs, json!([]));
    let (status, _) = server.get("/api/v1/checkpoints?org=acme", &other).await;
    assert_eq!(status, 403);
    let path = format!("/api/v1/checkpoints/{id}");
    let (status, _) = send(&server, reqwest::Method::DELETE, &path, &other, None).await;
    assert_eq!(status, 404);

    // Bad input is named.
    let (status, body) = post(
        &server,
        "/api/v1/checkpoints",
        &sup,
        json!({"name": "Far", "lat": 91.0, "lon": 0.0}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("lat"));

    // Replaced: same id, same code, new place.
    let (status, moved) = send(
        &server,
        reqwest::Method::PUT,
        &path,
        &sup,
        Some(json!({"name": "Main gate", "lat": 51.6, "lon": -0.12})),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        (moved["code"].clone(), moved["lat"].clone()),
        (gate["code"].clone(), json!(51.6))
    );

    // An admin acts in a named org.
    let (_, by_admin) = server.get("/api/v1/checkpoints?org=acme", &admin).await;
    assert_eq!(by_admin[0]["name"], "Main gate");

    // On a tour it cannot go; off it, it can.
    let t = tour(&server, &sup, &[&gate], 100, 10).await;
    let (status, body) = send(&server, reqwest::Method::DELETE, &path, &sup, None).await;
    assert_eq!(status, 409, "{body}");
    let tour_path = format!("/api/v1/tours/{}", t["id"].as_str().expect("tour id"));
    let (status, _) = send(&server, reqwest::Method::DELETE, &tour_path, &sup, None).await;
    assert_eq!(status, 200);
    let (status, _) = send(&server, reqwest::Method::DELETE, &path, &sup, None).await;
    assert_eq!(status, 200);
    let (_, listed) = server.get("/api/v1/checkpoints", &sup).await;
    assert_eq!(listed, json!([]));
    server.stop().await;
}

#[tokio::test]
async fn a_code_verifies_only_on_the_appliance_and_org_that_signed_it() {
    let server = server_with(|_| {}).await;
    let elsewhere = server_with(|_| {}).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let gate = checkpoint(&server, &sup, "Gate", 51.5, -0.12).await;
    let code = gate["code"].as_str().expect("code").to_string();

    // The same org on another appliance: its code does not verify here.
    let sup2 = elsewhere.token("sup", Some("acme"), &[Role::Supervisor]);
    let foreign = checkpoint(&elsewhere, &sup2, "Gate", 51.5, -0.12).await;
    let now = now_ms();
    let (status, body) = post(
        &server,
        "/api/v1/patrols/scans",
        &guard,
        scan_body(&foreign["code"], "foreign-1", now, 51.5, -0.12),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("this appliance"));

    // Tampered: another id under this code's mac.
    let mut parts: Vec<&str> = code.split('.').collect();
    let other_id = foreign["id"].as_str().expect("id");
    parts[2] = other_id;
    let (status, _) = post(
        &server,
        "/api/v1/patrols/scans",
        &guard,
        scan_body(&json!(parts.join(".")), "tampered", now, 51.5, -0.12),
    )
    .await;
    assert_eq!(status, 400);

    // Another org's guard: refused.
    let outsider = server.token("g9", Some("other"), &[Role::Guard]);
    let (status, _) = post(
        &server,
        "/api/v1/patrols/scans",
        &outsider,
        scan_body(&json!(code), "outsider", now, 51.5, -0.12),
    )
    .await;
    assert_eq!(status, 403);

    // The code survives a restart (the key is in the store).
    let server = server.restart().await;
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let (status, body) = post(
        &server,
        "/api/v1/patrols/scans",
        &guard,
        scan_body(&json!(code), "after-restart", now_ms(), 51.5, -0.12),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["checkpoint"], gate["id"]);
    server.stop().await;
    elsewhere.stop().await;
}

#[tokio::test]
async fn scans_are_recorded_once_per_key_and_flagged_when_far() {
    let server = server_with(|_| {}).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let gate = checkpoint(&server, &sup, "Gate", 51.5, -0.12).await;
    let now = now_ms();

    let body = scan_body(&gate["code"], "scan-0001", now - 1000, 51.5001, -0.12);
    let (status, first) = post(&server, "/api/v1/patrols/scans", &guard, body.clone()).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(
        (first["far"].clone(), first["recorded"].clone()),
        (json!(false), json!(true))
    );
    assert!(
        first["distance_m"].as_f64().expect("distance") < 20.0,
        "{first}"
    );
    // Sent again (an answer lost, or the offline queue twice): the first answer, not recorded.
    for _ in 0..3 {
        let (status, again) = post(&server, "/api/v1/patrols/scans", &guard, body.clone()).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["recorded"], false);
        assert_eq!(again["received_at"], first["received_at"]);
    }
    // 1 km away: recorded and flagged, not refused.
    let (status, far) = post(
        &server,
        "/api/v1/patrols/scans",
        &guard,
        scan_body(&gate["code"], "scan-0002", now, 51.509, -0.12),
    )
    .await;
    assert_eq!((status, far["far"].clone()), (201, json!(true)), "{far}");

    // From the future, or older than patrol.max_scan_age: refused.
    for (key, at) in [
        ("scan-future", now + 600_000),
        ("scan-ancient", now - 2 * 86_400_000),
    ] {
        let (status, _) = post(
            &server,
            "/api/v1/patrols/scans",
            &guard,
            scan_body(&gate["code"], key, at, 51.5, -0.12),
        )
        .await;
        assert_eq!(status, 400, "{key}");
    }
    // A supervisor cannot scan; the listing shows the guard's two scans, newest first.
    let (status, _) = post(&server, "/api/v1/patrols/scans", &sup, body.clone()).await;
    assert_eq!(status, 403);
    let (_, listed) = server.get("/api/v1/patrols/scans?user=g1", &sup).await;
    let keys: Vec<&str> = listed
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s["key"].as_str())
        .collect();
    assert_eq!(keys, ["scan-0002", "scan-0001"]);
    let (status, _) = server.get("/api/v1/patrols/scans?user=g2", &guard).await;
    assert_eq!(status, 403);

    let metrics = server.metrics().await;
    assert_eq!(metric(&metrics, "lookout_patrol_scans"), 2.0);
    assert_eq!(metric(&metrics, "lookout_patrol_scans_far"), 1.0);
    server.stop().await;
}

#[tokio::test]
async fn an_unscanned_checkpoint_raises_tour_missed_once_at_the_windows_end() {
    let server = server_with(|_| {}).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let gate = checkpoint(&server, &sup, "Gate", 51.5, -0.12).await;
    let yard = checkpoint(&server, &sup, "Yard", 51.501, -0.12).await;
    // The round opens in about 1 s (20 minutes of 50 ms) and lasts 2 s.
    let t = tour(&server, &sup, &[&gate, &yard], 20, 40).await;
    let tour_id = t["id"].as_str().expect("id");
    let (status, round) = server
        .get(&format!("/api/v1/tours/{tour_id}/round"), &guard)
        .await;
    assert_eq!(status, 200, "{round}");
    let (start, end) = (
        round["round_start"].as_u64().expect("start"),
        round["window_end"].as_u64().expect("end"),
    );
    assert_eq!(end - start, 40 * MINUTE_MS);

    // Scanned before the round opened: recorded, counted for no round.
    let (status, early) = post(
        &server,
        "/api/v1/patrols/scans",
        &guard,
        scan_body(&gate["code"], "early-gate", now_ms(), 51.5, -0.12),
    )
    .await;
    assert_eq!(status, 201);
    assert!(early.get("tour").is_none(), "{early}");

    sleep_until(start + 100).await;
    let (status, scanned) = post(
        &server,
        "/api/v1/patrols/scans",
        &guard,
        scan_body(&gate["code"], "round-gate", now_ms(), 51.5, -0.12),
    )
    .await;
    assert_eq!(status, 201, "{scanned}");
    assert_eq!(scanned["tour"], t["id"]);
    assert_eq!(scanned["out_of_order"], false);
    assert!(missed(&server, &sup).await.is_empty());
    // The guard app's tour card: the round open, the gate ticked, the yard next.
    let (status, current) = server.get("/api/v1/tours/current", &guard).await;
    assert_eq!(status, 200, "{current}");
    assert_eq!(current[0]["tour"]["id"], t["id"], "{current}");
    assert_eq!(current[0]["open"], true, "{current}");
    assert_eq!(
        (
            &current[0]["stops"][0]["scanned"],
            &current[0]["stops"][1]["scanned"]
        ),
        (&json!(true), &json!(false)),
        "{current}"
    );
    assert_eq!(current[0]["next"], yard["id"], "{current}");
    let (status, _) = server.get("/api/v1/tours/current", &sup).await;
    assert_eq!(status, 403, "a supervisor has no tours of its own");

    // The window ends with the yard unscanned: one TOUR_MISSED naming it.
    sleep_until(end + 1500).await;
    let alerts = missed(&server, &sup).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let message = alerts[0]["message"].as_str().expect("message");
    assert!(
        message.contains("Yard") && !message.contains("Gate"),
        "{message}"
    );
    assert_eq!(alerts[0]["user"], "g1");
    assert_eq!(alerts[0]["priority"], "HIGH");
    // The round moved on to the next (shortened) day; nothing more is raised.
    let (_, next) = server
        .get(&format!("/api/v1/tours/{tour_id}/round"), &sup)
        .await;
    assert_eq!(next["round_start"].as_u64(), Some(start + 1440 * MINUTE_MS));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(missed(&server, &sup).await.len(), 1);

    // The yard was scanned in the window after all, by a phone offline until now: recorded for
    // that round, flagged as a late arrival; the round is not reopened and its alert stands.
    let (status, late) = post(
        &server,
        "/api/v1/patrols/scans",
        &guard,
        scan_body(&yard["code"], "offline-yard", start + 500, 51.501, -0.12),
    )
    .await;
    assert_eq!(status, 201, "{late}");
    assert_eq!(
        (
            &late["tour"],
            late["round_start"].as_u64(),
            &late["late_arrival"]
        ),
        (&t["id"], Some(start), &json!(true)),
        "{late}"
    );
    let (_, still) = server
        .get(&format!("/api/v1/tours/{tour_id}/round"), &sup)
        .await;
    assert_eq!(still, next, "the next round is untouched");
    assert_eq!(missed(&server, &sup).await.len(), 1);
    // Counted by the node that fired it (in a TEST_CLUSTER, any of them).
    if cluster_size() == 1 {
        assert_eq!(metric(&server.metrics().await, "lookout_tour_missed"), 1.0);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_window_ending_while_the_server_is_down_raises_once_after_restart() {
    let server = server_with(|_| {}).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let gate = checkpoint(&server, &sup, "Gate", 51.5, -0.12).await;
    // The round opens in 2 s and lasts 0.5 s.
    let t = tour(&server, &sup, &[&gate], 40, 10).await;
    let tour_id = t["id"].as_str().expect("id").to_string();
    let (_, round) = server
        .get(&format!("/api/v1/tours/{tour_id}/round"), &sup)
        .await;
    let end = round["window_end"].as_u64().expect("end");
    // Down from now until 300 ms past the window's end (Redis, if any, keeps running).
    let down = Duration::from_millis(end + 300 - now_ms());
    let server = server.restart_after(down).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut alerts = Vec::new();
    for _ in 0..50 {
        alerts = missed(&server, &sup).await;
        if !alerts.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    // Raised by the restarted server once it was back (in a TEST_CLUSTER the other nodes
    // stayed up and fired it on time).
    if cluster_size() == 1 {
        assert!(alerts[0]["created_at"].as_u64().expect("created_at") >= end + 300);
    }
    // Restarted again: not raised again.
    let server = server.restart().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    assert_eq!(missed(&server, &sup).await.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn patrol_budgets_refuse_one_more_and_other_clients_keep_working() {
    let server = server_with(|c| {
        c.patrol.max_checkpoints_per_org = 2;
        c.patrol.max_tours_per_org = 1;
        c.patrol.max_scans_per_guard_per_day = 2;
    })
    .await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let other = server.token("sup", Some("other"), &[Role::Supervisor]);
    let a = checkpoint(&server, &sup, "A", 51.5, -0.12).await;
    checkpoint(&server, &sup, "B", 51.5, -0.12).await;
    let (status, body) = post(
        &server,
        "/api/v1/checkpoints",
        &sup,
        json!({"name": "C", "lat": 51.5, "lon": -0.12}),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("patrol.max_checkpoints_per_org"));
    // Another org is not held back.
    checkpoint(&server, &other, "A", 51.5, -0.12).await;

    tour(&server, &sup, &[&a], 100, 10).await;
    let (status, body) = post(
        &server,
        "/api/v1/tours",
        &sup,
        json!({"name": "Two", "checkpoints": [a["id"]], "guards": ["g1"],
               "schedule": {"start": "00:00", "every_minutes": 60, "rounds": 1, "window_minutes": 10}}),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("patrol.max_tours_per_org"));

    let g1 = server.token("g1", Some("acme"), &[Role::Guard]);
    let g2 = server.token("g2", Some("acme"), &[Role::Guard]);
    let now = now_ms();
    for key in ["budget-1", "budget-2"] {
        let (status, _) = post(
            &server,
            "/api/v1/patrols/scans",
            &g1,
            scan_body(&a["code"], key, now, 51.5, -0.12),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, body) = post(
        &server,
        "/api/v1/patrols/scans",
        &g1,
        scan_body(&a["code"], "budget-3", now, 51.5, -0.12),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("patrol.max_scans_per_guard_per_day"));
    // A repeat of a recorded scan is still answered; another guard still scans.
    let (status, _) = post(
        &server,
        "/api/v1/patrols/scans",
        &g1,
        scan_body(&a["code"], "budget-1", now, 51.5, -0.12),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post(
        &server,
        "/api/v1/patrols/scans",
        &g2,
        scan_body(&a["code"], "budget-g2", now, 51.5, -0.12),
    )
    .await;
    assert_eq!(status, 201);

    assert_eq!(
        metric(&server.metrics().await, "lookout_patrol_refused"),
        3.0
    );
    server.stop().await;
}

#[tokio::test]
async fn the_qr_sheet_prints_each_checkpoint_of_the_org_or_site_with_its_code() {
    let server = server_with(|_| {}).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let gate = checkpoint(&server, &sup, "Gate <north>", 51.5, -0.12).await;
    let (status, elsewhere) = post(
        &server,
        "/api/v1/checkpoints",
        &sup,
        json!({"name": "Depot door", "site": "depot", "lat": 51.4, "lon": -0.1,
               "instructions": "Check the padlock"}),
    )
    .await;
    assert_eq!(status, 201, "{elsewhere}");

    let sheet = |path: &'static str, token: String| {
        let (http, url) = (server.http(), server.https(path));
        async move {
            let response = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("GET sheet");
            let status = response.status().as_u16();
            let kind = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            (status, kind, response.text().await.unwrap_or_default())
        }
    };
    let (status, kind, html) = sheet("/api/v1/checkpoints/sheet", sup.clone()).await;
    assert_eq!(status, 200, "{html}");
    assert!(kind.starts_with("text/html"), "{kind}");
    assert_eq!(html.matches("<svg").count(), 2, "{html}");
    // Names are escaped; each card carries its code under its QR code.
    assert!(html.contains("Gate &lt;north&gt;") && !html.contains("Gate <north>"));
    for c in [&gate, &elsewhere] {
        assert!(html.contains(c["code"].as_str().expect("code")), "{html}");
    }
    assert!(html.contains("Check the padlock"));
    // Its stylesheet is a bundled file (the pages' policy allows no inline style).
    assert!(html.contains("href=\"/sheet.css\""));
    let css = server
        .http()
        .get(server.https("/sheet.css"))
        .send()
        .await
        .expect("GET /sheet.css");
    assert_eq!(css.status(), 200);
    // One site's sheet.
    let (_, _, depot) = sheet("/api/v1/checkpoints/sheet?site=depot", sup.clone()).await;
    assert_eq!(depot.matches("<svg").count(), 1);
    assert!(depot.contains("Depot door") && !depot.contains("Gate"));
    // Guards and other orgs get no sheet.
    let (status, _, _) = sheet("/api/v1/checkpoints/sheet", guard).await;
    assert_eq!(status, 403);
    let other = server.token("sup", Some("other"), &[Role::Supervisor]);
    let (status, _, _) = sheet("/api/v1/checkpoints/sheet?org=acme", other).await;
    assert_eq!(status, 403);
    server.stop().await;
}

/// `lookout demo` runs a tour for its simulated guards: the site's checkpoints and a tour for
/// guard 01 (on shift), who scans the codes posted along its round; the roof hatch, off every
/// round, is missed each round. A restart on the same directory adds nothing twice. Schedule
/// minutes of 1 s here: a round every 5 s, 3 s to go round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_a_tour_whose_guard_scans_the_codes_on_its_round_and_misses_the_roof_hatch() {
    const FAST: [(&str, &str); 1] = [("LOOKOUT_TESTING__PATROL_MINUTE", "1s")];
    let args = [
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--guards",
        "2",
        "--panic-after",
        "1h",
    ];
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let demo = Binary::spawn(&args, &data, &FAST);
    let base = format!("https://{}", demo.addr);
    let http = http_client(&demo.cert_pem());
    let sup = demo.token("supervisor", Some("demo"), &[Role::Supervisor]);
    let listed = |path: &str| {
        let (http, url, sup) = (http.clone(), format!("{base}{path}"), sup.clone());
        async move {
            get_json(&http, &url, &sup)
                .await
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };

    let checkpoints = listed("/api/v1/checkpoints").await;
    let names: Vec<&str> = checkpoints
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "East gate",
            "North yard",
            "Roof hatch",
            "South fence",
            "West dock"
        ],
        "{checkpoints:?}"
    );
    let tours = listed("/api/v1/tours").await;
    assert_eq!(tours.len(), 1, "{tours:?}");
    assert_eq!(tours[0]["guards"], json!(["guard-01"]));
    let shifts = listed("/api/v1/shifts").await;
    let now = now_ms();
    assert!(
        shifts.iter().any(|s| s["user"] == "guard-01"
            && s["start"].as_u64() <= Some(now)
            && s["end"].as_u64() > Some(now)),
        "guard 01 is on shift: {shifts:?}"
    );

    // Guard 01 passes a checkpoint of its round within a quarter of its 90 s loop.
    let started = std::time::Instant::now();
    let (scan, missed) = loop {
        let scans = listed("/api/v1/patrols/scans?user=guard-01").await;
        let missed = listed("/api/v1/alerts?type=TOUR_MISSED").await;
        let roof = missed.iter().find(|a| {
            a["user"] == "guard-01"
                && a["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Roof hatch"))
        });
        if let (Some(scan), Some(roof)) = (scans.first(), roof) {
            break (scan.clone(), roof.clone());
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no scan or no TOUR_MISSED: scans {scans:?}, missed {missed:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(scan["via"], "qr", "{scan}");
    assert_eq!(scan["far"], false, "scanned where it is posted: {scan}");
    let roof_id = checkpoints
        .iter()
        .find(|c| c["name"] == "Roof hatch")
        .map(|c| c["id"].clone())
        .expect("roof hatch");
    assert_ne!(scan["checkpoint"], roof_id, "nobody passes the roof hatch");
    eprintln!(
        "demo tour: first scan {scan}, a missed round: {}",
        missed["message"]
    );

    // Guard 01's shift report, once it has walked a stretch of its round (20 fixes).
    let shift = shifts
        .iter()
        .find(|s| s["user"] == "guard-01")
        .expect("guard 01's shift");
    let shift_id = shift["id"].as_str().expect("shift id");
    let from = shift["start"].as_u64().expect("start");
    let walked = format!(
        "{base}/api/v1/locations/guard-01/history?from={from}&to={}",
        from + 86_400_000
    );
    while listed_fixes(&http, &walked, &sup).await < 20 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "guard 01 does not walk"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let report = |ext: &str| {
        let url = format!("{base}/api/v1/shifts/{shift_id}/report.{ext}");
        let (http, sup) = (http.clone(), sup.clone());
        async move {
            let response = http.get(url).bearer_auth(sup).send().await.expect("report");
            assert_eq!(response.status(), 200);
            response.bytes().await.expect("report body").to_vec()
        }
    };
    let dir = tempfile::tempdir().expect("tmp");
    let pdf = dir.path().join("demo-shift.pdf");
    std::fs::write(&pdf, report("pdf").await).expect("write");
    let artifacts = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts");
    std::fs::copy(&pdf, artifacts.join("demo-shift-report.pdf")).expect("copy");
    let text = String::from_utf8_lossy(&poppler("pdftotext", &[pdf.as_os_str(), "-".as_ref()]))
        .to_string();
    // The guard, every checkpoint, and every alert raised for the guard before the report.
    let made_at = now_ms();
    let mut needles = vec![
        "Shift report: guard-01".to_string(),
        "TOUR_MISSED".to_string(),
    ];
    needles.extend(names.iter().map(|n| n.to_string()));
    needles.extend(
        listed("/api/v1/alerts?user=guard-01")
            .await
            .iter()
            .filter(|a| a["user"] == "guard-01" && a["created_at"].as_u64() < Some(made_at - 1000))
            .filter_map(|a| a["id"].as_str().map(str::to_string)),
    );
    for needle in &needles {
        assert!(
            text.contains(needle.as_str()),
            "{needle:?} not in the demo's report:\n{text}"
        );
    }
    assert!(
        !text.contains("drawn on a grid"),
        "the demo's plan is drawn, not a grid:\n{text}"
    );
    // Page 1: the demo's plan (its dark ground) with the track's blue on it.
    let (w, h, pixels) = first_page(&pdf, dir.path(), &artifacts, "demo-shift-report-page1.png");
    let ground = pixels
        .chunks(3)
        .filter(|p| near(p, [0x16, 0x20, 0x2a], 12))
        .count();
    assert!(
        ground > w * h / 10,
        "the plan's ground covers the map: {ground} of {}",
        w * h
    );
    let blue = lookout::report::TRACK.map(|c| (c * 255.0).round() as u8);
    let track = pixels.chunks(3).filter(|p| near(p, blue, 50)).count();
    assert!(track >= 10, "the track's blue on the plan: {track} pixels");
    // The CSV: a header, then one row of 12 cells per event.
    let csv = String::from_utf8(report("csv").await).expect("UTF-8");
    let rows = parse_csv(&csv);
    assert!(rows[1..].iter().all(|r| r.len() == 12), "{csv}");
    assert!(rows.iter().filter(|r| r[1] == "fix").count() >= 20, "{csv}");
    assert!(rows.iter().any(|r| r[1] == "scan"), "{csv}");
    assert!(rows.iter().any(|r| r[1] == "round_missed"), "{csv}");

    // The same directory again: nothing made twice.
    drop(demo);
    let demo = Binary::spawn(&args, &data, &FAST);
    let base = format!("https://{}", demo.addr);
    let again = get_json(
        &http_client(&demo.cert_pem()),
        &format!("{base}/api/v1/checkpoints"),
        &sup,
    )
    .await;
    assert_eq!(again.as_array().map(Vec::len), Some(5), "{again}");
    let tours = get_json(
        &http_client(&demo.cert_pem()),
        &format!("{base}/api/v1/tours"),
        &sup,
    )
    .await;
    assert_eq!(tours.as_array().map(Vec::len), Some(1), "{tours}");
}

/// Scans are kept `patrol.scan_retention` after they arrived: an org's older ones are deleted
/// when its guards scan again (here a retention of 1 s).
#[tokio::test]
async fn scans_older_than_the_retention_are_deleted_when_the_org_scans_again() {
    let server = server_with(|c| c.patrol.scan_retention = Duration::from_secs(1)).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let gate = checkpoint(&server, &sup, "Gate", 51.5, -0.12).await;
    let scan = |key: &'static str| {
        let body = scan_body(&gate["code"], key, now_ms(), 51.5, -0.12);
        let (server, guard) = (&server, &guard);
        async move { post(server, "/api/v1/patrols/scans", guard, body).await }
    };
    assert_eq!(scan("kept-for-now").await.0, 201);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(scan("the-newer-one").await.0, 201);
    let (status, listed) = server.get("/api/v1/patrols/scans", &sup).await;
    assert_eq!(status, 200, "{listed}");
    let keys: Vec<&str> = listed
        .as_array()
        .expect("scans")
        .iter()
        .filter_map(|s| s["key"].as_str())
        .collect();
    assert_eq!(keys, ["the-newer-one"], "{listed}");
    server.stop().await;
}

/// How many fixes a location history answer holds.
async fn listed_fixes(http: &reqwest::Client, url: &str, token: &str) -> usize {
    let page = get_json(http, url, token).await;
    page["points"].as_array().map_or(0, Vec::len)
}
