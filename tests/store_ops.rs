//! Operating the store with the real binary: backup and restore move an appliance, and a
//! damaged, foreign or busy data directory is refused with a clear error, never reset.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use lookout::auth::Role;
use serde_json::json;

const ROOM: &str = "/topic/org/acme/room/ops";

fn lookout(args: &[&str], data_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run lookout")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Starts `lookout serve` expecting it to fail; returns its exit code and stderr.
fn serve_fails(data_dir: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            return (status.code(), stderr(&out));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("lookout kept running on a bad data directory");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn stop(mut server: Binary) {
    server.signal("TERM");
    let status = server.child.wait().expect("wait");
    assert!(status.success());
}

#[tokio::test]
async fn backup_and_restore_move_an_appliance_with_its_messages_keys_and_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = dir.path().join("old");
    let server = Binary::serve(&old, &[]);
    let token = server.token("s1", Some("acme"), &[Role::Supervisor]);
    let mut c = server.connect(&token).await;
    let epoch = c.established["epoch"].clone();
    for n in 1..=3 {
        assert!(ok(&c.publish(ROOM, json!({"n": n})).await));
    }
    let fingerprint_before = server.stdout_lines.join("\n");
    drop(c);
    stop(server).await;

    let file = dir.path().join("site.backup");
    // A file left by an earlier attempt, readable by anyone: never written into.
    std::fs::write(dir.path().join("site.partial"), b"old").expect("partial");
    set_mode(&dir.path().join("site.partial"), 0o644);
    let out = lookout(&["backup", "--to", file.to_str().expect("path")], &old);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&file), 0o600, "the backup is the operator's alone");
    // The CA's key stays home unless asked for.
    let ca_key = std::fs::read(old.join("tls/ca-key.pem")).expect("ca key");
    let backup = std::fs::read(&file).expect("backup");
    assert!(
        !contains(&backup, &ca_key[30..90]),
        "the CA key is in the backup"
    );

    let new = dir.path().join("new");
    let out = lookout(&["restore", "--from", file.to_str().expect("path")], &new);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!new.join("tls/ca-key.pem").exists());

    let server = Binary::serve(&new, &[]);
    // The same certificate and secret: the old token still works.
    let fingerprint = |text: &str| {
        let at = text.find("SHA-256 ").expect("fingerprint printed") + 8;
        text[at..at + 95].to_string()
    };
    assert_eq!(
        fingerprint(&fingerprint_before),
        fingerprint(&server.stdout_lines.join("\n"))
    );
    let mut c = server.connect(&token).await;
    assert_eq!(c.established["epoch"], epoch);
    let reply = c
        .request(json!({"type":"subscribe","channel":ROOM,"since":0,"epoch":epoch}))
        .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    for n in 1..=3 {
        assert_eq!(c.next_message().await["data"]["n"], n);
    }
    assert_eq!(c.publish(ROOM, json!({"n": 4})).await["seq"], 4);
}

