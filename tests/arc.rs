//! Alarms to an alarm receiving centre over ANSI/SIA DC-09, against a real third-party
//! receiver: pysiaalarm (PyPI 3.2.2, installed into a venv of its own by tests/arc/setup.sh),
//! run by tests/arc/receiver.py on 127.0.0.1 with an account and an AES key. It answers only
//! what it parsed with a valid CRC, a known account, a decryptable body and a timestamp in its
//! window; the test reads what it acknowledged.

mod common;

use std::time::Duration;

use common::dc09::Receiver;
use common::*;
use lookout::auth::Role;
use lookout::config::{ArcFormat, ArcReceiver, ArcTransport};
use serde_json::{json, Value};

/// The account the ARC gave acme.
const ACCOUNT: &str = common::dc09::ACCOUNT;
/// pysiaalarm's key (its characters are the key's bytes) and the same key as Lookout's
/// configuration has it (hex of those bytes): AES-128.
const KEY_ASCII: &str = "0123456789ABCDEF";
const KEY_HEX: &str = "30313233343536373839414243444546";

fn receiver_config(name: &str, port: u16, format: ArcFormat, udp: bool) -> ArcReceiver {
    ArcReceiver {
        name: name.into(),
        host: "127.0.0.1".into(),
        port,
        transport: if udp {
            ArcTransport::Udp
        } else {
            ArcTransport::Tcp
        },
        format,
        receiver_number: Some("1".into()),
        line_number: "2".into(),
        account: None,
        accounts: [("acme".to_string(), ACCOUNT.to_string())].into(),
        key: Some(KEY_HEX.into()),
        backup: None,
        types: Vec::new(),
        min_priority: None,
        min_level: None,
        supervision: Duration::ZERO,
        ack_timeout: Duration::from_secs(2),
    }
}

async fn post(server: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    post_json(&server.http(), &server.https(path), token, body).await
}

async fn put(server: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    server.put_json(path, token, body).await
}

async fn alerts_of_type(server: &TestServer, sup: &str, kind: &str) -> Vec<Value> {
    let listed = get_json(
        &server.http(),
        &server.https(&format!("/api/v1/alerts?type={kind}")),
        sup,
    )
    .await;
    listed.as_array().cloned().unwrap_or_default()
}

/// Resolves alert `id` as `sup`.
async fn resolve(server: &TestServer, sup: &str, id: &str) {
    let path = format!("/api/v1/alerts/{id}/resolve");
    let (status, body) = post(server, &path, sup, json!({})).await;
    assert_eq!(status, 200, "{body}");
}

