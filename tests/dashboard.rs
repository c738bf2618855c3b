//! The dashboard end to end, in real headless Chromium (tests/node/dashboard.mjs) against the
//! real `lookout demo`: guards move, a PANIC shows up and is acknowledged (checked over REST),
//! video renders, a server restart shows the offline banner and then goes live again without
//! duplicated alerts, and no request leaves the appliance. Screenshots: target/artifacts/.

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;

const DEMO: [&str; 4] = ["--guards", "4", "--panic-after", "2s"];

#[tokio::test]
async fn the_dashboard_shows_the_demo_site_live_and_survives_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let demo = Binary::demo(&data, "127.0.0.1:0", &DEMO);
    let link = demo.demo_link();
    let link_token = link.split("#link=").nth(1).expect("link token").to_string();
    let token = demo.token(
        "supervisor",
        Some("demo"),
        &[lookout::auth::Role::Supervisor],
    );
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
    eprintln!("dashboard: {moving}");
    assert_eq!(
        moving["version"],
        env!("CARGO_PKG_VERSION"),
        "the operations panel names the release: {moving}"
    );
    assert!(moving["guards"].as_u64() >= Some(4), "{moving}");
    assert!(moving["moved"].as_u64() >= Some(1), "guards move: {moving}");
    assert_eq!(moving["plan"], 1, "the demo's site plan is drawn: {moving}");
    assert!(
        !moving["url"].as_str().unwrap_or_default().contains("link="),
        "the link leaves the address bar: {moving}"
    );
    // The page exchanged the link: it is used up, and it never was a credential.
    let http = http_client(&demo.cert_pem());
    let again = http
        .post(format!("https://{addr}/api/v1/auth/link"))
        .json(&serde_json::json!({ "token": link_token }))
        .send()
        .await
        .expect("exchange");
    assert_eq!(again.status(), 401, "a sign-in link works once");
    let as_bearer = http
        .get(format!("https://{addr}/api/v1/alerts"))
        .bearer_auth(&link_token)
        .send()
        .await
        .expect("alerts");
    assert_eq!(
        as_bearer.status(),
        401,
        "a sign-in link is not a credential"
    );

    let panic = node.event("panic").await;
    let id = panic["id"].as_str().expect("alert id").to_string();
    let acked = node.event("acked").await;
    assert_eq!(acked["id"], id.as_str());
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
    eprintln!("dashboard: {back}");
    assert_eq!(back["panicRows"], 1, "the PANIC is listed once: {back}");
    assert_eq!(back["state"], "acknowledged", "{back}");
    assert!(back["movedAgain"].as_u64() >= Some(1), "live again: {back}");

    node.finish_clean().await;
    assert_screenshots(
        &artifacts,
        "dashboard",
        &["site", "panic", "video", "offline", "back"],
    );
    drop(demo);
}

