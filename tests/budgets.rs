//! Every resource a client can make the server hold has a budget: going over it is refused
//! with the documented error and counted, while another client on the same server keeps
//! receiving everything.

mod common;

use std::time::Duration;

use common::*;
use lookout::auth::Role;
use serde_json::json;

const ROOM: &str = "/topic/org/acme/room/ops";

fn supervisor(server: &TestServer, user: &str) -> String {
    server.token(user, Some("acme"), &[Role::Supervisor])
}

/// A supervisor subscribed to `ROOM`, and a guard publishing `count` numbered messages to it
/// while `during` runs; checks the supervisor got every one, in order.
async fn a_stream_goes_on_while<F: std::future::Future<Output = ()>>(
    server: &TestServer,
    count: u64,
    during: F,
) {
    let mut watcher = server.connect(&supervisor(server, "watcher")).await;
    assert!(ok(&watcher.subscribe(ROOM).await));
    let mut publisher = server.connect(&supervisor(server, "publisher")).await;
    let publishing = async {
        for n in 1..=count {
            let r = publisher.publish(ROOM, json!({ "n": n })).await;
            assert!(ok(&r), "{r}");
        }
    };
    tokio::join!(publishing, during);
    for n in 1..=count {
        let m = watcher.next_message().await;
        assert_eq!(m["data"]["n"], n, "{m}");
    }
}

async fn refusals(server: &TestServer, budget: &str) -> f64 {
    value(
        &scrape(server).await,
        "lookout_budget_refusals_total",
        &[("budget", budget)],
    )
}

/// A token that expires two seconds from now.
fn two_second_token(server: &TestServer, user: &str, role: Role) -> String {
    server
        .auth
        .mint(user, Some("acme"), &[role], Duration::from_secs(2), None)
        .expect("mint")
}

