//! Socket.IO clients join the hub unchanged: the real `socket.io-client` from npm (Node.js,
//! tests/node/socketio.mjs) over the WebSocket transport and over HTTP long-polling, beside
//! native clients on the same channels.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::sio::Sio;
use common::*;
use lookout::auth::Role;
use serde_json::{json, Value};

/// A port free now, so that a restarted server comes back where its clients reconnect.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn connected_gauge(server: &TestServer, protocol: &str) -> f64 {
    value(
        &scrape(server).await,
        "lookout_connections",
        &[("protocol", protocol)],
    )
}

/// Waits up to [`PATIENCE`] until `/metrics` counts `want` Socket.IO connections.
async fn wait_connected(server: &TestServer, want: f64, what: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let counted = connected_gauge(server, "socket.io").await;
        if counted == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {counted} Socket.IO connections counted, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Subscribe, receive what a native client publishes, publish with an acknowledgement, be
/// refused a forbidden channel, and after a restart resume with `since` losing nothing; a
/// supervisor of another org sees none of it.
async fn a_supervisor_follows_a_guard_and_resumes_after_a_restart(transports: Value) {
    let port = free_port();
    let server = TestServer::start_with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().expect("addr");
    })
    .await;
    let guard_token = server.token("g1", Some("acme"), &[Role::Guard]);
    let mut guard = server.connect(&guard_token).await;
    let mut native_sup = server
        .connect(&server.token("s9", Some("acme"), &[Role::Supervisor]))
        .await;
    assert!(ok(&native_sup.subscribe("/topic/location/g1").await));
    assert!(ok(&native_sup.subscribe("/topic/org/acme/room/ops").await));

    let mut sio = Sio::start(&server);
    let sup = server.token("s1", Some("acme"), &[Role::Supervisor]);
    let connected = sio
        .connect(
            "sup",
            json!({"auth": {"token": sup}, "transports": transports, "reconnection": true}),
        )
        .await;
    assert_eq!(connected["event"], "connected", "{connected}");
    let expected_transport = transports[0].clone();
    assert_eq!(connected["transport"], expected_transport, "{connected}");

    let subscribed = sio
        .request("sup", "subscribe", json!({"channel": "/topic/location/g1"}))
        .await;
    assert_eq!(subscribed["ok"], true, "{subscribed}");
    assert_eq!(subscribed["channel"], "/topic/location/g1");
    assert_eq!(subscribed["head"], 0, "{subscribed}");
    let epoch = subscribed["epoch"].as_str().expect("epoch").to_string();

    // What a native guard publishes reaches the Socket.IO and the native supervisor alike.
    let published = guard
        .publish("/topic/location/g1", location(48.85, 2.35))
        .await;
    assert!(ok(&published), "{published}");
    let seq1 = published["seq"].as_u64().expect("seq");
    let got = sio.message("sup").await;
    assert_eq!(got["channel"], "/topic/location/g1");
    assert_eq!(got["seq"], seq1);
    assert_eq!(got["data"]["lat"], 48.85);
    assert!(got["timestamp"].as_u64().is_some(), "{got}");
    assert_eq!(native_sup.next_on("/topic/location/g1").await["seq"], seq1);

    // A publish is acknowledged once durable, with its seq and epoch; the native client sees
    // the same seq.
    let reply = sio
        .request(
            "sup",
            "publish",
            json!({"channel": "/topic/org/acme/room/ops", "data": {"text": "on my way"}}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["epoch"], epoch.as_str());
    let room_seq = reply["seq"].as_u64().expect("seq");
    let native = native_sup.next_on("/topic/org/acme/room/ops").await;
    assert_eq!(native["seq"], room_seq);
    assert_eq!(native["data"]["text"], "on my way");

    // Another org's channel is refused through the acknowledgement.
    let refused = sio
        .request(
            "sup",
            "subscribe",
            json!({"channel": "/topic/org/globex/alerts"}),
        )
        .await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");

    // A supervisor of another org gets none of acme's channels.
    let other = server.token("s2", Some("globex"), &[Role::Supervisor]);
    let other_connected = sio
        .connect(
            "other",
            json!({"auth": {"token": other}, "transports": transports}),
        )
        .await;
    assert_eq!(other_connected["event"], "connected", "{other_connected}");
    let refused = sio
        .request(
            "other",
            "subscribe",
            json!({"channel": "/topic/org/acme/locations"}),
        )
        .await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    // Naming `g1` names globex's g1: nothing of acme's reaches it (checked below).
    let theirs = sio
        .request(
            "other",
            "subscribe",
            json!({"channel": "/topic/location/g1"}),
        )
        .await;
    assert_eq!(theirs["ok"], true, "{theirs}");
    assert_eq!(theirs["head"], 0, "{theirs}");
    let own = sio
        .request(
            "other",
            "subscribe",
            json!({"channel": "/topic/org/globex/alerts"}),
        )
        .await;
    assert_eq!(own["ok"], true, "{own}");

    // The server restarts; the guard goes on publishing before the supervisor is back.
    drop(guard);
    drop(native_sup);
    let server = server.restart().await;
    // Told why, then the transport closes (not a namespace DISCONNECT, after which
    // socket.io-client would not reconnect by itself).
    let closing = sio
        .wait("closing", |s| s["event"] == "closing" && s["name"] == "sup")
        .await;
    assert_eq!(closing["data"]["code"], 1001, "{closing}");
    let gone = sio
        .wait("disconnect", |s| {
            s["event"] == "disconnect" && s["name"] == "sup"
        })
        .await;
    // Over polling the server may be gone before the client's next poll: a transport error,
    // after which it reconnects the same way.
    assert!(
        ["transport close", "transport error"]
            .contains(&gone["reason"].as_str().unwrap_or_default()),
        "{gone}"
    );
    let mut guard = server.connect(&guard_token).await;
    let mut missed = Vec::new();
    for i in 0..3 {
        let published = guard
            .publish(
                "/topic/location/g1",
                location(48.86 + f64::from(i) / 100.0, 2.35),
            )
            .await;
        assert!(ok(&published), "{published}");
        missed.push(published["seq"].as_u64().expect("seq"));
    }
    // socket.io-client reconnects by itself (with its auth again); the app resubscribes from
    // the last seq it saw.
    let back = sio
        .wait("reconnected", |s| {
            s["event"] == "reconnected" && s["name"] == "sup"
        })
        .await;
    assert_eq!(back["transport"], expected_transport, "{back}");
    let resumed = sio
        .request(
            "sup",
            "subscribe",
            json!({"channel": "/topic/location/g1", "since": seq1, "epoch": epoch}),
        )
        .await;
    assert_eq!(resumed["ok"], true, "{resumed}");
    assert_eq!(resumed["recovered"], true, "{resumed}");
    let mut replayed = Vec::new();
    for _ in &missed {
        replayed.push(sio.message("sup").await["seq"].as_u64().expect("seq"));
    }
    assert_eq!(replayed, missed, "every missed message, once, in order");
    // Live again after the replay.
    let live = guard
        .publish("/topic/location/g1", location(48.9, 2.35))
        .await;
    assert_eq!(sio.message("sup").await["seq"], live["seq"]);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        sio.unread_messages("other").is_empty(),
        "another org received {:?}",
        sio.unread_messages("other")
    );
    assert!(sio.unread_messages("sup").is_empty(), "duplicates");
    sio.exit().await;
    server.stop().await;
}

