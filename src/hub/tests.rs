//! The hub on the in-memory engine, where a test decides when commits happen.

use std::sync::Arc;
use std::time::Duration;

use super::admission::Admission;
use super::{Hub, Outbound, Target, View};
use crate::auth::{Identity, Role, Roles};
use crate::config::Limits;
use crate::protocol::{Encoding, Protocol};
use crate::store::MemoryStore;

fn supervisor(user: &str) -> Identity {
    Identity {
        key: Arc::from(format!("acme/{user}")),
        user: Arc::from(user),
        org: Some(Arc::from("acme")),
        roles: [Role::Supervisor].into_iter().collect::<Roles>(),
        name: None,
        exp: u64::MAX,
        device: None,
    }
}

/// A hub on the memory engine with one supervisor subscribed to a room: the store, the hub,
/// the room, the watcher's queue and its slot.
async fn a_watched_room() -> (
    Arc<MemoryStore>,
    Arc<Hub>,
    Target,
    tokio::sync::mpsc::Receiver<Outbound>,
    Admission,
) {
    let store = Arc::new(MemoryStore::new());
    let hub = Hub::new(store.clone(), Limits::default());
    let room = Target::parse("/topic/org/acme/room/ops", Some("acme"), None).expect("room");
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    let (conn, queue, slot) = hub
        .admit(supervisor("watcher"), Encoding::Json, Protocol::Json, peer)
        .await
        .expect("admit");
    hub.subscribe(&conn, &room, View::Native, None, None, |_| None)
        .await
        .expect("subscribe");
    (store, hub, room, queue, slot)
}

#[tokio::test]
async fn a_message_is_delivered_once_durable_even_when_its_publisher_went_away() {
    let (store, hub, room, mut queue, _slot) = a_watched_room().await;

    store.hold_commits();
    let publish = hub.publish_as_lookout(&room, rmpv::Value::from("help"), false);
    // The publisher appends, waits for its commit, and is dropped before the commit comes.
    let gave_up = tokio::time::timeout(Duration::from_millis(50), publish).await;
    assert!(gave_up.is_err(), "the commit is held, so the publish waits");
    assert!(
        queue.try_recv().is_err(),
        "nothing is delivered before it is durable"
    );
    store.commit_held();

    let delivered = tokio::time::timeout(Duration::from_secs(5), queue.recv())
        .await
        .expect("delivered without another publish on the channel")
        .expect("queue open");
    match delivered {
        Outbound::Deliver(delivery, _) => {
            assert_eq!(delivery.message.seq, 1);
            assert_eq!(delivery.message.data, rmpv::Value::from("help"));
        }
        _ => panic!("expected the message"),
    }
    hub.tasks().close();
    hub.tasks().wait().await;
}