#[tokio::test]
async fn dashboard_files_are_served_with_types_validators_and_a_strict_policy() {
    let server = TestServer::start().await;
    let http = server.http();
    for (path, content_type) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/lookout-client.js", "text/javascript"),
        ("/style.css", "text/css"),
        ("/favicon.svg", "image/svg+xml"),
        ("/vendor/msgpack/index.mjs", "text/javascript"),
    ] {
        let response = http.get(server.https(path)).send().await.expect("get");
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            header("content-type").starts_with(content_type),
            "{path}: {}",
            header("content-type")
        );
        let policy = header("content-security-policy");
        assert!(policy.contains("default-src 'self'"), "{path}: {policy}");
        assert!(
            policy.contains("script-src 'self'") && !policy.contains("unsafe"),
            "{policy}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("cache-control"), "no-cache");
        let etag = header("etag");
        assert!(etag.starts_with('"'), "{path}: {etag}");
        let again = http
            .get(server.https(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("get");
        assert_eq!(again.status(), 304, "{path} revalidates");
    }
    // Every module of the supervisor's tools (web/dashboard/) is served as it is, as
    // JavaScript under the same policy, and each says in its header what lives there.
    let modules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web/dashboard");
    let mut served = 0;
    for entry in std::fs::read_dir(&modules).expect("web/dashboard") {
        let file = entry.expect("entry").path();
        let name = file.file_name().and_then(|n| n.to_str()).expect("name");
        let source = std::fs::read_to_string(&file).expect("module");
        assert!(source.starts_with("// "), "{name} has no header comment");
        let response = http
            .get(server.https(&format!("/dashboard/{name}")))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 200, "{name}");
        let header = |h: &str| {
            response
                .headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            header("content-type").starts_with("text/javascript"),
            "{name}"
        );
        assert!(
            header("content-security-policy").contains("script-src 'self'"),
            "{name}"
        );
        assert!(response.text().await.expect("text") == source, "{name}");
        served += 1;
    }
    assert!(
        served >= 6,
        "dom, messages, alerts, fences, playback, guards"
    );
    // The client's package (web/lookout-client/) is served at the root: its code as it is in
    // the package, its npm files not at all, nor the package under its folder's name.
    let client = http
        .get(server.https("/lookout-client.js"))
        .send()
        .await
        .expect("get");
    let source = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web/lookout-client/lookout-client.js"),
    )
    .expect("web/lookout-client/lookout-client.js");
    assert!(client.text().await.expect("text") == source);
    // README images are not shipped; unknown paths are the API's 404.
    for path in [
        "/docs/dashboard.png",
        "/lookout-client/lookout-client.js",
        "/lookout-client/package.json",
        "/lookout-client/index.d.ts",
        "/lookout-client/README.md",
        "/lookout-client/vendor/msgpack/index.mjs",
    ] {
        let response = http.get(server.https(path)).send().await.expect("get");
        assert_eq!(response.status(), 404, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_simulator_walks_guards_over_real_connections() {
    let server = TestServer::start().await;
    let stop = tokio_util::sync::CancellationToken::new();
    let options = lookout::simulate::Options {
        url: server.url(),
        ca_pem: server.cert_pem.clone(),
        auth: server.state.auth.clone(),
        org: "acme".into(),
        guards: 3,
        panic_after: Some(std::time::Duration::ZERO),
        location_every: std::time::Duration::from_millis(100),
        frame_every: std::time::Duration::from_millis(100),
        site: lookout::simulate::Site::default(),
        codes: Vec::new(),
    };
    let running = tokio::spawn(lookout::simulate::run(options, stop.clone()));
    let sup = server.token("sup1", Some("acme"), &[lookout::auth::Role::Supervisor]);
    let http = server.http();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let (locations, alerts) = loop {
        let locations = get_json(&http, &server.https("/api/v1/locations"), &sup).await;
        let alerts = get_json(&http, &server.https("/api/v1/alerts"), &sup).await;
        let n = locations.as_array().map(Vec::len).unwrap_or(0);
        let panics = alerts
            .as_array()
            .map(|a| a.iter().filter(|a| a["type"] == "PANIC").count())
            .unwrap_or(0);
        if n == 3 && panics == 1 || tokio::time::Instant::now() > deadline {
            break (locations, alerts);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let users: Vec<&str> = locations
        .as_array()
        .expect("locations")
        .iter()
        .filter_map(|l| l["user"].as_str())
        .collect();
    assert_eq!(users.len(), 3, "{locations}");
    let panics: Vec<&Value> = alerts
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["type"] == "PANIC")
        .collect();
    assert_eq!(panics.len(), 1, "exactly one PANIC: {alerts}");
    assert_eq!(panics[0]["user"], "guard-01");
    stop.cancel();
    running.await.expect("join").expect("simulator");
    server.stop().await;
}

#[test]
fn token_link_prints_a_one_time_link_in_the_fragment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args([
            "token",
            "--sub",
            "sup",
            "--org",
            "demo",
            "--role",
            "supervisor",
        ])
        .args(["--link", "https://appliance:8443/", "--data-dir"])
        .arg(tmp.path().join("data"))
        .output()
        .expect("run");
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout);
    let token = line
        .trim()
        .strip_prefix("https://appliance:8443/#link=")
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
}

#[tokio::test]
async fn a_configured_site_plan_is_served_to_signed_in_users() {
    let plan = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web/demo/site-plan.svg");
    let bounds = [4.88, 52.37, 4.90, 52.38];
    let server = TestServer::start_with(|c| {
        c.dashboard.site_plan = Some(plan.clone());
        c.dashboard.site_plan_bounds = Some(bounds);
    })
    .await;
    let http = server.http();
    let sup = server.token("sup1", Some("acme"), &[lookout::auth::Role::Supervisor]);
    let site = get_json(&http, &server.https("/api/v1/site"), &sup).await;
    assert_eq!(site["plan"]["url"], "/api/v1/site/plan");
    assert_eq!(site["plan"]["bounds"], serde_json::json!(bounds));
    let image = http
        .get(server.https("/api/v1/site/plan"))
        .bearer_auth(&sup)
        .send()
        .await
        .expect("plan");
    assert_eq!(image.status(), 200);
    assert_eq!(
        image
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/svg+xml")
    );
    assert_eq!(
        image.bytes().await.expect("bytes").as_ref(),
        std::fs::read(&plan).expect("read").as_slice()
    );
    let anonymous = http
        .get(server.https("/api/v1/site/plan"))
        .send()
        .await
        .expect("plan");
    assert_eq!(anonymous.status(), 401);
    server.stop().await;

    let mut half = lookout::Config::default();
    half.dashboard.site_plan = Some(plan);
    let err = half.validate().expect_err("a plan without bounds");
    assert!(
        err.to_string().starts_with("dashboard.site_plan_bounds"),
        "{err}"
    );
}

#[tokio::test]
async fn the_guard_app_is_installable_and_its_worker_keeps_every_file_it_needs_offline() {
    let server = TestServer::start().await;
    let http = server.http();
    let get = |path: &str| http.get(server.https(path)).send();
    let page = get("/guard").await.expect("get");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("text");
    assert!(html.contains("/guard/manifest.webmanifest"), "{html}");
    let manifest = get("/guard/manifest.webmanifest").await.expect("get");
    assert!(manifest
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/manifest+json")));
    let manifest: Value = manifest.json().await.expect("manifest json");
    assert_eq!(manifest["start_url"], "/guard");
    assert_eq!(manifest["display"], "standalone");
    let worker = get("/guard/sw.js").await.expect("get");
    assert_eq!(
        worker
            .headers()
            .get("service-worker-allowed")
            .and_then(|v| v.to_str().ok()),
        Some("/guard"),
        "the worker may control /guard itself"
    );
    let source = worker.text().await.expect("text");
    let shell: Vec<&str> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("'/")?.strip_suffix("',"))
        .collect();
    assert!(shell.contains(&"guard") && shell.contains(&"lookout-client.js"));
    for path in &shell {
        let response = get(&format!("/{path}")).await.expect("get");
        assert_eq!(response.status(), 200, "/{path} is in the shell and served");
    }
    // Every module the client may import is kept: MessagePack is loaded lazily. The client's
    // package (web/lookout-client/) is served at the root.
    let vendor = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web/lookout-client");
    let mut stack = vec![vendor.join("vendor")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "mjs") {
                let rel = path
                    .strip_prefix(&vendor)
                    .expect("under web/lookout-client/");
                let rel = rel.to_string_lossy();
                assert!(
                    shell.contains(&&*rel),
                    "{rel} is missing from the worker's shell"
                );
            }
        }
    }
    server.stop().await;
}