#[tokio::test]
async fn over_websocket_a_supervisor_follows_a_guard_and_resumes_after_a_restart() {
    a_supervisor_follows_a_guard_and_resumes_after_a_restart(json!(["websocket"])).await;
}

#[tokio::test]
async fn over_long_polling_a_supervisor_follows_a_guard_and_resumes_after_a_restart() {
    a_supervisor_follows_a_guard_and_resumes_after_a_restart(json!(["polling"])).await;
}

#[tokio::test]
async fn a_polling_client_upgrades_to_websocket_and_keeps_its_session() {
    let server = TestServer::start().await;
    let mut guard = server
        .connect(&server.token("g1", Some("acme"), &[Role::Guard]))
        .await;
    let mut sio = Sio::start(&server);
    let sup = server.token("s1", Some("acme"), &[Role::Supervisor]);
    let connected = sio
        .connect(
            "sup",
            json!({"auth": {"token": sup}, "transports": ["polling", "websocket"]}),
        )
        .await;
    // It starts on polling; the upgrade may be done before the namespace is joined.
    assert!(
        ["polling", "websocket"].contains(&connected["transport"].as_str().unwrap_or_default()),
        "{connected}"
    );
    let subscribed = sio
        .request("sup", "subscribe", json!({"channel": "/topic/location/g1"}))
        .await;
    assert_eq!(subscribed["ok"], true, "{subscribed}");
    let upgraded = sio
        .wait("upgrade", |s| {
            s["event"] == "upgraded" && s["name"] == "sup"
        })
        .await;
    assert_eq!(upgraded["transport"], "websocket");
    // The same session (its subscription) over the new transport.
    let published = guard
        .publish("/topic/location/g1", location(48.85, 2.35))
        .await;
    assert_eq!(sio.message("sup").await["seq"], published["seq"]);
    sio.exit().await;
    server.stop().await;
}