/// `GET /api/v1/poll` on `ROOM`, waiting up to `timeout` seconds.
async fn poll(server: &TestServer, token: &str, timeout: u64) -> reqwest::Response {
    server
        .http()
        .get(server.https(&format!("/api/v1/poll?channels={ROOM}&timeout={timeout}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("poll")
}

#[tokio::test]
async fn a_stomp_transaction_bomb_is_refused_and_the_server_stays_small() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Binary::serve(&dir.path().join("data"), &[]);
    let url = format!("wss://{}/ws", server.addr);
    let cert = server.cert_pem();
    let token = server.token("bomber", Some("acme"), &[Role::Guard]);
    let body = vec![b'x'; 60 * 1024];
    let before = server.rss_kib();
    // The bomb of the measurement: 16 open transactions of 256 SENDs of 60 KiB, five times.
    for _ in 0..5 {
        let mut bomber = StompClient::connect_at(&url, &cert, &token).await;
        for t in 0..16 {
            let tx = format!("t{t}");
            assert!(
                bomber
                    .try_send_frame("BEGIN", &[("transaction", &tx)], b"")
                    .await
            );
        }
        'bomb: for i in 0..256 {
            for t in 0..16 {
                let tx = format!("t{t}");
                let headers = [
                    ("destination", ROOM),
                    ("transaction", tx.as_str()),
                    ("content-type", "text/plain"),
                ];
                if !bomber.try_send_frame("SEND", &headers, &body).await || i > 4 {
                    break 'bomb;
                }
            }
        }
        let error = bomber.next_frame().await;
        assert_eq!(error.command, "ERROR", "{error:?}");
        assert_eq!(error.get("message"), Some("too_large"), "{error:?}");
        let detail = String::from_utf8_lossy(&error.body).to_string();
        assert!(
            detail.contains("limits.stomp_transaction_bytes"),
            "{detail}"
        );
        bomber.closed().await;
    }
    let grown = server.rss_kib().saturating_sub(before);
    eprintln!("five transaction bombs grew the server by {grown} KiB");
    assert!(grown < 32 * 1024, "the server grew by {grown} KiB");

    // The server still serves a stream to everyone else.
    let mut watcher = server
        .connect(&server.token("watcher", Some("acme"), &[Role::Supervisor]))
        .await;
    assert!(ok(&watcher.subscribe(ROOM).await));
    let mut publisher = server
        .connect(&server.token("publisher", Some("acme"), &[Role::Supervisor]))
        .await;
    for n in 1..=20u64 {
        assert!(ok(&publisher.publish(ROOM, json!({ "n": n })).await));
    }
    for n in 1..=20u64 {
        assert_eq!(watcher.next_message().await["data"]["n"], n);
    }
}

#[tokio::test]
async fn open_transactions_and_the_frames_they_hold_are_bounded_per_connection() {
    let server = TestServer::start_with(|c| {
        c.limits.stomp_transactions = 2;
        c.limits.stomp_transaction_frames = 3;
    })
    .await;
    let guard = server.token("g1", Some("acme"), &[Role::Guard]);
    a_stream_goes_on_while(&server, 30, async {
        let mut many = StompClient::connect(&server, &guard).await;
        for tx in ["a", "b", "c"] {
            many.send_frame("BEGIN", &[("transaction", tx)], b"").await;
        }
        let error = many.next_frame().await;
        assert_eq!(
            (error.command.as_str(), error.get("message")),
            ("ERROR", Some("rate_limited"))
        );
        assert!(String::from_utf8_lossy(&error.body).contains("limits.stomp_transactions"));
        many.closed().await;

        let mut long = StompClient::connect(&server, &guard).await;
        long.send_frame("BEGIN", &[("transaction", "a")], b"").await;
        for _ in 0..4 {
            long.send_frame(
                "SEND",
                &[("destination", ROOM), ("transaction", "a")],
                br#"{"n":0}"#,
            )
            .await;
        }
        let error = long.next_frame().await;
        assert_eq!(error.get("message"), Some("too_large"), "{error:?}");
        assert!(String::from_utf8_lossy(&error.body).contains("limits.stomp_transaction_frames"));
        long.closed().await;
    })
    .await;
    assert_eq!(refusals(&server, "limits.stomp_transactions").await, 1.0);
    assert_eq!(
        refusals(&server, "limits.stomp_transaction_frames").await,
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn messages_awaiting_a_clients_ack_are_bounded_per_connection() {
    let server = TestServer::start_with(|c| {
        c.limits.max_unacked_per_connection = 5;
        c.limits.messages_per_second = 1000;
        c.limits.message_burst = 1000;
    })
    .await;
    let mut lazy = StompClient::connect(&server, &supervisor(&server, "lazy")).await;
    for (id, room) in [("a", ROOM), ("b", "/topic/org/acme/room/other")] {
        lazy.send_frame(
            "SUBSCRIBE",
            &[
                ("id", id),
                ("destination", room),
                ("ack", "client-individual"),
            ],
            b"",
        )
        .await;
    }
    let mut publisher = server.connect(&supervisor(&server, "publisher")).await;
    let mut watcher = server.connect(&supervisor(&server, "watcher")).await;
    assert!(ok(&watcher.subscribe(ROOM).await));
    // Three on each room: the sixth awaiting ACK on the connection is one too many.
    for n in 1..=3u64 {
        assert!(ok(&publisher.publish(ROOM, json!({ "n": n })).await));
        assert!(ok(&publisher
            .publish("/topic/org/acme/room/other", json!({ "n": n }))
            .await));
    }
    let mut messages = 0;
    let error = loop {
        let frame = lazy.next_frame().await;
        match frame.command.as_str() {
            "MESSAGE" => messages += 1,
            _ => break frame,
        }
    };
    assert_eq!(messages, 5);
    assert_eq!(error.command, "ERROR");
    assert_eq!(
        error.get("message"),
        Some("too many unacknowledged messages")
    );
    assert!(String::from_utf8_lossy(&error.body).contains("limits.max_unacked_per_connection"));
    lazy.closed().await;
    for n in 1..=3u64 {
        assert_eq!(watcher.next_message().await["data"]["n"], n);
    }
    assert_eq!(
        refusals(&server, "limits.max_unacked_per_connection").await,
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn an_orgs_clients_create_only_so_many_rooms() {
    let server = TestServer::start_with(|c| c.limits.max_rooms_per_org = 3).await;
    a_stream_goes_on_while(&server, 30, async {
        // The stream's room is the first; two more fit.
        let mut spammer = server.connect(&supervisor(&server, "spammer")).await;
        for r in 0..2 {
            let room = format!("/topic/org/acme/room/r{r}");
            let reply = spammer.publish(&room, json!({})).await;
            assert!(ok(&reply), "{reply}");
        }
        let reply = spammer.publish("/topic/org/acme/room/r2", json!({})).await;
        assert_eq!(error_code(&reply), "rate_limited", "{reply}");
        assert!(reply["message"]
            .as_str()
            .is_some_and(|m| m.contains("limits.max_rooms_per_org")));
        // Rooms that exist go on; another org has rooms of its own.
        assert!(ok(&spammer
            .publish("/topic/org/acme/room/r1", json!({}))
            .await));
        let mut other = server
            .connect(&server.token("o1", Some("other"), &[Role::Supervisor]))
            .await;
        assert!(ok(&other
            .publish("/topic/org/other/room/x", json!({}))
            .await));
    })
    .await;
    assert_eq!(refusals(&server, "limits.max_rooms_per_org").await, 1.0);
    server.stop().await;
}

#[tokio::test]
async fn event_streams_and_waiting_polls_are_connections_under_the_same_limits() {
    let server = TestServer::start_with(|c| {
        c.limits.max_connections_per_user = 2;
        // A stream notices its client is gone at its next keep-alive.
        c.limits.ping_interval = Duration::from_secs(1);
    })
    .await;
    let sup = supervisor(&server, "s1");
    let http = server.http();
    let stream = |token: String| {
        let http = http.clone();
        let url = server.https(&format!("/api/v1/events?channels={ROOM}"));
        async move { http.get(url).bearer_auth(token).send().await.expect("sse") }
    };
    let first = stream(sup.clone()).await;
    let second = stream(sup.clone()).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = stream(sup.clone()).await;
    assert_eq!(third.status(), 429);
    let body: serde_json::Value = third.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(
        poll(&server, &sup, 1).await.status(),
        429,
        "a waiting poll needs a slot too"
    );
    // Another user is not affected, and the slot comes back when a stream ends.
    let mut other = server.connect(&supervisor(&server, "s2")).await;
    assert!(ok(&other.subscribe(ROOM).await));
    drop(first);
    let stats = server
        .wait_stats("the stream's slot given back", |s| {
            s["connections_by_protocol"]["sse"] == 1
        })
        .await;
    assert_eq!(stats["connections_by_protocol"]["sse"], 1);
    assert_eq!(poll(&server, &sup, 1).await.status(), 200);
    assert_eq!(
        refusals(&server, "limits.max_connections_per_user").await,
        2.0
    );
    drop(second);
    server.stop().await;
}

#[tokio::test]
async fn an_event_stream_ends_when_its_token_does_and_resumes_with_a_fresh_one() {
    let server = TestServer::start_with(|c| {
        c.jwt.leeway = Duration::ZERO;
        c.limits.ping_interval = Duration::from_secs(1);
    })
    .await;
    let short = two_second_token(&server, "s1", Role::Supervisor);
    let mut publisher = server.connect(&supervisor(&server, "publisher")).await;
    let url = server.https(&format!("/api/v1/events?channels={ROOM}"));
    let response = server
        .http()
        .get(&url)
        .bearer_auth(&short)
        .send()
        .await
        .expect("sse");
    assert_eq!(response.status(), 200);
    let mut events = EventReader::new(response);
    assert!(ok(&publisher.publish(ROOM, json!({ "n": 1 })).await));
    let (last_id, data) = events.next_message().await;
    assert_eq!(data["data"]["n"], 1);
    // Published while the token runs out and the client is away.
    assert!(ok(&publisher.publish(ROOM, json!({ "n": 2 })).await));
    let mut ended = None;
    while let Some((event, _, data)) = events.next_event().await {
        if event == "error" {
            ended = Some(data);
            break;
        }
    }
    let ended = ended.expect("an error event before the stream ends");
    assert!(
        ended.contains("unauthorized") && ended.contains("expired"),
        "{ended}"
    );
    assert!(events.next_event().await.is_none(), "the stream ended");
    assert!(ok(&publisher.publish(ROOM, json!({ "n": 3 })).await));

    let response = server
        .http()
        .get(&url)
        .bearer_auth(supervisor(&server, "s1"))
        .header("last-event-id", &last_id)
        .send()
        .await
        .expect("sse");
    let mut events = EventReader::new(response);
    for n in 2..=3u64 {
        let (_, data) = events.next_message().await;
        assert_eq!(data["data"]["n"], n, "nothing lost, nothing twice");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_long_poll_waits_no_longer_than_its_token() {
    let server = TestServer::start_with(|c| c.jwt.leeway = Duration::ZERO).await;
    let short = two_second_token(&server, "s1", Role::Supervisor);
    let started = std::time::Instant::now();
    assert_eq!(poll(&server, &short, 30).await.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the poll ended with its token, not after 30 s"
    );
    // `exp` has a resolution of a second: once it has surely passed, the token is refused.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(poll(&server, &short, 1).await.status(), 401);
    server.stop().await;
}

#[tokio::test]
async fn a_stomp_session_ends_when_its_token_does() {
    let server = TestServer::start_with(|c| c.jwt.leeway = Duration::ZERO).await;
    let short = two_second_token(&server, "g1", Role::Guard);
    let mut stomp = StompClient::connect(&server, &short).await;
    stomp
        .send_frame(
            "SUBSCRIBE",
            &[("id", "0"), ("destination", "/topic/system")],
            b"",
        )
        .await;
    assert_eq!(stomp.close_code().await, Some(4001));
    server.stop().await;
}

#[tokio::test]
async fn a_sockjs_session_ends_when_its_token_does() {
    let server = TestServer::start_with(|c| c.limits.ping_interval = Duration::from_secs(1)).await;
    let short = two_second_token(&server, "g1", Role::Guard);
    let url = server.https(&format!(
        "/ws/000/short/xhr?token={short}&protocol=lookout.json"
    ));
    let http = server.http();
    let poll = || async {
        let response = http.post(&url).send().await.expect("poll");
        assert_eq!(response.status(), 200);
        response.text().await.expect("body")
    };
    assert_eq!(poll().await.trim_end(), "o");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let close = loop {
        let frame = poll().await;
        if frame.starts_with("c[") {
            break frame;
        }
        assert!(std::time::Instant::now() < deadline, "no close frame");
    };
    assert!(close.starts_with("c[4001,"), "{close}");
    server.stop().await;
}

#[tokio::test]
async fn a_keyframe_older_than_its_ttl_is_not_shown_to_a_late_viewer() {
    let server = TestServer::start_with(|c| c.limits.keyframe_ttl = Duration::from_secs(1)).await;
    let mut camera = server
        .connect_as(
            &server.token("g1", Some("acme"), &[Role::Guard]),
            Some("lookout.msgpack"),
        )
        .await
        .expect("msgpack");
    assert!(ok(&camera
        .publish_frame("/topic/video/g1", b"stale", true)
        .await));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut viewer = server
        .connect_as(&supervisor(&server, "s1"), Some("lookout.msgpack"))
        .await
        .expect("msgpack");
    assert!(ok(&viewer.subscribe("/topic/video/g1").await));
    assert!(ok(&camera
        .publish_frame("/topic/video/g1", b"fresh", true)
        .await));
    let first = viewer.next_on("/topic/video/g1").await;
    assert_eq!(
        first["data"]["data"],
        json!(b"fresh".to_vec()),
        "the stale keyframe was not sent first"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_connection_holds_only_so_many_subscriptions() {
    let server = TestServer::start_with(|c| c.limits.max_subscriptions_per_connection = 2).await;
    a_stream_goes_on_while(&server, 30, async {
        let mut greedy = server.connect(&supervisor(&server, "greedy")).await;
        assert!(ok(&greedy.subscribe("/topic/org/acme/room/a").await));
        assert!(ok(&greedy.subscribe("/topic/org/acme/room/b").await));
        let reply = greedy.subscribe("/topic/org/acme/room/c").await;
        assert_eq!(error_code(&reply), "rate_limited", "{reply}");
        // The refusal costs the connection nothing.
        assert_eq!(
            greedy.request(json!({"type": "ping"})).await["type"],
            "pong"
        );
    })
    .await;
    assert_eq!(
        refusals(&server, "limits.max_subscriptions_per_connection").await,
        1.0
    );
    server.stop().await;
}

/// The measurement of issue 30: one guard fills a room with large messages and asks for them
/// many times over at once (the room named 32 times in each of several polls). Responses are
/// cut at `limits.max_response_bytes`, the room is read once per poll, a user's reads past
/// `limits.max_requests_per_user` are refused, and the server stays small while another
/// client's stream goes on.
#[tokio::test]
async fn history_and_polls_are_bounded_in_bytes_and_in_reads_per_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Binary::serve(
        &dir.path().join("data"),
        &[
            ("LOOKOUT_LIMITS__MESSAGES_PER_SECOND", "10000"),
            ("LOOKOUT_LIMITS__MESSAGE_BURST", "10000"),
        ],
    );
    let cert = server.cert_pem();
    let http = http_client(&cert);
    let guard = server.token("hog", Some("acme"), &[Role::Guard]);
    let mut hog = server.connect(&guard).await;
    let big = "x".repeat(60 * 1024);
    for n in 0..200u64 {
        let r = hog.publish(ROOM, json!({ "n": n, "pad": big })).await;
        assert!(ok(&r), "{r}");
    }
    let before = server.rss_kib();
    let limit = 4 * 1024 * 1024;

    // One history page: cut at the budget, and the client reads on from its last seq.
    let page: serde_json::Value = http
        .get(format!(
            "https://{}/api/v1/channels/history?channel={ROOM}&limit=1000",
            server.addr
        ))
        .bearer_auth(&guard)
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    let messages = page["messages"].as_array().expect("messages");
    let bytes = page.to_string().len();
    assert!(
        bytes <= limit + 64 * 1024,
        "a page of {bytes} bytes over {limit}"
    );
    assert!(
        messages.len() >= 60 && messages.len() < 200,
        "{}",
        messages.len()
    );
    assert_eq!(page["head"], 200);

    // The room named 32 times: read once, within the same budget.
    let channels = vec![ROOM; 32].join(",");
    let poll_url = format!(
        "https://{}/api/v1/poll?limit=1000&timeout=1&channels={channels}",
        server.addr
    );
    let mut watcher = server
        .connect(&server.token("watcher", Some("acme"), &[Role::Supervisor]))
        .await;
    assert!(ok(&watcher.subscribe("/topic/org/acme/room/other").await));
    let mut publisher = server
        .connect(&server.token("pub", Some("acme"), &[Role::Supervisor]))
        .await;
    let polls = (0..6).map(|_| {
        let http = http.clone();
        let url = poll_url.clone();
        let guard = guard.clone();
        async move {
            let r = http.get(url).bearer_auth(guard).send().await.expect("poll");
            let status = r.status().as_u16();
            (status, r.text().await.expect("body"))
        }
    });
    let stream = async {
        for n in 1..=50u64 {
            let r = publisher
                .publish("/topic/org/acme/room/other", json!({ "n": n }))
                .await;
            assert!(ok(&r), "{r}");
        }
    };
    let (answers, ()) = tokio::join!(futures_util::future::join_all(polls), stream);
    let mut served = 0;
    for (status, body) in &answers {
        match status {
            200 => {
                served += 1;
                let v: serde_json::Value = serde_json::from_str(body).expect("json");
                let channels = v["channels"].as_array().expect("channels");
                assert_eq!(channels.len(), 1, "the room is read once");
                assert!(body.len() <= limit + 64 * 1024, "{} bytes", body.len());
            }
            // A poll takes a connection place (5 per user by default) besides its read.
            429 => assert!(body.contains("rate_limited"), "{body}"),
            other => panic!("poll answered {other}: {body}"),
        }
    }
    assert!(served >= 1, "{answers:?}");
    for n in 1..=50u64 {
        assert_eq!(watcher.next_message().await["data"]["n"], n);
    }
    let grown = server.rss_kib().saturating_sub(before);
    eprintln!("six polls of 32 x a 12 MB room grew the server by {grown} KiB");
    // The bound docs/configuration.md gives for one user's reads (limits.max_response_bytes) is
    // about 54 MiB with these limits; the rest is the allocator's slack.
    assert!(grown < 96 * 1024, "the server grew by {grown} KiB");

    // Reads at once per user: the fifth concurrent history read of one user is refused.
    let slow = (0..8).map(|_| {
        let http = http.clone();
        let guard = guard.clone();
        let url = format!(
            "https://{}/api/v1/channels/history?channel={ROOM}&limit=1000",
            server.addr
        );
        async move {
            http.get(url)
                .bearer_auth(guard)
                .send()
                .await
                .expect("history")
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(slow).await;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"lookout_budget_refusals_total{budget="limits.max_response_bytes"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_users_emergencies_per_minute_are_bounded_on_rest_and_websocket_alike() {
    let server = TestServer::start_with(|c| c.limits.alerts_per_minute = 3).await;
    let http = server.http();
    let flooder = server.token("g1", Some("acme"), &[Role::Guard]);
    let mut watcher = server.connect(&supervisor(&server, "sup")).await;
    assert!(ok(&watcher.subscribe("/topic/org/acme/alerts").await));
    let panic = json!({"type": "PANIC", "message": "flood"});
    for n in 0..3 {
        let (status, body) = post_json(
            &http,
            &server.https("/api/v1/alerts"),
            &flooder,
            panic.clone(),
        )
        .await;
        assert_eq!(status, 201, "alert {n}: {body}");
    }
    let (status, body) = post_json(
        &http,
        &server.https("/api/v1/alerts"),
        &flooder,
        panic.clone(),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // The same budget on the WebSocket.
    let mut socket = server.connect(&flooder).await;
    let r = socket
        .publish("/topic/emergency/g1", json!({"type": "PANIC"}))
        .await;
    assert_eq!(error_code(&r), "rate_limited", "{r}");
    // Another guard's PANIC is raised and reaches the supervisor.
    let other = server.token("g2", Some("acme"), &[Role::Guard]);
    let (status, body) = post_json(&http, &server.https("/api/v1/alerts"), &other, panic).await;
    assert_eq!(status, 201, "{body}");
    let mut users = Vec::new();
    for _ in 0..4 {
        let m = watcher.next_on("/topic/org/acme/alerts").await;
        users.push(
            m["data"]["alert"]["user"]
                .as_str()
                .expect("user")
                .to_string(),
        );
    }
    assert_eq!(users, ["g1", "g1", "g1", "g2"]);
    server.stop().await;
}

/// Connections that never finish their TLS handshake or their headers hold a bounded number
/// of places; beyond, new connections wait in the listen backlog (not closed: a reconnect
/// storm is not turned into retries), sessions already admitted go on, and the waiting ones
/// are served when the idle ones time out.
#[tokio::test]
async fn connections_before_their_first_request_are_bounded() {
    use tokio::io::AsyncReadExt;
    let server = TestServer::start_with(|c| {
        c.limits.max_pending_connections = 4;
        c.limits.handshake_timeout = Duration::from_secs(2);
    })
    .await;
    let mut watcher = server.connect(&supervisor(&server, "watcher")).await;
    assert!(ok(&watcher.subscribe(ROOM).await));
    let mut publisher = server.connect(&supervisor(&server, "publisher")).await;
    // Four sockets that say nothing hold every place.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(
            tokio::net::TcpStream::connect(server.addr)
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The fifth waits, neither closed nor served, while the session admitted before goes on.
    let late = {
        let (addr, tls) = (server.addr, client_tls(&server.cert_pem));
        tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let started = tokio::time::Instant::now();
            let secured = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await;
            (secured.is_ok(), started.elapsed())
        })
    };
    for n in 1..=3u64 {
        assert!(ok(&publisher.publish(ROOM, json!({ "n": n })).await));
        assert_eq!(watcher.next_message().await["data"]["n"], n);
    }
    // The idle ones are dropped at handshake_timeout; the fifth then gets its place.
    let (secured, waited) = late.await.expect("late connection");
    assert!(
        secured,
        "the waiting connection is served once a place is back"
    );
    assert!(
        waited >= Duration::from_millis(1500),
        "it waited for a place: {waited:?}"
    );
    let mut byte = [0u8; 1];
    for mut socket in idle {
        let read = tokio::time::timeout(Duration::from_secs(1), socket.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "idle ones closed: {read:?}"
        );
    }
    assert!(value(&scrape(&server).await, "lookout_accept_waits_total", &[]) >= 1.0);
    server.stop().await;
}

/// One address cannot hold every place: beyond `limits.max_pending_per_peer` its new
/// connections are closed at once and counted, while another address connects.
#[tokio::test]
async fn one_address_holds_at_most_its_share_of_the_places() {
    use tokio::io::AsyncReadExt;
    let server = TestServer::start_with(|c| {
        c.limits.max_pending_per_peer = 2;
        c.limits.handshake_timeout = Duration::from_secs(5);
    })
    .await;
    let from = |ip: [u8; 4]| async move {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind((std::net::IpAddr::from(ip), 0).into())
            .expect("bind");
        socket.connect(server.addr).await.expect("connect")
    };
    let _held = (from([127, 0, 0, 2]).await, from([127, 0, 0, 2]).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = from([127, 0, 0, 2]).await;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(1), third.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the third from one address is closed at once: {read:?}"
    );
    // Another address (the test client's own) is served meanwhile.
    let mut watcher = server.connect(&supervisor(&server, "watcher")).await;
    assert!(ok(&watcher.subscribe(ROOM).await));
    assert_eq!(
        server
            .state
            .hub
            .stats
            .refusals(lookout::counters::Budget::PendingPerPeer),
        1
    );
    assert_eq!(refusals(&server, "limits.max_pending_per_peer").await, 1.0);
    server.stop().await;
}

#[tokio::test]
async fn a_rest_body_that_does_not_arrive_in_time_is_answered_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start_with(|c| c.limits.body_timeout = Duration::from_secs(1)).await;
    let token = server.token("g1", Some("acme"), &[Role::Guard]);
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let connector = tokio_rustls::TlsConnector::from(client_tls(&server.cert_pem));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("tls");
    let head = format!(
        "POST /api/v1/alerts HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"type\":"
    );
    tls.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("limits.body_timeout"), "{answer}");
    server.stop().await;
}
