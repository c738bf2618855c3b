//! The shift report over REST against a real TLS server with a site plan: a guard walks, scans
//! checkpoints in two rounds (one complete, one missing a checkpoint, which is then scanned
//! late), raises an alert that a supervisor acknowledges, checks in; the PDF's text names the
//! guard, every checkpoint and every alert, its first page shows the track on the plan, and the
//! CSV has one row per event. Only the org's supervisors and the guard itself get it.
//!
//! Needs `pdftotext` and `pdftoppm` (Debian's poppler-utils; tests/run.sh installs them). The
//! report and its first page are kept as target/artifacts/shift-report.pdf and
//! shift-report-page1.png for a person to look at.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

/// A schedule minute of 50 ms: a round every 60 minutes is 3 s.
const MINUTE_MS: u64 = 50;
/// The plan's edges [west, south, east, north]; the fixture is 600 × 400 px of light paper
/// with a brown grid.
const BOUNDS: [f64; 4] = [4.880, 52.370, 4.890, 52.375];
const GATE: (f64, f64) = (52.3710, 4.8820);
const DOCK: (f64, f64) = (52.3725, 4.8850);
const YARD: (f64, f64) = (52.3740, 4.8880);

/// Where a person finds the report and its first page after a run.
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    std::fs::create_dir_all(&dir).expect("target/artifacts");
    dir
}

/// The track's colour on a rendered page: `report::TRACK` (0–1) in bytes.
fn track() -> [u8; 3] {
    lookout::report::TRACK.map(|c| (c * 255.0).round() as u8)
}

/// The site plan fixture: `jpg` or `png` (the same picture).
fn plan(ext: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/site-plan-grid.{ext}"))
}

async fn server() -> TestServer {
    server_with_plan(plan("jpg")).await
}

async fn server_with_plan(plan: PathBuf) -> TestServer {
    TestServer::start_with(|c| {
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
        c.testing.patrol_minute = Duration::from_millis(MINUTE_MS);
        // No escalation step lands in the audit trail while the test runs.
        c.alerts.level2_after = Duration::from_secs(3600);
        c.alerts.level3_after = Duration::from_secs(7200);
        c.dashboard.site_plan = Some(plan);
        c.dashboard.site_plan_bounds = Some(BOUNDS);
    })
    .await
}

async fn post(server: &TestServer, path: &str, token: &str, body: Value) -> Value {
    let (status, answer) = post_json(&server.http(), &server.https(path), token, body).await;
    assert!((200..300).contains(&status), "{path}: {status} {answer}");
    answer
}

/// Downloads shift `id`'s PDF into `dir`: its path.
async fn save_pdf(server: &TestServer, id: &str, token: &str, dir: &Path) -> PathBuf {
    let path = format!("/api/v1/shifts/{id}/report.pdf");
    let (status, _, _, pdf) = download(server, &path, token).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&pdf));
    let file = dir.join("report.pdf");
    std::fs::write(&file, &pdf).expect("write");
    file
}

/// Puts g1 on shift at hq from `start` to `end` (ms): the shift's id.
async fn shift(server: &TestServer, sup: &str, start: u64, end: u64) -> String {
    let body = json!({"user": "g1", "site": "hq", "start": start, "end": end});
    let shift = post(server, "/api/v1/shifts", sup, body).await;
    shift["id"].as_str().expect("id").to_string()
}

