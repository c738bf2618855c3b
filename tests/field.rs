//! Field operations over real TLS WebSockets: locations, geofences, alerts and their escalation,
//! video, presence and private messages.

mod common;

use std::time::Duration;

use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

async fn server_with(adjust: impl FnOnce(&mut lookout::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
        c.limits.video_frames_per_second = 100_000;
        adjust(c);
    })
    .await
}

fn guard(server: &TestServer, user: &str, org: &str) -> String {
    server.token(user, Some(org), &[Role::Guard])
}

fn supervisor(server: &TestServer, user: &str, org: &str) -> String {
    server.token(user, Some(org), &[Role::Supervisor])
}

async fn get(server: &TestServer, path: &str, token: &str) -> Value {
    get_json(&server.http(), &server.https(path), token).await
}

async fn post(server: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    post_json(&server.http(), &server.https(path), token, body).await
}

#[tokio::test]
async fn a_location_reaches_its_orgs_supervisor_on_both_channels_and_bad_ones_are_refused() {
    let server = server_with(|_| {}).await;
    let mut g1 = server.connect(&guard(&server, "g1", "acme")).await;
    let mut sup = server.connect(&supervisor(&server, "s1", "acme")).await;
    let mut other = server.connect(&supervisor(&server, "s2", "globex")).await;
    assert!(ok(&sup.subscribe("/topic/location/g1").await));
    assert!(ok(&sup.subscribe("/topic/org/acme/locations").await));
    // globex's supervisor naming `g1` names globex's g1: allowed, and nothing of acme's.
    assert!(ok(&other.subscribe("/topic/location/g1").await));
    assert!(ok(&other.subscribe("/topic/org/globex/locations").await));
    assert_eq!(
        error_code(&other.subscribe("/topic/org/acme/locations").await),
        "forbidden"
    );

    let points = [(52.5000, 13.4000), (52.5001, 13.4001), (52.5002, 13.4002)];
    for (lat, lon) in points {
        let r = g1.publish("/topic/location/g1", location(lat, lon)).await;
        assert!(ok(&r), "{r}");
    }
    for (lat, _) in points {
        let direct = sup.next_on("/topic/location/g1").await;
        assert_eq!(direct["data"]["lat"], lat);
        let fan_in = sup.next_on("/topic/org/acme/locations").await;
        assert_eq!(fan_in["data"]["lat"], lat);
        assert_eq!(fan_in["data"]["user"], "g1");
    }
    let leaked = other.drain(Duration::from_millis(300)).await;
    assert!(leaked.iter().all(|f| f["type"] != "message"), "{leaked:?}");

    // Out of range, missing or in the future: bad_request, nothing stored.
    let now = lookout::clock::now_millis();
    for bad in [
        json!({"lat": 91.0, "lon": 13.4, "accuracy": 5.0, "ts": now}),
        json!({"lat": 52.5, "lon": -181.0, "accuracy": 5.0, "ts": now}),
        json!({"lat": 52.5, "lon": 13.4, "accuracy": -1.0, "ts": now}),
        json!({"lat": 52.5, "lon": 13.4, "accuracy": 5.0, "battery": 101, "ts": now}),
        json!({"lat": 52.5, "lon": 13.4, "accuracy": 5.0, "ts": now + 3_600_000}),
        json!({"lat": 52.5, "accuracy": 5.0, "ts": now}),
        json!({"lat": "north", "lon": 13.4, "accuracy": 5.0, "ts": now}),
    ] {
        let r = g1.publish("/topic/location/g1", bad.clone()).await;
        assert_eq!(error_code(&r), "bad_request", "{bad} -> {r}");
    }
    // NaN, which only MessagePack can carry.
    let mut packed = server
        .connect_as(&guard(&server, "g1", "acme"), Some("lookout.msgpack"))
        .await
        .expect("msgpack");
    let s = |v: &str| rmpv::Value::from(v);
    let nan = rmpv::Value::Map(vec![
        (s("lat"), rmpv::Value::F64(f64::NAN)),
        (s("lon"), rmpv::Value::F64(13.4)),
        (s("accuracy"), rmpv::Value::F64(5.0)),
        (s("ts"), rmpv::Value::from(now)),
    ]);
    let r = packed.publish_packed("/topic/location/g1", nan).await;
    assert_eq!(error_code(&r), "bad_request", "{r}");

    let sup_token = supervisor(&server, "s1", "acme");
    let history = get(&server, "/api/v1/locations/g1/history", &sup_token).await;
    let lats: Vec<f64> = history["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["location"]["lat"].as_f64().expect("lat"))
        .collect();
    assert_eq!(lats, points.iter().map(|p| p.0).collect::<Vec<_>>());
    let latest = get(&server, "/api/v1/locations", &sup_token).await;
    assert_eq!(latest[0]["user"], "g1");
    assert_eq!(latest[0]["location"]["lat"], 52.5002);
    let foreign = get(
        &server,
        "/api/v1/locations",
        &supervisor(&server, "s2", "globex"),
    )
    .await;
    assert_eq!(foreign, json!([]));
    // globex's supervisor naming `g1` reads globex's g1's history: empty, not acme's.
    let theirs = get(
        &server,
        "/api/v1/locations/g1/history",
        &supervisor(&server, "s2", "globex"),
    )
    .await;
    assert_eq!(theirs["points"], json!([]), "{theirs}");
    server.stop().await;
}

/// A square fence around (52.5, 13.4), about 1.1 km on a side.
fn square_fence(kind: &str) -> Value {
    json!({
        "name": "yard",
        "kind": kind,
        "shape": {"type": "Polygon", "coordinates": [[[13.395, 52.495], [13.405, 52.495], [13.405, 52.505], [13.395, 52.505], [13.395, 52.495]]]}
    })
}

async fn geofence_alerts(server: &TestServer, token: &str) -> Vec<Value> {
    get(server, "/api/v1/alerts", token)
        .await
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["type"] == "GEOFENCE")
        .cloned()
        .collect()
}

