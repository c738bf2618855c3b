//! Each org is a wall (issue 30). acme keeps secrets on every kind of channel and record: a
//! private message to its guard `carol`, her positions, her PANIC, a job, a room, a fence, a
//! shift and an enrolled phone. globex tries for them every way a hostile org can: a guard
//! link minted for acme's ids and exchanged, tokens of globex naming acme on REST, a user of
//! the identity provider who belongs to both orgs. Over every transport (native JSON and
//! MessagePack, STOMP, SockJS, SSE, long-poll, Socket.IO) and every REST route: nothing of
//! acme reaches globex, nobody of acme is locked out, and every refusal has its code.

mod common;

use std::time::Duration;

use common::sio::Sio;
use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

/// In every one of acme's secrets, so that any leak shows.
const SECRET: &str = "ACME-SECRET";
/// carol's latitude: a position of hers that leaked would carry it.
const LAT: f64 = 51.123_456;

/// The channel names a member of globex named `user` tries, as acme's members name theirs.
fn user_scoped(user: &str) -> Vec<String> {
    vec![
        "/user/queue/messages".into(),
        "/user/queue/alerts".into(),
        format!("/topic/location/{user}"),
        format!("/topic/emergency/{user}"),
        format!("/topic/video/{user}"),
        "/topic/job/j1".into(),
    ]
}
/// acme's org channels, which no member of globex may open.
const ACME_ORG: [&str; 5] = [
    "/topic/org/acme/room/ops",
    "/topic/org/acme/alerts",
    "/topic/org/acme/locations",
    "/topic/org/acme/tasks",
    "/topic/org/acme/presence",
];

fn assert_no_leak(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET),
        "{what} leaked acme's secret: {text}"
    );
    assert!(
        !text.contains("51.123456"),
        "{what} leaked carol's position: {text}"
    );
}

async fn mint_link(server: &TestServer, by: &str, guard: &str) -> (u16, Value) {
    post_json(
        &server.http(),
        &server.https("/api/v1/guard-links"),
        by,
        json!({ "guard": guard }),
    )
    .await
}

/// A guard link minted by `by` for `guard`, exchanged: the session token.
async fn enroll(server: &TestServer, by: &str, guard: &str) -> String {
    let (status, minted) = mint_link(server, by, guard).await;
    assert_eq!(status, 201, "{minted}");
    let response = server
        .http()
        .post(server.https("/api/v1/auth/link"))
        .json(&json!({ "token": minted["link"] }))
        .send()
        .await
        .expect("exchange");
    assert_eq!(response.status(), 200);
    let session: Value = response.json().await.expect("json");
    session["token"].as_str().expect("token").to_string()
}

