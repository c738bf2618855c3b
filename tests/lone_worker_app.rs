//! Lone-worker safety end to end: the guard app (web/guard/welfare.js) in real headless
//! Chromium at a phone's viewport, next to a supervisor's dashboard at 1400x900, against a real
//! server over TLS (tests/node/lone_worker.mjs drives the browsers, one SCENARIO per test).
//! Check-ins with the pre-alarm, a missed check-in on the dashboard and across a kill -9 of the
//! binary; lost contact and its recovery; man-down on emulated motion sensors; the duress PIN.
//! Screenshots: target/artifacts/lone-worker-*.png.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

fn go_on(control: &Path, step: &str) {
    std::fs::write(control.join(step), b"").expect("control file");
}

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// The browsers of one scenario, driven by lone_worker.mjs.
struct Browsers {
    node: NodeScript,
    control: PathBuf,
    _dir: tempfile::TempDir,
}

impl Browsers {
    fn run(scenario: &str, origin: &str, tokens: &[(&str, String)]) -> Browsers {
        let dir = tempfile::tempdir().expect("tempdir");
        let control = dir.path().join("control");
        std::fs::create_dir_all(&control).expect("control dir");
        let mut env = vec![
            ("SCENARIO", scenario.to_string()),
            ("ORIGIN", origin.to_string()),
            ("LOOKOUT_ARTIFACTS", artifacts().display().to_string()),
            ("LOOKOUT_CONTROL", control.display().to_string()),
            ("CHROMIUM", chromium()),
        ];
        env.extend(tokens.iter().cloned());
        Browsers {
            node: NodeScript::run("lone_worker.mjs", &env),
            control,
            _dir: dir,
        }
    }

    async fn event(&mut self, name: &str) -> Value {
        self.node.event(name).await
    }

    fn go_on(&self, step: &str) {
        go_on(&self.control, step);
    }

    /// The script's end: no page error, no CSP refusal, no request off the appliance.
    async fn finish(self, screenshots: &[&str]) {
        self.node.finish_clean().await;
        assert_screenshots(&artifacts(), "lone-worker", screenshots);
    }
}

/// The alerts of `kind` a supervisor lists.
async fn alerts_of(http: &reqwest::Client, base: &str, sup: &str, kind: &str) -> Vec<Value> {
    let listed = get_json(http, &format!("{base}/api/v1/alerts?type={kind}"), sup).await;
    listed.as_array().cloned().unwrap_or_default()
}

