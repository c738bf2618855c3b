//! Operating the appliance: the systemd unit, readiness and watchdog notifications.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_systemd_unit_verifies() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    assert!(
        analyze.exists(),
        "systemd-analyze is missing: run `bash tests/run.sh` (it installs Debian's systemd)"
    );
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/lookout.service"),
    )
    .expect("unit");
    // verify checks that ExecStart exists: point it at the binary under test.
    assert!(unit.contains("ExecStart=/usr/bin/lookout serve --config /etc/lookout/lookout.toml\n"));
    let unit = unit.replace("/usr/bin/lookout", env!("CARGO_BIN_EXE_lookout"));
    for directive in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "User=lookout",
        "StateDirectory=lookout",
        "ConfigurationDirectory=lookout",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "ExecReload=",
    ] {
        assert!(unit.contains(directive), "the unit sets {directive}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lookout.service");
    std::fs::write(&path, unit).expect("write unit");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {said}"
    );
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify warned: {said}"
    );
}

/// The system calls a `SystemCallFilter=` item names: a group (`@resources`, expanded with
/// `systemd-analyze syscall-filter`, nested groups included) or one call.
fn syscalls_named(item: &str) -> std::collections::BTreeSet<String> {
    if !item.starts_with('@') {
        return [item.to_string()].into();
    }
    let out = Command::new("/usr/bin/systemd-analyze")
        .args(["syscall-filter", item])
        .output()
        .expect("run systemd-analyze syscall-filter");
    assert!(out.status.success(), "systemd-analyze knows {item}");
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut calls = std::collections::BTreeSet::new();
    for line in listed.lines().skip(1) {
        let name = line.trim();
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        calls.extend(syscalls_named(name));
    }
    calls
}

/// The calls the unit's `SystemCallFilter=` lines allow, merged as systemd merges them: the
/// first line is an allow list, each later one adds (or, with `~`, removes) its calls.
fn allowed_by(unit: &str) -> std::collections::BTreeSet<String> {
    let mut allowed = std::collections::BTreeSet::new();
    for (n, value) in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
        .enumerate()
    {
        let (remove, items) = match value.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        assert!(
            n > 0 || !remove,
            "the unit's filter starts with an allow list"
        );
        for item in items.split_whitespace() {
            for call in syscalls_named(item) {
                if remove {
                    allowed.remove(&call);
                } else {
                    allowed.insert(call);
                }
            }
        }
    }
    allowed
}

/// Under the unit, Lookout may make every call it makes: the position lane lowers its threads'
/// priority with `setpriority` (in `@resources`, which the unit denies otherwise), and the
/// certificate lists the host's addresses over netlink.
#[test]
fn the_units_sandbox_allows_what_lookout_does_and_denies_the_rest() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/lookout.service"),
    )
    .expect("unit");
    let allowed = allowed_by(&unit);
    assert!(allowed.contains("setpriority"), "the position lane's nice");
    for denied in [
        "setrlimit",
        "sched_setattr",
        "reboot",
        "init_module",
        "settimeofday",
    ] {
        assert!(!allowed.contains(denied), "{denied} stays denied");
    }
    for basic in ["epoll_wait", "accept4", "sendmsg", "fdatasync", "clone3"] {
        assert!(allowed.contains(basic), "{basic} is allowed");
    }
    assert!(
        unit.contains("SystemCallErrorNumber=EPERM"),
        "a denied call fails instead of killing the service"
    );
    let families = unit
        .lines()
        .find_map(|l| l.strip_prefix("RestrictAddressFamilies="))
        .expect("RestrictAddressFamilies");
    for family in ["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"] {
        assert!(
            families.split_whitespace().any(|f| f == family),
            "{family} is allowed"
        );
    }
}

