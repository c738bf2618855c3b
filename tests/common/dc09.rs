//! A real third-party ANSI/SIA DC-09 receiver for the ARC tests and benchmark: pysiaalarm
//! (PyPI 3.2.2) run by tests/arc/receiver.py on 127.0.0.1, its python from
//! `PYSIAALARM_PYTHON` (tests/run.sh) or made by tests/arc/setup.sh. It prints what it parsed
//! and answered as JSON lines; this reads them.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

/// The account the receiver knows for the org `acme`.
pub const ACCOUNT: &str = "12AB";
/// The account it knows for acme's site `hq`.
pub const SITE_ACCOUNT: &str = "ABC1";

/// The venv's python with pysiaalarm: `PYSIAALARM_PYTHON` (set by tests/run.sh), else
/// tests/arc/setup.sh makes it (idempotent).
pub fn python() -> String {
    if let Ok(p) = std::env::var("PYSIAALARM_PYTHON") {
        return p;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("bash")
        .arg(format!("{root}/tests/arc/setup.sh"))
        .output()
        .expect("tests/arc/setup.sh");
    assert!(
        out.status.success(),
        "tests/arc/setup.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A running pysiaalarm receiver; killed (by its pid) when dropped.
pub struct Receiver {
    child: tokio::process::Child,
    /// The port it listens on.
    pub port: u16,
    /// Every JSON line it printed.
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    /// On `port` (0: any), TCP or UDP, with `key` (pysiaalarm's form) or none.
    pub async fn start(port: u16, udp: bool, key: Option<&str>) -> Receiver {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut cmd = tokio::process::Command::new(python());
        cmd.arg(format!("{root}/tests/arc/receiver.py"))
            .args(["--port", &port.to_string(), "--account", ACCOUNT])
            .args(["--account", SITE_ACCOUNT])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(key) = key {
            cmd.args(["--key", key]);
        }
        if udp {
            cmd.arg("--udp");
        }
        let mut child = cmd.spawn().expect("receiver.py");
        let stdout = child.stdout.take().expect("stdout");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let shared = seen.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let mut ready = Some(ready_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(port) = v["ready"].as_u64() {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(port as u16);
                    }
                    continue;
                }
                shared.lock().expect("lock").push(v);
            }
        });
        let port = tokio::time::timeout(Duration::from_secs(30), ready_rx)
            .await
            .expect("the receiver starts")
            .expect("ready");
        Receiver { child, port, seen }
    }

    pub fn pid(&self) -> String {
        self.child.id().expect("running").to_string()
    }

    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([sig, &self.pid()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// The events it acknowledged (NULL messages left out unless `nulls`).
    pub fn events(&self, nulls: bool) -> Vec<Value> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|v| v.get("event").is_some())
            .filter(|v| nulls || v["event"]["type"] != "NULL")
            .cloned()
            .collect()
    }

    /// What it answered to each message.
    pub fn responses(&self) -> Vec<Value> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|v| v.get("line").is_some())
            .cloned()
            .collect()
    }

    pub async fn wait_events(&self, n: usize, what: &str) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let events = self.events(false);
            if events.len() >= n {
                return events;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: {} of {n} events; answers: {:?}",
                events.len(),
                self.responses()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
