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
    let channels = [
        "/topic/system",
        "/topic/org/a/room/x",
        "/org/a/user/u/queue/jobs",
    ];
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

#[path = "../../tests/common/redis.rs"]
mod redis_process;

fn open_redis(redis: &redis_process::RedisProcess) -> Arc<dyn Store> {
    let options = super::RedisOptions {
        min_replicas: 0,
        ..super::RedisOptions::url(&redis.url())
    };
    let opened = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(super::RedisStore::open(&options))
    });
    Arc::new(opened.expect("open the Redis engine").0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_engine_behaves_like_the_model_across_reboots_and_trims() {
    let redis = redis_process::RedisProcess::start();
    behaves_like_its_model(|old| {
        // A clean stop of the old node, as a restart would make: it leaves the cluster.
        if let Some(old) = old {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(old.start().stop())
            });
        }
        open_redis(&redis)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_engine_trims_keeping_the_newest() {
    let redis = redis_process::RedisProcess::start();
    trims_keep_the_newest(open_redis(&redis)).await;
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

/// `count` messages of `/topic/system`, each durable, in a store that is then stopped.
async fn stopped_store_with(dir: &Path, count: u64) {
    let store = open_sled(dir);
    let flusher = store.clone().start();
    for i in 1..=count {
        let data = rmpv::Value::from(format!("message {i} {}", "x".repeat(150)));
        let (_, ticket) = store
            .append("/topic/system", draft(i, data, i % 7 == 0))
            .await
            .expect("append");
        if i % 50 == 0 || i == count {
            store.durable(ticket).await.expect("durable");
        }
    }
    flusher.stop().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// sled holds its own lock a moment after the store that opened it is gone.
fn raw_sled(path: &Path) -> sled::Db {
    for _ in 0..100 {
        if let Ok(db) = sled::open(path) {
            return db;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("sled stayed locked");
}

#[tokio::test]
async fn a_value_that_fails_its_checksum_stops_the_start_and_names_its_key() {
    let dir = tempfile::tempdir().expect("dir");
    stopped_store_with(dir.path(), 5).await;
    {
        // Damage sled itself did not notice: one bit of message 3's stored bytes.
        let db = raw_sled(&dir.path().join(STORE_DIR));
        let key = super::sled::keys::log(1, 3);
        let mut raw = db.get(key).expect("get").expect("message 3").to_vec();
        raw[2] ^= 0x04;
        db.insert(key, raw).expect("insert");
        db.flush().expect("flush");
    }
    match SledStore::open(dir.path(), StoreOptions::default()) {
        Err(StoreError::Corrupt { message, .. }) => {
            assert!(
                message.contains("message 3 of channel #1") && message.contains("checksum"),
                "{message}"
            );
        }
        other => panic!("expected a start-up error naming the damaged key, got {other:?}"),
    }
}

#[tokio::test]
async fn damage_to_the_store_files_is_refused_at_start_and_never_serves_a_shortened_log() {
    const COUNT: u64 = 3000;
    let pristine = tempfile::tempdir().expect("dir");
    stopped_store_with(pristine.path(), COUNT).await;
    let db_file = pristine.path().join(STORE_DIR).join("db");
    let len = std::fs::metadata(&db_file).expect("db file").len();
    let mut refused = 0;
    let damages = [0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95]
        .map(|at| (at, false))
        .into_iter()
        .chain([(0.1, true), (0.5, true), (0.9, true)]);
    for (at, truncate) in damages {
        let dir = tempfile::tempdir().expect("dir");
        copy_dir(pristine.path(), dir.path());
        let file = dir.path().join(STORE_DIR).join("db");
        let offset = (len as f64 * at) as u64;
        if truncate {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .expect("open");
            f.set_len(offset).expect("truncate");
        } else {
            let mut bytes = std::fs::read(&file).expect("read");
            bytes[offset as usize] ^= 0x10;
            std::fs::write(&file, bytes).expect("write");
        }
        let what = format!(
            "{} at {offset} of {len}",
            if truncate { "cut" } else { "bit flip" }
        );
        match SledStore::open(dir.path(), StoreOptions::default()) {
            // The damage hit bytes sled no longer needed: everything is there.
            Ok((store, report)) => {
                assert_eq!(report.messages, COUNT, "{what}: a shortened log was served");
                let all = store
                    .read("/topic/system", 0, COUNT, usize::MAX)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(all.len() as u64, COUNT, "{what}");
                for (i, m) in all.iter().enumerate() {
                    let expected = format!("message {} {}", i + 1, "x".repeat(150));
                    assert_eq!(m.data.as_str(), Some(expected.as_str()), "{what}");
                }
            }
            Err(StoreError::Corrupt { message, .. }) => {
                assert!(!message.is_empty());
                refused += 1;
            }
            Err(other) => panic!("{what}: expected Corrupt, got {other:?}"),
        }
    }
    assert!(
        refused >= 3,
        "the damage cases should include refused ones: {refused}"
    );
}

#[tokio::test]
async fn a_store_of_schema_1_is_sealed_when_opened_and_keeps_every_message() {
    let dir = tempfile::tempdir().expect("dir");
    stopped_store_with(dir.path(), 20).await;
    {
        // Back to version 1: bare values.
        let db = raw_sled(&dir.path().join(STORE_DIR));
        let schema = super::sled::keys::meta("schema");
        for entry in db.iter() {
            let (k, v) = entry.expect("entry");
            if k.as_ref() != schema.as_slice() {
                let bare = super::sled::sealed::unseal(&k, v).expect("sealed");
                db.insert(k, bare).expect("insert");
            }
        }
        db.insert(&schema, &1u32.to_be_bytes()).expect("schema");
        db.flush().expect("flush");
    }
    let (store, report) = SledStore::open(dir.path(), StoreOptions::default()).expect("open");
    assert_eq!(report.messages, 20);
    let all = store.read("/topic/system", 0, 20, 100).await.expect("read");
    assert_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    drop(store);
    // And it opens again as version 2.
    SledStore::open(dir.path(), StoreOptions::default()).expect("reopen");
}

/// A store a newer release wrote is refused, untouched, with what to do.
#[tokio::test]
async fn a_store_of_a_newer_schema_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("dir");
    stopped_store_with(dir.path(), 3).await;
    let schema = super::sled::keys::meta("schema");
    {
        let db = raw_sled(&dir.path().join(STORE_DIR));
        db.insert(&schema, &99u32.to_be_bytes()).expect("schema");
        db.flush().expect("flush");
    }
    let refused = match SledStore::open(dir.path(), StoreOptions::default()) {
        Ok(_) => panic!("a store of a newer schema opened"),
        Err(e) => e.to_string(),
    };
    assert!(refused.contains("written by a newer lookout"), "{refused}");
    assert!(refused.contains("restore a backup"), "{refused}");
    let db = raw_sled(&dir.path().join(STORE_DIR));
    let kept = db.get(&schema).expect("read").expect("schema");
    assert_eq!(kept.as_ref(), 99u32.to_be_bytes(), "left untouched");
}

/// A store written before principals: a user's channels, queue, acknowledgements and
/// directory entry under the user id alone, and a job under its id. Opened by this version,
/// each is found under (org, user); a user the directory never saw stays where it was.
#[tokio::test]
async fn a_schema_2_store_moves_its_users_state_under_their_org_when_opened() {
    use super::sled::keys;
    let dir = tempfile::tempdir().expect("dir");
    {
        let store = open_sled(dir.path());
        let flusher = store.clone().start();
        // What schema 2 wrote, through the same engine calls (names are opaque to it).
        store
            .remember_user("carol", "acme", 7)
            .await
            .expect("remember");
        store
            .remember_user("owner", "acme", 7)
            .await
            .expect("remember");
        for (channel, n) in [
            ("/topic/location/carol", 3u64),
            ("/user/carol/queue/messages", 2),
            ("/topic/job/j1", 1),
            ("/topic/location/stranger", 1),
            ("/topic/org/acme/room/ops", 4),
        ] {
            for i in 1..=n {
                let (_, t) = store
                    .append(channel, draft(i, rmpv::Value::from(i), true))
                    .await
                    .expect("append");
                store.durable(t).await.expect("durable");
            }
        }
        store.claim_job("j1", "owner").await.expect("job");
        let t = store
            .acknowledge("carol", "/topic/org/acme/room/ops", 2)
            .await
            .expect("ack")
            .expect("seq");
        store.durable(t).await.expect("durable");
        let t = store
            .advance_cursor("carol", "/user/carol/queue/messages", 1)
            .await
            .expect("cursor")
            .expect("seq");
        store.durable(t).await.expect("durable");
        flusher.stop().await;
    }
    {
        let db = sled::open(dir.path().join(STORE_DIR)).expect("raw sled");
        db.insert(keys::meta("schema"), &2u32.to_be_bytes())
            .expect("schema 2");
        db.flush().expect("flush");
    }
    let store = open_sled(dir.path());
    let seqs = |m: super::interface::Messages| m.iter().map(|m| m.seq).collect::<Vec<_>>();
    for (old, new, n) in [
        (
            "/topic/location/carol",
            "/org/acme/topic/location/carol",
            3u64,
        ),
        (
            "/user/carol/queue/messages",
            "/org/acme/user/carol/queue/messages",
            2,
        ),
        ("/topic/job/j1", "/org/acme/topic/job/j1", 1),
    ] {
        assert_eq!(store.head(new), n, "{new}");
        let read = store.read(new, 0, n, 100).await.expect("read");
        assert_eq!(seqs(read), (1..=n).collect::<Vec<_>>(), "{new}");
        assert_eq!(store.head(old), 0, "{old} moved");
    }
    // A user the directory never saw: left, unreachable, not lost.
    assert_eq!(store.head("/topic/location/stranger"), 1);
    // Org channels stay; acknowledgements, cursors, the directory and the job follow the user.
    assert_eq!(store.head("/topic/org/acme/room/ops"), 4);
    assert_eq!(
        store
            .unacknowledged("acme/carol", "/topic/org/acme/room/ops", 4)
            .await
            .expect("unacked"),
        vec![1, 3, 4]
    );
    assert_eq!(
        store
            .cursor("acme/carol", "/org/acme/user/carol/queue/messages")
            .await
            .expect("cursor"),
        1
    );
    assert_eq!(store.last_seen("acme/carol").await.expect("seen"), Some(7));
    assert_eq!(store.last_seen("carol").await.expect("seen"), None);
    assert_eq!(
        store.job_owner("acme/j1").await.expect("job").as_deref(),
        Some("owner")
    );
    // Opened again: nothing moves twice.
    drop(store);
    let store = open_sled(dir.path());
    assert_eq!(store.head("/org/acme/topic/location/carol"), 3);
}

/// `write_if`: a write applies whole while its guard holds what was read, and not at all
/// after the guard changed; timers ride along like any change.
async fn writes_only_over_what_was_read(store: Arc<dyn Store>) {
    use super::{Change, Record, Records};
    let guard = Record::Welfare {
        key: "guard/acme/g1",
    };
    let timer = |due| Record::Timer {
        due,
        alert: "welfare/acme/g1",
        level: 1,
    };
    let first = [
        Change::Put(guard, b"v1".to_vec()),
        Change::Put(timer(1_000), Vec::new()),
    ];
    assert!(store
        .write_if(guard, None, &first)
        .await
        .expect("write")
        .is_some());
    // Someone else's view of "absent" is stale now: nothing of its write lands.
    let stale = [
        Change::Put(guard, b"other".to_vec()),
        Change::Put(
            Record::Welfare {
                key: "guard/acme/g2",
            },
            b"x".to_vec(),
        ),
    ];
    assert!(store
        .write_if(guard, None, &stale)
        .await
        .expect("write")
        .is_none());
    assert_eq!(
        store.records(Records::Welfare).await.expect("read").len(),
        1
    );
    // Over what it read, a write moves the timer and the value together.
    let second = [
        Change::Put(guard, b"v2".to_vec()),
        Change::Delete(timer(1_000)),
        Change::Put(timer(2_000), Vec::new()),
    ];
    assert!(store
        .write_if(guard, Some(b"v1"), &second)
        .await
        .expect("write")
        .is_some());
    assert!(store
        .write_if(guard, Some(b"v1"), &first)
        .await
        .expect("write")
        .is_none());
    assert_eq!(
        store.record(guard).await.expect("read"),
        Some(b"v2".to_vec())
    );
    let due: Vec<u64> = store
        .due_timers(u64::MAX)
        .await
        .expect("timers")
        .into_iter()
        .map(|t| t.due)
        .collect();
    assert_eq!(due, vec![2_000]);
    let gone = [Change::Delete(guard)];
    assert!(store
        .write_if(guard, Some(b"v2"), &gone)
        .await
        .expect("write")
        .is_some());
    assert_eq!(store.record(guard).await.expect("read"), None);
}

#[tokio::test]
async fn every_engine_writes_only_over_what_was_read() {
    let dir = tempfile::tempdir().expect("dir");
    writes_only_over_what_was_read(open_sled(dir.path())).await;
    writes_only_over_what_was_read(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_engine_writes_only_over_what_was_read() {
    let redis = redis_process::RedisProcess::start();
    writes_only_over_what_was_read(open_redis(&redis)).await;
}

/// ARC outbox records are a set of their own: never among the webhooks' outbox, kept across a
/// reopen, gone when deleted.
async fn keeps_arc_outbox_records_apart(store: Arc<dyn Store>) {
    use super::{Change, Record, Records};
    let arc = Record::ArcOutbox {
        id: "arc1-0000000000001-a-00000",
    };
    let hook = Record::Outbox {
        id: "hook-0000000000001-a-00000",
    };
    // Written, not waited for: no flusher runs here.
    store
        .write(&[
            Change::Put(arc, b"alarm".to_vec()),
            Change::Put(hook, b"n".to_vec()),
        ])
        .await
        .expect("write");
    let arcs = store.records(Records::ArcOutbox).await.expect("read");
    assert_eq!(arcs, vec![b"alarm".to_vec()]);
    assert_eq!(store.records(Records::Outbox).await.expect("read").len(), 1);
    store.write(&[Change::Delete(arc)]).await.expect("delete");
    assert!(store
        .records(Records::ArcOutbox)
        .await
        .expect("read")
        .is_empty());
}

#[tokio::test]
async fn every_engine_keeps_arc_outbox_records_apart() {
    let dir = tempfile::tempdir().expect("dir");
    keeps_arc_outbox_records_apart(open_sled(dir.path())).await;
    keeps_arc_outbox_records_apart(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_engine_keeps_arc_outbox_records_apart() {
    let redis = redis_process::RedisProcess::start();
    keeps_arc_outbox_records_apart(open_redis(&redis)).await;
}