#[tokio::test]
async fn tokens_come_from_auth_the_query_or_the_header_and_bad_ones_get_connect_error() {
    let server = TestServer::start().await;
    let mut sio = Sio::start(&server);
    let sup = server.token("s1", Some("acme"), &[Role::Supervisor]);
    for (name, options) in [
        ("auth", json!({"auth": {"token": sup}})),
        ("query", json!({"query": {"token": sup}})),
        (
            "header",
            json!({"headers": {"Authorization": format!("Bearer {sup}")}}),
        ),
        (
            "polling-header",
            json!({"headers": {"Authorization": format!("Bearer {sup}")}, "transports": ["polling"]}),
        ),
    ] {
        let step = sio.connect(name, options).await;
        assert_eq!(step["event"], "connected", "{name}: {step}");
    }
    let expired = {
        let claims = json!({"sub": "s1", "org": "acme", "roles": ["supervisor"], "exp": 1_000});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("token")
    };
    for (name, options) in [
        ("bad", json!({"auth": {"token": "not-a-jwt"}})),
        ("expired", json!({"auth": {"token": expired}})),
        ("none", json!({})),
        (
            "bad-polling",
            json!({"auth": {"token": "x"}, "transports": ["polling"]}),
        ),
    ] {
        let step = sio.connect(name, options).await;
        assert_eq!(step["event"], "connect_error", "{name}: {step}");
        assert_eq!(step["message"], "unauthorized", "{name}: {step}");
    }
    sio.exit().await;
    server.stop().await;
}