/// Waits for one alert of `kind` and returns it.
async fn one_alert(server: &TestServer, sup: &str, kind: &str) -> Value {
    for _ in 0..300 {
        if let Some(a) = alerts_of_type(server, sup, kind).await.into_iter().next() {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {kind} alert");
}

fn now_ms() -> u64 {
    lookout::clock::now_millis()
}

/// SIA code, restoral code and zone of each alert type, as docs/arc.md's table has them.
const TABLE: [(&str, &str, &str, &str, &str); 10] = [
    ("PANIC", "PA", "PH", "120", "001"),
    ("DURESS", "HA", "HH", "121", "002"),
    ("MEDICAL", "MA", "MH", "100", "003"),
    ("FIRE", "FA", "FH", "110", "004"),
    ("SECURITY", "BA", "BH", "130", "005"),
    ("GENERAL", "UA", "UH", "140", "006"),
    ("MAN_DOWN", "QA", "QH", "101", "007"),
    ("CHECK_IN_MISSED", "NA", "NS", "102", "008"),
    ("LOST_CONTACT", "UZ", "UR", "381", "009"),
    ("GEOFENCE", "UA", "UH", "150", "010"),
];

/// Raises one alert of every type through what raises it in the field: the REST emergency
/// (PANIC … MAN_DOWN), the duress PIN, a missed check-in, a guard on shift gone silent, a
/// guard leaving a required fence. Returns (type, alert id, position) in the order raised.
async fn raise_every_type(server: &TestServer) -> Vec<(String, String, Option<(f64, f64)>)> {
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let g1 = server.token("g1", Some("acme"), &[Role::Guard]);
    let mut phone = server.connect(&g1).await;
    assert!(ok(&phone
        .publish("/topic/location/g1", location(51.501364, -0.14189))
        .await));
    let mut raised = Vec::new();
    for kind in [
        "PANIC", "MEDICAL", "FIRE", "SECURITY", "GENERAL", "MAN_DOWN",
    ] {
        let (status, body) = post(server, "/api/v1/alerts", &g1, json!({"type": kind})).await;
        assert_eq!(status, 201, "{body}");
        raised.push((
            kind.to_string(),
            body["id"].as_str().expect("id").to_string(),
            Some((51.501364, -0.14189)),
        ));
    }
    // Duress: a guard "ends lone work" with the duress PIN.
    let (status, body) = put(
        server,
        "/api/v1/welfare/pin",
        &g1,
        json!({"pin": "1234", "duress_pin": "9876"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(server, "/api/v1/welfare/start", &g1, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        server,
        "/api/v1/welfare/pin",
        &g1,
        json!({"pin": "9876", "action": "end_lone_work"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let duress = one_alert(server, &sup, "DURESS").await;
    raised.push((
        "DURESS".into(),
        duress["id"].as_str().expect("id").into(),
        Some((51.501364, -0.14189)),
    ));
    // A missed check-in: check-ins every second for g2, who never checks in.
    let settings =
        json!({"enabled": true, "interval_ms": 1000, "pre_alarm_ms": 400, "grace_ms": 500});
    let (status, body) = put(server, "/api/v1/welfare/settings", &sup, settings).await;
    assert_eq!(status, 200, "{body}");
    let g2 = server.token("g2", Some("acme"), &[Role::Guard]);
    let _g2_phone = server.connect(&g2).await;
    let (status, body) = post(server, "/api/v1/welfare/start", &g2, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let missed = one_alert(server, &sup, "CHECK_IN_MISSED").await;
    raised.push((
        "CHECK_IN_MISSED".into(),
        missed["id"].as_str().expect("id").into(),
        None,
    ));
    // Check-ins off again: no more of them.
    let (status, _) = put(
        server,
        "/api/v1/welfare/settings",
        &sup,
        json!({"enabled": false}),
    )
    .await;
    assert_eq!(status, 200);
    // Lost contact: g3 on shift, one fix, then silence.
    let now = now_ms();
    let shift = json!({"user": "g3", "site": "hq", "start": now, "end": now + 600_000});
    let (status, body) = post(server, "/api/v1/shifts", &sup, shift).await;
    assert_eq!(status, 201, "{body}");
    let g3 = server.token("g3", Some("acme"), &[Role::Guard]);
    let mut silent = server.connect(&g3).await;
    assert!(ok(&silent
        .publish("/topic/location/g3", location(52.1, 4.3))
        .await));
    drop(silent);
    let lost = one_alert(server, &sup, "LOST_CONTACT").await;
    raised.push((
        "LOST_CONTACT".into(),
        lost["id"].as_str().expect("id").into(),
        Some((52.1, 4.3)),
    ));
    // Geofence: g4 leaves a required fence.
    let fence = json!({
        "name": "yard",
        "kind": "required",
        "shape": {"type": "Polygon", "coordinates": [[[13.395, 52.495], [13.405, 52.495], [13.405, 52.505], [13.395, 52.505], [13.395, 52.495]]]}
    });
    let (status, body) = post(server, "/api/v1/geofences", &sup, fence).await;
    assert_eq!(status, 201, "{body}");
    let g4 = server.token("g4", Some("acme"), &[Role::Guard]);
    let mut walker = server.connect(&g4).await;
    for lat in [52.5, 52.51, 52.52] {
        assert!(ok(&walker
            .publish("/topic/location/g4", location(lat, 13.4))
            .await));
    }
    let geofence = one_alert(server, &sup, "GEOFENCE").await;
    let position = geofence["position"]["lat"]
        .as_f64()
        .zip(geofence["position"]["lon"].as_f64());
    raised.push((
        "GEOFENCE".into(),
        geofence["id"].as_str().expect("id").into(),
        position,
    ));
    drop(walker);
    drop(phone);
    raised
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_type_reaches_pysiaalarm_encrypted_with_its_code_account_and_position_and_resolving_sends_its_restoral(
) {
    let receiver = Receiver::start(0, false, Some(KEY_ASCII)).await;
    let port = receiver.port;
    let server = TestServer::start_with(|c| {
        c.arc.receivers = vec![receiver_config("arc1", port, ArcFormat::SiaDcs, false)];
        c.field.check_in_min_interval = Duration::from_millis(500);
        c.field.lost_contact_after = Duration::from_secs(1);
    })
    .await;
    let raised = raise_every_type(&server).await;
    assert_eq!(raised.len(), 10);
    let alarms = receiver.wait_events(10, "every alarm").await;

    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    for (_, id, _) in &raised {
        resolve(&server, &sup, id).await;
    }
    receiver
        .wait_events(alarms.len() + 10, "every restoral")
        .await;
    let all = receiver.events(false);
    let restorals: Vec<&Value> = all
        .iter()
        .filter(|e| TABLE.iter().any(|row| e["event"]["code"] == row.2))
        .collect();
    // Each alarm once, in the order raised (a missed check-in may be raised twice before
    // check-ins are off: the first one counts).
    let mut firsts: Vec<&Value> = Vec::new();
    for e in &alarms {
        let e = &e["event"];
        if !firsts
            .iter()
            .any(|f| f["code"] == e["code"] && f["message"] == e["message"])
        {
            firsts.push(e);
        }
    }
    assert_eq!(firsts.len(), 10, "{firsts:?}");
    for first in &firsts {
        let copies = alarms
            .iter()
            .filter(|e| {
                e["event"]["code"] == first["code"] && e["event"]["message"] == first["message"]
            })
            .count();
        assert!(
            copies == 1 || first["message"] == "008",
            "each alarm once: {first}"
        );
    }

    for (n, (kind, _, position)) in raised.iter().enumerate() {
        let (_, alarm_code, restore_code, _, zone) = TABLE
            .iter()
            .find(|row| row.0 == kind)
            .copied()
            .expect("in the table");
        // In order: the alarms as raised.
        let alarm = firsts[n];
        assert_eq!(alarm["code"], alarm_code, "{kind}: {alarm}");
        assert_eq!(alarm["message"], zone, "{kind}: {alarm}");
        assert_eq!(alarm["account"], ACCOUNT, "{kind}: {alarm}");
        assert_eq!(alarm["type"], "SIA-DCS");
        assert_eq!(alarm["encrypted"], true, "{kind}: {alarm}");
        assert_eq!(alarm["valid_crc"], true);
        assert_eq!(alarm["receiver"], "R1");
        assert_eq!(alarm["line"], "L2");
        assert!(alarm["timestamp"].is_string(), "{alarm}");
        match position {
            Some((lat, lon)) => {
                let x = alarm["xdata"]["X"].as_str().expect("X");
                let y = alarm["xdata"]["Y"].as_str().expect("Y");
                let lon_text = format!("{}{:.6}", if *lon < 0.0 { 'W' } else { 'E' }, lon.abs());
                let lat_text = format!("{}{:.6}", if *lat < 0.0 { 'S' } else { 'N' }, lat.abs());
                assert_eq!((x, y), (lon_text.as_str(), lat_text.as_str()), "{kind}");
            }
            None => assert!(alarm["xdata"].get("X").is_none(), "{kind}: {alarm}"),
        }
        let restoral = restorals
            .iter()
            .map(|e| &e["event"])
            .find(|e| e["code"] == restore_code && e["message"] == zone)
            .unwrap_or_else(|| panic!("{kind}'s restoral {restore_code}: {restorals:?}"));
        assert_eq!(restoral["account"], ACCOUNT);
        assert_eq!(restoral["encrypted"], true);
    }
    // The guard is named in the alarm text.
    assert_eq!(alarms[0]["event"]["xdata"]["I"], "g1");
    // pysiaalarm answered nothing but ACK.
    let answers: Vec<Value> = receiver
        .responses()
        .iter()
        .map(|r| r["response"].clone())
        .collect();
    assert!(answers.iter().all(|a| a == "ACK"), "{answers:?}");
    // Everything acknowledged: the outbox is empty, the latency is known.
    let status = get_json(&server.http(), &server.https("/api/v1/arc/status"), &sup).await;
    let r = &status["receivers"][0];
    assert_eq!(r["pending"], 0, "{status}");
    assert_eq!(r["delivered"], all.len(), "{status}");
    assert_eq!(r["up"], true, "{status}");
    server.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_id_over_udp_with_aes_256_reaches_pysiaalarm_with_its_event_code_and_restoral() {
    let key_ascii = "0123456789ABCDEF0123456789ABCDEF";
    let receiver = Receiver::start(0, true, Some(key_ascii)).await;
    let port = receiver.port;
    let server = TestServer::start_with(|c| {
        let mut r = receiver_config("arc-cid", port, ArcFormat::AdmCid, true);
        r.key = Some(hex::encode(key_ascii));
        c.arc.receivers = vec![r];
    })
    .await;
    // No position: pysiaalarm reads one extended data field in a Contact ID message (DC-09
    // allows several); the alarm text is that one.
    let g1 = server.token("g1", Some("acme"), &[Role::Guard]);
    let (status, body) = post(&server, "/api/v1/alerts", &g1, json!({"type": "PANIC"})).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    resolve(&server, &sup, &id).await;
    let events = receiver.wait_events(2, "alarm and restoral").await;
    let (alarm, restoral) = (&events[0]["event"], &events[1]["event"]);
    assert_eq!(alarm["type"], "ADM-CID");
    assert_eq!(alarm["event_qualifier"], "1", "{alarm}");
    assert_eq!(alarm["event_type"], "120", "{alarm}");
    assert_eq!(alarm["partition"], "01");
    assert_eq!(alarm["code"], "PA", "pysiaalarm's mapping of 1120");
    assert_eq!(alarm["encrypted"], true);
    assert_eq!(alarm["account"], ACCOUNT);
    assert_eq!(restoral["event_qualifier"], "3", "{restoral}");
    assert_eq!(restoral["event_type"], "120");
    assert_eq!(restoral["code"], "PH");
    server.stop().await;
    receiver.stop().await;
}

/// A port no receiver listens on yet (bound, then freed).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Raises a PANIC for each guard, in turn; returns their alert ids.
async fn panics(server: &TestServer, guards: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for g in guards {
        let token = server.token(g, Some("acme"), &[Role::Guard]);
        let (status, body) = post(server, "/api/v1/alerts", &token, json!({"type": "PANIC"})).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().expect("id").to_string());
    }
    ids
}

/// The guards named by the alarms a receiver acknowledged, in order.
fn guards_of(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e["event"]["xdata"]["I"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_panics_while_the_receiver_is_down_for_10_s_arrive_once_in_order_when_it_returns() {
    let port = free_port();
    let server = TestServer::start_with(|c| {
        c.arc.receivers = vec![receiver_config("arc1", port, ArcFormat::SiaDcs, false)];
    })
    .await;
    let down_since = tokio::time::Instant::now();
    panics(&server, &["g1", "g2", "g3"]).await;
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down_since.elapsed())).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let status = get_json(&server.http(), &server.https("/api/v1/arc/status"), &sup).await;
    assert_eq!(status["receivers"][0]["pending"], 3, "{status}");
    assert_eq!(status["receivers"][0]["up"], false, "{status}");
    let receiver = Receiver::start(port, false, Some(KEY_ASCII)).await;
    let back = tokio::time::Instant::now();
    let events = receiver.wait_events(3, "the three panics").await;
    let after = back.elapsed();
    // Once each: nothing more comes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events_later = receiver.events(false);
    assert_eq!(guards_of(&events), ["g1", "g2", "g3"], "in order");
    assert_eq!(events_later.len(), 3, "once each: {events_later:?}");
    assert!(
        after < Duration::from_secs(8),
        "delivered {after:?} after the receiver returned"
    );
    eprintln!("receiver back: the three panics acknowledged {after:?} later");
    server.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_primary_down_the_panics_go_to_the_backup_at_once() {
    let primary = free_port();
    let backup = Receiver::start(0, false, Some(KEY_ASCII)).await;
    let backup_port = backup.port;
    let server = TestServer::start_with(|c| {
        let mut r = receiver_config("arc1", primary, ArcFormat::SiaDcs, false);
        r.backup = Some(format!("127.0.0.1:{backup_port}"));
        c.arc.receivers = vec![r];
    })
    .await;
    let raised = tokio::time::Instant::now();
    panics(&server, &["g1", "g2", "g3"]).await;
    let events = backup
        .wait_events(3, "the three panics at the backup")
        .await;
    let took = raised.elapsed();
    assert_eq!(guards_of(&events), ["g1", "g2", "g3"], "in order");
    assert!(took < Duration::from_secs(3), "at once: {took:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(backup.events(false).len(), 3, "once each");
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let status = get_json(&server.http(), &server.https("/api/v1/arc/status"), &sup).await;
    let paths = &status["receivers"][0]["paths"];
    assert_eq!(paths[0]["state"], "down", "{status}");
    assert_eq!(paths[1]["state"], "up", "{status}");
    assert_eq!(status["receivers"][0]["up"], true, "{status}");
    eprintln!("primary down: the three panics acknowledged by the backup {took:?} after the first was raised");
    server.stop().await;
    backup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_between_the_alert_and_the_ack_still_delivers_it_once_after_the_restart() {
    let port = free_port();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let config = config_file(
        &data,
        &format!(
            "[[arc.receivers]]\nname = \"arc1\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             receiver_number = \"1\"\nline_number = \"2\"\naccount = \"{ACCOUNT}\"\n\
             key = \"{KEY_HEX}\"\nack_timeout = \"1s\"\nsupervision = \"0s\"\n"
        ),
    );
    let env = [("LOOKOUT_CONFIG", config.as_str())];
    let node = Binary::serve(&data, &env);
    let http = http_client(&node.cert_pem());
    let guard = node.token("g1", Some("acme"), &[Role::Guard]);
    let (status, body) = post_json(
        &http,
        &format!("https://{}/api/v1/alerts", node.addr),
        &guard,
        json!({"type": "PANIC"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // The receiver has not answered (it is not there): kill -9, then start again.
    let node = node.kill_9_and_restart(&env);
    let receiver = Receiver::start(port, false, Some(KEY_ASCII)).await;
    let events = receiver.wait_events(1, "the panic after the restart").await;
    assert_eq!(events[0]["event"]["code"], "PA");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.events(false).len(), 1, "once");
    let admin = node.token("root", None, &[Role::Admin]);
    let http = http_client(&node.cert_pem());
    let status = get_json(
        &http,
        &format!("https://{}/api/v1/arc/status", node.addr),
        &admin,
    )
    .await;
    assert_eq!(status["receivers"][0]["pending"], 0, "{status}");
    drop(node);
    receiver.stop().await;
}

/// The value of the `lookout_arc_receiver_up` sample of `path`, if any.
fn receiver_up(metrics: &str, path: &str) -> Option<String> {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("lookout_arc_receiver_up{")
                && l.contains("receiver=\"arc1\"")
                && l.contains(&format!("path=\"{path}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .map(str::to_string)
}

/// Waits (10 s at most) until `/metrics` says the primary path is `want` (`1` up, `0` down).
async fn wait_receiver_up(server: &TestServer, want: &str, what: &str) {
    let since = tokio::time::Instant::now();
    while receiver_up(&server.metrics().await, "primary").as_deref() != Some(want) {
        assert!(since.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_messages_supervise_the_link_every_2_s_and_a_receiver_that_stops_answering_shows_down()
{
    let receiver = Receiver::start(0, false, Some(KEY_ASCII)).await;
    let port = receiver.port;
    let server = TestServer::start_with(|c| {
        let mut r = receiver_config("arc1", port, ArcFormat::SiaDcs, false);
        r.supervision = Duration::from_secs(2);
        r.ack_timeout = Duration::from_secs(1);
        c.arc.receivers = vec![r];
    })
    .await;
    tokio::time::sleep(Duration::from_millis(9_500)).await;
    let nulls: Vec<u64> = receiver
        .events(true)
        .iter()
        .filter(|e| e["event"]["type"] == "NULL")
        .map(|e| e["t"].as_u64().unwrap_or_default())
        .collect();
    // At start, then every 2 s: 5 in 9.5 s.
    assert!((4..=6).contains(&nulls.len()), "{nulls:?}");
    for pair in nulls.windows(2) {
        let gap = pair[1] - pair[0];
        assert!((1_500..=2_700).contains(&gap), "NULL every 2 s: {nulls:?}");
    }
    let null = receiver
        .events(true)
        .into_iter()
        .find(|e| e["event"]["type"] == "NULL")
        .expect("a NULL");
    assert_eq!(null["event"]["encrypted"], true, "{null}");
    assert_eq!(null["event"]["account"], ACCOUNT, "{null}");
    assert_eq!(
        receiver_up(&server.metrics().await, "primary").as_deref(),
        Some("1")
    );

    // The receiver stops answering (SIGSTOP: its socket still accepts, nothing replies).
    receiver.signal("-STOP");
    let stopped = tokio::time::Instant::now();
    wait_receiver_up(&server, "0", "never shown down").await;
    eprintln!(
        "shown down in /metrics {:?} after the receiver stopped answering",
        stopped.elapsed()
    );
    let ready = server
        .http()
        .get(server.https("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(
        ready.status().as_u16(),
        200,
        "a receiver down does not make the node unready"
    );
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["details"]["arc"][0]["up"], false, "{ready}");
    assert_eq!(
        ready["details"]["arc"][0]["paths"][0]["state"], "down",
        "{ready}"
    );
    // It answers again: up again.
    receiver.signal("-CONT");
    wait_receiver_up(&server, "1", "never shown up again").await;
    server.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboards_operations_panel_shows_a_receiver_that_stops_answering_as_down() {
    let receiver = Receiver::start(0, false, Some(KEY_ASCII)).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let config = config_file(
        &data,
        &format!(
            "[[arc.receivers]]\nname = \"arc1\"\nhost = \"127.0.0.1\"\nport = {}\n\
             receiver_number = \"1\"\nline_number = \"2\"\naccount = \"{ACCOUNT}\"\n\
             key = \"{KEY_HEX}\"\nack_timeout = \"1s\"\nsupervision = \"2s\"\n",
            receiver.port
        ),
    );
    let node = Binary::serve(&data, &[("LOOKOUT_CONFIG", config.as_str())]);
    let link = format!(
        "https://{}/#link={}",
        node.addr,
        node.link("sup", "acme", Role::Supervisor)
    );
    let artifacts = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    let mut script = NodeScript::run(
        "arc_dashboard.mjs",
        &[
            ("LOOKOUT_LINK", link),
            ("LOOKOUT_ARTIFACTS", artifacts.display().to_string()),
            ("CHROMIUM", chromium()),
        ],
    );
    let up = script.event("up").await;
    assert!(
        up["text"]
            .as_str()
            .unwrap_or_default()
            .contains("primary up"),
        "{up}"
    );
    receiver.signal("-STOP");
    let down = script.event("down").await;
    let text = down["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("DOWN") && text.contains("primary down"),
        "{down}"
    );
    assert_eq!(down["problems"], json!([]), "{down}");
    script.finish().await;
    receiver.signal("-CONT");
    drop(node);
    receiver.stop().await;
}

/// A DC-09 receiver of the test's own on 127.0.0.1, without encryption: each message's body
/// (from its first `"` to before its CR) is kept, and `answer(n, body)` gives the body of the
/// reply to the `n`-th, framed with its CRC and length.
async fn scripted_receiver(
    answer: impl Fn(usize, &str) -> String + Send + Sync + 'static,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (kept, answer) = (bodies.clone(), std::sync::Arc::new(answer));
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (kept, answer) = (kept.clone(), answer.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while let Ok(n) = tcp.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.iter().position(|b| *b == b'\r') {
                        let frame: Vec<u8> = buf.drain(..=end).collect();
                        let text = String::from_utf8_lossy(&frame).trim().to_string();
                        let body = text.get(8..).unwrap_or_default().to_string();
                        let n = {
                            let mut kept = kept.lock().expect("lock");
                            kept.push(body.clone());
                            kept.len() - 1
                        };
                        let reply = answer(n, &body);
                        let framed = format!(
                            "\n{:04X}{:04X}{reply}\r",
                            lookout::arc::dc09::crc16(reply.as_bytes()),
                            reply.len()
                        );
                        if tcp.write_all(framed.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, bodies)
}

/// The sequence number of a message body (`"SIA-DCS"0042…`).
fn seq_of(body: &str) -> String {
    body.rsplit_once('"')
        .map(|(_, rest)| rest.chars().take(4).collect())
        .unwrap_or_default()
}

fn plain_receiver(port: u16) -> ArcReceiver {
    let mut r = receiver_config("arc1", port, ArcFormat::SiaDcs, false);
    r.key = None;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nak_with_the_receivers_time_resends_the_message_at_once_on_the_receivers_clock() {
    // The receiver's clock is 100 s ahead: it refuses the first message with its time.
    let ahead = 100;
    let (port, bodies) = scripted_receiver(move |n, body| {
        let now = i64::try_from(now_ms() / 1000).expect("secs");
        if n == 0 {
            format!(
                "\"NAK\"0000R1L2A0[]{}",
                lookout::arc::dc09::timestamp(now + ahead)
            )
        } else {
            format!("\"ACK\"{}R1L2#{ACCOUNT}[]", seq_of(body))
        }
    })
    .await;
    let server = TestServer::start_with(|c| c.arc.receivers = vec![plain_receiver(port)]).await;
    let raised = tokio::time::Instant::now();
    panics(&server, &["g1"]).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    loop {
        let status = get_json(&server.http(), &server.https("/api/v1/arc/status"), &sup).await;
        if status["receivers"][0]["delivered"] == 1 {
            break;
        }
        assert!(raised.elapsed() < Duration::from_secs(10), "{status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        raised.elapsed() < Duration::from_secs(2),
        "resent at once: {:?}",
        raised.elapsed()
    );
    let bodies = bodies.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(seq_of(&bodies[0]), seq_of(&bodies[1]), "the same message");
    let stamp = |b: &str| {
        b.rsplit_once('_')
            .and_then(|(_, t)| lookout::arc::dc09::parse_timestamp(t))
            .expect("timestamp")
    };
    let now = i64::try_from(now_ms() / 1000).expect("secs");
    assert!((stamp(&bodies[0]) - now).abs() <= 5, "{bodies:?}");
    assert!(
        (stamp(&bodies[1]) - (now + ahead)).abs() <= 5,
        "on the receiver's clock: {bodies:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_the_receiver_does_not_understand_becomes_a_dead_letter_and_the_next_ones_go_on() {
    // The receiver answers DUH to every message about g1, ACK to the rest.
    let (port, bodies) = scripted_receiver(|_, body| {
        if body.contains("[Ig1]") {
            format!("\"DUH\"{}R1L2#{ACCOUNT}[]", seq_of(body))
        } else {
            format!("\"ACK\"{}R1L2#{ACCOUNT}[]", seq_of(body))
        }
    })
    .await;
    let server = TestServer::start_with(|c| c.arc.receivers = vec![plain_receiver(port)]).await;
    panics(&server, &["g1", "g2"]).await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let since = tokio::time::Instant::now();
    let status = loop {
        let status = get_json(&server.http(), &server.https("/api/v1/arc/status"), &sup).await;
        if status["receivers"][0]["delivered"] == 1 {
            break status;
        }
        assert!(since.elapsed() < Duration::from_secs(15), "{status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["receivers"][0]["dead_letters"], 1, "{status}");
    assert_eq!(status["receivers"][0]["pending"], 0, "{status}");
    let bodies = bodies.lock().expect("lock").clone();
    let g1: Vec<&String> = bodies.iter().filter(|b| b.contains("[Ig1]")).collect();
    assert_eq!(g1.len(), 3, "refused three times, then kept: {bodies:?}");
    assert!(
        bodies.last().is_some_and(|b| b.contains("[Ig2]")),
        "g2's after g1's: {bodies:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_supervisor_sees_the_receivers_but_only_its_own_orgs_alarms_waiting() {
    // Nobody listens: acme's and globex's alarms wait.
    let port = free_port();
    let server = TestServer::start_with(|c| {
        let mut r = receiver_config("arc1", port, ArcFormat::SiaDcs, false);
        r.account = Some("ABC".into());
        c.arc.receivers = vec![r];
    })
    .await;
    panics(&server, &["g1", "g2"]).await;
    let globex = server.token("g9", Some("globex"), &[Role::Guard]);
    let (status, body) = post(&server, "/api/v1/alerts", &globex, json!({"type": "PANIC"})).await;
    assert_eq!(status, 201, "{body}");
    let acme = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let theirs = server.token("sup", Some("globex"), &[Role::Supervisor]);
    let admin = server.token("root", None, &[Role::Admin]);
    let status = |token: String| {
        let server = &server;
        async move { get_json(&server.http(), &server.https("/api/v1/arc/status"), &token).await }
    };
    let (acme, globex, all) = (
        status(acme).await,
        status(theirs).await,
        status(admin).await,
    );
    assert_eq!(acme["receivers"][0]["pending"], 2, "{acme}");
    assert_eq!(globex["receivers"][0]["pending"], 1, "{globex}");
    assert_eq!(all["receivers"][0]["pending"], 3, "{all}");
    assert_eq!(globex["dropped"], Value::Null, "{globex}");
    assert_eq!(all["dropped"], 0, "{all}");
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    let (code, _) = post(&server, "/api/v1/alerts", &guard, json!({"type": "FIRE"})).await;
    assert_eq!(code, 201);
    let refused = server
        .http()
        .get(server.https("/api/v1/arc/status"))
        .bearer_auth(&guard)
        .send()
        .await
        .expect("status");
    assert_eq!(refused.status().as_u16(), 403, "not for guards");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_min_level_2_only_an_alert_nobody_acknowledged_in_time_goes_to_the_arc() {
    let receiver = Receiver::start(0, false, Some(KEY_ASCII)).await;
    let port = receiver.port;
    let server = TestServer::start_with(|c| {
        let mut r = receiver_config("arc1", port, ArcFormat::SiaDcs, false);
        r.min_level = Some(2);
        c.arc.receivers = vec![r];
        c.alerts.level2_after = Duration::from_secs(2);
        c.alerts.level3_after = Duration::from_secs(4);
    })
    .await;
    let ids = panics(&server, &["g1", "g2"]).await;
    // g2's is acknowledged at once: it never escalates, never goes.
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let (status, body) = post(
        &server,
        &format!("/api/v1/alerts/{}/ack", ids[1]),
        &sup,
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(receiver.events(false).is_empty(), "not before level 2");
    let events = receiver.wait_events(1, "g1's alarm at level 2").await;
    assert_eq!(guards_of(&events), ["g1"]);
    // Level 3 sends nothing more; resolving sends the restoral, for g1's alone.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    assert_eq!(receiver.events(false).len(), 1, "once");
    for id in &ids {
        resolve(&server, &sup, id).await;
    }
    let events = receiver.wait_events(2, "g1's restoral").await;
    assert_eq!(events[1]["event"]["code"], "PH");
    assert_eq!(guards_of(&events), ["g1", "g1"]);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(receiver.events(false).len(), 2, "nothing for g2's");
    server.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_on_shift_at_a_site_with_its_own_account_alarms_under_the_sites_account() {
    let receiver = Receiver::start(0, false, Some(KEY_ASCII)).await;
    let port = receiver.port;
    let site_account = common::dc09::SITE_ACCOUNT;
    let server = TestServer::start_with(|c| {
        let mut r = receiver_config("arc1", port, ArcFormat::SiaDcs, false);
        r.accounts
            .insert("acme/hq".into(), site_account.to_ascii_lowercase());
        c.arc.receivers = vec![r];
    })
    .await;
    let sup = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let now = now_ms();
    let shift = json!({"user": "g5", "site": "hq", "start": now - 1_000, "end": now + 600_000});
    let (status, body) = post(&server, "/api/v1/shifts", &sup, shift).await;
    assert_eq!(status, 201, "{body}");
    let ids = panics(&server, &["g5", "g6"]).await;
    let events = receiver.wait_events(2, "both alarms").await;
    assert_eq!(guards_of(&events), ["g5", "g6"]);
    assert_eq!(events[0]["event"]["account"], site_account, "{events:?}");
    assert_eq!(events[1]["event"]["account"], ACCOUNT, "{events:?}");
    let alert = get_json(
        &server.http(),
        &server.https(&format!("/api/v1/alerts/{}", ids[0])),
        &sup,
    )
    .await;
    assert_eq!(alert["site"], "hq", "{alert}");
    server.stop().await;
    receiver.stop().await;
}