/// Asks `child` to stop, as systemd does.
fn sigterm(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Datagrams received on `socket` until `want` returns true for the whole list, or PATIENCE.
fn notifications(socket: &UnixDatagram, want: impl Fn(&[String]) -> bool) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + common::PATIENCE;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !want(&got) {
        if let Ok(n) = socket.recv(&mut buf) {
            got.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    got
}

#[test]
fn readiness_watchdog_and_stopping_are_notified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the fake NOTIFY_SOCKET");
    // WATCHDOG_PID must be the server's own pid: exec keeps the shell's.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" serve --listen 127.0.0.1:0 --data-dir "$1""#)
        .arg(env!("CARGO_BIN_EXE_lookout"))
        .arg(dir.path().join("data"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let got = notifications(&socket, |got| {
        got.iter().any(|l| l == "READY=1") && got.iter().filter(|l| *l == "WATCHDOG=1").count() >= 2
    });
    let ready = got.iter().position(|l| l == "READY=1");
    let first_watchdog = got.iter().position(|l| l == "WATCHDOG=1");
    assert!(ready.is_some(), "READY=1 was sent: {got:?}");
    assert!(
        got.iter()
            .any(|l| l.starts_with("STATUS=listening on 127.0.0.1:")),
        "{got:?}"
    );
    assert!(
        got.iter().filter(|l| *l == "WATCHDOG=1").count() >= 2,
        "the watchdog is fed (every 200 ms for WATCHDOG_USEC=400000): {got:?}"
    );
    assert!(ready < first_watchdog, "{got:?}");

    sigterm(&child);
    let got = notifications(&socket, |got| got.iter().any(|l| l == "STOPPING=1"));
    assert!(got.iter().any(|l| l == "STOPPING=1"), "{got:?}");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn metrics_count_a_scripted_session() {
    use common::*;
    use lookout::auth::Role;
    use serde_json::json;
    const ROOM: &str = "/topic/org/acme/room/ops";
    let server = TestServer::start_with(|c| {
        c.limits.messages_per_second = 1;
        c.limits.message_burst = 20;
    })
    .await;
    let before = scrape(&server).await;
    let delta = |after: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]| {
        value(after, name, labels) - value(&before, name, labels)
    };

    let mut sup = server
        .connect(&server.token("sup1", Some("acme"), &[Role::Supervisor]))
        .await;
    assert!(ok(&sup.subscribe(ROOM).await));
    let mut guard = server
        .connect_as(
            &server.token("guard1", Some("acme"), &[Role::Guard]),
            Some("lookout.msgpack"),
        )
        .await
        .expect("msgpack");
    let _stomp = StompClient::connect(
        &server,
        &server.token("sup2", Some("acme"), &[Role::Supervisor]),
    )
    .await;
    for i in 0..5 {
        assert!(ok(&guard.publish(ROOM, json!({ "i": i })).await));
    }
    for _ in 0..2 {
        let refused = server.connect_as("not-a-token", None).await;
        assert!(refused.is_err());
    }
    // A fast sender: the burst goes through, the rest is refused; count what the client saw.
    let mut spammer = server
        .connect(&server.token("spam", Some("acme"), &[Role::Supervisor]))
        .await;
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..30 {
        let reply = spammer.publish(ROOM, json!({ "spam": i })).await;
        if ok(&reply) {
            accepted += 1;
        } else {
            assert_eq!(error_code(&reply), "rate_limited", "{reply}");
            refused += 1;
        }
    }
    assert!(refused > 0, "the limit was reached");
    let published = 5 + accepted;
    let alert = guard
        .publish("/topic/emergency/guard1", json!({"type": "PANIC"}))
        .await;
    assert!(ok(&alert), "{alert}");
    // Let the deliveries to the subscriber be counted.
    let mut seen = 0;
    while seen < published {
        let m = sup.next_message().await;
        if m["channel"] == ROOM {
            seen += 1;
        }
    }

    let after = scrape(&server).await;
    let gauge = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels);
    assert_eq!(
        gauge("lookout_connections", &[("protocol", "lookout.json")]),
        2.0
    );
    assert_eq!(
        gauge("lookout_connections", &[("protocol", "lookout.msgpack")]),
        1.0
    );
    assert_eq!(gauge("lookout_connections", &[("protocol", "stomp")]), 1.0);
    assert_eq!(
        delta(&after, "lookout_connections_accepted_total", &[]),
        4.0
    );
    assert_eq!(gauge("lookout_subscriptions", &[]), 1.0);
    let room = [("kind", "room")];
    assert_eq!(
        delta(&after, "lookout_messages_published_total", &room),
        f64::from(published)
    );
    assert_eq!(
        delta(&after, "lookout_messages_delivered_total", &room),
        f64::from(published)
    );
    assert_eq!(
        delta(
            &after,
            "lookout_messages_published_total",
            &[("kind", "emergency")]
        ),
        1.0
    );
    assert_eq!(delta(&after, "lookout_auth_failures_total", &[]), 2.0);
    assert_eq!(
        delta(&after, "lookout_rate_limited_total", &[]),
        f64::from(refused)
    );
    assert_eq!(
        delta(
            &after,
            "lookout_deliveries_dropped_total",
            &[("reason", "queue_full")]
        ),
        0.0
    );
    assert_eq!(
        delta(
            &after,
            "lookout_alerts",
            &[("state", "open"), ("level", "1")]
        ),
        1.0
    );
    // Every logged publish is timed (room messages, the emergency and the alert it raised).
    assert!(
        delta(&after, "lookout_publish_latency_seconds", &[]) >= f64::from(published + 1),
        "publish latency observations"
    );
    assert!(delta(&after, "lookout_flush_latency_seconds", &[]) >= 1.0);
    assert!(gauge("lookout_store_size_bytes", &[]) > 0.0);
    let ready = server
        .http()
        .get(server.https("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    server.stop().await;
}

/// A self-signed certificate for localhost/127.0.0.1 written to `dir/{name}.pem` and
/// `dir/{name}.key`, returned as PEM.
fn self_signed(cert: &Path, key: &Path) -> Vec<u8> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("generate");
    std::fs::write(key, certified.key_pair.serialize_pem()).expect("key");
    let pem = certified.cert.pem().into_bytes();
    std::fs::write(cert, &pem).expect("cert");
    pem
}

async fn connect_with_origin(
    cert_pem: &[u8],
    addr: std::net::SocketAddr,
    token: &str,
    origin: &str,
) -> Result<common::Client, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("wss://{addr}/ws").into_client_request()?;
    let headers = req.headers_mut();
    headers.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    headers.insert("origin", origin.parse().expect("header"));
    common::connect_request(cert_pem, req, false).await
}

#[tokio::test]
async fn sighup_reloads_certificate_and_origins_without_dropping_connections() {
    use common::*;
    use lookout::auth::Role;
    use serde_json::json;
    const ROOM: &str = "/topic/org/acme/room/ops";
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("site.pem"), dir.path().join("site.key"));
    let config = dir.path().join("lookout.toml");
    let write_config = |origin: &str, per_user: u32| {
        let toml = format!(
            "allowed_origins = [\"{origin}\"]\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n\
             [limits]\nmax_connections_per_user = {per_user}\n",
            cert.display(),
            key.display()
        );
        std::fs::write(&config, toml).expect("config");
    };
    let old_pem = self_signed(&cert, &key);
    write_config("https://old.example", 5);
    let config_arg = config.display().to_string();
    let server = Binary::spawn(
        &["serve", "--listen", "127.0.0.1:0", "--config", &config_arg],
        &dir.path().join("data"),
        &[],
    );
    let addr = server.addr;
    let token = server.token("sup1", Some("acme"), &[Role::Supervisor]);
    let mut before = connect_with_origin(&old_pem, addr, &token, "https://old.example")
        .await
        .expect("the old origin is allowed");
    assert!(ok(&before.subscribe(ROOM).await));

    let new_pem = self_signed(&cert, &key);
    write_config("https://new.example", 2);
    server.signal("HUP");

    // New connections get the new certificate (a client trusting only it gets through) …
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut after = loop {
        match connect_with_origin(&new_pem, addr, &token, "https://new.example").await {
            Ok(client) => break client,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never reloaded: {e}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    // … the old certificate and the old origin are refused …
    assert!(
        connect_with_origin(&old_pem, addr, &token, "https://new.example")
            .await
            .is_err()
    );
    let refused = connect_with_origin(&new_pem, addr, &token, "https://old.example").await;
    assert_eq!(refusal(refused.err().expect("refused")).0, 403);
    // … and the new limits hold: sup1 has 2 connections, the new maximum.
    let third = connect_with_origin(&new_pem, addr, &token, "https://new.example").await;
    assert_eq!(refusal(third.err().expect("refused")).0, 429);
    // … and the connection opened before the reload is still there and still served.
    let published = after.publish(ROOM, json!({"after": "reload"})).await;
    assert!(ok(&published), "{published}");
    let got = before.next_message().await;
    assert_eq!(got["data"]["after"], "reload");
    assert_eq!(got["seq"], published["seq"]);
}

#[test]
fn check_config_lists_every_problem_with_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("lookout.toml");
    std::fs::write(
        &file,
        "[limits]\nmax_connections = 0\nmessage_burst = 0\n\
         [alerts]\nlevel2_after = \"10m\"\nlevel3_after = \"5m\"\n\
         [dashboard]\nsite_plan = \"plan.svg\"\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("check-config")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "limits.max_connections:",
        "limits.message_burst:",
        "alerts.level3_after:",
        "dashboard.site_plan_bounds:",
    ] {
        assert!(stderr.contains(key), "{key} is named: {stderr}");
    }
    assert!(stderr.contains("4 problem(s)"), "{stderr}");
}

#[tokio::test]
async fn json_logs_never_carry_tokens_or_message_bodies() {
    use common::*;
    use lookout::auth::Role;
    use serde_json::json;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("stderr.log");
    let mut server = Binary::spawn_logging_to(
        &["serve", "--listen", "127.0.0.1:0", "--log-format", "json"],
        &dir.path().join("data"),
        &[("RUST_LOG", "info")],
        Stdio::from(std::fs::File::create(&log).expect("log file")),
    );
    let addr = server.addr;
    let token = server.token("sup1", Some("acme"), &[Role::Supervisor]);
    let cert = server.cert_pem();
    let mut client = connect_with_token(&cert, addr, &token, None)
        .await
        .expect("connect");
    let secret = "SECRET-BODY-7d1f";
    let reply = client
        .publish("/topic/org/acme/room/ops", json!({ "text": secret }))
        .await;
    assert!(ok(&reply), "{reply}");
    let _ = get_json(
        &http_client(&cert),
        &format!("https://{addr}/api/v1/alerts"),
        &token,
    )
    .await;
    assert!(connect_with_token(&cert, addr, "not-a-token", None)
        .await
        .is_err());
    drop(client);
    server.signal("TERM");
    assert!(server.child.wait().expect("wait").success());

    let text = std::fs::read_to_string(&log).expect("log");
    let records: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        records
            .iter()
            .any(|r| r["fields"]["message"] == "connected"),
        "connections are logged: {text}"
    );
    assert!(records.iter().all(|r| r["level"].is_string()), "{text}");
    assert!(!text.contains(&token), "a token reached the log");
    assert!(!text.contains(secret), "a message body reached the log");
}

#[tokio::test]
async fn metrics_are_for_the_configured_scraper_admins_and_supervisors_only() {
    use common::{TestServer, METRICS_TOKEN};
    let server = TestServer::start().await;
    let http = server.http();
    let scrape = |token: Option<String>| {
        let mut request = http.get(server.https("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.expect("scrape").status().as_u16() }
    };
    assert_eq!(scrape(None).await, 401, "a LAN neighbour");
    assert_eq!(scrape(Some("a-guess".into())).await, 401);
    assert_eq!(
        scrape(Some(server.token(
            "g1",
            Some("acme"),
            &[lookout::auth::Role::Guard]
        )))
        .await,
        403,
        "a guard"
    );
    assert_eq!(scrape(Some(METRICS_TOKEN.into())).await, 200);
    for role in [lookout::auth::Role::Supervisor, lookout::auth::Role::Admin] {
        let token = server.token("boss", Some("acme"), &[role]);
        assert_eq!(scrape(Some(token)).await, 200, "{role:?}");
    }
    server.stop().await;
}

/// `lookout --version`, `/metrics` and the stats the dashboard shows name the same release
/// (the dashboard's own display: tests/dashboard.rs).
#[tokio::test]
async fn the_version_is_the_same_everywhere_it_is_shown() {
    use common::{TestServer, METRICS_TOKEN};
    let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .arg("--version")
        .output()
        .expect("lookout --version");
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let version = said.strip_prefix("lookout ").expect("`lookout X.Y.Z`");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let server = TestServer::start().await;
    let http = server.http();
    let metrics = http
        .get(server.https("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains(&format!("lookout_build_info{{version=\"{version}\"}} 1")),
        "{metrics}"
    );
    let supervisor = server.token("boss", Some("acme"), &[lookout::auth::Role::Supervisor]);
    let stats =
        common::get_json(&http, &server.https("/api/v1/websocket/stats"), &supervisor).await;
    assert_eq!(stats["version"], version, "{stats}");
    server.stop().await;
}

/// A reload changes one key of every section: it reports exactly which apply now and which
/// wait for a restart, and the ones it applies hold for new connections, the handshake
/// deadline among them (it used to be read once, at start).
#[tokio::test]
async fn a_reload_reports_what_applies_now_and_what_needs_a_restart_for_every_section() {
    use common::*;
    use lookout::auth::Role;
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("lookout.toml");
    let plan = dir.path().join("plan.svg");
    std::fs::write(&plan, "<svg xmlns=\"http://www.w3.org/2000/svg\"/>").expect("plan");
    let base = "allowed_origins = [\"https://old.example\"]\n";
    std::fs::write(&config, base).expect("config");
    let log = dir.path().join("stderr.log");
    let config_arg = config.display().to_string();
    let server = Binary::spawn_logging_to(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            &config_arg,
            "--log-format",
            "json",
        ],
        &dir.path().join("data"),
        &[("RUST_LOG", "info")],
        Stdio::from(std::fs::File::create(&log).expect("log file")),
    );
    let addr = server.addr;
    let cert = server.cert_pem();
    let token = server.token("sup1", Some("acme"), &[Role::Supervisor]);

    // One key of each section.
    let changed = format!(
        "allowed_origins = [\"https://new.example\"]\n\
         [tls]\nnames = [\"lookout.site.lan\"]\n\
         [jwt]\nleeway = \"45s\"\n\
         [limits]\nmax_connections_per_user = 2\nhandshake_timeout = \"2s\"\n\
         [retention]\ninterval = \"2m\"\n\
         [store]\ncache_capacity = 33554432\n\
         [cluster]\nnode_id = \"node-b\"\n\
         [field]\nmax_clock_skew = \"3m\"\n\
         [alerts]\nlevel2_after = \"6m\"\n\
         [dashboard]\nsite_plan = \"{}\"\nsite_plan_bounds = [0.0, 0.0, 1.0, 1.0]\n\
         [metrics]\ntoken = \"a-scraper-token-of-at-least-32-bytes\"\n\
         [notify]\nmax_outbox = 5000\n\
         [amqp]\nprefetch = 32\n\
         [testing]\necho_endpoint = true\n",
        plan.display()
    );
    std::fs::write(&config, changed).expect("config");
    server.signal("HUP");

    let deadline = tokio::time::Instant::now() + PATIENCE;
    let reloaded = loop {
        let text = std::fs::read_to_string(&log).expect("log");
        let record = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| r["fields"]["message"] == "configuration reloaded");
        if let Some(record) = record {
            break record;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload reported: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let keys = |field: &str| -> Vec<String> {
        let listed = reloaded["fields"][field].as_str().unwrap_or_default();
        listed
            .trim_matches(|c| c == '[' || c == ']')
            .split(", ")
            .filter(|k| !k.is_empty())
            .map(|k| k.trim_matches('"').to_string())
            .collect()
    };
    let mut applied = keys("applied");
    applied.sort();
    assert_eq!(
        applied,
        [
            "allowed_origins",
            "limits.handshake_timeout",
            "limits.max_connections_per_user",
            "tls.names"
        ],
        "{reloaded}"
    );
    let mut restart = keys("restart");
    restart.sort();
    assert_eq!(
        restart,
        [
            "alerts.level2_after",
            "amqp.prefetch",
            "cluster.node_id",
            "dashboard.site_plan",
            "dashboard.site_plan_bounds",
            "field.max_clock_skew",
            "jwt.leeway",
            "limits.handshake_timeout (Socket.IO)",
            "metrics.token",
            "notify.max_outbox",
            "retention.interval",
            "store.cache_capacity",
            "testing.echo_endpoint",
        ],
        "{reloaded}"
    );

    // What applies, holds: the new origin and the new per-user bound …
    let origin = "https://new.example";
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            connect_with_origin(&cert, addr, &token, origin)
                .await
                .expect("the new origin is allowed"),
        );
    }
    let third = connect_with_origin(&cert, addr, &token, origin).await;
    assert_eq!(refusal(third.err().expect("refused")).0, 429);
    // … and the new handshake deadline: a connection that sends nothing is closed after 2 s,
    // long before the 10 s it was given at start.
    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let mut byte = [0u8; 1];
    let closed =
        tokio::time::timeout(std::time::Duration::from_secs(8), silent.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a silent connection outlived the reloaded handshake deadline: {closed:?}"
    );
}
