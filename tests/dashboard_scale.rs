//! The dashboard at a large site's scale, in headless Chromium (tests/node/dashboard_scale.mjs)
//! against `lookout demo --guards N`: a test binary of its own, so a thousand simulated guards
//! never run beside another browser test on a 2-core machine.

mod common;

use std::path::PathBuf;

use common::*;

/// `lookout demo --guards N` in headless Chromium (tests/node/dashboard_scale.mjs): a
/// thousand guards by default; `SCALE_GUARDS` runs the same at another size
/// (docs/performance.md's main-thread figures come from 12, 300 and 1000).
#[tokio::test]
async fn at_a_thousand_guards_a_supervisor_finds_selects_filters_and_zooms_without_colliding_labels(
) {
    let guards: usize = std::env::var("SCALE_GUARDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let n = guards.to_string();
    let demo = Binary::demo(
        &tmp.path().join("data"),
        "127.0.0.1:0",
        &["--guards", &n, "--panic-after", "3s"],
    );
    let link = demo.demo_link();
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    let mut node = NodeScript::run(
        "dashboard_scale.mjs",
        &[
            ("LOOKOUT_LINK", link),
            ("GUARDS", n.clone()),
            ("LOOKOUT_ARTIFACTS", artifacts.display().to_string()),
            ("CHROMIUM", chromium()),
        ],
    );
    let measured = node.event("measured").await;
    eprintln!("dashboard at {guards} guards: {measured}");
    assert_eq!(
        measured["guards"].as_u64(),
        Some(guards as u64),
        "{measured}"
    );
    assert_eq!(measured["labels"]["overlapping"], 0, "{measured}");
    if guards >= 100 {
        assert!(
            measured["site"]["clusters"].as_u64() > Some(0),
            "a crowd is clustered at the default zoom: {measured}"
        );
    }
    let selected = node.event("selected").await;
    assert!(
        selected["listed"].as_u64() >= Some(1),
        "the search finds it: {selected}"
    );
    let centred = &selected["centred"];
    assert!(
        centred["dx"].as_f64() < Some(1.0) && centred["dy"].as_f64() < Some(1.0),
        "the map centres on the selected guard: {selected}"
    );
    assert_eq!(centred["label"], selected["wanted"], "{selected}");
    assert_eq!(selected["labels"]["overlapping"], 0, "{selected}");
    let filtered = node.event("filtered").await;
    let violations = filtered["violations"].as_array().expect("list");
    assert!(
        !violations.is_empty(),
        "the demo's strays are in violation: {filtered}"
    );
    assert!(
        violations.iter().all(|v| v["flagged"] == true),
        "only guards in violation are listed: {filtered}"
    );
    let zoomed = node.event("zoomed").await;
    assert!(
        zoomed["zoomed"]["zoom"].as_f64() > centred["zoom"].as_f64(),
        "{zoomed}"
    );
    assert_eq!(zoomed["labels"]["overlapping"], 0, "{zoomed}");
    assert!(
        zoomed["zoomed"]["dx"].as_f64() < Some(1.0) && zoomed["zoomed"]["dy"].as_f64() < Some(1.0),
        "the map follows the selected guard as it walks: {zoomed}"
    );
    let done = node.event("done").await;
    node.finish().await;
    assert_eq!(done["problems"], serde_json::json!([]), "{done}");
    assert_screenshots(
        &artifacts,
        &format!("dashboard-scale-{guards}"),
        &["default", "selected", "zoomed"],
    );
    drop(demo);
}
