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
    assert!(unit.contains("ExecStart=/usr/local/bin/lookout serve"));
    let unit = unit.replace("/usr/local/bin/lookout", env!("CARGO_BIN_EXE_lookout"));
    for directive in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "DynamicUser=yes",
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

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let got = notifications(&socket, |got| got.iter().any(|l| l == "STOPPING=1"));
    assert!(got.iter().any(|l| l == "STOPPING=1"), "{got:?}");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
}
