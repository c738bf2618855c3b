//! Inputs the fuzzers found (`tests/fuzz/regressions/<target>/`), replayed on every test run
//! through the same checks as their fuzz target (`tests/fuzz/fuzz_targets`).

mod common;

#[path = "fuzz/fuzz_targets/common.rs"]
mod fuzz_checks;

use std::path::PathBuf;

use lookout::protocol::{check_portable, ClientMsg, Encoding};

fn found(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/regressions")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("read");
            (path, bytes)
        })
        .collect();
    out.sort();
    out
}

/// The first finding: a publish whose data holds a NaN (`0xcb` + all ones). The target compared
/// values, and NaN is not equal to itself; the data itself comes through bit for bit, and a JSON
/// subscriber gets it as `null`.
#[test]
fn native_msgpack_findings_decode_and_their_data_comes_through_unchanged() {
    let inputs = found("native_msgpack");
    assert!(!inputs.is_empty());
    for (_, bytes) in inputs {
        let Ok(msg) = Encoding::MsgPack.decode::<ClientMsg>(&bytes) else {
            continue;
        };
        fuzz_checks::follow(&msg);
    }
}

/// What the first finding showed beyond the harness: a MessagePack publisher could send data
/// (a map with a NaN key) that JSON subscribers cannot receive; it was skipped for them with a
/// log line — a silent gap in their seqs. Such data is now refused at publish, and what passes
/// the check always renders as JSON.
#[test]
fn data_that_json_subscribers_cannot_receive_is_refused_at_publish() {
    let (path, bytes) = found("native_msgpack")
        .into_iter()
        .next()
        .expect("the NaN-key finding");
    let Ok(ClientMsg::Publish { data, .. }) = Encoding::MsgPack.decode::<ClientMsg>(&bytes) else {
        panic!("{}: a publish", path.display());
    };
    assert!(Encoding::Json.encode(&data).is_err());
    let why = check_portable(&data).expect_err("refused");
    assert!(why.contains("map key"), "{why}");
    for portable in [
        rmpv::Value::Map(vec![("lat".into(), 1.5.into()), (7.into(), true.into())]),
        rmpv::Value::Array(vec![rmpv::Value::Binary(vec![0xff, 0xd8]), f64::NAN.into()]),
    ] {
        check_portable(&portable).expect("portable");
        Encoding::Json.encode(&portable).expect("renders as JSON");
    }
    let nested = rmpv::Value::Array(vec![rmpv::Value::Map(vec![(
        rmpv::Value::Array(vec![]),
        rmpv::Value::Nil,
    )])]);
    assert!(check_portable(&nested).is_err());
}

#[tokio::test]
async fn a_messagepack_publish_with_a_map_key_json_cannot_carry_gets_bad_request() {
    let server = common::TestServer::start().await;
    let sup = server.token("sup", Some("acme"), &[lookout::auth::Role::Supervisor]);
    let mut json_watcher = server.connect(&sup).await;
    assert!(common::ok(
        &json_watcher.subscribe("/topic/org/acme/room/ops").await
    ));
    let mut packed = server
        .connect_as(&sup, Some("lookout.msgpack"))
        .await
        .expect("msgpack connection");
    let data = rmpv::Value::Map(vec![(rmpv::Value::from(f64::NAN), rmpv::Value::Nil)]);
    let reply = packed
        .publish_packed("/topic/org/acme/room/ops", data)
        .await;
    assert_eq!(common::error_code(&reply), "bad_request", "{reply}");
    // Nothing was logged, so no JSON subscriber misses a seq.
    let ok = packed
        .publish_packed("/topic/org/acme/room/ops", rmpv::Value::from("fine"))
        .await;
    assert_eq!(ok["seq"], 1, "{ok}");
    assert_eq!(json_watcher.next_message().await["seq"], 1);
    server.stop().await;
}
