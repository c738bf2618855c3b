//! Limits and lifecycle: dead peers, idle connections, token expiry and refresh, per-user and
//! total connection caps, message rates, sizes, UTF-8, malformed input, Origin, handshake time.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use lookout::auth::Role;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

fn guard(server: &TestServer, user: &str) -> String {
    server.token(user, Some("acme"), &[Role::Guard])
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_closed_within_the_dead_peer_timeout() {
    let server = TestServer::start_with(|c| {
        c.limits.ping_interval = Duration::from_millis(200);
        c.limits.dead_peer_timeout = Duration::from_millis(1000);
    })
    .await;
    let mut silent = server.connect(&guard(&server, "silent")).await;
    assert!(ok(&silent.subscribe("/topic/system").await));
    let mut lively = server.connect(&guard(&server, "lively")).await;
    assert!(ok(&lively.subscribe("/topic/system").await));

    // `lively` keeps reading, so tungstenite answers every ping; `silent` reads nothing.
    let started = tokio::time::Instant::now();
    let pongs = tokio::spawn(async move {
        let end = tokio::time::Instant::now() + Duration::from_millis(2500);
        let mut pings = 0;
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(end, lively.ws.next()).await {
            if matches!(m, Message::Ping(_)) {
                pings += 1;
            }
        }
        (lively, pings)
    });
    let stats = server
        .wait_stats("the silent client to be dropped", |s| s["connections"] == 1)
        .await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?} {stats}"
    );
    match silent.ended().await {
        Ended::Closed(code, _) => assert_eq!(code, 4004),
        Ended::Dropped => {}
    }
    let (mut lively, pings) = pongs.await.expect("reader");
    assert!(pings >= 5, "server pinged only {pings} times");
    // Still connected, well past the dead-peer timeout.
    let pong = lively.request(json!({"type":"ping"})).await;
    assert_eq!(pong["type"], "pong");
    server.stop().await;
}

#[tokio::test]
async fn the_sixth_connection_of_a_user_is_refused_and_the_total_is_capped() {
    let server = TestServer::start_with(|c| c.limits.max_connections = 7).await;
    let token = guard(&server, "alice");
    let mut five = Vec::new();
    for _ in 0..5 {
        five.push(server.connect(&token).await);
    }
    let (status, body) = refusal(
        server
            .connect_as(&token, None)
            .await
            .err()
            .expect("refused"),
    );
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another user is unaffected, until the server-wide cap.
    let _b1 = server.connect(&guard(&server, "bob")).await;
    let _b2 = server.connect(&guard(&server, "bob")).await;
    let (status, _) = refusal(
        server
            .connect_as(&guard(&server, "carol"), None)
            .await
            .err()
            .expect("refused"),
    );
    assert_eq!(status, 503);
    // A slot frees up when a connection closes.
    let mut first = five.remove(0);
    first.ws.close(None).await.expect("close");
    let _ = first.ended().await;
    server
        .wait_stats("a slot to free", |s| s["connections"] == 6)
        .await;
    server.connect(&token).await;
    server.stop().await;
}

