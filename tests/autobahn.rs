//! Autobahn|Testsuite's fuzzing client against `/echo` (cases 1–10; 12 and 13 need
//! permessage-deflate, which Lookout does not offer): every case must be OK, NON-STRICT or
//! INFORMATIONAL. `wstest` comes from `tests/autobahn/setup.sh` (Python 2.7 in a folder of
//! its own), or from `AUTOBAHN_WSTEST`.

mod common;

use common::*;

fn wstest() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("AUTOBAHN_WSTEST") {
        return path.into();
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("bash")
        .arg(format!("{root}/tests/autobahn/setup.sh"))
        .output()
        .expect("run tests/autobahn/setup.sh");
    assert!(
        out.status.success(),
        "tests/autobahn/setup.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout);
    path.lines().last().expect("the wstest path").trim().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_cases_1_to_10_pass_against_the_echo_endpoint() {
    let wstest = wstest();
    let server = TestServer::start_with(|c| {
        c.plain_listen = Some("127.0.0.1:0".parse().expect("addr"));
        c.testing.echo_endpoint = true;
    })
    .await;
    let plain = server.plain_addr.expect("plain listener");
    let dir = tempfile::tempdir().expect("tempdir");
    let reports = dir.path().join("reports");
    let spec = serde_json::json!({
        "outdir": reports,
        "servers": [{"agent": "lookout", "url": format!("ws://{plain}/echo")}],
        "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "8.*", "9.*", "10.*"],
        "exclude-cases": ["12.*", "13.*"],
        "exclude-agent-cases": {}
    });
    let spec_path = dir.path().join("fuzzingclient.json");
    std::fs::write(&spec_path, spec.to_string()).expect("spec");
    let run = tokio::process::Command::new(&wstest)
        .args(["-m", "fuzzingclient", "-s"])
        .arg(&spec_path)
        .current_dir(dir.path())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run wstest");
    assert!(
        run.status.success(),
        "wstest failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reports.join("index.json")).expect("index.json"))
            .expect("report JSON");
    let cases = index["lookout"].as_object().expect("the agent's cases");
    let failed: Vec<String> = cases
        .iter()
        .filter(|(_, result)| {
            !matches!(
                result["behavior"].as_str(),
                Some("OK" | "NON-STRICT" | "INFORMATIONAL")
            )
        })
        .map(|(case, result)| {
            format!(
                "{case}: {} / close {}",
                result["behavior"], result["behaviorClose"]
            )
        })
        .collect();
    assert!(cases.len() >= 300, "only {} cases ran", cases.len());
    assert!(
        failed.is_empty(),
        "{} cases failed: {failed:#?}",
        failed.len()
    );
    server.stop().await;
}

#[tokio::test]
async fn the_echo_endpoint_does_not_exist_unless_configured() {
    let server = TestServer::start().await;
    let response = server
        .http()
        .get(server.https("/echo"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 404);
    server.stop().await;
}