#[tokio::test]
async fn leaving_a_required_fence_raises_one_alert_and_returning_resolves_it_across_a_restart() {
    let server = server_with(|_| {}).await;
    let sup = supervisor(&server, "s1", "acme");
    let mut g1 = server.connect(&guard(&server, "g1", "acme")).await;

    let (status, fence) = post(&server, "/api/v1/geofences", &sup, square_fence("required")).await;
    assert_eq!(status, 201, "{fence}");
    // Invalid fences are refused.
    let mut bowtie = square_fence("required");
    bowtie["shape"]["coordinates"] =
        json!([[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]);
    assert_eq!(
        post(&server, "/api/v1/geofences", &sup, bowtie).await.0,
        400
    );
    assert_eq!(
        post(
            &server,
            "/api/v1/geofences",
            &guard(&server, "g1", "acme"),
            square_fence("required")
        )
        .await
        .0,
        403
    );

    let mut watcher = server.connect(&sup).await;
    assert!(ok(&watcher.subscribe("/topic/org/acme/alerts").await));

    assert!(ok(&g1
        .publish("/topic/location/g1", location(52.5, 13.4))
        .await));
    assert!(ok(&g1
        .publish("/topic/location/g1", location(52.51, 13.4))
        .await));
    assert!(ok(&g1
        .publish("/topic/location/g1", location(52.52, 13.4))
        .await));
    let created = watcher.next_on("/topic/org/acme/alerts").await;
    assert_eq!(created["data"]["event"], "created");
    assert_eq!(created["data"]["alert"]["type"], "GEOFENCE");
    assert_eq!(created["data"]["alert"]["fence"], fence["id"]);
    let alerts = geofence_alerts(&server, &sup).await;
    assert_eq!(alerts.len(), 1, "one violation, one alert: {alerts:?}");
    let id = alerts[0]["id"].clone();
    drop(g1);
    drop(watcher);

    // Restart in the middle of the violation: still outside raises nothing new.
    let server = server.restart().await;
    let mut g1 = server.connect(&guard(&server, "g1", "acme")).await;
    assert!(ok(&g1
        .publish("/topic/location/g1", location(52.53, 13.4))
        .await));
    assert_eq!(geofence_alerts(&server, &sup).await.len(), 1);

    // Back inside: the same alert is resolved by Lookout, and the audit trail says so.
    assert!(ok(&g1
        .publish("/topic/location/g1", location(52.5, 13.4))
        .await));
    let alerts = geofence_alerts(&server, &sup).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["id"], id);
    assert_eq!(alerts[0]["state"], "resolved");
    let trail: Vec<(String, String)> = audit_trail(&alerts[0])
        .into_iter()
        .map(|s| (s.action, s.by))
        .collect();
    assert_eq!(
        trail,
        [
            ("created".into(), "lookout".into()),
            ("resolved".into(), "lookout".into())
        ]
    );
    // Leaving again is a new violation.
    assert!(ok(&g1
        .publish("/topic/location/g1", location(52.52, 13.4))
        .await));
    assert_eq!(geofence_alerts(&server, &sup).await.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_forbidden_fence_alerts_on_entry_only_for_the_guards_it_names() {
    let server = server_with(|_| {}).await;
    let sup = supervisor(&server, "s1", "acme");
    let mut fence = square_fence("forbidden");
    fence["guards"] = json!(["g1"]);
    assert_eq!(post(&server, "/api/v1/geofences", &sup, fence).await.0, 201);
    let mut g1 = server.connect(&guard(&server, "g1", "acme")).await;
    let mut g2 = server.connect(&guard(&server, "g2", "acme")).await;
    assert!(ok(&g2
        .publish("/topic/location/g2", location(52.5, 13.4))
        .await));
    assert!(geofence_alerts(&server, &sup).await.is_empty());
    assert!(ok(&g1
        .publish("/topic/location/g1", location(52.6, 13.4))
        .await));
    assert!(geofence_alerts(&server, &sup).await.is_empty());
    assert!(ok(&g1
        .publish("/topic/location/g1", location(52.5, 13.4))
        .await));
    let alerts = geofence_alerts(&server, &sup).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["user"], "g1");
    server.stop().await;
}

#[tokio::test]
async fn a_required_fence_of_a_site_applies_only_during_a_shift_there() {
    let server = server_with(|_| {}).await;
    let sup = supervisor(&server, "s1", "acme");
    let mut fence = square_fence("required");
    fence["site"] = json!("north-gate");
    assert_eq!(post(&server, "/api/v1/geofences", &sup, fence).await.0, 201);
    let mut g1 = server.connect(&guard(&server, "g1", "acme")).await;
    assert!(ok(&g1
        .publish("/topic/location/g1", location(52.6, 13.4))
        .await));
    assert!(
        geofence_alerts(&server, &sup).await.is_empty(),
        "off shift: no alert"
    );
    // globex puts its own g1 on shift at a site of the same name: acme's g1 is still off.
    let now = lookout::clock::now_millis();
    let globex = supervisor(&server, "boss", "globex");
    let (status, theirs) = post(
        &server,
        "/api/v1/shifts",
        &globex,
        json!({"user":"g1","site":"north-gate","start": now - 1000,"end": now + 3_600_000}),
    )
    .await;
    assert_eq!(status, 201, "{theirs}");
    assert!(ok(&g1
        .publish("/topic/location/g1", location(52.605, 13.4))
        .await));
    assert!(
        geofence_alerts(&server, &sup).await.is_empty(),
        "another org's shift is another guard's"
    );
    let (status, shift) = post(
        &server,
        "/api/v1/shifts",
        &sup,
        json!({"user":"g1","site":"north-gate","start": now - 1000,"end": now + 3_600_000}),
    )
    .await;
    assert_eq!(status, 201, "{shift}");
    assert!(ok(&g1
        .publish("/topic/location/g1", location(52.61, 13.4))
        .await));
    assert_eq!(
        geofence_alerts(&server, &sup).await.len(),
        1,
        "on shift outside: alert"
    );
    let shifts = get(&server, "/api/v1/shifts", &sup).await;
    assert_eq!(shifts[0]["site"], "north-gate");
    server.stop().await;
}

#[tokio::test]
async fn an_unacknowledged_panic_escalates_to_levels_2_and_3_and_an_acknowledged_one_stops() {
    let server = server_with(|c| {
        c.alerts.level2_after = Duration::from_millis(800);
        c.alerts.level3_after = Duration::from_millis(1600);
    })
    .await;
    let sup = supervisor(&server, "s1", "acme");
    let mut g1 = server.connect(&guard(&server, "g1", "acme")).await;
    assert!(ok(&g1
        .publish("/topic/location/g1", location(52.5, 13.4))
        .await));
    let mut watcher = server.connect(&sup).await;
    assert!(ok(&watcher.subscribe("/topic/org/acme/alerts").await));
    let mut everyone = server.connect(&guard(&server, "g9", "globex")).await;
    assert!(ok(&everyone.subscribe("/topic/system").await));

    let r = g1
        .publish(
            "/topic/emergency/g1",
            json!({"type": "PANIC", "message": "help"}),
        )
        .await;
    assert!(ok(&r), "{r}");
    let id = r["alertId"].as_str().expect("alert id").to_string();
    let mut events = Vec::new();
    for _ in 0..3 {
        let m = watcher.next_on("/topic/org/acme/alerts").await;
        assert_eq!(m["data"]["alert"]["id"], id.as_str());
        assert_eq!(m["ack_required"], true, "{m}");
        events.push((
            m["data"]["event"].as_str().unwrap_or("").to_string(),
            m["data"]["alert"]["level"].as_u64().unwrap_or(0),
        ));
    }
    assert_eq!(
        events,
        [
            ("created".into(), 1),
            ("escalated".into(), 2),
            ("escalated".into(), 3)
        ]
    );
    let created = &watcher.inbox;
    assert!(created.iter().all(|f| f["type"] != "error"));
    // Level 3 tells everyone that an alert escalated, and nothing that identifies the org.
    let notice = everyone.next_on("/topic/system").await;
    assert_eq!(notice["data"]["kind"], "alert_escalated");
    assert_eq!(notice["data"]["level"], 3);
    assert!(!notice.to_string().contains("acme") && !notice.to_string().contains("g1"));

    let alert = get(&server, &format!("/api/v1/alerts/{id}"), &sup).await;
    assert_eq!(alert["level"], 3);
    assert_eq!(alert["priority"], "CRITICAL");
    assert_eq!(alert["position"]["lat"], 52.5);
    let steps: Vec<(String, u64)> = audit_trail(&alert)
        .into_iter()
        .map(|s| (s.action, s.level))
        .collect();
    assert_eq!(
        steps,
        [
            ("created".into(), 1),
            ("escalated".into(), 2),
            ("escalated".into(), 3)
        ]
    );

    // A second PANIC acknowledged at once never escalates.
    let r = g1
        .publish("/topic/emergency/g1", json!({"type": "PANIC"}))
        .await;
    let second = r["alertId"].as_str().expect("id").to_string();
    let ack = watcher
        .request(json!({"type":"alert_ack","alertId": second, "note": "on my way"}))
        .await;
    assert_eq!(ack["state"], "acknowledged", "{ack}");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let alert = get(&server, &format!("/api/v1/alerts/{second}"), &sup).await;
    assert_eq!(alert["level"], 1, "{alert}");
    assert_eq!(alert["audit"][1]["action"], "acknowledged");
    assert_eq!(alert["audit"][1]["by"], "s1");
    assert_eq!(alert["audit"][1]["note"], "on my way");
    // Resolve over REST; a guard may not, another org cannot even see it.
    let (status, _) = post(
        &server,
        &format!("/api/v1/alerts/{second}/resolve"),
        &guard(&server, "g1", "acme"),
        json!({}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post(
        &server,
        &format!("/api/v1/alerts/{second}/resolve"),
        &supervisor(&server, "s2", "globex"),
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, resolved) = post(
        &server,
        &format!("/api/v1/alerts/{second}/resolve"),
        &sup,
        json!({"note": "false alarm"}),
    )
    .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["state"], "resolved");
    let (status, _) = post(
        &server,
        &format!("/api/v1/alerts/{second}/ack"),
        &sup,
        json!({}),
    )
    .await;
    assert_eq!(status, 409, "a resolved alert cannot be acknowledged");
    let open = get(&server, "/api/v1/alerts?state=resolved", &sup).await;
    assert_eq!(open.as_array().map(Vec::len), Some(1));
    // REST fallback for guards, and bad types are refused.
    let (status, made) = post(
        &server,
        "/api/v1/alerts",
        &guard(&server, "g1", "acme"),
        json!({"type": "MEDICAL"}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["priority"], "HIGH");
    let (status, _) = post(
        &server,
        "/api/v1/alerts",
        &guard(&server, "g1", "acme"),
        json!({"type": "ALIENS"}),
    )
    .await;
    assert_eq!(status, 400);
    server.stop().await;
}

#[tokio::test]
async fn a_late_viewer_gets_the_latest_keyframe_first() {
    let server = server_with(|_| {}).await;
    let mut g1 = server
        .connect_as(&guard(&server, "g1", "acme"), Some("lookout.msgpack"))
        .await
        .expect("msgpack");
    for (bytes, keyframe) in [
        (b"k1".as_slice(), true),
        (b"d1", false),
        (b"k2", true),
        (b"d2", false),
    ] {
        assert!(ok(&g1
            .publish_frame("/topic/video/g1", bytes, keyframe)
            .await));
    }
    let mut viewer = server
        .connect_as(&supervisor(&server, "s1", "acme"), Some("lookout.msgpack"))
        .await
        .expect("msgpack");
    assert!(ok(&viewer.subscribe("/topic/video/g1").await));
    let first = viewer.next_on("/topic/video/g1").await;
    assert_eq!(first["data"]["keyframe"], true);
    assert_eq!(first["data"]["data"], json!(b"k2".to_vec()));
    assert!(ok(&g1.publish_frame("/topic/video/g1", b"d3", false).await));
    let next = viewer.next_on("/topic/video/g1").await;
    assert_eq!(next["data"]["data"], json!(b"d3".to_vec()));
    // Frames are checked.
    let r = g1
        .publish_frame("/topic/video/g1", &vec![0u8; 300 * 1024], false)
        .await;
    assert_eq!(error_code(&r), "too_large", "{r}");
    let r = g1
        .publish_packed("/topic/video/g1", rmpv::Value::from("not a frame"))
        .await;
    assert_eq!(error_code(&r), "bad_request", "{r}");
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_viewer_does_not_change_the_frame_rate_another_viewer_sees() {
    let server = server_with(|c| {
        // Room for 2.5 s of frames: the healthy viewer survives a loaded machine's pauses,
        // while the stalled one (400 frames of 60 KiB) still overflows.
        c.limits.outbound_queue = 64;
        c.limits.write_timeout = Duration::from_secs(600);
    })
    .await;
    let channel = "/topic/video/g1";
    let mut g1 = server
        .connect_as(&guard(&server, "g1", "acme"), Some("lookout.msgpack"))
        .await
        .expect("msgpack");
    let _stalled = {
        let token = supervisor(&server, "stalled", "acme");
        let mut c = connect_stalled(&server.cert_pem, server.addr, &token).await;
        assert!(ok(&c.subscribe(channel).await));
        c
    };
    // Fill the stalled viewer first with large frames.
    let big = vec![1u8; 60 * 1024];
    for _ in 0..400 {
        assert!(ok(&g1.publish_frame(channel, &big, false).await));
    }
    let mut viewer = server
        .connect_as(&supervisor(&server, "s1", "acme"), Some("lookout.msgpack"))
        .await
        .expect("msgpack");
    assert!(ok(&viewer.subscribe(channel).await));
    // 25 frames/s for 2 s; the healthy viewer must see (nearly) all of them in that window.
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(40));
        for _ in 0..50 {
            tick.tick().await;
            assert!(ok(&g1.publish_frame(channel, &[7u8; 4096], false).await));
        }
    });
    let window = tokio::time::Instant::now() + Duration::from_millis(2000) + PATIENCE / 3;
    let mut received = 0;
    while received < 50 {
        match tokio::time::timeout_at(window, viewer.next_on(channel)).await {
            Ok(_) => received += 1,
            Err(_) => break,
        }
    }
    sender.await.expect("sender");
    assert!(
        received >= 45,
        "the healthy viewer saw {received} of 50 frames"
    );
    assert!(
        server.stats().await["dropped_live"].as_u64().unwrap_or(0) > 0,
        "the stalled viewer lost frames"
    );
    server.stop().await;
}

#[tokio::test]
async fn presence_says_join_and_leave_once_per_user_and_private_messages_wait_for_an_offline_user()
{
    let server = server_with(|_| {}).await;
    let mut sup = server.connect(&supervisor(&server, "s1", "acme")).await;
    assert!(ok(&sup.subscribe("/topic/org/acme/presence").await));
    let g1_token = guard(&server, "g1", "acme");
    let first = server.connect(&g1_token).await;
    let second = server.connect(&g1_token).await;
    // The supervisor's own join races its subscription (on the Redis engine it comes back
    // through pub/sub): it may hear it or not, and nothing else of its own.
    let join = loop {
        let m = sup.next_on("/topic/org/acme/presence").await;
        if m["data"]["user"] == "s1" && m["data"]["event"] == "join" {
            continue;
        }
        break m;
    };
    assert_eq!(
        (
            join["data"]["event"].as_str(),
            join["data"]["user"].as_str()
        ),
        (Some("join"), Some("g1"))
    );
    let online = get(
        &server,
        "/api/v1/presence",
        &supervisor(&server, "s1", "acme"),
    )
    .await;
    let g1 = online["online"]
        .as_array()
        .expect("online")
        .iter()
        .find(|u| u["user"] == "g1")
        .cloned();
    assert_eq!(g1.expect("g1 online")["connections"], 2);
    drop(first);
    drop(second);
    let leave = sup.next_on("/topic/org/acme/presence").await;
    assert_eq!(
        (
            leave["data"]["event"].as_str(),
            leave["data"]["user"].as_str()
        ),
        (Some("leave"), Some("g1"))
    );
    let more = sup.drain(Duration::from_millis(300)).await;
    assert!(
        more.iter()
            .all(|f| f["channel"] != "/topic/org/acme/presence"),
        "one join, one leave: {more:?}"
    );

    // Typing indicators ride the same channel.
    let mut g2 = server.connect(&guard(&server, "g2", "acme")).await;
    let _ = sup.next_on("/topic/org/acme/presence").await;
    assert!(ok(&g2.request(json!({"type":"typing","room":"ops"})).await));
    let typing = sup.next_on("/topic/org/acme/presence").await;
    assert_eq!(typing["data"]["event"], "typing");
    assert_eq!(typing["data"]["room"], "ops");

    // g1 is offline: a private message waits for it.
    let r = g2
        .request(json!({"type":"publish","channel":"/user/queue/messages","to":"g1","data":{"text":"call me"}}))
        .await;
    assert!(ok(&r), "{r}");
    let mut back = server.connect(&g1_token).await;
    assert!(ok(&back.subscribe("/user/queue/messages").await));
    assert_eq!(back.next_message().await["data"]["text"], "call me");
    server.stop().await;
}

#[tokio::test]
async fn tracking_stats_report_distance_fence_time_last_seen_and_battery() {
    let server = server_with(|_| {}).await;
    let sup = supervisor(&server, "s1", "acme");
    assert_eq!(
        post(&server, "/api/v1/geofences", &sup, square_fence("required"))
            .await
            .0,
        201
    );
    let mut g1 = server.connect(&guard(&server, "g1", "acme")).await;
    let t0 = lookout::clock::now_millis() - 60_000;
    // 10 s inside, then 20 s outside, moving 0.01 degrees of latitude (~1.1 km) each step.
    for (i, lat) in [52.500, 52.510, 52.512].iter().enumerate() {
        let ts = t0 + [0, 10_000, 30_000][i];
        let data = json!({"lat": lat, "lon": 13.4, "accuracy": 5.0, "battery": 70 - i, "ts": ts});
        assert!(ok(&g1.publish("/topic/location/g1", data).await));
    }
    let stats = get(&server, "/api/v1/tracking/stats?user=g1", &sup).await;
    let s = &stats[0];
    assert_eq!(s["points"], 3);
    assert_eq!(s["inside_ms"], 10_000, "{s}");
    assert_eq!(s["outside_ms"], 20_000, "{s}");
    let distance = s["distance_m"].as_f64().expect("distance");
    assert!(
        (1300.0..1370.0).contains(&distance),
        "~1.33 km, got {distance}"
    );
    assert_eq!(s["battery"], 68.0);
    assert!(s["last_seen"].as_u64().is_some());
    let window = get(
        &server,
        &format!("/api/v1/tracking/stats?user=g1&from={}", t0 + 5_000),
        &sup,
    )
    .await;
    assert_eq!(window[0]["points"], 2);
    // An admin of no org names the org, and sees acme's g1 (without naming it: every org's
    // guards, each in its own org).
    let admin = server.token("root", None, &[Role::Admin]);
    let named = get(&server, "/api/v1/tracking/stats?user=g1&org=acme", &admin).await;
    assert_eq!(named[0]["points"], 3, "{named}");
    let all = get(&server, "/api/v1/tracking/stats", &admin).await;
    assert_eq!(all[0]["points"], 3, "{all}");
    // globex's supervisor asking for `g1` gets globex's g1, who has never reported.
    let theirs = get(
        &server,
        "/api/v1/tracking/stats?user=g1",
        &supervisor(&server, "s2", "globex"),
    )
    .await;
    assert_eq!(theirs[0]["points"], 0, "{theirs}");
    assert!(theirs[0]["last_seen"].is_null(), "{theirs}");
    let r = server
        .http()
        .get(server.https("/api/v1/tracking/stats?user=g1"))
        .bearer_auth(server.token("g2", Some("globex"), &[Role::Guard]))
        .send()
        .await
        .expect("stats");
    assert_eq!(r.status(), 403, "a guard sees its own stats only");
    server.stop().await;
}

#[tokio::test]
async fn a_resolved_alert_is_kept_for_the_retention_period_then_removed_and_open_ones_stay() {
    let server = server_with(|c| {
        c.retention.interval = Duration::from_millis(100);
        c.retention.kinds.insert(
            "alerts".into(),
            lookout::config::RetentionRule {
                max_messages: 1000,
                max_age: Duration::from_millis(700),
            },
        );
    })
    .await;
    let sup = supervisor(&server, "s1", "acme");
    let g1 = guard(&server, "g1", "acme");
    let _online = server.connect(&g1).await;
    let (_, open) = post(&server, "/api/v1/alerts", &g1, json!({"type": "FIRE"})).await;
    let (_, done) = post(&server, "/api/v1/alerts", &g1, json!({"type": "GENERAL"})).await;
    let done_id = done["id"].as_str().expect("id").to_string();
    let (status, _) = post(
        &server,
        &format!("/api/v1/alerts/{done_id}/resolve"),
        &sup,
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    // Still there right after resolution...
    assert_eq!(
        get(&server, &format!("/api/v1/alerts/{done_id}"), &sup).await["state"],
        "resolved"
    );
    // ...gone once the retention period has passed; the open one stays.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let r = server
            .http()
            .get(server.https(&format!("/api/v1/alerts/{done_id}")))
            .bearer_auth(&sup)
            .send()
            .await
            .expect("get");
        if r.status() == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "resolved alert never purged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open_id = open["id"].as_str().expect("id");
    assert_eq!(
        get(&server, &format!("/api/v1/alerts/{open_id}"), &sup).await["state"],
        "open"
    );
    server.stop().await;
}

/// The alert log asks the server for what it shows: alerts of a type, of a guard, of a period,
/// newest first and never more than `limit` (at most 1000) in one answer, which then says that
/// older ones were left out. Another org's alerts are never among them.
#[tokio::test]
async fn the_alert_listing_filters_by_type_guard_and_period_and_says_when_it_left_some_out() {
    let server = server_with(|c| c.limits.alerts_per_minute = 1000).await;
    let sup = supervisor(&server, "s1", "acme");
    let raise = |user: &'static str, org: &'static str, kind: &'static str| {
        let token = guard(&server, user, org);
        let server = &server;
        async move {
            let (status, made) =
                post(server, "/api/v1/alerts", &token, json!({"type": kind})).await;
            assert_eq!(status, 201, "{made}");
            made["created_at"].as_u64().expect("created_at")
        }
    };
    let mut created = Vec::new();
    for kind in ["PANIC", "MEDICAL", "PANIC", "MEDICAL", "PANIC"] {
        let user = if kind == "PANIC" { "g1" } else { "g2" };
        created.push(raise(user, "acme", kind).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    raise("g1", "globex", "PANIC").await;

    let listed = |path: &'static str| {
        let server = &server;
        let sup = &sup;
        async move {
            let all = get(server, path, sup).await;
            all.as_array()
                .unwrap_or_else(|| panic!("{path}: {all}"))
                .clone()
        }
    };
    let panics = listed("/api/v1/alerts?type=PANIC").await;
    assert_eq!(panics.len(), 3, "acme's three, not globex's");
    assert!(panics
        .iter()
        .all(|a| a["type"] == "PANIC" && a["user"] == "g1" && a["org"] == "acme"));
    let of_g2 = listed("/api/v1/alerts?user=g2").await;
    assert_eq!(of_g2.len(), 2);
    assert!(of_g2.iter().all(|a| a["type"] == "MEDICAL"));

    let since_third = format!("/api/v1/alerts?from={}", created[2]);
    let recent = get(&server, &since_third, &sup).await;
    let times: Vec<u64> = recent
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["created_at"].as_u64())
        .collect();
    assert_eq!(times, [created[4], created[3], created[2]], "newest first");
    let until_second = format!("/api/v1/alerts?to={}", created[1]);
    assert_eq!(
        get(&server, &until_second, &sup)
            .await
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // Two of five: the newest two, and the answer says more match.
    let fetch = |path: &'static str| {
        server
            .http()
            .get(server.https(path))
            .bearer_auth(&sup)
            .send()
    };
    let page = fetch("/api/v1/alerts?limit=2").await.expect("GET");
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()
            .get("lookout-truncated")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let page: Value = page.json().await.expect("json");
    let times: Vec<u64> = page
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["created_at"].as_u64())
        .collect();
    assert_eq!(times, [created[4], created[3]]);
    let whole = fetch("/api/v1/alerts?limit=5").await.expect("GET");
    assert!(
        whole.headers().get("lookout-truncated").is_none(),
        "all five fit"
    );

    for bad in [
        "/api/v1/alerts?limit=0",
        "/api/v1/alerts?limit=1001",
        "/api/v1/alerts?type=ALIENS",
        "/api/v1/alerts?from=yesterday",
    ] {
        let status = fetch(bad).await.expect("GET").status();
        assert_eq!(status, 400, "{bad}");
    }
    server.stop().await;
}