#[tokio::test]
async fn a_client_over_its_rate_gets_rate_limited_and_keeps_its_connection() {
    let server = TestServer::start_with(|c| {
        c.limits.messages_per_second = 1;
        c.limits.message_burst = 5;
    })
    .await;
    let mut c = server
        .connect(&server.token("s", Some("acme"), &[Role::Supervisor]))
        .await;
    let mut outcomes = Vec::new();
    for n in 0..12 {
        let r = c.publish("/topic/org/acme/room/ops", json!({"n": n})).await;
        outcomes.push(error_code(&r).to_string());
    }
    let accepted = outcomes.iter().filter(|o| *o == "ok").count();
    let limited = outcomes.iter().filter(|o| *o == "rate_limited").count();
    assert!((5..=7).contains(&accepted), "{outcomes:?}");
    assert_eq!(accepted + limited, 12, "{outcomes:?}");
    // The connection is still usable.
    assert_eq!(c.request(json!({"type":"ping"})).await["type"], "pong");
    let stats = server.stats().await;
    assert!(stats["rate_limited"].as_u64().expect("n") >= 5);
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009_even_when_fragmented() {
    let server = TestServer::start().await;
    let limit = lookout::Config::default().limits.max_message_size;

    let mut c = server.connect(&guard(&server, "a")).await;
    let big = "x".repeat(limit + 1);
    c.ws.send(Message::Text(big.into())).await.expect("send");
    match c.ended().await {
        Ended::Closed(code, _) => assert_eq!(code, 1009),
        other => panic!("{other:?}"),
    }

    // Four fragments, each well under the limit, together over it.
    let mut c = server.connect(&guard(&server, "b")).await;
    let part = vec![b' '; limit / 3];
    c.ws.send(Message::Frame(Frame::message(
        part.clone(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .expect("send");
    for last in [false, false, true] {
        let frame = Frame::message(part.clone(), OpCode::Data(Data::Continue), last);
        if c.ws.send(Message::Frame(frame)).await.is_err() {
            break;
        }
    }
    match c.ended().await {
        Ended::Closed(code, _) => assert_eq!(code, 1009),
        other => panic!("{other:?}"),
    }

    // A message exactly at the limit is fine (and, being whitespace, malformed JSON).
    let mut c = server.connect(&guard(&server, "c")).await;
    c.ws.send(Message::Text(" ".repeat(limit).into()))
        .await
        .expect("send");
    let f = c.next_frame().await;
    assert_eq!(f["code"], "bad_request", "{f}");
    server.stop().await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007_whole_or_fragmented() {
    let server = TestServer::start().await;
    let mut c = server.connect(&guard(&server, "a")).await;
    c.ws.send(Message::Frame(Frame::message(
        vec![b'{', 0xff, 0xfe, b'}'],
        OpCode::Data(Data::Text),
        true,
    )))
    .await
    .expect("send");
    match c.ended().await {
        Ended::Closed(code, _) => assert_eq!(code, 1007),
        other => panic!("{other:?}"),
    }
    // A valid sequence split across fragments is fine; an invalid one is not.
    let mut c = server.connect(&guard(&server, "b")).await;
    let text = "{\"type\":\"ping\",\"id\":\"é\"}".as_bytes().to_vec();
    let split = text.iter().position(|b| *b >= 0x80).expect("multibyte") + 1;
    c.ws.send(Message::Frame(Frame::message(
        text[..split].to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .expect("send");
    c.ws.send(Message::Frame(Frame::message(
        text[split..].to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .expect("send");
    assert_eq!(c.next_frame().await["type"], "pong");
    c.ws.send(Message::Frame(Frame::message(
        b"{\"a\":\"".to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .expect("send");
    c.ws.send(Message::Frame(Frame::message(
        vec![0xc3, b'"', b'}'],
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .expect("send");
    match c.ended().await {
        Ended::Closed(code, _) => assert_eq!(code, 1007),
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_bad_request_and_the_connection_stays() {
    let server = TestServer::start().await;
    let mut c = server.connect(&guard(&server, "a")).await;
    for bad in [
        "{not json",
        "[]",
        "{\"type\":\"teleport\",\"id\":\"t1\"}",
        "{\"type\":\"subscribe\",\"id\":\"t2\"}",
        "{\"type\":\"subscribe\",\"channel\":\"/topic/nowhere\",\"id\":\"t3\"}",
    ] {
        c.ws.send(Message::Text(bad.into())).await.expect("send");
        let f = c.next_frame().await;
        assert_eq!(f["type"], "error", "{bad}: {f}");
        assert_eq!(f["code"], "bad_request", "{bad}: {f}");
    }
    // The id is echoed when it could be read.
    c.ws.send(Message::Text(
        "{\"type\":\"teleport\",\"id\":\"t9\"}".into(),
    ))
    .await
    .expect("send");
    assert_eq!(c.next_frame().await["id"], "t9");
    // Binary frames are for lookout.msgpack.
    c.ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .expect("send");
    assert_eq!(c.next_frame().await["code"], "bad_request");
    assert_eq!(c.request(json!({"type":"ping"})).await["type"], "pong");

    let mut m = server
        .connect_as(&guard(&server, "m"), Some("lookout.msgpack"))
        .await
        .expect("msgpack");
    m.ws.send(Message::Binary(vec![0xc1, 0x00].into()))
        .await
        .expect("send");
    assert_eq!(m.next_frame().await["code"], "bad_request");
    assert_eq!(m.request(json!({"type":"ping"})).await["type"], "pong");
    server.stop().await;
}

#[tokio::test]
async fn origins_outside_the_allowlist_get_403_at_the_upgrade() {
    let server = TestServer::start_with(|c| {
        c.allowed_origins = vec!["https://dashboard.site.local".into()];
    })
    .await;
    let token = guard(&server, "a");
    let attempt = |origin: &'static str| {
        let mut req = server.url().into_client_request().expect("req");
        req.headers_mut()
            .insert("origin", origin.parse().expect("origin"));
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("auth"),
        );
        connect_request(&server.cert_pem, req, false)
    };
    let (status, body) = refusal(
        attempt("https://evil.example")
            .await
            .err()
            .expect("refused"),
    );
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "forbidden");
    attempt("https://dashboard.site.local")
        .await
        .expect("allowed origin");
    server.stop().await;

    // With no list, only the server's own origin is allowed.
    let server = TestServer::start().await;
    let token = guard(&server, "a");
    let own = format!("https://{}", server.addr);
    for (origin, allowed) in [(own.as_str(), true), ("https://evil.example", false)] {
        let mut req = server.url().into_client_request().expect("req");
        req.headers_mut()
            .insert("origin", origin.parse().expect("origin"));
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("auth"),
        );
        let result = connect_request(&server.cert_pem, req, false).await;
        assert_eq!(result.is_ok(), allowed, "{origin}");
    }
    server.stop().await;
}

#[tokio::test]
async fn subprotocols_are_negotiated_and_unknown_ones_refused() {
    let server = TestServer::start().await;
    let token = guard(&server, "a");
    let mut m = server
        .connect_as(&token, Some("lookout.msgpack"))
        .await
        .expect("msgpack");
    assert_eq!(m.request(json!({"type":"ping"})).await["type"], "pong");
    let (status, body) = refusal(
        server
            .connect_as(&token, Some("mqtt"))
            .await
            .err()
            .expect("refused"),
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_request");
    server.stop().await;
}

#[tokio::test]
async fn an_idle_connection_gets_a_notice_then_is_closed() {
    let server = TestServer::start_with(|c| {
        c.limits.idle_timeout = Duration::from_millis(1500);
        c.limits.idle_notice = Duration::from_millis(700);
    })
    .await;
    let mut c = server.connect(&guard(&server, "idle")).await;
    let notice = c.next_frame().await;
    assert_eq!(notice["type"], "notice", "{notice}");
    assert_eq!(notice["code"], "idle_timeout");
    match c.ended().await {
        Ended::Closed(code, _) => assert_eq!(code, 4003),
        other => panic!("{other:?}"),
    }
    // A subscription keeps a connection from being idle.
    let mut busy = server.connect(&guard(&server, "busy")).await;
    assert!(ok(&busy.subscribe("/topic/system").await));
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(busy.request(json!({"type":"ping"})).await["type"], "pong");
    server.stop().await;
}

#[tokio::test]
async fn an_expired_token_closes_with_4001_unless_refreshed() {
    let server = TestServer::start_with(|c| c.jwt.leeway = Duration::ZERO).await;
    let short = |sub: &str| {
        server
            .auth
            .mint(
                sub,
                Some("acme"),
                &[Role::Guard],
                Duration::from_secs(2),
                None,
            )
            .expect("mint")
    };
    let mut expiring = server.connect(&short("x")).await;
    assert!(ok(&expiring.subscribe("/topic/system").await));
    let mut refreshed = server.connect(&short("y")).await;
    assert!(ok(&refreshed.subscribe("/topic/system").await));
    let r = refreshed
        .request(json!({"type":"refresh","token": guard(&server, "y")}))
        .await;
    assert!(ok(&r), "{r}");
    // Someone else's token does not refresh this connection.
    let r = refreshed
        .request(json!({"type":"refresh","token": guard(&server, "z")}))
        .await;
    assert_eq!(error_code(&r), "forbidden");
    let r = refreshed
        .request(json!({"type":"refresh","token": "junk"}))
        .await;
    assert_eq!(error_code(&r), "unauthorized");
    // The same user with other roles, in another org, or on an enrolled device: a refresh
    // never changes what the session is.
    for other in [
        server.token("y", Some("acme"), &[Role::Supervisor]),
        server.token("y", Some("acme"), &[Role::Guard, Role::Admin]),
        server.token("y", Some("globex"), &[Role::Guard]),
        server
            .auth
            .mint_session(
                &server
                    .auth
                    .verify_link(
                        &server
                            .auth
                            .mint_link(
                                "y",
                                Some("acme"),
                                &[Role::Guard],
                                Duration::from_secs(60),
                                None,
                            )
                            .expect("link"),
                    )
                    .expect("link"),
                Duration::from_secs(3600),
            )
            .expect("session")
            .0,
    ] {
        let r = refreshed
            .request(json!({"type":"refresh","token": other}))
            .await;
        assert_eq!(error_code(&r), "forbidden", "{r}");
    }

    match expiring.ended().await {
        Ended::Closed(code, reason) => {
            assert_eq!(code, 4001);
            assert!(reason.contains("expired"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        refreshed.request(json!({"type":"ping"})).await["type"],
        "pong"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_handshake_is_dropped() {
    let server =
        TestServer::start_with(|c| c.limits.handshake_timeout = Duration::from_millis(700)).await;
    // TCP only, no TLS ClientHello.
    let mut tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("tcp");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(PATIENCE, tcp.read(&mut buf))
        .await
        .expect("dropped in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // TLS done, HTTP request never sent (slowloris).
    let connector = tokio_rustls::TlsConnector::from(client_tls(&server.cert_pem));
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("tls");
    let read = tokio::time::timeout(PATIENCE, tls.read(&mut buf))
        .await
        .expect("dropped in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_plain_http_listener_exists_only_when_configured_and_authenticates_the_same() {
    let server = TestServer::start().await;
    assert!(server.plain_addr.is_none());
    server.stop().await;

    let server =
        TestServer::start_with(|c| c.plain_listen = Some("127.0.0.1:0".parse().expect("addr")))
            .await;
    let plain = server.plain_addr.expect("plain listener");
    let token = guard(&server, "behind-proxy");
    let mut req = format!("ws://{plain}/ws")
        .into_client_request()
        .expect("req");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("auth"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("plain upgrade");
    let first = ws.next().await.expect("frame").expect("ok");
    let v: serde_json::Value = serde_json::from_str(first.to_text().expect("text")).expect("json");
    assert_eq!(v["type"], "connection_established");
    let err = tokio_tungstenite::connect_async(format!("ws://{plain}/ws"))
        .await
        .expect_err("no token, no upgrade");
    assert_eq!(refusal(err).0, 401);
    server.stop().await;
}
