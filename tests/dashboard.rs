//! The dashboard end to end, in real headless Chromium (tests/node/dashboard.mjs) against the
//! real `lookout demo`: guards move, a PANIC shows up and is acknowledged (checked over REST),
//! video renders, a server restart shows the offline banner and then goes live again without
//! duplicated alerts, and no request leaves the appliance. Screenshots: target/artifacts/.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;

const DEMO: [&str; 4] = ["--guards", "4", "--panic-after", "2s"];

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

#[tokio::test]
async fn the_dashboard_shows_the_demo_site_live_and_survives_a_restart() {
    assert!(
        std::path::Path::new(&chromium()).exists(),
        "Chromium is missing: run `bash tests/run.sh` (it installs Debian's chromium) or set CHROMIUM"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let demo = Binary::demo(&data, "127.0.0.1:0", &DEMO);
    let link = demo
        .stdout_lines
        .iter()
        .find_map(|l| l.strip_prefix("dashboard: "))
        .expect("the demo prints the dashboard link")
        .to_string();
    let token = link
        .split("#token=")
        .nth(1)
        .expect("token in link")
        .to_string();
    let addr = demo.addr;
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    let mut node = NodeScript::run(
        "dashboard.mjs",
        &[
            ("LOOKOUT_LINK", link.clone()),
            ("LOOKOUT_ARTIFACTS", artifacts.display().to_string()),
            ("CHROMIUM", chromium()),
        ],
    );

    let moving = node.event("moving").await;
    assert!(moving["guards"].as_u64() >= Some(4), "{moving}");
    assert!(moving["moved"].as_u64() >= Some(1), "guards move: {moving}");
    assert!(
        !moving["url"]
            .as_str()
            .unwrap_or_default()
            .contains("token="),
        "the token leaves the address bar: {moving}"
    );

    let panic = node.event("panic").await;
    let id = panic["id"].as_str().expect("alert id").to_string();
    let acked = node.event("acked").await;
    assert_eq!(acked["id"], id.as_str());
    let http = http_client(&demo.cert_pem());
    let alert = get_json(&http, &format!("https://{addr}/api/v1/alerts/{id}"), &token).await;
    assert_eq!(alert["state"], "acknowledged", "{alert}");
    assert_eq!(alert["type"], "PANIC");
    let audit = alert["audit"].as_array().expect("audit");
    assert!(
        audit.iter().any(|e| e["action"] == "acknowledged"
            && e["by"] == "supervisor"
            && e["note"] == "on my way"),
        "{alert}"
    );

    let video = node.event("video").await;
    assert!(
        video["width"].as_u64() > Some(0) && video["height"].as_u64() > Some(0),
        "{video}"
    );
    assert!(video["fps"].as_u64() > Some(0), "{video}");

    node.event("restart-me").await;
    let mut demo = demo;
    demo.child.kill().expect("kill the demo");
    demo.child.wait().expect("reap");
    node.event("offline-banner").await;
    let demo = Binary::demo(&data, &addr.to_string(), &DEMO);
    let back = node.event("back").await;
    assert_eq!(back["panicRows"], 1, "the PANIC is listed once: {back}");
    assert_eq!(back["state"], "acknowledged", "{back}");
    assert!(back["movedAgain"].as_u64() >= Some(1), "live again: {back}");

    let done = node.event("done").await;
    node.finish().await;
    assert_eq!(
        done["foreign"],
        Value::Array(vec![]),
        "requests left the appliance: {done}"
    );
    assert_eq!(
        done["problems"],
        Value::Array(vec![]),
        "page errors or CSP violations: {done}"
    );
    for shot in ["site", "panic", "video", "offline", "back"] {
        let file = artifacts.join(format!("dashboard-{shot}.png"));
        assert!(
            file.metadata().map(|m| m.len() > 0).unwrap_or(false),
            "{}",
            file.display()
        );
    }
    drop(demo);
}