#[tokio::test]
async fn publishes_that_land_out_of_order_are_delivered_in_seq_order() {
    let (store, hub, room, mut queue, _slot) = a_watched_room().await;
    store.hold_commits();
    let publishes: Vec<_> = (0..20u64)
        .map(|n| {
            let hub = hub.clone();
            let room = room.clone();
            tokio::spawn(async move {
                hub.publish_as_lookout(&room, rmpv::Value::from(n), false)
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.commit_held();
    for p in publishes {
        p.await.expect("task").expect("publish");
    }
    let mut seqs = Vec::new();
    while let Ok(Outbound::Deliver(delivery, _)) = queue.try_recv() {
        seqs.push(delivery.message.seq);
    }
    assert_eq!(seqs, (1..=20).collect::<Vec<u64>>());
}

/// A supervisor on the org's locations and alerts that reads nothing, with `queue` for each of
/// its lanes.
async fn a_stalled_supervisor(
    queue: usize,
) -> (
    Arc<Hub>,
    Arc<super::ConnHandle>,
    tokio::sync::mpsc::Receiver<Outbound>,
    Admission,
) {
    let store = Arc::new(MemoryStore::new());
    let hub = Hub::new(
        store,
        Limits {
            outbound_queue: queue,
            ..Limits::default()
        },
    );
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    let (conn, rx, slot) = hub
        .admit(supervisor("sup"), Encoding::Json, Protocol::Json, peer)
        .await
        .expect("admit");
    for channel in ["/topic/org/acme/locations", "/topic/org/acme/alerts"] {
        let target = Target::parse(channel, Some("acme"), None).expect("channel");
        hub.subscribe(&conn, &target, View::Native, None, None, |_| None)
            .await
            .expect("subscribe");
    }
    (hub, conn, rx, slot)
}

fn position(guard: usize, n: u64) -> rmpv::Value {
    rmpv::Value::Map(vec![
        (
            rmpv::Value::from("user"),
            rmpv::Value::from(format!("g{guard}")),
        ),
        (rmpv::Value::from("n"), rmpv::Value::from(n)),
    ])
}

fn field(data: &rmpv::Value, name: &str) -> Option<rmpv::Value> {
    data.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v.clone())
}

#[tokio::test]
async fn a_slow_supervisor_gets_each_guards_latest_position_and_every_alert() {
    let (hub, conn, mut queue, _slot) = a_stalled_supervisor(16).await;
    let locations =
        Target::parse("/topic/org/acme/locations", Some("acme"), None).expect("channel");
    let alerts = Target::parse("/topic/org/acme/alerts", Some("acme"), None).expect("channel");
    for n in 1..=50u64 {
        for guard in 0..10 {
            hub.publish_as_lookout(&locations, position(guard, n), false)
                .await
                .expect("position");
        }
        if n % 10 == 0 {
            hub.publish_as_lookout(&alerts, rmpv::Value::from(n), true)
                .await
                .expect("alert");
        }
    }
    assert!(
        conn.close_requested().is_none(),
        "not closed for live traffic"
    );
    let mut alerts_seen = Vec::new();
    while let Ok(Outbound::Deliver(d, _)) = queue.try_recv() {
        alerts_seen.push(d.message.data.as_u64());
    }
    assert_eq!(
        alerts_seen,
        [10, 20, 30, 40, 50].map(Some),
        "every alert, in order, none behind positions"
    );
    let mut latest = std::collections::BTreeMap::new();
    while let Some((d, _)) = conn.live.pop() {
        let user = field(&d.message.data, "user").and_then(|u| u.as_str().map(String::from));
        let n = field(&d.message.data, "n").and_then(|n| n.as_u64());
        assert!(
            latest.insert(user, n).is_none(),
            "one waiting position per guard"
        );
    }
    assert_eq!(latest.len(), 10);
    assert!(latest.values().all(|n| *n == Some(50)), "{latest:?}");
    assert_eq!(
        hub.stats
            .coalesced
            .load(std::sync::atomic::Ordering::Relaxed),
        490
    );
}

#[tokio::test]
async fn live_traffic_is_shed_when_its_lane_is_full_and_a_logged_backlog_still_closes() {
    let (hub, conn, _queue, _slot) = a_stalled_supervisor(4).await;
    let locations =
        Target::parse("/topic/org/acme/locations", Some("acme"), None).expect("channel");
    for guard in 0..10 {
        hub.publish_as_lookout(&locations, position(guard, 1), false)
            .await
            .expect("position");
    }
    assert_eq!(conn.live.len(), 4);
    assert_eq!(
        hub.stats
            .dropped_live
            .load(std::sync::atomic::Ordering::Relaxed),
        6
    );
    assert!(conn.close_requested().is_none());
    let alerts = Target::parse("/topic/org/acme/alerts", Some("acme"), None).expect("channel");
    for n in 0..5u64 {
        hub.publish_as_lookout(&alerts, rmpv::Value::from(n), true)
            .await
            .expect("alert");
    }
    assert_eq!(
        conn.close_requested().map(|(code, _)| *code),
        Some(4002),
        "a logged backlog over its budget closes, to resume with since"
    );
}

#[tokio::test]
async fn users_gone_long_enough_are_forgotten_and_connected_ones_are_not() {
    let hub = Hub::new(Arc::new(MemoryStore::new()), Limits::default());
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    let (_kept, _queue, _slot) = hub
        .admit(supervisor("stays"), Encoding::Json, Protocol::Json, peer)
        .await
        .expect("admit");
    let (_conn, _queue2, slot) = hub
        .admit(supervisor("leaves"), Encoding::Json, Protocol::Json, peer)
        .await
        .expect("admit");
    drop(slot);
    assert!(
        hub.users.status("acme/leaves").1.is_some(),
        "remembered at first"
    );
    hub.users.forget_gone(crate::clock::now_millis() + 1);
    assert_eq!(
        hub.users.status("acme/leaves").1,
        None,
        "forgotten once gone long enough"
    );
    assert!(
        !hub.users.status("acme/stays").0.is_empty(),
        "a connected user stays"
    );
}

#[tokio::test]
async fn a_time_range_starts_where_the_log_reaches_its_first_time_without_reading_from_the_start() {
    use crate::store::{Draft, Store};
    let store = Arc::new(MemoryStore::new());
    let hub = Hub::new(store.clone(), Limits::default());
    let room = "/topic/org/acme/room/log";
    // One message a minute, from minute 1 to minute 1000.
    let minute = 60_000u64;
    for n in 1..=1000u64 {
        let draft = Draft {
            timestamp: n * minute,
            data: rmpv::Value::from(n),
            ack_required: false,
        };
        store.append(room, draft).await.expect("append");
    }
    let who = supervisor("reader");
    let at = |t: u64| {
        let hub = hub.clone();
        let who = who.clone();
        async move { hub.seq_before(&who, room, t).await.expect("seq_before") }
    };
    // Everything stored at or after minute 500 comes after the seq found; the clock step
    // allowance (one minute) puts it one message earlier than exact.
    assert_eq!(at(500 * minute).await, 498);
    assert_eq!(at(0).await, 0);
    assert_eq!(at(5000 * minute).await, 1000);
    assert!(
        hub.seq_before(&who, "/topic/org/other/room/x", 0)
            .await
            .is_err(),
        "the same rights as reading the log"
    );
}

#[tokio::test]
async fn a_users_reads_at_once_are_bounded_and_another_users_are_not_touched() {
    let limits = Limits {
        max_requests_per_user: 2,
        ..Limits::default()
    };
    let hub = Hub::new(Arc::new(MemoryStore::new()), limits);
    let (a, b) = (supervisor("a"), supervisor("b"));
    let first = hub.begin_read(&a).expect("first");
    let _second = hub.begin_read(&a).expect("second");
    assert!(
        hub.begin_read(&a).is_err(),
        "a third read at once is refused"
    );
    let _other = hub.begin_read(&b).expect("another user reads");
    drop(first);
    let _again = hub
        .begin_read(&a)
        .expect("a place given back is taken again");
    assert_eq!(
        hub.stats.refusals(crate::counters::Budget::RequestsPerUser),
        1
    );
}