async fn get(server: &TestServer, path: &str, token: &str) -> (u16, String) {
    let response = server
        .http()
        .get(server.https(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, String) {
    let response = server
        .http()
        .request(method, server.https(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

fn code_of(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap_or(Value::Null)["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// What acme holds when globex comes: ids of its alert, phone, fence and shift.
struct Acme {
    /// carol's phone, connected the whole time (her sessions are what globex must not see).
    _carol: Client,
    alert: String,
    device: String,
    fence: String,
    shift: String,
}

async fn acme_keeps_secrets(server: &TestServer) -> Acme {
    let sup = server.token("sup1", Some("acme"), &[Role::Supervisor]);
    let svc = server.token("svc", Some("acme"), &[Role::Service]);
    // carol's phone, enrolled through a link of acme's.
    let phone = enroll(server, &sup, "carol").await;
    let mut carol = server.connect(&phone).await;
    assert!(ok(&carol.subscribe("/user/queue/messages").await));
    let mut supervisor = server.connect(&sup).await;
    let sent = supervisor
        .request(json!({"type":"publish","channel":"/user/queue/messages","to":"carol","data":{"text":SECRET}}))
        .await;
    assert!(ok(&sent), "{sent}");
    assert_eq!(carol.next_message().await["data"]["text"], SECRET);
    for (channel, data) in [
        ("/topic/location/carol", location(LAT, 13.4)),
        (
            "/topic/emergency/carol",
            json!({"type": "PANIC", "message": SECRET}),
        ),
        ("/topic/org/acme/room/ops", json!({"text": SECRET})),
    ] {
        let r = carol.publish(channel, data).await;
        assert!(ok(&r), "{channel}: {r}");
    }
    let mut camera = server
        .connect_as(&phone, Some("lookout.msgpack"))
        .await
        .expect("msgpack");
    let frame = camera
        .publish_frame("/topic/video/carol", SECRET.as_bytes(), true)
        .await;
    assert!(ok(&frame), "{frame}");
    let mut service = server.connect(&svc).await;
    let job = service
        .request(json!({"type":"publish","channel":"/topic/job/j1","owner":"carol","data":{"status":SECRET}}))
        .await;
    assert!(ok(&job), "{job}");
    let (status, fence) = send(
        server,
        reqwest::Method::POST,
        "/api/v1/geofences",
        &sup,
        json!({"name": SECRET, "kind": "forbidden", "shape": {"type": "Polygon", "coordinates": [[[13.0, 52.0], [13.1, 52.0], [13.1, 52.1], [13.0, 52.0]]]}}),
    )
    .await;
    assert_eq!(status, 201, "{fence}");
    let now = lookout::clock::now_millis();
    let (status, shift) = send(
        server,
        reqwest::Method::POST,
        "/api/v1/shifts",
        &sup,
        json!({"user": "carol", "site": SECRET, "start": now, "end": now + 3_600_000}),
    )
    .await;
    assert_eq!(status, 201, "{shift}");
    let alerts = get_json(&server.http(), &server.https("/api/v1/alerts"), &sup).await;
    let alert = alerts["alerts"]
        .as_array()
        .and_then(|a| a.first())
        .or_else(|| alerts.as_array().and_then(|a| a.first()))
        .expect("carol's alert")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let devices = get_json(&server.http(), &server.https("/api/v1/devices"), &sup).await;
    let device = devices["devices"][0]["id"]
        .as_str()
        .expect("device")
        .to_string();
    let id = |body: &str| {
        serde_json::from_str::<Value>(body).expect("json")["id"]
            .as_str()
            .expect("id")
            .to_string()
    };
    Acme {
        _carol: carol,
        alert,
        device,
        fence: id(&fence),
        shift: id(&shift),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_of_one_org_reaches_another_on_any_transport_or_route_and_nobody_is_locked_out() {
    let server = TestServer::start_with(|c| {
        c.limits.messages_per_second = 10_000;
        c.limits.message_burst = 10_000;
        c.limits.max_connections_per_user = 20;
        // An idle SockJS poll ends with a heart-beat after this.
        c.limits.ping_interval = Duration::from_secs(1);
    })
    .await;
    let acme = acme_keeps_secrets(&server).await;
    let globex = server.token("boss", Some("globex"), &[Role::Supervisor]);
    let globex_svc = server.token("svc", Some("globex"), &[Role::Service]);

    // Forged the ways of the measurement: links for acme's ids, minted by globex's supervisor.
    let forged_carol = enroll(&server, &globex, "carol").await;
    let forged_alice = enroll(&server, &globex, "alice").await;
    // A user of the identity provider who is in both orgs.
    let dana_globex = server.token("dana", Some("globex"), &[Role::Guard]);
    let dana_acme = server.token("dana", Some("acme"), &[Role::Guard]);
    let mut acme_dana = server.connect(&dana_acme).await;
    let sup = server.token("sup1", Some("acme"), &[Role::Supervisor]);
    let mut acme_sup = server.connect(&sup).await;
    let sent = acme_sup
        .request(json!({"type":"publish","channel":"/user/queue/messages","to":"dana","data":{"text":SECRET}}))
        .await;
    assert!(ok(&sent), "{sent}");
    assert!(ok(&acme_dana.subscribe("/user/queue/messages").await));

    // alice's forged identity connects before acme's alice ever has.
    let _early = server.connect(&forged_alice).await;
    let mut real_alice = server
        .connect(&server.token("alice", Some("acme"), &[Role::Guard]))
        .await;
    assert!(ok(&real_alice.subscribe("/user/queue/messages").await));

    for (who, user, token) in [
        ("forged carol", "carol", &forged_carol),
        ("globex dana", "dana", &dana_globex),
    ] {
        let names = user_scoped(user);
        // Native JSON: a user's names resolve in globex; acme's org channels are refused.
        let mut native = server.connect(token).await;
        for channel in names.iter().filter(|c| !c.contains("video")) {
            let reply = native
                .request(json!({"type":"subscribe","channel":channel,"since":0}))
                .await;
            if channel.contains("/job/") {
                assert_eq!(error_code(&reply), "forbidden", "{who} {channel}: {reply}");
            } else {
                assert!(ok(&reply), "{who} {channel}: {reply}");
                assert_eq!(reply["head"], 0, "{who} {channel} is globex's own: {reply}");
            }
        }
        for channel in ACME_ORG {
            let reply = native.subscribe(channel).await;
            assert_eq!(error_code(&reply), "forbidden", "{who} {channel}: {reply}");
        }
        for frame in native.drain(Duration::from_millis(300)).await {
            assert_no_leak(&format!("{who} over native JSON"), &frame.to_string());
        }
        // MessagePack: the camera channel of globex's carol is empty.
        let mut packed = server
            .connect_as(token, Some("lookout.msgpack"))
            .await
            .expect("msgpack");
        let reply = packed
            .request(json!({"type":"subscribe","channel":format!("/topic/video/{user}"),"since":0}))
            .await;
        assert!(ok(&reply), "{reply}");
        let frames = packed.drain(Duration::from_millis(300)).await;
        assert!(
            frames.iter().all(|f| f["type"] != "message"),
            "{who} got a frame of acme's camera: {frames:?}"
        );

        // STOMP: the same names; acme's org channels answered with ERROR forbidden.
        let mut stomp = StompClient::connect(&server, token).await;
        for (i, channel) in names.iter().filter(|c| !c.contains("/job/")).enumerate() {
            let id = i.to_string();
            stomp
                .send_frame("SUBSCRIBE", &[("destination", channel), ("id", &id)], b"")
                .await;
        }
        while let Ok(frame) =
            tokio::time::timeout(Duration::from_millis(400), stomp.next_frame()).await
        {
            assert_ne!(frame.command, "ERROR", "{who}: {frame:?}");
            assert_no_leak(
                &format!("{who} over STOMP"),
                &String::from_utf8_lossy(&frame.body),
            );
        }
        let mut refused = StompClient::connect(&server, token).await;
        refused
            .send_frame(
                "SUBSCRIBE",
                &[("destination", "/topic/org/acme/room/ops"), ("id", "x")],
                b"",
            )
            .await;
        let error = refused.next_frame().await;
        assert_eq!(error.command, "ERROR", "{error:?}");
        assert_eq!(error.get("message"), Some("forbidden"), "{error:?}");

        // SockJS (XHR polling, the native protocol).
        let http = server.http();
        let base = server.https(&format!("/ws/000/wall{}", who.len()));
        let query = format!("?token={token}&protocol=lookout.json");
        let mut polled = String::new();
        let poll = |http: &reqwest::Client, url: String| {
            let http = http.clone();
            async move {
                http.post(url)
                    .send()
                    .await
                    .expect("poll")
                    .text()
                    .await
                    .expect("body")
            }
        };
        polled += &poll(&http, format!("{base}/xhr{query}")).await;
        let frames: Vec<String> = names
            .iter()
            .map(String::as_str)
            .chain(ACME_ORG)
            .enumerate()
            .map(|(i, c)| json!({"type":"subscribe","id":i,"channel":c,"since":0}).to_string())
            .collect();
        let sent = http
            .post(format!("{base}/xhr_send{query}"))
            .body(serde_json::to_string(&frames).expect("json"))
            .send()
            .await
            .expect("send");
        assert_eq!(sent.status(), 204);
        for _ in 0..3 {
            polled += &poll(&http, format!("{base}/xhr{query}")).await;
        }
        assert_no_leak(&format!("{who} over SockJS"), &polled);
        assert!(
            polled.contains("forbidden"),
            "acme's org channels refused: {polled}"
        );

        // SSE and long-poll: globex's own names answer empty; acme's org channels 403.
        let user_scoped = names
            .iter()
            .filter(|c| !c.contains("/job/"))
            .cloned()
            .collect::<Vec<_>>()
            .join(",");
        let (status, body) = get(
            &server,
            &format!("/api/v1/poll?channels={user_scoped}&since=0&timeout=1"),
            token,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_no_leak(&format!("{who} over long-poll"), &body);
        let events = server
            .http()
            .get(server.https(&format!("/api/v1/events?channels={user_scoped}&since=0")))
            .bearer_auth(token)
            .send()
            .await
            .expect("events");
        assert_eq!(events.status(), 200);
        let mut stream = EventReader::new(events);
        while let Ok(Some((_, _, data))) =
            tokio::time::timeout(Duration::from_millis(400), stream.next_event()).await
        {
            assert_no_leak(&format!("{who} over SSE"), &data);
        }
        for route in ["poll", "events"] {
            let (status, body) = get(
                &server,
                &format!("/api/v1/{route}?channels=/topic/org/acme/room/ops&since=0&timeout=1"),
                token,
            )
            .await;
            assert_eq!(
                (status, code_of(&body)),
                (403, "forbidden".into()),
                "{route}"
            );
        }
    }

    // Socket.IO.
    let mut sio = Sio::start(&server);
    let connected = sio
        .connect("forged", json!({"auth": {"token": forged_carol}}))
        .await;
    assert_eq!(connected["event"], "connected", "{connected}");
    for channel in user_scoped("carol").iter().filter(|c| !c.contains("/job/")) {
        let reply = sio
            .request(
                "forged",
                "subscribe",
                json!({"channel": channel, "since": 0}),
            )
            .await;
        assert_eq!(reply["ok"], true, "{channel}: {reply}");
    }
    for channel in ACME_ORG {
        let reply = sio
            .request("forged", "subscribe", json!({"channel": channel}))
            .await;
        assert_eq!(reply["error"]["code"], "forbidden", "{channel}: {reply}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for m in sio.unread_messages("forged") {
        assert_no_leak("forged carol over Socket.IO", &m.to_string());
    }
    sio.exit().await;

    // REST, route by route, as globex's supervisor (and its service).
    let (status, body) = get(
        &server,
        "/api/v1/channels/history?channel=/user/queue/messages",
        &forged_carol,
    )
    .await;
    assert_eq!(status, 200);
    assert_no_leak("history of carol's queue", &body);
    let (status, body) = get(&server, "/api/v1/messages", &forged_carol).await;
    assert_eq!(status, 200);
    assert_no_leak("carol's conversations", &body);
    for path in [
        "/api/v1/locations",
        "/api/v1/locations/carol/history",
        "/api/v1/tracking/stats?user=carol",
        "/api/v1/alerts",
        "/api/v1/devices",
        "/api/v1/geofences",
        "/api/v1/shifts",
        "/api/v1/site",
        "/api/v1/presence",
        "/api/v1/websocket/user/carol/status",
        "/api/v1/messages",
        "/api/v1/messages?with=carol",
        "/api/v1/messages?with=sup1",
    ] {
        let (status, body) = get(&server, path, &globex).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_no_leak(path, &body);
        assert!(!body.contains(&acme.device), "{path}: {body}");
    }
    // The status of "carol" is globex's carol's: none of acme's carol's sessions.
    let sessions = |body: String| -> Vec<String> {
        serde_json::from_str::<Value>(&body).expect("json")["connections"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|c| c["sessionId"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let theirs = sessions(
        get(&server, "/api/v1/websocket/user/carol/status", &globex)
            .await
            .1,
    );
    let acmes = sessions(
        get(&server, "/api/v1/websocket/user/carol/status", &sup)
            .await
            .1,
    );
    assert!(!acmes.is_empty(), "acme's carol is connected");
    assert!(
        theirs.iter().all(|s| !acmes.contains(s)),
        "globex sees acme's carol's sessions: {theirs:?} {acmes:?}"
    );
    // acme's carol's shift report: refused to globex's supervisor and to globex's carol alike.
    for token in [&globex, &forged_carol] {
        for ext in ["pdf", "csv"] {
            let path = format!("/api/v1/shifts/{}/report.{ext}", acme.shift);
            let (status, body) = get(&server, &path, token).await;
            assert_eq!(status, 403, "{path}: {body}");
            assert_no_leak(&path, &body);
        }
    }
    // Naming acme outright: refused with its code, never answered with acme's data.
    for path in [
        "/api/v1/geofences?org=acme",
        "/api/v1/presence?org=acme",
        "/api/v1/messages?org=acme",
        "/api/v1/locations?org=acme",
        "/api/v1/websocket/user/carol/status?org=acme",
        "/api/v1/channels/history?channel=/topic/org/acme/room/ops",
        "/api/v1/notify/status",
    ] {
        let (status, body) = get(&server, path, &globex).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(code_of(&body), "forbidden", "{path}");
    }
    // acme's records by id: as if they did not exist, or forbidden; never changed.
    use reqwest::Method;
    for (method, path, body) in [
        (
            Method::GET,
            format!("/api/v1/alerts/{}", acme.alert),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/alerts/{}/ack", acme.alert),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/alerts/{}/resolve", acme.alert),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/devices/{}/revoke", acme.device),
            json!({}),
        ),
        (
            Method::PUT,
            format!("/api/v1/geofences/{}", acme.fence),
            json!({"name": "x", "kind": "forbidden", "shape": {"type": "Polygon", "coordinates": [[[1.0, 1.0], [1.1, 1.0], [1.1, 1.1], [1.0, 1.0]]]}}),
        ),
        (
            Method::DELETE,
            format!("/api/v1/geofences/{}", acme.fence),
            json!({}),
        ),
        (
            Method::DELETE,
            format!("/api/v1/shifts/{}", acme.shift),
            json!({}),
        ),
    ] {
        let (status, answer) = send(&server, method.clone(), &path, &globex, body).await;
        assert!(
            matches!(
                (status, code_of(&answer).as_str()),
                (403, "forbidden") | (404, "not_found")
            ),
            "{method} {path}: {status} {answer}"
        );
        assert_no_leak(&path, &answer);
    }
    // Writing into acme by naming it: refused with its code.
    for (path, body) in [
        (
            "/api/v1/guard-links",
            json!({"guard": "carol", "org": "acme"}),
        ),
        (
            "/api/v1/geofences",
            json!({"name": "x", "kind": "forbidden", "org": "acme", "shape": {"type": "Polygon", "coordinates": [[[1.0, 1.0], [1.1, 1.0], [1.1, 1.1], [1.0, 1.0]]]}}),
        ),
        (
            "/api/v1/shifts",
            json!({"user": "carol", "org": "acme", "site": "x", "start": 1, "end": 2}),
        ),
        (
            "/api/v1/broadcast/maintenance",
            json!({"data": {"text": "x"}}),
        ),
    ] {
        let (status, answer) = send(&server, Method::POST, path, &globex, body).await;
        assert_eq!(
            (status, code_of(&answer)),
            (403, "forbidden".into()),
            "{path}: {answer}"
        );
    }
    // A PANIC raised by globex's carol is globex's: acme's supervisors never see it.
    let acme_alerts_before = get(&server, "/api/v1/alerts", &sup).await.1;
    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/alerts",
        &forged_carol,
        json!({"type": "PANIC", "message": "globex's own"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let acme_alerts_after = get(&server, "/api/v1/alerts", &sup).await.1;
    assert!(
        !acme_alerts_after.contains("globex's own"),
        "{acme_alerts_after}"
    );
    assert_eq!(
        acme_alerts_before.matches("\"id\"").count(),
        acme_alerts_after.matches("\"id\"").count()
    );
    // Aggregates of the whole appliance are all a supervisor of globex reads of the rest.
    for path in ["/api/v1/websocket/stats", "/metrics"] {
        let (status, body) = get(&server, path, &globex).await;
        assert_eq!(status, 200, "{path}");
        assert_no_leak(path, &body);
        assert!(!body.contains("acme"), "{path} names acme: {body}");
    }
    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/broadcast/system",
        &globex_svc,
        json!({"data": {"text": "to every org"}}),
    )
    .await;
    assert_eq!(
        (status, code_of(&body)),
        (403, "forbidden".into()),
        "{body}"
    );
    // globex's service writes to "carol": globex's carol, never acme's.
    let (status, body) = send(
        &server,
        Method::POST,
        "/api/v1/publish",
        &globex_svc,
        json!({"channel": "/user/queue/messages", "user": "carol", "data": {"text": "for globex's carol"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Nobody of acme is locked out, and acme's own see everything that is theirs.
    let acme_phone_token = server.token("carol", Some("acme"), &[Role::Guard]);
    let (status, history) = get(
        &server,
        "/api/v1/channels/history?channel=/user/queue/messages",
        &acme_phone_token,
    )
    .await;
    assert_eq!(status, 200);
    assert!(history.contains(SECRET), "{history}");
    assert!(!history.contains("for globex's carol"), "{history}");
    let mut stomp = StompClient::connect(&server, &acme_phone_token).await;
    stomp
        .send_frame(
            "SUBSCRIBE",
            &[
                ("destination", "/user/queue/messages"),
                ("id", "1"),
                ("receipt", "r1"),
            ],
            b"",
        )
        .await;
    assert_eq!(stomp.next_frame().await.command, "RECEIPT");
    let mut sio = Sio::start(&server);
    let carol_again = sio
        .connect("carol", json!({"auth": {"token": acme_phone_token}}))
        .await;
    assert_eq!(carol_again["event"], "connected", "{carol_again}");
    sio.exit().await;
    let sent = acme_sup
        .request(json!({"type":"publish","channel":"/user/queue/messages","to":"alice","data":{"text":"for acme's alice"}}))
        .await;
    assert!(ok(&sent), "{sent}");
    assert_eq!(
        real_alice.next_message().await["data"]["text"],
        "for acme's alice"
    );
    assert_eq!(acme_dana.next_message().await["data"]["text"], SECRET);
    server.stop().await;
}
