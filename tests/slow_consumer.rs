//! A subscriber that reads nothing must not delay anyone else, and what the server holds for it
//! must stay bounded: live-only channels drop its messages, logged channels disconnect it (4002)
//! so it can resume with `since`.

mod common;

use common::*;
use lookout::auth::Role;
use serde_json::json;

const FAST: usize = 100;
const MESSAGES: u64 = 400;
const QUEUE: usize = 32;

async fn server() -> TestServer {
    server_with(|c| c.limits.outbound_queue = QUEUE).await
}

/// A server for slow clients, with `adjust` on top.
async fn server_with(adjust: impl FnOnce(&mut lookout::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
        c.limits.video_frames_per_second = 100_000;
        c.limits.max_connections_per_user = 200;
        // A peer that takes no frame for this long is dropped; these tests are about what
        // happens before that.
        c.limits.write_timeout = std::time::Duration::from_secs(600);
        adjust(c);
    })
    .await
}

/// Connects the fast subscribers, each reading on its own task until `expected` messages came.
async fn fast_readers(
    server: &TestServer,
    channel: &'static str,
    expected: u64,
) -> Vec<tokio::task::JoinHandle<Vec<u64>>> {
    let mut handles = Vec::new();
    for i in 0..FAST {
        let token = server.token(&format!("fast{i}"), Some("acme"), &[Role::Supervisor]);
        let mut c = server.connect(&token).await;
        assert!(ok(&c.subscribe(channel).await));
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            while (seqs.len() as u64) < expected {
                seqs.push(c.next_message().await["seq"].as_u64().expect("seq"));
            }
            seqs
        }));
    }
    handles
}

/// The guard streaming video, over MessagePack.
async fn video_guard(server: &TestServer) -> Client {
    let token = server.token("g1", Some("acme"), &[Role::Guard]);
    server
        .connect_as(&token, Some("lookout.msgpack"))
        .await
        .expect("msgpack")
}

/// Publishes large live video frames (not keyframes) until the server reports dropping some
/// for a stalled viewer: from then on its socket buffers and its queue are full. Returns the
/// last seq published.
async fn stall_on_video(server: &TestServer, guard: &mut Client) -> u64 {
    let frame = vec![0x5a; 60 * 1024];
    for n in 0..2000 {
        let reply = guard.publish_frame("/topic/video/g1", &frame, false).await;
        assert!(ok(&reply), "{reply}");
        if n % 20 == 19 && server.stats().await["dropped_live"].as_u64().unwrap_or(0) > 0 {
            return reply["seq"].as_u64().expect("seq");
        }
    }
    panic!("the stalled viewer never filled up");
}

/// Waits for every fast reader and checks it got exactly `seqs`, in order.
async fn assert_all_received(
    readers: Vec<tokio::task::JoinHandle<Vec<u64>>>,
    seqs: std::ops::RangeInclusive<u64>,
) {
    let expected: Vec<u64> = seqs.collect();
    for (i, r) in readers.into_iter().enumerate() {
        let got = tokio::time::timeout(PATIENCE * 2, r)
            .await
            .expect("in time")
            .expect("reader");
        assert_eq!(got, expected, "fast subscriber {i}");
    }
}

async fn stalled(server: &TestServer, channel: &str) -> Client {
    let token = server.token("stalled", Some("acme"), &[Role::Supervisor]);
    let mut c = connect_stalled(&server.cert_pem, server.addr, &token).await;
    assert!(ok(&c.subscribe(channel).await));
    c
}