/// Polls until `check` holds for an alert (by id), within `PATIENCE`.
async fn alert_when(
    http: &reqwest::Client,
    base: &str,
    sup: &str,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let started = std::time::Instant::now();
    loop {
        let alert = get_json(http, &format!("{base}/api/v1/alerts/{id}"), sup).await;
        if check(&alert) {
            return alert;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "alert {id} never {what}: {alert}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn number(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

// ---- 1. Check-ins ---------------------------------------------------------------------------

/// Check-ins every 5 s, pre-alarm 2 s before, 2 s of grace; escalation to level 2 after 2 s.
const CHECK_IN_ENV: [(&str, &str); 3] = [
    ("LOOKOUT_FIELD__CHECK_IN_MIN_INTERVAL", "1s"),
    ("LOOKOUT_ALERTS__LEVEL2_AFTER", "2s"),
    ("LOOKOUT_ALERTS__LEVEL3_AFTER", "10m"),
];
const GRACE_MS: u64 = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_answers_the_pre_alarm_and_a_missed_check_in_reaches_the_dashboard_once_even_across_kill_9(
) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let server = Binary::serve(&data, &CHECK_IN_ENV);
    let addr = server.addr.to_string();
    let base = format!("https://{addr}");
    let http = http_client(&server.cert_pem());
    let sup = server.token("sup-1", Some("acme"), &[Role::Supervisor]);
    let guard = server.token("g-1", Some("acme"), &[Role::Guard]);
    let settings = json!({
        "enabled": true, "interval_ms": 5000, "pre_alarm_ms": 2000, "grace_ms": GRACE_MS,
        "man_down": false,
    });
    let (status, body) = put_json(
        &http,
        &format!("{base}/api/v1/welfare/settings"),
        &sup,
        settings,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut browsers = Browsers::run(
        "check-in",
        &base,
        &[
            ("GUARD_TOKEN", guard.clone()),
            ("SUPERVISOR_TOKEN", sup.clone()),
        ],
    );

    let ready = browsers.event("ready").await;
    assert_eq!(ready["deadline"], Value::Null, "no check-in due: {ready}");
    // Lone work started on another of the guard's devices: the open page hears that its
    // deadline moved, and (its status reads unanswered) the pre-alarm comes from the server's
    // check_in_due on its welfare queue.
    let (status, started) = post_json(
        &http,
        &format!("{base}/api/v1/welfare/start"),
        &guard,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let first = number(&started["deadline"], "the first deadline");
    let pre = browsers.event("prealarm").await;
    assert_eq!(
        pre["deadline"], first,
        "the pre-alarm of that deadline: {pre}"
    );
    assert!(
        pre["statusAsksBefore"].as_u64() >= Some(1),
        "the notice that the deadline moved made the page ask for its status: {pre}"
    );
    assert_eq!(
        pre["statusAnswersBefore"], 0,
        "raised by the queue's message, not by a status answer: {pre}"
    );
    assert_eq!(pre["title"], "Are you OK?");
    assert_eq!(pre["role"], "alertdialog");
    assert_eq!(pre["sound"]["running"], true, "the audio plays: {pre}");
    assert!(
        pre["sound"]["audibleTones"].as_u64() >= Some(1),
        "a tone started on a running AudioContext: {pre}"
    );
    assert!(
        pre["sound"]["vibrations"].as_u64() >= Some(1),
        "it vibrates: {pre}"
    );

    let checked = browsers.event("checked-in").await;
    let second = number(&checked["second"], "the second deadline");
    assert!(second > first, "I'm OK moves the deadline on: {checked}");
    assert_eq!(checked["soundAfter"], "off", "{checked}");
    let status = get_json(
        &http,
        &format!("{base}/api/v1/welfare/status?user=g-1"),
        &sup,
    )
    .await;
    assert_eq!(
        status["deadline"], second,
        "the server's deadline: {status}"
    );

    // Not answered: CHECK_IN_MISSED at deadline + grace, on the dashboard.
    let missed = browsers.event("missed").await;
    let id = missed["alertId"]
        .as_str()
        .expect("the dashboard's alert id");
    assert_eq!(
        missed["missedAlert"], id,
        "the phone shows that alert: {missed}"
    );
    let alert = get_json(&http, &format!("{base}/api/v1/alerts/{id}"), &sup).await;
    assert_eq!(alert["type"], "CHECK_IN_MISSED", "{alert}");
    assert_eq!(alert["user"], "g-1");
    let created = number(&alert["created_at"], "created_at");
    let due = second + GRACE_MS;
    eprintln!(
        "lone worker: CHECK_IN_MISSED raised {} ms after deadline + grace",
        created.saturating_sub(due)
    );
    assert!(
        (due..=due + 1000).contains(&created),
        "raised within 1 s of the grace period's end: created {created}, due {due}"
    );
    assert_eq!(missed["imOkShown"], true, "I'm OK stays at hand: {missed}");
    assert!(
        missed["notice"]
            .as_str()
            .is_some_and(|t| t.contains("supervisors were alerted")),
        "{missed}"
    );
    let escalated = alert_when(&http, &base, &sup, id, "escalated", |a| a["level"] == 2).await;
    let at = escalated["audit"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["action"] == "escalated"))
        .and_then(|e| e["at"].as_u64())
        .expect("an escalation in the trail");
    assert!(
        at >= created + 2000,
        "escalated after alerts.level2_after: {escalated}"
    );

    // Checked in again, then Lookout is killed -9 during the countdown and stays down past
    // the deadline and its grace.
    browsers.go_on("kill-phase");
    let armed = browsers.event("armed").await;
    let third = number(&armed["deadline"], "the third deadline");
    let mut server = server;
    server.child.kill().expect("kill -9");
    server.child.wait().expect("reap");
    drop(server);
    browsers.go_on("killed");
    let local = browsers.event("local-prealarm").await;
    assert_ne!(local["conn"], "open", "the server is down: {local}");
    assert_eq!(
        local["deadline"], third,
        "the page's own timer raised it: {local}"
    );
    let back_at = third + GRACE_MS + 1000;
    tokio::time::sleep(Duration::from_millis(back_at.saturating_sub(now_ms()))).await;
    let data_dir = data.clone();
    let server =
        tokio::task::spawn_blocking(move || Binary::serve_at(&data_dir, &addr, &CHECK_IN_ENV))
            .await
            .expect("restart");
    browsers.go_on("restarted");
    let after = browsers.event("after-restart").await;
    let mut all = Vec::new();
    for _ in 0..100 {
        all = alerts_of(&http, &base, &sup, "CHECK_IN_MISSED").await;
        if all.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let late = all
        .iter()
        .find(|a| a["id"] != id)
        .unwrap_or_else(|| panic!("a second CHECK_IN_MISSED: {all:?}"));
    assert_eq!(
        after["missedAlert"], late["id"],
        "the phone shows it: {after}"
    );
    assert!(
        number(&late["created_at"], "created_at") >= third + GRACE_MS,
        "raised for the deadline the phone was shown, after its grace: {late}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = alerts_of(&http, &base, &sup, "CHECK_IN_MISSED").await;
    assert_eq!(all.len(), 2, "each miss raised once: {all:?}");
    browsers.go_on("counted");
    let listed = browsers.event("dashboard-counted").await;
    assert_eq!(listed["ids"].as_array().map(Vec::len), Some(2), "{listed}");
    browsers
        .finish(&["prealarm", "missed", "dashboard-missed", "offline-prealarm"])
        .await;
    drop(server);
}

// ---- 2. Lost contact ------------------------------------------------------------------------

#[tokio::test]
async fn a_guard_on_shift_whose_phone_loses_the_network_raises_lost_contact_and_it_resolves_when_back(
) {
    let server =
        TestServer::start_with(|c| c.field.lost_contact_after = Duration::from_secs(2)).await;
    let http = server.http();
    let base = server.https("");
    let sup = server.token("sup-1", Some("acme"), &[Role::Supervisor]);
    let guard = server.token("g-1", Some("acme"), &[Role::Guard]);
    let mut browsers = Browsers::run(
        "lost-contact",
        &base,
        &[("GUARD_TOKEN", guard), ("SUPERVISOR_TOKEN", sup.clone())],
    );
    browsers.event("online").await;
    // On shift from now (the phone online: it is never silent before the network goes).
    let now = now_ms();
    let shift = json!({"user": "g-1", "site": "hq", "start": now, "end": now + 600_000});
    let (status, body) = post_json(&http, &format!("{base}/api/v1/shifts"), &sup, shift).await;
    assert_eq!(status, 201, "{body}");
    let latest = get_json(&http, &format!("{base}/api/v1/locations"), &sup).await;
    assert!(
        latest
            .as_array()
            .is_some_and(|all| all.iter().any(|l| l["user"] == "g-1")),
        "the phone's fix is in: {latest}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        alerts_of(&http, &base, &sup, "LOST_CONTACT")
            .await
            .is_empty(),
        "connected: no alert"
    );

    browsers.go_on("cut");
    let cut = browsers.event("cut").await;
    let cut_at = number(&cut["at"], "cut at");
    let seen = browsers.event("dashboard-lost").await;
    assert_ne!(seen["conn"], "open", "{seen}");
    let lost = alerts_of(&http, &base, &sup, "LOST_CONTACT").await;
    assert_eq!(lost.len(), 1, "{lost:?}");
    let alert = &lost[0];
    assert_eq!(alert["id"], seen["id"], "the dashboard shows it: {seen}");
    assert_eq!(alert["user"], "g-1");
    assert_eq!(
        alert["position"]["lat"], 52.374,
        "the last position: {alert}"
    );
    assert_eq!(alert["position"]["lon"], 4.889, "{alert}");
    // Raised field.lost_contact_after (2 s) past the last contact the server noted, which is at
    // most one sweep (a quarter of it) and its write (another) before the cut.
    let created = number(&alert["created_at"], "created_at");
    assert!(
        created >= cut_at + 1000,
        "not before the limit: {alert}, cut at {cut_at}"
    );

    browsers.go_on("reconnect");
    browsers.event("back").await;
    browsers.event("dashboard-resolved").await;
    let id = alert["id"].as_str().expect("id");
    let resolved = alert_when(&http, &base, &sup, id, "resolved", |a| {
        a["state"] == "resolved"
    })
    .await;
    let last = resolved["audit"]
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["action"], "resolved", "{resolved}");
    assert_eq!(last["by"], "lookout", "{resolved}");
    assert_eq!(
        alerts_of(&http, &base, &sup, "LOST_CONTACT").await.len(),
        1,
        "raised once"
    );
    browsers.finish(&["dashboard-lost-contact"]).await;
    server.stop().await;
}

// ---- 3. Man-down ----------------------------------------------------------------------------

#[tokio::test]
async fn a_motionless_phone_counts_down_loudly_and_raises_man_down_unless_cancelled() {
    let server = TestServer::start().await;
    let http = server.http();
    let base = server.https("");
    let sup = server.token("sup-1", Some("acme"), &[Role::Supervisor]);
    let url = format!("{base}/api/v1/welfare/settings");
    let settings = json!({
        "enabled": false, "man_down": true, "man_down_after_ms": 3000,
        "man_down_countdown_ms": 6000,
    });
    let (status, body) = put_json(&http, &url, &sup, settings).await;
    assert_eq!(status, 200, "{body}");
    // g-3's own settings turn man-down off.
    let (status, body) = put_json(
        &http,
        &format!("{url}?user=g-3"),
        &sup,
        json!({"man_down": false}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = |user: &str| server.token(user, Some("acme"), &[Role::Guard]);
    let mut browsers = Browsers::run(
        "man-down",
        &base,
        &[
            ("GUARD_TOKEN", token("g-1")),
            ("GUARD2_TOKEN", token("g-2")),
            ("GUARD3_TOKEN", token("g-3")),
            ("SUPERVISOR_TOKEN", sup.clone()),
        ],
    );

    let cancelled = browsers.event("cancelled").await;
    assert_eq!(
        cancelled["hiddenWhileMoving"], true,
        "no countdown while the phone moves: {cancelled}"
    );
    assert_eq!(cancelled["role"], "alertdialog");
    let counts: Vec<u64> = cancelled["counts"]
        .as_array()
        .expect("the seconds shown")
        .iter()
        .filter_map(|c| c.as_str().and_then(|c| c.parse().ok()))
        .collect();
    assert_eq!(
        counts.first(),
        Some(&6),
        "counts down man_down_countdown_ms from its start: {cancelled}"
    );
    assert!(
        counts.windows(2).all(|w| w[1] < w[0]),
        "down, second by second: {cancelled}"
    );
    let sounding = &cancelled["sounding"];
    assert_eq!(sounding["running"], true, "the audio plays: {cancelled}");
    assert!(sounding["audibleTones"].as_u64() >= Some(1), "{cancelled}");
    assert!(sounding["vibrations"].as_u64() >= Some(1), "{cancelled}");
    assert_eq!(cancelled["soundAfter"], "off", "{cancelled}");
    assert_eq!(
        cancelled["tonesAfterCancel"], 0,
        "silent once cancelled: {cancelled}"
    );
    assert_eq!(
        cancelled["lastVibration"], 0,
        "the vibration stopped: {cancelled}"
    );
    assert_eq!(cancelled["alertShown"], false, "{cancelled}");

    let raised = browsers.event("man-down").await;
    let id = raised["id"].as_str().expect("the alert's id on the phone");
    assert_eq!(raised["dashboardId"], id, "on the dashboard: {raised}");
    assert_eq!(raised["overlayHidden"], true, "{raised}");
    assert!(
        raised["text"]
            .as_str()
            .is_some_and(|t| t.contains("MAN_DOWN")),
        "shown like a PANIC's state: {raised}"
    );
    let all = alerts_of(&http, &base, &sup, "MAN_DOWN").await;
    assert_eq!(
        all.len(),
        1,
        "the cancelled countdown raised nothing: {all:?}"
    );
    let alert = &all[0];
    assert_eq!(alert["id"], id);
    assert_eq!(alert["user"], "g-1");
    assert_eq!(alert["priority"], "CRITICAL");
    assert_eq!(
        alert["position"]["lat"], 52.374,
        "the last position: {alert}"
    );
    assert_eq!(alert["position"]["lon"], 4.889, "{alert}");

    let bare = browsers.event("no-sensor").await;
    let expected = "This phone reports no motion sensor: man-down is off. Check-ins still run.";
    assert_eq!(bare["text"], expected, "sensors unavailable: {bare}");
    assert_eq!(bare["noApiText"], expected, "no motion API: {bare}");
    assert_eq!(
        bare["accelerometerOnlyText"], "Man-down watch on: keep this page open.",
        "the Generic Sensor API's Accelerometer alone: {bare}"
    );
    assert_eq!(bare["offText"], "Man-down is off for you.", "{bare}");
    browsers
        .finish(&["mandown", "mandown-sent", "no-sensor"])
        .await;
    server.stop().await;
}

// ---- 4. Duress ------------------------------------------------------------------------------

#[tokio::test]
async fn the_duress_pin_shows_the_normal_screen_and_only_supervisors_hear_of_it() {
    // Escalation within the test, so that its level-3 notice would show if it leaked.
    let server = TestServer::start_with(|c| {
        c.alerts.level2_after = Duration::from_millis(300);
        c.alerts.level3_after = Duration::from_millis(600);
    })
    .await;
    let http = server.http();
    let base = server.https("");
    let sup = server.token("sup-1", Some("acme"), &[Role::Supervisor]);
    let guard = server.token("g-1", Some("acme"), &[Role::Guard]);
    let mut browsers = Browsers::run(
        "duress",
        &base,
        &[
            ("GUARD_TOKEN", guard.clone()),
            ("SUPERVISOR_TOKEN", sup.clone()),
        ],
    );

    let ended = browsers.event("ended").await;
    assert_eq!(
        ended["same"], true,
        "the PIN and the duress PIN end lone work with the same DOM and text: {ended}"
    );
    assert_eq!(ended["sameCard"], true, "and the same pixels: {ended}");
    assert!(
        ended["real"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Lone work ended.")),
        "{ended}"
    );
    let seen = browsers.event("dashboard-duress").await;
    let duress = alerts_of(&http, &base, &sup, "DURESS").await;
    assert_eq!(duress.len(), 1, "the duress PIN, once: {duress:?}");
    assert_eq!(duress[0]["id"], seen["id"], "on the dashboard: {seen}");
    assert_eq!(duress[0]["user"], "g-1");
    assert_eq!(duress[0]["priority"], "CRITICAL");

    // Man-down within 5 s of stillness for g-1, a countdown of 10 s: cancelled with the PIN,
    // then with the duress PIN.
    let settings = json!({
        "enabled": false, "man_down": true, "man_down_after_ms": 5000,
        "man_down_countdown_ms": 10_000,
    });
    let (status, body) = put_json(
        &http,
        &format!("{base}/api/v1/welfare/settings?user=g-1"),
        &sup,
        settings,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    browsers.go_on("man-down-settings");
    let cancelled = browsers.event("cancelled").await;
    assert_eq!(
        cancelled["same"], true,
        "the PIN and the duress PIN cancel a countdown with the same DOM and text: {cancelled}"
    );
    assert_eq!(cancelled["sound"], json!(["off", "off"]), "{cancelled}");
    assert_eq!(cancelled["dashboardRows"], 2, "{cancelled}");
    let duress = alerts_of(&http, &base, &sup, "DURESS").await;
    assert_eq!(duress.len(), 2, "each duress PIN raised DURESS: {duress:?}");
    assert!(
        alerts_of(&http, &base, &sup, "MAN_DOWN").await.is_empty(),
        "both countdowns were cancelled"
    );
    for alert in &duress {
        let id = alert["id"].as_str().expect("id");
        alert_when(&http, &base, &sup, id, "reached level 3", |a| {
            a["level"] == 3
        })
        .await;
    }
    browsers.go_on("escalated");

    let frames = browsers.event("frames").await;
    assert!(frames["count"].as_u64() > Some(0), "{frames}");
    assert_eq!(
        frames["mentions"],
        json!([]),
        "the phone's connection heard of it: {frames}"
    );
    assert_eq!(frames["page"], false, "{frames}");
    // Nor is anything kept for the guard, nor listed to it.
    let mine = get_json(&http, &format!("{base}/api/v1/alerts"), &guard).await;
    assert!(
        !mine.to_string().contains("DURESS"),
        "the guard's listing: {mine}"
    );
    for queue in ["/user/queue/alerts", "/user/queue/welfare"] {
        let history = get_json(
            &http,
            &format!("{base}/api/v1/channels/history?channel={queue}&limit=1000"),
            &guard,
        )
        .await;
        assert!(
            history["messages"].is_array(),
            "{queue}: a page of the log: {history}"
        );
        assert!(
            !history.to_string().to_lowercase().contains("duress"),
            "{queue}: {history}"
        );
    }
    browsers
        .finish(&[
            "pin-setup",
            "ended-with-pin",
            "ended-with-duress-pin",
            "dashboard-duress",
            "cancelled-with-duress-pin",
        ])
        .await;
    server.stop().await;
}