/// The supervisor's workplace (tests/node/workplace.mjs) against `lookout demo`: a conversation
/// with a guard's phone kept in order over a reload and a restart; a fence typed in, moved and
/// deleted; a forbidden fence drawn on the plan, the guard put on shift and walked into it;
/// the alert acknowledged and resolved and its audit trail found in the alert log and its CSV;
/// the guard's last five minutes played back; the guard table sorted. Screenshots at 1366×768
/// (and a tablet's size): target/artifacts/workplace-*.png.
/// The guard app's QR decoder is jsQR exactly as npm publishes the version the tests pin: a
/// vendored copy that drifted (edited by hand, or left behind by an update) fails here.
#[test]
fn the_vendored_jsqr_is_the_pinned_npm_release_unchanged() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let package: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/node/package.json")).expect("package.json"),
    )
    .expect("package.json is JSON");
    let installed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/node/node_modules/jsqr/package.json"))
            .expect("jsqr installed: run `npm ci` in tests/node (tests/run.sh does)"),
    )
    .expect("jsqr's package.json is JSON");
    assert_eq!(package["dependencies"]["jsqr"], installed["version"]);
    let readme = std::fs::read_to_string(root.join("web/guard/vendor/README.md")).expect("README");
    let version = installed["version"].as_str().expect("jsqr's version");
    assert!(
        readme.contains(&format!("jsQR](https://github.com/cozmo/jsQR) {version}")),
        "web/guard/vendor/README.md names the vendored version {version}"
    );
    for (vendored, published) in [
        (
            "web/guard/vendor/jsqr/jsQR.js",
            "tests/node/node_modules/jsqr/dist/jsQR.js",
        ),
        (
            "web/guard/vendor/jsqr/LICENSE",
            "tests/node/node_modules/jsqr/LICENSE",
        ),
    ] {
        assert!(
            std::fs::read(root.join(vendored)).expect(vendored)
                == std::fs::read(root.join(published)).expect(published),
            "{vendored} differs from {published}"
        );
    }
}

