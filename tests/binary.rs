//! The real `lookout` binary: the embedded default on a fresh data directory, `lookout token`,
//! graceful shutdown on SIGTERM, and the CLI's refusals.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use lookout::auth::Role;

fn lookout() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lookout"))
}

#[tokio::test]
async fn with_no_configuration_it_serves_tls_and_a_token_from_lookout_token_connects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Binary::serve(&data, &[]);

    // It created its data directory with a certificate and a private secret.
    for file in ["tls/cert.pem", "tls/key.pem", "jwt.secret"] {
        assert!(data.join(file).exists(), "{file} missing");
    }
    #[cfg(unix)]
    for file in ["", "tls/key.pem", "tls/ca-key.pem", "jwt.secret"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join(file))
            .expect("meta")
            .permissions()
            .mode();
        let expected = if file.is_empty() { 0o700 } else { 0o600 };
        assert_eq!(mode & 0o777, expected, "{file}");
    }
    // It printed the fingerprint of the CA phones are to trust, and how to mint a token.
    let printed = server.stdout_lines.join("\n");
    let pem = server.cert_pem();
    let der: rustls::pki_types::CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(&pem).expect("pem");
    let fingerprint = lookout::transport::tls::fingerprint(&der);
    assert!(printed.contains(&fingerprint), "{printed}");
    assert!(printed.contains("lookout token"), "{printed}");

    let out = lookout()
        .args(["token", "--data-dir"])
        .arg(&data)
        .args([
            "--sub", "alice", "--org", "demo", "--role", "guard", "--ttl", "1h",
        ])
        .output()
        .expect("lookout token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();

    let client = server.connect(&token).await;
    assert_eq!(client.established["type"], "connection_established");
    assert_eq!(client.established["userId"], "alice");
    assert!(client.established["sessionId"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert!(client.established["epoch"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
}

#[tokio::test]
async fn sigterm_closes_every_client_with_1001_and_exits_0_within_5_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Binary::serve(&dir.path().join("data"), &[]);
    let mut clients = Vec::new();
    for i in 0..100 {
        let mut c = server
            .connect(&server.token(&format!("u{i}"), Some("acme"), &[Role::Guard]))
            .await;
        assert!(ok(&c.subscribe("/topic/system").await));
        clients.push(c);
    }
    let sent = Instant::now();
    server.signal("TERM");
    let mut codes = Vec::new();
    for c in clients.iter_mut() {
        codes.push(match c.ended().await {
            Ended::Closed(code, _) => code,
            Ended::Dropped => 0,
        });
    }
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "still running 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    assert!(sent.elapsed() < Duration::from_secs(5));
    assert!(codes.iter().all(|c| *c == 1001), "close codes: {codes:?}");
}

/// Runs `lookout --config FILE check-config` on `contents`, with extra environment.
fn check_config(contents: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("lookout.toml");
    std::fs::write(&file, contents).expect("write");
    let mut cmd = lookout();
    cmd.arg("--config").arg(&file).arg("check-config");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_names_the_bad_key_and_exits_non_zero() {
    for (contents, key) in [
        (
            "[limits]\nmax_connections_per_user = \"many\"\n",
            "max_connections_per_user",
        ),
        ("[limits]\nidle_notice = \"10m\"\n", "limits.idle_notice"),
        ("lissen = \"0.0.0.0:1\"\n", "lissen"),
        ("[tls]\ncert = \"/nonexistent/cert.pem\"\n", "tls.cert"),
    ] {
        let (ok, stderr) = check_config(contents, &[]);
        assert!(!ok, "{contents} passed");
        assert!(stderr.contains(key), "{contents}: {stderr}");
    }
    let (ok, stderr) = check_config(
        "[limits]\nmax_connections_per_user = 3\n",
        &[("LOOKOUT_LIMITS__PING_INTERVAL", "5s")],
    );
    assert!(ok, "{stderr}");
    let (ok, stderr) = check_config("", &[("LOOKOUT_LIMITS__PING_INTERVAL", "soon")]);
    assert!(
        !ok && stderr.to_lowercase().contains("ping_interval"),
        "{stderr}"
    );
}

#[test]
fn serve_help_documents_every_configuration_key() {
    let out = lookout().args(["serve", "--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for (key, _) in lookout::config::KEYS {
        assert!(help.contains(key), "{key} not in help");
    }
    assert!(help.contains("LOOKOUT_LIMITS__MAX_CONNECTIONS_PER_USER"));
}

#[test]
fn token_refuses_a_non_admin_without_org() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = lookout()
        .args(["token", "--data-dir"])
        .arg(dir.path())
        .args(["--sub", "a", "--role", "guard"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--org"));
}

#[tokio::test]
async fn the_demo_keeps_its_data_directory_private_and_logs_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("demo-data");
    let log_path = dir.path().join("lookout.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let demo = Binary::spawn_logging_to(
        &["demo", "--listen", "127.0.0.1:0", "--guards", "1"],
        &data,
        &[],
        std::process::Stdio::from(log),
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&data).expect("meta").permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o700,
            "as `serve` makes it: it holds the keys"
        );
    }
    drop(demo);
    let logged = std::fs::read(&log_path).expect("log");
    assert!(!logged.is_empty(), "the demo logged something");
    assert!(
        !logged.contains(&0x1b),
        "no ANSI escape codes in a file: {}",
        String::from_utf8_lossy(&logged)
    );
}

/// `docs/configuration.md` is generated from the keys' declarations and never stale:
/// `LOOKOUT_WRITE_DOCS=1 cargo test --test binary the_configuration_reference` rewrites it.
#[test]
fn the_configuration_reference_is_generated_from_the_declarations() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    let generated = lookout::config::reference_markdown();
    if std::env::var_os("LOOKOUT_WRITE_DOCS").is_some() {
        std::fs::write(path, &generated).expect("write docs/configuration.md");
    }
    let written = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        written == generated,
        "docs/configuration.md is stale: run LOOKOUT_WRITE_DOCS=1 cargo test --test binary \
         the_configuration_reference"
    );
    for (key, _) in lookout::config::KEYS {
        assert!(written.contains(&format!("| `{key}` |")), "{key} is listed");
    }
}
