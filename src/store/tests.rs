//! The store's contract, checked against every engine: the same model test runs on sled and
//! in memory, reboots included.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::sled::{SledStore, StoreOptions, STORE_DIR};
use super::{Draft, MemoryStore, Store, StoreError};

fn draft(timestamp: u64, data: rmpv::Value, ack_required: bool) -> Draft {
    Draft {
        timestamp,
        data,
        ack_required,
    }
}

fn open_sled(dir: &Path) -> Arc<dyn Store> {
    Arc::new(
        SledStore::open(dir, StoreOptions::default())
            .expect("open")
            .0,
    )
}

#[tokio::test]
async fn seqs_survive_a_reopen_and_the_epoch_stays() {
    let dir = tempfile::tempdir().expect("dir");
    let epoch = {
        let store = open_sled(dir.path());
        let flusher = store.clone().start();
        for i in 1..=5u64 {
            let (m, t) = store
                .append("/topic/system", draft(i, rmpv::Value::from(i), i == 3))
                .await
                .expect("append");
            assert_eq!(m.seq, i);
            store.durable(t).await.expect("durable");
        }
        flusher.stop().await;
        store.epoch().to_string()
    };
    let (store, report) = SledStore::open(dir.path(), StoreOptions::default()).expect("reopen");
    assert_eq!(report.epoch, epoch);
    assert_eq!(
        (report.channels, report.messages, report.created),
        (1, 5, false)
    );
    let (m, _) = store
        .append("/topic/system", draft(9, rmpv::Value::Nil, false))
        .await
        .expect("append");
    assert_eq!(m.seq, 6, "no seq is reused");
    let seqs: Vec<u64> = store
        .read("/topic/system", 2, 6, 100)
        .await
        .expect("read")
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, [3, 4, 5, 6]);
    assert_eq!(
        store
            .unacknowledged("bob", "/topic/system", 6)
            .await
            .expect("unacked"),
        [3]
    );
    store
        .acknowledge("bob", "/topic/system", 3)
        .await
        .expect("ack");
    assert!(store
        .unacknowledged("bob", "/topic/system", 6)
        .await
        .expect("unacked")
        .is_empty());
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let _first = open_sled(dir.path());
    match SledStore::open(dir.path(), StoreOptions::default()) {
        Err(StoreError::Locked(_)) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn a_directory_holding_something_else_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir_all(dir.path().join(STORE_DIR)).expect("mkdir");
    std::fs::write(dir.path().join(STORE_DIR).join("notes.txt"), "hello").expect("write");
    assert!(matches!(
        SledStore::open(dir.path(), StoreOptions::default()),
        Err(StoreError::Foreign(_))
    ));
}

#[test]
fn an_emptied_store_is_refused_rather_than_silently_recreated() {
    let dir = tempfile::tempdir().expect("dir");
    drop(open_sled(dir.path()));
    std::fs::remove_dir_all(dir.path().join(STORE_DIR)).expect("rm");
    assert!(matches!(
        SledStore::open(dir.path(), StoreOptions::default()),
        Err(StoreError::Corrupt { .. })
    ));
}

/// The store against a model (a BTreeMap per channel), through appends, trims and reboots in
/// a seeded random order: heads, reads and first-retained seqs always agree. `reboot` drops the
/// store it is given and opens the same state again.
async fn behaves_like_its_model(mut reboot: impl FnMut(Option<Arc<dyn Store>>) -> Arc<dyn Store>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let channels = ["/topic/system", "/topic/org/a/room/x", "/user/u/queue/jobs"];
    let mut model: HashMap<&str, (u64, BTreeMap<u64, u64>)> = HashMap::new();
    let mut store = reboot(None);
    for step in 0..600u64 {
        match rng.random_range(0..100) {
            0..=79 => {
                let channel = channels[rng.random_range(0..channels.len())];
                let (m, _) = store
                    .append(channel, draft(step, rmpv::Value::from(step), false))
                    .await
                    .expect("append");
                let (head, log) = model.entry(channel).or_default();
                *head += 1;
                assert_eq!(m.seq, *head, "step {step}");
                log.insert(*head, step);
            }
            80..=89 => {
                let keep = rng.random_range(1..20usize);
                store
                    .trim(Arc::new(move |_| (keep, 0)))
                    .await
                    .expect("trim");
                for (head, log) in model.values_mut() {
                    log.retain(|seq, _| head.saturating_sub(*seq) < keep as u64);
                }
            }
            _ => store = reboot(Some(store)),
        }
        for channel in channels {
            let (head, log) = model.get(channel).cloned().unwrap_or_default();
            assert_eq!(
                store.head(channel),
                head,
                "head of {channel} at step {step}"
            );
            assert_eq!(
                store.first_retained(channel).await.expect("first"),
                log.keys().next().copied(),
                "first of {channel} at step {step}"
            );
            let read: Vec<(u64, u64)> = store
                .read(channel, 0, head, usize::MAX)
                .await
                .expect("read")
                .iter()
                .map(|m| (m.seq, m.data.as_u64().unwrap_or(u64::MAX)))
                .collect();
            assert_eq!(
                read,
                log.into_iter().collect::<Vec<_>>(),
                "{channel} at step {step}"
            );
        }
    }
}

#[tokio::test]
async fn the_sled_engine_behaves_like_the_model_across_reboots_and_trims() {
    let dir = tempfile::tempdir().expect("dir");
    behaves_like_its_model(|old| {
        drop(old);
        open_sled(dir.path())
    })
    .await;
}

#[tokio::test]
async fn the_memory_engine_behaves_like_the_model_across_reboots_and_trims() {
    let root = MemoryStore::new();
    behaves_like_its_model(|_old| Arc::new(root.reboot())).await;
}

async fn trims_keep_the_newest(store: Arc<dyn Store>) {
    for i in 1..=10u64 {
        store
            .append("/topic/system", draft(i, rmpv::Value::Nil, false))
            .await
            .expect("append");
    }
    assert_eq!(store.trim(Arc::new(|_| (4, 0))).await.expect("trim"), 6);
    assert_eq!(
        store.first_retained("/topic/system").await.expect("first"),
        Some(7)
    );
    assert_eq!(store.head("/topic/system"), 10);
    assert_eq!(
        store
            .trim(Arc::new(|_| (100, 8)))
            .await
            .expect("trim by age"),
        1
    );
    assert_eq!(
        store.first_retained("/topic/system").await.expect("first"),
        Some(8)
    );
}

#[tokio::test]
async fn trimming_keeps_the_newest_and_says_where_the_log_starts() {
    let dir = tempfile::tempdir().expect("dir");
    trims_keep_the_newest(open_sled(dir.path())).await;
    trims_keep_the_newest(Arc::new(MemoryStore::new())).await;
}