/// Video frames are MessagePack binary on the native protocol and Socket.IO attachments here,
/// byte for byte both ways.
#[tokio::test]
async fn video_frames_cross_between_msgpack_guards_and_socketio_viewers_byte_for_byte() {
    let server = TestServer::start().await;
    let guard_token = server.token("g1", Some("acme"), &[Role::Guard]);
    let mut guard = server
        .connect_as(&guard_token, Some("lookout.msgpack"))
        .await
        .expect("msgpack guard");
    let mut sio = Sio::start(&server);
    let sup = server.token("s1", Some("acme"), &[Role::Supervisor]);
    assert_eq!(
        sio.connect("viewer", json!({"auth": {"token": sup}})).await["event"],
        "connected"
    );
    let subscribed = sio
        .request("viewer", "subscribe", json!({"channel": "/topic/video/g1"}))
        .await;
    assert_eq!(subscribed["ok"], true, "{subscribed}");

    // Every byte value, a JPEG's start and end markers, and a few KiB of noise.
    let mut frame: Vec<u8> = (0..=255u8).collect();
    frame.extend_from_slice(&[0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0xff, 0xd9]);
    frame.extend((0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let reply = guard.publish_frame("/topic/video/g1", &frame, true).await;
    assert!(ok(&reply), "{reply}");
    let got = sio.message("viewer").await;
    assert_eq!(got["channel"], "/topic/video/g1");
    assert_eq!(got["data"]["data"]["$binary"], hex(&frame), "byte for byte");
    assert_eq!(got["data"]["keyframe"], true);

    // And from a Socket.IO guard (over polling: binary as base64 there) to a MessagePack viewer.
    let g2 = server.token("g2", Some("acme"), &[Role::Guard]);
    assert_eq!(
        sio.connect(
            "guard",
            json!({"auth": {"token": g2}, "transports": ["polling"]})
        )
        .await["event"],
        "connected"
    );
    let mut viewer = server
        .connect_as(&sup, Some("lookout.msgpack"))
        .await
        .expect("msgpack viewer");
    assert!(ok(&viewer.subscribe("/topic/video/g2").await));
    let sent: Vec<u8> = frame.iter().rev().copied().collect();
    let reply = sio
        .request(
            "guard",
            "publish",
            json!({"channel": "/topic/video/g2", "data": {
                "codec": "jpeg", "keyframe": true, "ts": lookout::clock::now_millis(),
                "data": {"$binary": hex(&sent)},
            }}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let got = viewer.next_on("/topic/video/g2").await;
    let bytes = got["data"]["data"]
        .as_array()
        .unwrap_or_else(|| panic!("binary data as bytes: {got}"))
        .iter()
        .map(|b| b.as_u64().expect("byte") as u8)
        .collect::<Vec<u8>>();
    assert_eq!(bytes, sent, "byte for byte");
    sio.exit().await;
    server.stop().await;
}

/// One admission for every transport: a user's Socket.IO and native connections count
/// together, and `/metrics` shows Socket.IO's under `protocol="socket.io"`.
#[tokio::test]
async fn socketio_connections_count_with_the_others_under_their_own_label() {
    let server = TestServer::start_with(|c| c.limits.max_connections_per_user = 2).await;
    let sup = server.token("s1", Some("acme"), &[Role::Supervisor]);
    let _native = server.connect(&sup).await;
    let mut sio = Sio::start(&server);
    assert_eq!(
        sio.connect("first", json!({"auth": {"token": sup}})).await["event"],
        "connected"
    );
    assert_eq!(connected_gauge(&server, "socket.io").await, 1.0);
    let refused = sio
        .connect(
            "second",
            json!({"auth": {"token": sup}, "transports": ["polling"]}),
        )
        .await;
    assert_eq!(refused["event"], "connect_error", "{refused}");
    assert_eq!(refused["message"], "rate_limited", "{refused}");
    let native_refused = server.connect_as(&sup, None).await;
    assert!(
        native_refused.is_err(),
        "a third connection of any kind is refused"
    );
    // Another user is not affected.
    let other = server.token("s3", Some("acme"), &[Role::Supervisor]);
    assert_eq!(
        sio.connect("other", json!({"auth": {"token": other}}))
            .await["event"],
        "connected"
    );
    assert_eq!(connected_gauge(&server, "socket.io").await, 2.0);

    sio.close("first").await;
    sio.close("other").await;
    wait_connected(&server, 0.0, "no connection counted after the clients left").await;
    // The place is free again.
    assert_eq!(
        sio.connect("again", json!({"auth": {"token": sup}})).await["event"],
        "connected"
    );
    sio.exit().await;
    server.stop().await;
}

/// Engine.IO sessions waiting for their namespace `CONNECT` hold server memory before any
/// token is seen: `limits.socketio_handshakes` bounds them, each for `handshake_timeout`.
#[tokio::test]
async fn handshakes_without_a_connect_are_bounded_and_others_keep_working() {
    let server = TestServer::start_with(|c| {
        c.limits.socketio_handshakes = 3;
        c.limits.handshake_timeout = Duration::from_secs(2);
    })
    .await;
    let http = server.http();
    let handshake = server.https("/socket.io/?EIO=4&transport=polling");
    // A refused CONNECT keeps its session's place: retrying does not hold more than the budget.
    let mut sio = Sio::start(&server);
    let step = sio
        .connect(
            "bad",
            json!({"auth": {"token": "not-a-jwt"}, "transports": ["polling"]}),
        )
        .await;
    assert_eq!(step["message"], "unauthorized", "{step}");
    for _ in 0..2 {
        let response = http.get(&handshake).send().await.expect("handshake");
        assert_eq!(response.status(), 200);
        let body = response.text().await.expect("body");
        assert!(
            body.starts_with("0{\"sid\""),
            "an Engine.IO open packet: {body}"
        );
    }
    // Nor does a query that only looks as if it named a session to another parser than the
    // engine's.
    for url in [
        handshake.clone(),
        format!("{handshake}&sid"),
        format!("{handshake}&s%69d=x"),
    ] {
        let refused = http.get(&url).send().await.expect("handshake");
        assert_eq!(refused.status(), 503, "{url}");
        let body: Value = refused.json().await.expect("JSON error");
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    }
    assert_eq!(
        value(
            &scrape(&server).await,
            "lookout_budget_refusals_total",
            &[("budget", "limits.socketio_handshakes")]
        ),
        3.0
    );

    // A native client is not affected meanwhile.
    let mut guard = server
        .connect(&server.token("g1", Some("acme"), &[Role::Guard]))
        .await;
    assert!(ok(&guard
        .publish("/topic/location/g1", location(1.0, 2.0))
        .await));

    // The silent sessions end after handshake_timeout, and their places are free again.
    let sup = server.token("s1", Some("acme"), &[Role::Supervisor]);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let name = format!("late{}", sio.tags);
        sio.tags += 1;
        let step = sio.connect(&name, json!({"auth": {"token": sup}})).await;
        if step["event"] == "connected" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no place freed: {step}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sio.exit().await;
    server.stop().await;
}

/// A message over `limits.max_message_size` closes its socket with 1009, like a native
/// client's; one over the Engine.IO bound (the largest video frame and its envelope) is cut
/// by Engine.IO itself. Other clients go on.
#[tokio::test]
async fn oversized_events_close_only_their_own_socket() {
    let server = TestServer::start_with(|c| {
        c.limits.max_message_size = 4096;
        c.limits.max_video_frame = 16 * 1024;
    })
    .await;
    let mut sio = Sio::start(&server);
    for (name, user) in [("big", "s1"), ("huge", "s2"), ("calm", "s3")] {
        let token = server.token(user, Some("acme"), &[Role::Supervisor]);
        let step = sio.connect(name, json!({"auth": {"token": token}})).await;
        assert_eq!(step["event"], "connected", "{step}");
    }
    let room = "/topic/org/acme/room/ops";
    sio.node
        .send(json!({"cmd": "emit", "name": "big", "event": "publish",
            "data": {"channel": room, "data": "x".repeat(8 * 1024)}}))
        .await;
    let closing = sio
        .wait("closing", |s| s["event"] == "closing" && s["name"] == "big")
        .await;
    assert_eq!(closing["data"]["code"], 1009, "{closing}");
    sio.wait("disconnect", |s| {
        s["event"] == "disconnect" && s["name"] == "big"
    })
    .await;

    sio.node
        .send(json!({"cmd": "emit", "name": "huge", "event": "publish",
            "data": {"channel": room, "data": "x".repeat(64 * 1024)}}))
        .await;
    sio.wait("disconnect", |s| {
        s["event"] == "disconnect" && s["name"] == "huge"
    })
    .await;

    let reply = sio
        .request(
            "calm",
            "publish",
            json!({"channel": room, "data": {"text": "still here"}}),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    sio.exit().await;
    server.stop().await;
}

/// `ack` of an `ack_required` message and `refresh` of the token behave as the native ones:
/// an acknowledged message is not redelivered, a refresh for another user is refused.
#[tokio::test]
async fn acks_and_token_refreshes_answer_like_the_native_protocol() {
    let server = TestServer::start().await;
    let mut guard = server
        .connect(&server.token("g1", Some("acme"), &[Role::Guard]))
        .await;
    let channel = "/topic/org/acme/room/incidents";
    let r = guard
        .request(
            json!({"type": "publish", "channel": channel, "data": {"alert": "PANIC"}, "ack": true}),
        )
        .await;
    assert!(ok(&r), "{r}");

    let mut sio = Sio::start(&server);
    let sup = server.token("s1", Some("acme"), &[Role::Supervisor]);
    assert_eq!(
        sio.connect("sup", json!({"auth": {"token": sup}})).await["event"],
        "connected"
    );
    let subscribed = sio
        .request("sup", "subscribe", json!({"channel": channel}))
        .await;
    assert_eq!(subscribed["ok"], true, "{subscribed}");
    let m = sio.message("sup").await;
    assert_eq!(m["ack_required"], true, "{m}");
    let acked = sio
        .request("sup", "ack", json!({"channel": channel, "seq": m["seq"]}))
        .await;
    assert_eq!(acked["ok"], true, "{acked}");
    assert_eq!(acked["seq"], m["seq"]);
    let unknown = sio
        .request("sup", "ack", json!({"channel": channel, "seq": 99}))
        .await;
    assert_eq!(unknown["error"]["code"], "not_found", "{unknown}");

    let fresh = server.token("s1", Some("acme"), &[Role::Supervisor]);
    let refreshed = sio.request("sup", "refresh", json!({"token": fresh})).await;
    assert_eq!(refreshed["ok"], true, "{refreshed}");
    assert!(refreshed["exp"].as_u64().is_some(), "{refreshed}");
    let someone_else = server.token("s2", Some("acme"), &[Role::Supervisor]);
    let refused = sio
        .request("sup", "refresh", json!({"token": someone_else}))
        .await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    let not_an_object = sio.request("sup", "subscribe", json!(channel)).await;
    assert_eq!(
        not_an_object["error"]["code"], "bad_request",
        "{not_an_object}"
    );
    let unknown_event = sio.request("sup", "teleport", json!({})).await;
    assert_eq!(
        unknown_event["error"]["code"], "bad_request",
        "{unknown_event}"
    );

    // Acknowledged: not redelivered to this user on a new connection.
    sio.close("sup").await;
    assert_eq!(
        sio.connect("again", json!({"auth": {"token": sup}})).await["event"],
        "connected"
    );
    let resubscribed = sio
        .request("again", "subscribe", json!({"channel": channel}))
        .await;
    assert_eq!(resubscribed["ok"], true, "{resubscribed}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = sio.request("again", "ping", json!({})).await;
    assert!(
        sio.unread_messages("again").is_empty(),
        "redelivered after ack: {:?}",
        sio.unread_messages("again")
    );
    sio.exit().await;
    server.stop().await;
}

/// A Socket.IO subscriber that stops reading is a slow consumer like any other: on a logged
/// channel it is disconnected (and may resume with `since`), while another Socket.IO client
/// gets every message in order.
#[tokio::test]
async fn a_stalled_socketio_subscriber_is_disconnected_and_others_get_every_message() {
    const MESSAGES: u64 = 300;
    let server = TestServer::start_with(|c| {
        c.limits.outbound_queue = 32;
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
        c.limits.video_frames_per_second = 100_000;
        // A peer that takes no frame for this long is dropped; this is about what comes first.
        c.limits.write_timeout = Duration::from_secs(600);
    })
    .await;
    let channel = "/topic/org/acme/room/ops";
    let mut publisher = server
        .connect(&server.token("pub", Some("acme"), &[Role::Supervisor]))
        .await;
    let mut guard = server
        .connect_as(
            &server.token("g1", Some("acme"), &[Role::Guard]),
            Some("lookout.msgpack"),
        )
        .await
        .expect("msgpack guard");
    let mut sio = Sio::start(&server);
    for (name, user) in [("slow", "s1"), ("fast", "s2")] {
        let token = server.token(user, Some("acme"), &[Role::Supervisor]);
        let step = sio.connect(name, json!({"auth": {"token": token}})).await;
        assert_eq!(step["event"], "connected", "{step}");
        let subscribed = sio
            .request(name, "subscribe", json!({"channel": channel}))
            .await;
        assert_eq!(subscribed["ok"], true, "{subscribed}");
    }
    let subscribed = sio
        .request("slow", "subscribe", json!({"channel": "/topic/video/g1"}))
        .await;
    assert_eq!(subscribed["ok"], true, "{subscribed}");
    sio.node.send(json!({"cmd": "pause", "name": "slow"})).await;
    sio.wait("paused", |s| s["event"] == "paused").await;

    // Large live frames until the server drops some for the stalled viewer: its socket
    // buffers, Engine.IO's buffer and its queue are full.
    let frame = vec![0x5a; 60 * 1024];
    let mut stalled = false;
    for n in 0..2000 {
        let reply = guard.publish_frame("/topic/video/g1", &frame, false).await;
        assert!(ok(&reply), "{reply}");
        if n % 20 == 19 && server.stats().await["dropped_live"].as_u64().unwrap_or(0) > 0 {
            stalled = true;
            break;
        }
    }
    assert!(stalled, "the stalled viewer never filled up");

    for n in 1..=MESSAGES {
        let reply = publisher
            .publish(channel, json!({"n": n, "body": "r".repeat(1024)}))
            .await;
        assert!(ok(&reply), "{reply}");
    }
    let mut got = Vec::new();
    while (got.len() as u64) < MESSAGES {
        got.push(sio.message("fast").await["seq"].as_u64().expect("seq"));
    }
    assert_eq!(
        got,
        (1..=MESSAGES).collect::<Vec<_>>(),
        "every message, in order"
    );
    server
        .wait_stats("the stalled subscriber's disconnect", |s| {
            s["slow_consumer_disconnects"] == 1
        })
        .await;
    // And its session is gone, not just marked: only the fast client is still counted.
    wait_connected(&server, 1.0, "only the fast client's session held").await;
    sio.exit().await;
    server.stop().await;
}

/// A socket ends with its token (4001 in `closing`), and socket.io-client's own reconnect with
/// the same, expired token is refused with `connect_error` `unauthorized`.
#[tokio::test]
async fn a_socket_ends_when_its_token_does_and_its_reconnect_is_refused() {
    let server = TestServer::start_with(|c| {
        // Within `jwt.leeway` an expired token is still admitted (and closed again at once), on
        // every transport; without it the reconnect is refused.
        c.jwt.leeway = Duration::ZERO;
        c.limits.ping_interval = Duration::from_secs(1);
    })
    .await;
    // Node.js and its client are warmed up by a first socket, so that the short token is
    // minted just before its own connection: it must still be valid when it arrives.
    let mut sio = Sio::start(&server);
    let warm = server.token("s2", Some("acme"), &[Role::Supervisor]);
    let step = sio.connect("warm", json!({"auth": {"token": warm}})).await;
    assert_eq!(step["event"], "connected", "{step}");
    let short = server
        .auth
        .mint(
            "s1",
            Some("acme"),
            &[Role::Supervisor],
            Duration::from_secs(4),
            None,
        )
        .expect("mint");
    let step = sio
        .connect(
            "short",
            json!({"auth": {"token": short}, "reconnection": true}),
        )
        .await;
    assert_eq!(step["event"], "connected", "{step}");
    let closing = sio
        .wait("closing", |s| {
            s["event"] == "closing" && s["name"] == "short"
        })
        .await;
    assert_eq!(closing["data"]["code"], 4001, "{closing}");
    let refused = sio
        .wait("connect_error", |s| {
            s["event"] == "connect_error" && s["name"] == "short"
        })
        .await;
    assert_eq!(refused["message"], "unauthorized", "{refused}");
    sio.exit().await;
    server.stop().await;
}

/// A subscriber that only listens is alive as long as Engine.IO's heartbeat says so: the
/// session's dead-peer clock does not close it.
#[tokio::test]
async fn a_quiet_subscriber_outlives_the_dead_peer_timeout() {
    let server = TestServer::start_with(|c| {
        c.limits.ping_interval = Duration::from_millis(500);
        c.limits.dead_peer_timeout = Duration::from_millis(1500);
    })
    .await;
    let guard_token = server.token("g1", Some("acme"), &[Role::Guard]);
    drop(server.connect(&guard_token).await);
    let mut sio = Sio::start(&server);
    let sup = server.token("s1", Some("acme"), &[Role::Supervisor]);
    for transports in [json!(["websocket"]), json!(["polling"])] {
        let name = transports[0].as_str().expect("name").to_string();
        let step = sio
            .connect(
                &name,
                json!({"auth": {"token": sup}, "transports": transports}),
            )
            .await;
        assert_eq!(step["event"], "connected", "{step}");
        let subscribed = sio
            .request(&name, "subscribe", json!({"channel": "/topic/location/g1"}))
            .await;
        assert_eq!(subscribed["ok"], true, "{subscribed}");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    // (A test client answers pings only while it reads: the guard connects now.)
    let mut guard = server.connect(&guard_token).await;
    let published = guard
        .publish("/topic/location/g1", location(48.85, 2.35))
        .await;
    for name in ["websocket", "polling"] {
        assert_eq!(sio.message(name).await["seq"], published["seq"], "{name}");
    }
    let dropped: Vec<_> = sio
        .seen
        .iter()
        .filter(|s| s["event"] == "disconnect" || s["event"] == "closing")
        .collect();
    assert!(dropped.is_empty(), "{dropped:?}");
    sio.exit().await;
    server.stop().await;
}

/// The room the publishing tests use.
const ROOM: &str = "/topic/org/acme/room/ops";

/// A server on a store whose commits the test can hold, a native supervisor watching [`ROOM`],
/// and the Socket.IO client `name` connected as another supervisor.
async fn on_held_store(
    name: &str,
    adjust: impl FnOnce(&mut lookout::Config),
) -> (Arc<lookout::store::MemoryStore>, TestServer, Client, Sio) {
    let store = Arc::new(lookout::store::MemoryStore::new());
    let server = TestServer::start_on_with(store.clone(), adjust).await;
    let mut watcher = server
        .connect(&server.token("w", Some("acme"), &[Role::Supervisor]))
        .await;
    assert!(ok(&watcher.subscribe(ROOM).await));
    let mut sio = Sio::start(&server);
    let sup = server.token("s1", Some("acme"), &[Role::Supervisor]);
    assert_eq!(
        sio.connect(name, json!({"auth": {"token": sup}})).await["event"],
        "connected"
    );
    (store, server, watcher, sio)
}

/// Events that arrive while the session cannot take them (its publishes wait for the disk) are
/// refused with an `error` event, never dropped unseen; what was accepted is all delivered. A
/// flood faster than even the refusals can leave ends the connection.
#[tokio::test]
async fn events_beyond_what_the_session_can_hold_are_refused_out_loud() {
    const SENT: u64 = 40;
    let room = ROOM;
    let (store, server, mut watcher, mut sio) = on_held_store("busy", |c| {
        c.limits.max_publishes_in_flight = 4;
        c.limits.messages_per_second = 10_000;
        c.limits.message_burst = 10_000;
    })
    .await;
    store.hold_commits();
    sio.node
        .send(
            json!({"cmd": "burst", "name": "busy", "event": "publish", "count": SENT,
            "data": {"channel": room, "data": {}}}),
        )
        .await;
    sio.wait("burst_sent", |s| s["event"] == "burst_sent").await;
    // The first refusal comes while nothing is durable yet.
    let first = sio
        .wait("error", |s| s["event"] == "error" && s["name"] == "busy")
        .await;
    assert_eq!(first["data"]["error"]["code"], "rate_limited", "{first}");
    assert_eq!(
        first["data"]["error"]["message"], "too many events waiting; slow down",
        "{first}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    store.commit_held();
    let mut delivered = Vec::new();
    loop {
        let frames = watcher.drain(Duration::from_millis(500)).await;
        if frames.is_empty() {
            break;
        }
        delivered.extend(
            frames
                .iter()
                .filter(|f| f["type"] == "message")
                .map(|f| f["data"]["n"].as_u64().expect("n")),
        );
    }
    // Everything the script reported before this answer is read (its steps are in order).
    sio.node
        .send(json!({"cmd": "transport", "name": "busy"}))
        .await;
    sio.wait("transport", |s| s["event"] == "transport").await;
    let refused = 1 + sio
        .seen
        .iter()
        .filter(|s| s["event"] == "error" && s["name"] == "busy")
        .count() as u64;
    assert!(refused > 0 && refused < SENT, "{refused} refused");
    assert_eq!(
        delivered.len() as u64 + refused,
        SENT,
        "each event is delivered or refused: delivered {delivered:?}"
    );
    let mut in_order = delivered.clone();
    in_order.sort_unstable();
    assert_eq!(delivered, in_order, "accepted events keep their order");

    // A flood: more refusals than the socket's buffer holds. The client is disconnected.
    store.hold_commits();
    sio.node
        .send(
            json!({"cmd": "burst", "name": "busy", "event": "publish", "count": 500,
            "data": {"channel": room, "data": {}}}),
        )
        .await;
    sio.wait("disconnect", |s| {
        s["event"] == "disconnect" && s["name"] == "busy"
    })
    .await;
    store.commit_held();
    sio.exit().await;
    server.stop().await;
}

/// Events sent right before the client's own disconnect are handled, as a WebSocket's frames
/// before its close are: here the session is still busy with the first when the disconnect
/// arrives (its publish waits for the disk).
#[tokio::test]
async fn events_sent_just_before_a_disconnect_are_not_lost() {
    let room = ROOM;
    let (store, server, mut watcher, mut sio) = on_held_store("leaving", |c| {
        c.limits.max_publishes_in_flight = 1;
    })
    .await;
    store.hold_commits();
    sio.node
        .send(
            json!({"cmd": "burst", "name": "leaving", "event": "publish", "count": 3,
            "data": {"channel": room, "data": {}}}),
        )
        .await;
    sio.close("leaving").await;
    // The disconnect has reached the server before anything is durable.
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.commit_held();
    for n in 1..=3u64 {
        let got = watcher.next_on(room).await;
        assert_eq!(got["data"]["n"], n, "{got}");
    }
    sio.exit().await;
    server.stop().await;
}

/// One address's share of the handshakes waiting for their `CONNECT` is
/// `limits.max_pending_per_peer`: a host that opens sessions and never connects them cannot
/// take every place from the others.
#[tokio::test]
async fn one_address_holds_only_its_share_of_the_waiting_handshakes() {
    let server = TestServer::start_with(|c| {
        c.limits.socketio_handshakes = 10;
        c.limits.max_pending_per_peer = 3;
    })
    .await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&server.cert_pem).expect("pem"))
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .expect("client")
    };
    let handshake = server.https("/socket.io/?EIO=4&transport=polling");
    let hog = from([127, 0, 0, 1]);
    for _ in 0..3 {
        let r = hog.get(&handshake).send().await.expect("handshake");
        assert_eq!(r.status(), 200);
    }
    let refused = hog.get(&handshake).send().await.expect("handshake");
    assert_eq!(refused.status(), 503, "past its share");
    let other = from([127, 0, 0, 2]);
    let r = other.get(&handshake).send().await.expect("handshake");
    assert_eq!(r.status(), 200, "another address still gets a place");
    server.stop().await;
}
