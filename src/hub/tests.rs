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
        user: Arc::from(user),
        org: Some(Arc::from("acme")),
        roles: [Role::Supervisor].into_iter().collect::<Roles>(),
        name: None,
        exp: u64::MAX,
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
    let room = Target::parse("/topic/org/acme/room/ops", None).expect("room");
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