#[tokio::test]
async fn a_stalled_video_viewer_loses_frames_while_100_others_get_every_one() {
    let server = server().await;
    let channel = "/topic/video/g1";
    let mut guard = video_guard(&server).await;
    let _stalled = stalled(&server, channel).await;
    let head = stall_on_video(&server, &mut guard).await;
    let readers = fast_readers(&server, channel, MESSAGES).await;

    let frame = vec![0x4a; 1024];
    for _ in 1..=MESSAGES {
        let r = guard.publish_frame(channel, &frame, false).await;
        assert!(ok(&r), "{r}");
    }
    assert_all_received(readers, head + 1..=head + MESSAGES).await;
    // The stalled viewer is still connected, its queue holds at most QUEUE frames, and the rest
    // of its frames were dropped, not buffered.
    let admin = server.token("root", None, &[Role::Admin]);
    let status: serde_json::Value = server
        .http()
        .get(server.https("/api/v1/websocket/user/stalled/status?org=acme"))
        .bearer_auth(admin)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["online"], true, "{status}");
    let queued = status["connections"][0]["queued"].as_u64().expect("queued");
    assert!(queued <= QUEUE as u64, "{status}");
    let stats = server.stats().await;
    assert!(
        stats["dropped_live"].as_u64().expect("dropped") > 0,
        "{stats}"
    );
    assert_eq!(stats["slow_consumer_disconnects"], 0, "{stats}");
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_subscriber_on_a_logged_channel_is_disconnected_and_others_are_not_delayed() {
    let server = server().await;
    let channel = "/topic/org/acme/room/ops";
    let mut publisher = server
        .connect(&server.token("pub", Some("acme"), &[Role::Supervisor]))
        .await;
    let mut guard = video_guard(&server).await;
    let mut slow = stalled(&server, "/topic/video/g1").await;
    assert!(ok(&slow.subscribe(channel).await));
    stall_on_video(&server, &mut guard).await;
    let readers = fast_readers(&server, channel, MESSAGES).await;

    let body = "r".repeat(1024);
    for n in 1..=MESSAGES {
        assert!(ok(&publisher
            .publish(channel, json!({"n": n, "body": body}))
            .await));
    }
    assert_all_received(readers, 1..=MESSAGES).await;
    let stats = server.stats().await;
    assert_eq!(
        stats["slow_consumer_disconnects"], 1,
        "one stalled subscriber, one disconnect: {stats}"
    );
    // What it did get is a gap-free prefix, then the slow-consumer close (4002), so it knows to
    // resume with `since`.
    let mut last = 0;
    let end = loop {
        match tokio::time::timeout(PATIENCE, slow.ws.next_frame_or_end())
            .await
            .expect("in time")
        {
            Ok(f) if f["channel"] == channel => {
                let seq = f["seq"].as_u64().expect("seq");
                assert_eq!(seq, last + 1, "gap in what the slow subscriber got");
                last = seq;
            }
            Ok(_) => {}
            Err(end) => break end,
        }
    };
    match end {
        Ended::Closed(code, _) => assert_eq!(code, 4002),
        Ended::Dropped => {}
    }
    assert!(
        last < MESSAGES,
        "a stalled subscriber cannot have received everything"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_servers_memory_stays_bounded_while_a_video_viewer_is_stalled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Binary::serve(
        &dir.path().join("data"),
        &[
            ("LOOKOUT_LIMITS__VIDEO_FRAMES_PER_SECOND", "100000"),
            ("LOOKOUT_LIMITS__MESSAGES_PER_SECOND", "100000"),
            ("LOOKOUT_LIMITS__MESSAGE_BURST", "100000"),
            ("LOOKOUT_LIMITS__OUTBOUND_QUEUE", "64"),
            ("LOOKOUT_LIMITS__WRITE_TIMEOUT", "10m"),
        ],
    );
    let channel = "/topic/video/g1";
    let mut guard = server
        .connect_with(
            &server.token("g1", Some("acme"), &[Role::Guard]),
            Some("lookout.msgpack"),
        )
        .await;
    let token = server.token("sup", Some("acme"), &[Role::Supervisor]);
    let mut stalled = connect_stalled(&server.cert_pem(), server.addr, &token).await;
    assert!(ok(&stalled.subscribe(channel).await));

    let frame = vec![0x56; 32 * 1024];
    // Warm up: fill the socket buffers and the queue, then measure.
    for _ in 0..300 {
        assert!(ok(&guard.publish_frame(channel, &frame, false).await));
    }
    let before = server.rss_kib();
    // 3,000 more frames of 32 KiB: ~94 MiB that an unbounded queue would have to hold.
    for _ in 300..3300 {
        assert!(ok(&guard.publish_frame(channel, &frame, false).await));
    }
    let after = server.rss_kib();
    let growth_mib = after.saturating_sub(before) as f64 / 1024.0;
    eprintln!("server RSS before {before} KiB, after {after} KiB, growth {growth_mib:.1} MiB");
    assert!(
        growth_mib < 24.0,
        "RSS grew by {growth_mib:.1} MiB while a viewer was stalled"
    );
    // The stalled viewer is still connected (live-only: frames dropped, no disconnect).
    assert_eq!(
        stalled.request(json!({"type":"ping"})).await["type"],
        "pong"
    );
}

#[tokio::test]
async fn a_client_resuming_100000_messages_slowly_is_not_taken_for_dead_and_gets_them_all() {
    const RESUMED: u64 = 100_000;
    let server = TestServer::start_with(|c| {
        c.limits.outbound_queue = 64;
        c.limits.ping_interval = std::time::Duration::from_millis(500);
        c.limits.dead_peer_timeout = std::time::Duration::from_secs(2);
        // The room keeps all it is resumed from: by default a channel keeps its newest 10,000,
        // and a retention pass a minute in (a slow run) trimmed the messages being replayed.
        c.retention.default.max_messages = 2 * RESUMED as usize;
    })
    .await;
    let room = lookout::hub::Target::parse("/topic/org/acme/room/archive", Some("acme"), None)
        .expect("room");
    let publishers: Vec<_> = (0..16u64)
        .map(|p| {
            let hub = server.state.hub.clone();
            let room = room.clone();
            tokio::spawn(async move {
                for n in 0..RESUMED / 16 {
                    let data = rmpv::Value::from(p * RESUMED + n);
                    hub.publish_as_lookout(&room, data, false)
                        .await
                        .expect("publish");
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.expect("publisher");
    }
    let token = server.token("archivist", Some("acme"), &[Role::Supervisor]);
    let mut reader = server.connect(&token).await;
    let reply = reader
        .request(
            json!({"type": "subscribe", "channel": "/topic/org/acme/room/archive", "since": 0}),
        )
        .await;
    assert_eq!(reply["head"], RESUMED, "{reply}");
    // Far slower than the server sends, for longer than the dead-peer timeout: the client
    // answers the server's pings whenever it reads, and that must be enough.
    let started = std::time::Instant::now();
    for seq in 1..=RESUMED {
        let m = reader.next_message().await;
        assert_eq!(m["seq"], seq, "in order, nothing missing");
        if seq % 2_000 == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    assert!(started.elapsed() > std::time::Duration::from_secs(2));
    assert_eq!(
        reader.request(json!({"type": "ping"})).await["type"],
        "pong"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_slow_reader_whose_pongs_wait_behind_its_backlog_is_alive_while_it_makes_room() {
    // Reading ~20 KB/s with ~90 KiB in the buffers ahead of each ping: its pong comes seconds
    // after the dead-peer timeout, but the room it keeps making for the server's writes shows
    // it is there.
    const MESSAGES: u64 = 2_000;
    let server = TestServer::start_with(|c| {
        c.limits.ping_interval = std::time::Duration::from_millis(500);
        c.limits.dead_peer_timeout = std::time::Duration::from_secs(2);
    })
    .await;
    let room =
        lookout::hub::Target::parse("/topic/org/acme/room/log", Some("acme"), None).expect("room");
    for n in 0..MESSAGES {
        let data = rmpv::Value::from(format!("{n:0>60}"));
        server
            .state
            .hub
            .publish_as_lookout(&room, data, false)
            .await
            .expect("publish");
    }
    let token = server.token("slowpoke", Some("acme"), &[Role::Supervisor]);
    let mut reader = connect_stalled(&server.cert_pem, server.addr, &token).await;
    let reply = reader
        .request(json!({"type": "subscribe", "channel": "/topic/org/acme/room/log", "since": 0}))
        .await;
    assert_eq!(reply["head"], MESSAGES, "{reply}");
    let started = std::time::Instant::now();
    for seq in 1..=MESSAGES {
        let m = reader.next_message().await;
        assert_eq!(m["seq"], seq, "in order, nothing missing, not closed");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(started.elapsed() > std::time::Duration::from_secs(4));
    server.stop().await;
}

/// A stalled viewer's live lane holds at most `limits.outbound_queue_bytes` of frames, however
/// many frames its count would allow: beyond, frames are dropped for it and counted, while
/// the other viewers get every one.
#[tokio::test]
async fn a_stalled_viewers_live_lane_is_bounded_in_bytes_and_the_others_get_every_frame() {
    const LANE: usize = 512 * 1024;
    let server = server_with(|c| {
        c.limits.outbound_queue = 1024;
        c.limits.outbound_queue_bytes = LANE;
    })
    .await;
    let channel = "/topic/video/g1";
    let mut guard = video_guard(&server).await;
    let _stalled = stalled(&server, channel).await;
    let head = stall_on_video(&server, &mut guard).await;
    // The 60 KiB frames that filled it were refused by bytes with a handful waiting, far
    // below the lane's count; small frames go on to everyone else.
    let readers = fast_readers(&server, channel, MESSAGES).await;
    let frame = vec![0x4a; 1024];
    for _ in 1..=MESSAGES {
        let r = guard.publish_frame(channel, &frame, false).await;
        assert!(ok(&r), "{r}");
    }
    assert_all_received(readers, head + 1..=head + MESSAGES).await;
    let admin = server.token("root", Some("acme"), &[Role::Admin]);
    let status = get_json(
        &server.http(),
        &server.https("/api/v1/websocket/user/stalled/status"),
        &admin,
    )
    .await;
    let queued = status["connections"][0]["queued"].as_u64().expect("queued");
    assert!(
        queued as usize <= LANE / 1024,
        "{queued} frames held for the stalled viewer: {status}"
    );
    let refused = value(
        &scrape(&server).await,
        "lookout_budget_refusals_total",
        &[("budget", "limits.outbound_queue_bytes")],
    );
    assert!(refused > 0.0, "the byte budget refused frames");
    server.stop().await;
}