/// A report: status, headers' content type and disposition, body.
async fn download(server: &TestServer, path: &str, token: &str) -> (u16, String, String, Vec<u8>) {
    let response = server
        .http()
        .get(server.https(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (kind, disposition) = (header("content-type"), header("content-disposition"));
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("body").to_vec();
    (status, kind, disposition, body)
}

async fn checkpoint(server: &TestServer, sup: &str, name: &str, (lat, lon): (f64, f64)) -> Value {
    post(
        server,
        "/api/v1/checkpoints",
        sup,
        json!({"name": name, "site": "hq", "lat": lat, "lon": lon, "radius_m": 20.0}),
    )
    .await
}

async fn scan(
    server: &TestServer,
    guard: &str,
    code: &Value,
    key: &str,
    (lat, lon): (f64, f64),
) -> Value {
    let body = json!({"code": code, "key": key, "scanned_at": now_ms(), "lat": lat, "lon": lon, "accuracy": 5.0});
    post(server, "/api/v1/patrols/scans", guard, body).await
}

fn now_ms() -> u64 {
    lookout::clock::now_millis()
}

async fn sleep_until(at_ms: u64) {
    let now = now_ms();
    if at_ms > now {
        tokio::time::sleep(Duration::from_millis(at_ms - now)).await;
    }
}

/// Page 1 shows the plan (its light paper over a tenth of the page at least) and the track's
/// blue inside the plan's area.
fn assert_track_on_the_plan(w: usize, h: usize, pixels: &[u8]) {
    let paper = [250, 245, 219];
    let (mut left, mut top, mut right, mut bottom, mut paper_pixels) = (w, h, 0, 0, 0);
    for (i, px) in pixels.chunks(3).enumerate() {
        if near(px, paper, 10) {
            let (x, y) = (i % w, i / w);
            paper_pixels += 1;
            (left, top, right, bottom) = (left.min(x), top.min(y), right.max(x), bottom.max(y));
        }
    }
    assert!(
        paper_pixels > w * h / 10,
        "the plan's paper covers the map: {paper_pixels} of {}",
        w * h
    );
    let on_plan = pixels
        .chunks(3)
        .enumerate()
        .filter(|(i, px)| {
            let (x, y) = (i % w, i / w);
            (left..=right).contains(&x) && (top..=bottom).contains(&y) && near(px, track(), 50)
        })
        .count();
    assert!(
        on_plan >= 30,
        "the track's blue on the plan: {on_plan} pixels"
    );
}

#[tokio::test]
async fn a_shifts_report_draws_the_track_on_the_plan_and_lists_every_event() {
    let server = server().await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let gate = checkpoint(&server, &sup, "Gate", GATE).await;
    let dock = checkpoint(&server, &sup, "Dock, north", DOCK).await;
    let yard = checkpoint(&server, &sup, "Yard", YARD).await;
    let now = now_ms();
    let shift_id = shift(&server, &sup, now - 5_000, now + 120_000).await;
    // Two rounds 3 s apart, 1.5 s each, the first in about 1 s.
    let minute_of_day = now % (1440 * MINUTE_MS) / MINUTE_MS;
    let start = (minute_of_day + 20) % 1440;
    let tour = post(
        &server,
        "/api/v1/tours",
        &sup,
        json!({
            "name": "Perimeter",
            "site": "hq",
            "checkpoints": [gate["id"], dock["id"], yard["id"]],
            "guards": ["g1"],
            "schedule": {"start": format!("{:02}:{:02}", start / 60, start % 60),
                         "every_minutes": 60, "rounds": 2, "window_minutes": 30},
        }),
    )
    .await;
    let round = get_json(
        &server.http(),
        &server.https(&format!(
            "/api/v1/tours/{}/round",
            tour["id"].as_str().expect("id")
        )),
        &sup,
    )
    .await;
    let first = round["round_start"].as_u64().expect("start");
    let second = first + 60 * MINUTE_MS;
    let second_end = second + 30 * MINUTE_MS;

    // The walk: gate → dock → yard, twelve fixes.
    let mut phone = server.connect(&guard).await;
    let walk: Vec<(f64, f64)> = (0..12)
        .map(|i| {
            let f = f64::from(i) / 11.0;
            let (a, b) = if f < 0.5 { (GATE, DOCK) } else { (DOCK, YARD) };
            let g = if f < 0.5 { f * 2.0 } else { f * 2.0 - 1.0 };
            (a.0 + (b.0 - a.0) * g, a.1 + (b.1 - a.1) * g)
        })
        .collect();
    for (lat, lon) in &walk {
        let r = phone
            .publish("/topic/location/g1", location(*lat, *lon))
            .await;
        assert!(ok(&r), "{r}");
    }

    // Round 1: all three, the dock from 200 m away (far).
    sleep_until(first + 100).await;
    scan(&server, &guard, &gate["code"], "r1-gate-0001", GATE).await;
    let far = scan(
        &server,
        &guard,
        &dock["code"],
        "r1-dock-0001",
        (DOCK.0 + 0.0018, DOCK.1),
    )
    .await;
    assert_eq!(far["far"], true, "{far}");
    scan(&server, &guard, &yard["code"], "r1-yard-0001", YARD).await;
    // Round 2: the yard is missed, then scanned after the window.
    sleep_until(second + 100).await;
    scan(&server, &guard, &gate["code"], "r2-gate-0001", GATE).await;
    scan(&server, &guard, &dock["code"], "r2-dock-0001", DOCK).await;
    sleep_until(second_end + 300).await;
    let late = scan(&server, &guard, &yard["code"], "r2-yard-late", YARD).await;
    assert!(late.get("tour").is_none(), "{late}");
    let missed = loop {
        let alerts = get_json(
            &server.http(),
            &server.https("/api/v1/alerts?type=TOUR_MISSED"),
            &sup,
        )
        .await;
        if let Some(a) = alerts.as_array().and_then(|a| a.first()) {
            break a.clone();
        }
        assert!(now_ms() < second_end + 10_000, "no TOUR_MISSED");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A panic alert, acknowledged with a note that needs quoting; a check-in.
    let panic = post(
        &server,
        "/api/v1/alerts",
        &guard,
        json!({"type": "PANIC", "message": "Intruder at the yard"}),
    )
    .await;
    let panic_id = panic["id"].as_str().expect("id");
    post(
        &server,
        &format!("/api/v1/alerts/{panic_id}/ack"),
        &sup,
        json!({"note": "On my way, \"now\"\n=call police"}),
    )
    .await;
    post(&server, "/api/v1/welfare/ok", &guard, json!({})).await;
    // An incident report with two photos, about the panic.
    let incident = post(
        &server,
        "/api/v1/incidents",
        &guard,
        json!({"category": "intrusion", "text": "Fence cut behind the yard", "alert": panic_id, "key": "incident-0001"}),
    )
    .await;
    let incident_id = incident["id"].as_str().expect("incident id").to_string();
    let photo = std::fs::read(plan("jpg")).expect("a JPEG");
    for n in 1..=2 {
        let response = server
            .http()
            .put(server.https(&format!("/api/v1/incidents/{incident_id}/photos/{n}")))
            .bearer_auth(&guard)
            .header("content-type", "image/jpeg")
            .body(photo.clone())
            .send()
            .await
            .expect("photo");
        assert_eq!(response.status(), 200, "photo {n}");
    }

    // The CSV: the header, then one row per event caused above.
    let (status, kind, disposition, csv) = download(
        &server,
        &format!("/api/v1/shifts/{shift_id}/report.csv"),
        &sup,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&csv));
    assert_eq!(kind, "text/csv; charset=utf-8");
    assert!(
        disposition.starts_with("attachment; filename=\"shift-g1-20")
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    let rows = parse_csv(&String::from_utf8(csv).expect("UTF-8"));
    assert_eq!(
        rows[0].join(","),
        "time,kind,guard,site,detail,lat,lon,checkpoint,tour,alert,flags,accuracy_m"
    );
    let count = |kind: &str| rows.iter().filter(|r| r[1] == kind).count();
    assert_eq!(count("fix"), walk.len());
    assert_eq!(count("scan"), 6);
    assert_eq!(count("round_done"), 1);
    assert_eq!(count("round_missed"), 1);
    assert_eq!(count("alert"), 2, "TOUR_MISSED and PANIC");
    assert_eq!(count("alert_acknowledged"), 1);
    assert_eq!(count("check_in"), 1);
    assert_eq!(count("incident"), 1);
    assert_eq!(
        rows.len(),
        1 + walk.len() + 6 + 2 + 2 + 1 + 1 + 1,
        "one row per event: {rows:?}"
    );
    assert!(
        rows[1..].iter().all(|r| r.len() == 12 && r[2] == "g1"),
        "{rows:?}"
    );
    // Flags, and a note with a comma, quotes and a line break, survive the round trip.
    let flags: Vec<&str> = rows
        .iter()
        .filter(|r| r[1] == "scan")
        .map(|r| r[10].as_str())
        .collect();
    assert_eq!(flags, ["", "far", "", "", "", "late"]);
    let missed_row = rows
        .iter()
        .find(|r| r[1] == "round_missed")
        .expect("missed round");
    assert!(
        missed_row[4].contains("missed Yard") && missed_row[9] == missed["id"],
        "{missed_row:?}"
    );
    assert!(rows.iter().any(|r| r[4].contains("Dock, north scanned")));
    let ack = rows
        .iter()
        .find(|r| r[1] == "alert_acknowledged")
        .expect("ack");
    assert_eq!(
        ack[4],
        format!("PANIC {panic_id} acknowledged by sup: On my way, \"now\"\n=call police")
    );
    let times: Vec<&String> = rows[1..].iter().map(|r| &r[0]).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "in time order: {times:?}"
    );

    // The PDF: its text, then its first page.
    let (status, kind, disposition, pdf) = download(
        &server,
        &format!("/api/v1/shifts/{shift_id}/report.pdf"),
        &sup,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&pdf));
    assert_eq!(kind, "application/pdf");
    assert!(disposition.ends_with(".pdf\""), "{disposition}");
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("report.pdf");
    std::fs::write(&file, &pdf).expect("write");
    std::fs::write(artifacts().join("shift-report.pdf"), &pdf).expect("write");
    let text = String::from_utf8_lossy(&poppler("pdftotext", &[file.as_os_str(), "-".as_ref()]))
        .to_string();
    for needle in [
        "Shift report: g1",
        "Gate",
        "Dock, north",
        "Yard",
        "TOUR_MISSED",
        missed["id"].as_str().expect("id"),
        "PANIC",
        panic_id,
        "Intruder at the yard",
        "acknowledged by sup",
        "Fence cut behind the yard",
        "Incident photos",
        &format!("intrusion {incident_id}: photo 1"),
        &format!("intrusion {incident_id}: photo 2"),
    ] {
        assert!(
            text.contains(needle),
            "{needle:?} not in the PDF's text:\n{text}"
        );
    }
    let (w, h, pixels) = first_page(&file, dir.path(), &artifacts(), "shift-report-page1.png");
    assert_track_on_the_plan(w, h, &pixels);
    server.stop().await;
}

#[tokio::test]
async fn a_report_is_for_the_orgs_supervisors_and_the_guard_on_the_shift_only() {
    let server = server().await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let now = now_ms();
    let id = &shift(&server, &sup, now - 60_000, now + 60_000).await;
    let cases = [
        (server.token("sup", Some("acme"), &[Role::Supervisor]), 200),
        (server.token("root", None, &[Role::Admin]), 200),
        (server.token("g1", Some("acme"), &[Role::Guard]), 200),
        (server.token("g2", Some("acme"), &[Role::Guard]), 403),
        (
            server.token("sup", Some("globex"), &[Role::Supervisor]),
            403,
        ),
        (server.token("g1", Some("globex"), &[Role::Guard]), 403),
    ];
    for (token, expected) in &cases {
        for ext in ["pdf", "csv"] {
            let (status, _, _, body) =
                download(&server, &format!("/api/v1/shifts/{id}/report.{ext}"), token).await;
            assert_eq!(
                status,
                *expected,
                "{ext}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    // Deleting another org's shift is refused the same way.
    let globex = server.token("sup", Some("globex"), &[Role::Supervisor]);
    let refused = server
        .http()
        .delete(server.https(&format!("/api/v1/shifts/{id}")))
        .bearer_auth(&globex)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(refused.status(), 403);
    let (status, _, _, _) = download(&server, "/api/v1/shifts/nope/report.pdf", &sup).await;
    assert_eq!(status, 404);
    let anonymous = server
        .http()
        .get(server.https(&format!("/api/v1/shifts/{id}/report.csv")))
        .send()
        .await
        .expect("GET");
    assert_eq!(anonymous.status(), 401);
    // An empty shift still has a report: the header only, and a PDF without a track.
    let (_, _, _, csv) = download(&server, &format!("/api/v1/shifts/{id}/report.csv"), &sup).await;
    assert_eq!(parse_csv(&String::from_utf8(csv).expect("UTF-8")).len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_long_shift_is_cut_at_max_report_events_and_without_a_plan_the_track_is_on_a_grid() {
    let server = TestServer::start_with(|c| {
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
        c.patrol.max_report_events = 100;
    })
    .await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let now = now_ms();
    let id = shift(&server, &sup, now - 60_000, now + 60_000).await;
    let mut phone = server.connect(&guard).await;
    for i in 0..120 {
        let step = f64::from(i) * 0.00002;
        let r = phone
            .publish("/topic/location/g1", location(GATE.0 + step, GATE.1 + step))
            .await;
        assert!(ok(&r), "{r}");
    }
    post(&server, "/api/v1/alerts", &guard, json!({"type": "PANIC"})).await;

    // The alert first, the fixes fill the rest: 99 of 120, then a note naming the key.
    let (status, _, _, csv) =
        download(&server, &format!("/api/v1/shifts/{id}/report.csv"), &sup).await;
    assert_eq!(status, 200);
    let rows = parse_csv(&String::from_utf8(csv).expect("UTF-8"));
    let count = |kind: &str| rows.iter().filter(|r| r[1] == kind).count();
    assert_eq!((count("alert"), count("fix"), count("note")), (1, 99, 1));
    let note = rows.last().expect("note");
    assert!(
        note[1] == "note" && note[4].contains("patrol.max_report_events"),
        "{note:?}"
    );

    let dir = tempfile::tempdir().expect("tmp");
    let file = save_pdf(&server, &id, &sup, dir.path()).await;
    let text = String::from_utf8_lossy(&poppler("pdftotext", &[file.as_os_str(), "-".as_ref()]))
        .to_string();
    assert!(
        text.contains("patrol.max_report_events") && text.contains("99 of 99 fixes drawn"),
        "{text}"
    );
    let (_, _, pixels) = first_page(
        &file,
        dir.path(),
        &artifacts(),
        "shift-report-grid-page1.png",
    );
    let blue = pixels.chunks(3).filter(|px| near(px, track(), 50)).count();
    assert!(blue >= 30, "the track drawn on the grid: {blue} pixels");
    server.stop().await;
}

#[tokio::test]
async fn a_png_site_plan_is_drawn_under_the_track_too() {
    let server = server_with_plan(plan("png")).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let now = now_ms();
    let id = shift(&server, &sup, now - 60_000, now + 60_000).await;
    let mut phone = server.connect(&guard).await;
    for (lat, lon) in [GATE, DOCK, YARD] {
        let r = phone
            .publish("/topic/location/g1", location(lat, lon))
            .await;
        assert!(ok(&r), "{r}");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let file = save_pdf(&server, &id, &sup, dir.path()).await;
    let (w, h, pixels) = first_page(
        &file,
        dir.path(),
        &artifacts(),
        "shift-report-png-page1.png",
    );
    assert_track_on_the_plan(w, h, &pixels);
    server.stop().await;
}

/// A JPEG of about `kib` KiB: the plan fixture with padding segments (APP15) after its start,
/// as a camera's maker notes would be.
fn padded_jpeg(kib: usize) -> Vec<u8> {
    let jpeg = std::fs::read(plan("jpg")).expect("fixture");
    let mut out = jpeg[..2].to_vec();
    for _ in 0..kib.div_ceil(64) {
        out.extend_from_slice(&[0xFF, 0xEF, 0xFF, 0xFF]);
        out.extend(std::iter::repeat_n(0u8, 0xFFFF - 2));
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Files an incident with `photos` for `guard`; its id.
async fn incident(server: &TestServer, guard: &str, key: &str, photos: &[Vec<u8>]) -> String {
    let filed = post(
        server,
        "/api/v1/incidents",
        guard,
        json!({"category": "damage", "text": "Broken window", "key": key}),
    )
    .await;
    let id = filed["id"].as_str().expect("incident id").to_string();
    for (n, photo) in photos.iter().enumerate() {
        let response = server
            .http()
            .put(server.https(&format!("/api/v1/incidents/{id}/photos/{}", n + 1)))
            .bearer_auth(guard)
            .header("content-type", "image/jpeg")
            .body(photo.clone())
            .send()
            .await
            .expect("photo");
        assert_eq!(response.status(), 200, "photo {}", n + 1);
    }
    id
}

/// `patrol.max_report_photo_bytes` bounds the photos one report embeds: past it a photo is
/// named in the notes, not put in the PDF; another guard's report keeps its photo.
#[tokio::test]
async fn incident_photos_past_the_reports_photo_budget_are_named_not_embedded() {
    let server = TestServer::start_with(|c| c.patrol.max_report_photo_bytes = 1024 * 1024).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let now = now_ms();
    let ana = server.token("g1", Some("acme"), &[Role::Guard]);
    let ana_shift = shift(&server, &sup, now - 60_000, now + 3_600_000).await;
    let ben = server.token("g2", Some("acme"), &[Role::Guard]);
    let ben_shift = post(
        &server,
        "/api/v1/shifts",
        &sup,
        json!({"user": "g2", "site": "hq", "start": now - 60_000, "end": now + 3_600_000}),
    )
    .await["id"]
        .as_str()
        .expect("shift id")
        .to_string();
    // Two photos of 640 KiB: the second would take the report past 1 MiB.
    let big = padded_jpeg(640);
    let ana_incident = incident(&server, &ana, "incident-ana-01", &[big.clone(), big]).await;
    let ben_incident = incident(&server, &ben, "incident-ben-01", &[padded_jpeg(64)]).await;

    let dir = tempfile::tempdir().expect("tmp");
    let text_of = |pdf: PathBuf| {
        String::from_utf8_lossy(&poppler("pdftotext", &[pdf.as_os_str(), "-".as_ref()])).to_string()
    };
    let ana_text = text_of(save_pdf(&server, &ana_shift, &sup, dir.path()).await);
    assert!(
        ana_text.contains(&format!("damage {ana_incident}: photo 1"))
            && !ana_text.contains(&format!("damage {ana_incident}: photo 2")),
        "{ana_text}"
    );
    assert!(
        ana_text.contains("1 incident photos are not in this PDF")
            && ana_text.contains("patrol.max_report_photo_bytes"),
        "{ana_text}"
    );
    let ben_text = text_of(save_pdf(&server, &ben_shift, &sup, dir.path()).await);
    assert!(
        ben_text.contains(&format!("damage {ben_incident}: photo 1"))
            && !ben_text.contains("not in this PDF"),
        "{ben_text}"
    );
    server.stop().await;
}