#[tokio::test]
async fn a_damaged_backup_is_refused_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Binary::serve(&data, &[]);
    let mut c = server
        .connect(&server.token("s1", Some("acme"), &[Role::Supervisor]))
        .await;
    assert!(ok(&c.publish(ROOM, json!({"n": 1})).await));
    drop(c);
    // A running server holds the directory: no backup of a live store.
    let file = dir.path().join("b");
    let out = lookout(&["backup", "--to", file.to_str().expect("path")], &data);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    stop(server).await;

    let out = lookout(&["backup", "--to", file.to_str().expect("path")], &data);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&file).expect("read");
    for cut in [bytes.len() - 1, bytes.len() / 2, 20] {
        let truncated = dir.path().join(format!("cut{cut}"));
        std::fs::write(&truncated, &bytes[..cut]).expect("write");
        let target = dir.path().join(format!("restored{cut}"));
        let out = lookout(
            &["restore", "--from", truncated.to_str().expect("path")],
            &target,
        );
        assert!(!out.status.success(), "a backup cut at {cut} was accepted");
        assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
        assert!(
            !target.join("store").exists(),
            "half-restored store left behind"
        );
    }
    // Restoring over an existing store is refused.
    let out = lookout(&["restore", "--from", file.to_str().expect("path")], &data);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already holds a store"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_corrupt_foreign_or_busy_data_directory_gives_a_clear_error_and_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");

    let foreign = dir.path().join("foreign");
    std::fs::create_dir_all(foreign.join("store")).expect("mkdir");
    std::fs::write(foreign.join("store/photos.txt"), "not ours").expect("write");
    let (code, err) = serve_fails(&foreign);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not a Lookout store"), "{err}");
    assert!(
        foreign.join("store/photos.txt").exists(),
        "foreign files untouched"
    );

    let corrupt = dir.path().join("corrupt");
    let server = Binary::serve(&corrupt, &[]);
    stop(server).await;
    let db = corrupt.join("store/db");
    let len = std::fs::metadata(&db).expect("db").len() as usize;
    std::fs::write(&db, vec![0xA5u8; len.max(4096)]).expect("scribble");
    let (code, err) = serve_fails(&corrupt);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("damaged") || err.contains("not a Lookout store"),
        "{err}"
    );

    let busy = dir.path().join("busy");
    let _running = Binary::serve(&busy, &[]);
    let (code, err) = serve_fails(&busy);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("in use"), "{err}");
}

#[tokio::test]
async fn the_startup_log_reports_the_epoch_channels_and_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Binary::serve(&data, &[]);
    let mut c = server
        .connect(&server.token("s1", Some("acme"), &[Role::Supervisor]))
        .await;
    let epoch = c.established["epoch"].as_str().expect("epoch").to_string();
    for n in 1..=2 {
        assert!(ok(&c.publish(ROOM, json!({"n": n})).await));
    }
    drop(c);
    stop(server).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr_pipe = child.stderr.take().expect("stderr");
    let line = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr_pipe)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("store opened"))
    })
    .join()
    .expect("reader");
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("a `store opened` log line");
    let plain: String = strip_ansi(&line);
    assert!(plain.contains(&format!("epoch={epoch}")), "{plain}");
    assert!(plain.contains("channels=1"), "{plain}");
    assert!(plain.contains("messages=2"), "{plain}");
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn the_ca_key_travels_only_when_asked_sealed_with_a_passphrase() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = dir.path().join("old");
    stop(Binary::serve(&old, &[])).await;
    let ca_key = std::fs::read(old.join("tls/ca-key.pem")).expect("ca key");
    let secret = dir.path().join("passphrase");
    std::fs::write(&secret, "correct horse battery staple\n").expect("passphrase");
    let file = dir.path().join("site.backup");
    let out = lookout(
        &[
            "backup",
            "--to",
            file.to_str().expect("path"),
            "--with-ca-key",
            "--passphrase-file",
            secret.to_str().expect("path"),
        ],
        &old,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let backup = std::fs::read(&file).expect("backup");
    assert!(!contains(&backup, &ca_key[30..90]), "the key is sealed");

    // Without the passphrase, or with another: refused, nothing restored.
    let new = dir.path().join("new");
    let out = lookout(&["restore", "--from", file.to_str().expect("path")], &new);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("passphrase"), "{}", stderr(&out));
    assert!(!new.join("store").exists());
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "incorrect horse battery\n").expect("passphrase");
    let out = lookout(
        &[
            "restore",
            "--from",
            file.to_str().expect("path"),
            "--passphrase-file",
            wrong.to_str().expect("path"),
        ],
        &new,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("wrong passphrase"),
        "{}",
        stderr(&out)
    );
    assert!(!new.join("store").exists());
    let out = lookout(
        &[
            "restore",
            "--from",
            file.to_str().expect("path"),
            "--passphrase-file",
            secret.to_str().expect("path"),
        ],
        &new,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(new.join("tls/ca-key.pem")).expect("key"),
        ca_key
    );
    assert_eq!(mode(&new.join("tls/ca-key.pem")), 0o600);
    stop(Binary::serve(&new, &[])).await;
}