#[tokio::test]
async fn the_supervisor_talks_with_a_guard_draws_a_fence_plans_a_shift_and_plays_back_a_track() {
    const GUARD: &str = "g-ana";
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let control = tmp.path().join("control");
    std::fs::create_dir_all(&control).expect("control dir");
    let demo = Binary::demo(&data, "127.0.0.1:0", &DEMO);
    let addr = demo.addr;
    let guard_link = format!(
        "https://{addr}/guard#link={}",
        demo.link(GUARD, "demo", lookout::auth::Role::Guard)
    );
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    let mut node = NodeScript::run(
        "workplace.mjs",
        &[
            ("LOOKOUT_LINK", demo.demo_link()),
            ("GUARD_LINK", guard_link),
            ("GUARD_ID", GUARD.to_string()),
            ("LOOKOUT_ARTIFACTS", artifacts.display().to_string()),
            ("LOOKOUT_CONTROL", control.display().to_string()),
            ("CHROMIUM", chromium()),
        ],
    );

    let talked = node.event("talked").await;
    let expected = &talked["expected"];
    assert_eq!(&talked["dashboard"], expected, "{talked}");
    assert_eq!(&talked["guard"], expected, "{talked}");
    let reloaded = node.event("reloaded").await;
    assert_eq!(
        &reloaded["dashboard"], expected,
        "after a reload: {reloaded}"
    );
    assert_eq!(&reloaded["guard"], expected, "after a reload: {reloaded}");
    node.event("restart-me").await;
    let mut demo = demo;
    demo.child.kill().expect("kill the demo");
    demo.child.wait().expect("reap");
    let demo = Binary::demo(&data, &addr.to_string(), &DEMO);
    std::fs::write(control.join("restarted"), b"").expect("control file");
    let restarted = node.event("restarted").await;
    assert_eq!(
        &restarted["dashboard"], expected,
        "after a restart: {restarted}"
    );
    assert_eq!(
        &restarted["guard"], expected,
        "after a restart: {restarted}"
    );

    let typed = node.event("typed-fence").await;
    let lon = typed["moved"][0].as_f64().expect("moved circle");
    assert!(
        (lon - typed["expectedLon"].as_f64().expect("lon")).abs() < 1e-6,
        "moved 5 m east: {typed}"
    );

    let report = node.event("shift-report").await;
    let name = report["name"].as_str().expect("file name");
    assert!(
        name.starts_with(&format!("shift-{GUARD}-20")) && name.ends_with(".pdf"),
        "the shift's PDF, saved under its name: {report}"
    );
    assert_eq!(report["head"], "%PDF-", "{report}");

    let fenced = node.event("fence-alert").await;
    assert_eq!(
        fenced["corners"].as_array().map(Vec::len),
        Some(4),
        "four corners clicked on the plan: {fenced}"
    );
    let id = fenced["id"].as_str().expect("alert id").to_string();
    let trail = node.event("trail").await;
    let actions: Vec<&str> = trail["trail"]
        .as_array()
        .expect("trail")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions.first(), Some(&"created"), "{trail}");
    assert!(
        actions.contains(&"acknowledged") && actions.last() == Some(&"resolved"),
        "{trail}"
    );
    let text = trail["trail"].to_string();
    assert!(
        text.contains("checking the bay") && text.contains("guard was sent there"),
        "the notes are in the trail: {trail}"
    );
    assert_eq!(
        trail["listed"],
        serde_json::json!([id]),
        "filtered to it: {trail}"
    );
    assert_eq!(trail["csvHasAlert"], true, "{trail}");

    let playback = node.event("playback").await;
    assert!(playback["points"].as_u64() >= Some(2), "{playback}");
    assert_ne!(playback["atStart"], playback["atEnd"], "{playback}");
    assert!(
        playback["events"].to_string().contains("GEOFENCE"),
        "the fence alert is along the way: {playback}"
    );
    let table = node.event("table").await;
    assert_eq!(table["hasGuard"], true, "{table}");
    assert!(table["rows"].as_u64() >= Some(5), "{table}");

    node.finish_clean().await;
    assert_screenshots(
        &artifacts,
        "workplace",
        &[
            "messages",
            "guard-messages",
            "fence-draft",
            "fences",
            "fence-alert",
            "alert-log",
            "playback",
            "playback-map",
            "guards",
            "tablet",
        ],
    );
    drop(demo);
}
