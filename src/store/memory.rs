//! An engine in memory: the reference implementation of the [`Store`] contract, for tests and
//! for trying an engine-independent change without a disk.
//!
//! Every write is durable the moment it is applied (tickets are covered at once), unless a
//! test holds commits to see what waits on durability. A
//! [`MemoryStore::reboot`] opens a new store over the same state, as a process restarting on
//! the same data directory would, so the model test exercises the same reboot steps as sled's.
//! Nothing is bounded here beyond what retention trims, exactly as on disk: do not run a site
//! on it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::error::{Result, StoreError};
use super::interface::{
    Appended, Background, Draft, Messages, Remembered, RetentionOf, Store, StoredMessage, Ticket,
};
use super::records::{Change, Record, Records, Timer};
use crate::counters::Latency;

/// A domain record's key, ordered as the engine scans it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Fence {
        org: String,
        id: String,
    },
    Location(String),
    FenceState {
        user: String,
        fence: String,
    },
    Alert(String),
    Shift(String),
    UsedLink(String),
    Device(String),
    Outbox(String),
    ArcOutbox(String),
    Member(String),
    Welfare(String),
    Patrol {
        org: String,
        kind: String,
        id: String,
    },
}

impl Key {
    /// The key of a record, or `None` for a timer (kept in the timer index).
    fn of(record: &Record<'_>) -> Option<Key> {
        Some(match *record {
            Record::Fence { org, id } => Key::Fence {
                org: org.into(),
                id: id.into(),
            },
            Record::Location { user } => Key::Location(user.into()),
            Record::FenceState { user, fence } => Key::FenceState {
                user: user.into(),
                fence: fence.into(),
            },
            Record::Alert { id } => Key::Alert(id.into()),
            Record::Shift { id } => Key::Shift(id.into()),
            Record::UsedLink { jti } => Key::UsedLink(jti.into()),
            Record::Device { id } => Key::Device(id.into()),
            Record::Outbox { id } => Key::Outbox(id.into()),
            Record::ArcOutbox { id } => Key::ArcOutbox(id.into()),
            Record::Member { key } => Key::Member(key.into()),
            Record::Welfare { key } => Key::Welfare(key.into()),
            Record::Patrol { org, kind, id } => Key::Patrol {
                org: org.into(),
                kind: kind.into(),
                id: id.into(),
            },
            Record::Timer { .. } => return None,
        })
    }

    fn in_set(&self, set: &Records<'_>) -> bool {
        match (self, set) {
            (Key::Fence { org, .. }, Records::Fences { org: wanted }) => org == wanted,
            (Key::Patrol { org, kind, .. }, Records::Patrol { org: o, kind: k }) => {
                org == o && kind == k
            }
            (Key::Location(_), Records::Locations)
            | (Key::Alert(_), Records::Alerts)
            | (Key::Shift(_), Records::Shifts)
            | (Key::Device(_), Records::Devices)
            | (Key::Outbox(_), Records::Outbox)
            | (Key::ArcOutbox(_), Records::ArcOutbox)
            | (Key::Welfare(_), Records::Welfare) => true,
            _ => false,
        }
    }
}

#[derive(Default)]
struct Log {
    /// The head when retention last trimmed.
    floor: u64,
    messages: BTreeMap<u64, Arc<StoredMessage>>,
    ack_required: BTreeSet<u64>,
    /// Idempotency keys → seq.
    keys: HashMap<String, u64>,
}

impl Log {
    fn head(&self) -> u64 {
        let last = self.messages.keys().next_back().copied().unwrap_or(0);
        self.floor.max(last)
    }
}

/// Everything the engine keeps: what a data directory would hold.
struct State {
    epoch: String,
    logs: HashMap<String, Log>,
    /// (user, channel, seq) acknowledged.
    acked: HashSet<(String, String, u64)>,
    /// (user, channel) → last acknowledged seq of a user's queue.
    cursors: HashMap<(String, String), u64>,
    /// user → (org, last seen).
    users: HashMap<String, (Arc<str>, u64)>,
    jobs: HashMap<String, Arc<str>>,
    records: BTreeMap<Key, Vec<u8>>,
    timers: BTreeSet<Timer>,
}

impl State {
    /// Whether `seq` is one `channel` has given.
    fn gave(&self, channel: &str, seq: u64) -> bool {
        self.logs
            .get(channel)
            .is_some_and(|l| seq != 0 && seq <= l.head())
    }
}

/// The in-memory engine.
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    epoch: String,
    written: AtomicU64,
    /// The highest ticket committed: every write at once, unless commits are held.
    committed: watch::Sender<u64>,
    held: AtomicBool,
    failed: CancellationToken,
    latency: Latency,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store with a fresh epoch.
    pub fn new() -> Self {
        let state = State {
            epoch: hex::encode(rand::random::<[u8; 8]>()),
            logs: HashMap::new(),
            acked: HashSet::new(),
            cursors: HashMap::new(),
            users: HashMap::new(),
            jobs: HashMap::new(),
            records: BTreeMap::new(),
            timers: BTreeSet::new(),
        };
        Self::over(Arc::new(Mutex::new(state)))
    }

    /// A new store over the same state, as after a restart.
    pub fn reboot(&self) -> Self {
        Self::over(self.state.clone())
    }

    fn over(state: Arc<Mutex<State>>) -> Self {
        let epoch = state.lock().epoch.clone();
        MemoryStore {
            state,
            epoch,
            written: AtomicU64::new(0),
            committed: watch::channel(0).0,
            held: AtomicBool::new(false),
            failed: CancellationToken::new(),
            latency: Latency::default(),
        }
    }

    fn applied(&self) -> Ticket {
        let ticket = self.written.fetch_add(1, Ordering::AcqRel) + 1;
        if !self.held.load(Ordering::Acquire) {
            self.committed.send_modify(|c| *c = (*c).max(ticket));
        }
        Ticket(ticket)
    }

    /// Holds commits: writes are applied, but no ticket becomes durable until
    /// [`MemoryStore::commit_held`] — for testing what waits on durability.
    pub fn hold_commits(&self) {
        self.held.store(true, Ordering::Release);
    }

    /// Commits everything written so far and stops holding commits.
    pub fn commit_held(&self) {
        self.held.store(false, Ordering::Release);
        let written = self.written.load(Ordering::Acquire);
        self.committed.send_modify(|c| *c = (*c).max(written));
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn healthy(&self) -> bool {
        true
    }

    fn failed(&self) -> &CancellationToken {
        &self.failed
    }

    fn commit_latency(&self) -> &Latency {
        &self.latency
    }

    fn start(self: Arc<Self>) -> Background {
        // Writes are committed as they are applied: nothing runs in the background.
        Background::none()
    }

    async fn size(&self) -> u64 {
        // Not accounted: the gauge reads 0, as the contract allows.
        0
    }

    fn head(&self, channel: &str) -> u64 {
        self.state.lock().logs.get(channel).map_or(0, Log::head)
    }

    async fn append(&self, channel: &str, draft: Draft) -> Result<(Arc<StoredMessage>, Ticket)> {
        let mut state = self.state.lock();
        let log = state.logs.entry(channel.to_string()).or_default();
        let seq = log.head() + 1;
        let message = Arc::new(draft.with_seq(seq));
        log.messages.insert(seq, message.clone());
        if message.ack_required {
            log.ack_required.insert(seq);
        }
        // Under the state lock: per channel, ticket order is seq order.
        let ticket = self.applied();
        Ok((message, ticket))
    }

    async fn append_once(&self, channel: &str, draft: Draft, key: &str) -> Result<Appended> {
        let mut state = self.state.lock();
        let log = state.logs.entry(channel.to_string()).or_default();
        if let Some(&seq) = log.keys.get(key) {
            return Ok(Appended::Repeat(seq, self.applied()));
        }
        let seq = log.head() + 1;
        let message = Arc::new(draft.with_seq(seq));
        log.messages.insert(seq, message.clone());
        if message.ack_required {
            log.ack_required.insert(seq);
        }
        log.keys.insert(key.to_string(), seq);
        Ok(Appended::New(message, self.applied()))
    }

    async fn count_channels(&self, prefix: &str) -> Result<usize> {
        let state = self.state.lock();
        Ok(state.logs.keys().filter(|k| k.starts_with(prefix)).count())
    }

    async fn first_retained(&self, channel: &str) -> Result<Option<u64>> {
        let state = self.state.lock();
        Ok(state
            .logs
            .get(channel)
            .and_then(|l| l.messages.keys().next().copied()))
    }

    async fn read(&self, channel: &str, after: u64, upto: u64, limit: usize) -> Result<Messages> {
        if upto <= after {
            return Ok(Vec::new());
        }
        let state = self.state.lock();
        Ok(state.logs.get(channel).map_or_else(Vec::new, |l| {
            l.messages
                .range(after + 1..=upto)
                .take(limit)
                .map(|(_, m)| m.clone())
                .collect()
        }))
    }

    async fn get(&self, channel: &str, seq: u64) -> Result<Option<Arc<StoredMessage>>> {
        let state = self.state.lock();
        Ok(state
            .logs
            .get(channel)
            .and_then(|l| l.messages.get(&seq).cloned()))
    }

    async fn trim(&self, rule: RetentionOf) -> Result<u64> {
        let mut state = self.state.lock();
        let mut deleted = 0;
        for (name, log) in state.logs.iter_mut() {
            let (keep, older_than) = rule(name);
            let head = log.head();
            log.floor = head;
            while let Some((&seq, message)) = log.messages.first_key_value() {
                let too_many = head.saturating_sub(seq) >= keep as u64;
                if !(too_many || message.timestamp < older_than) {
                    break;
                }
                log.messages.remove(&seq);
                log.ack_required.remove(&seq);
                deleted += 1;
            }
            let first = log.messages.keys().next().copied().unwrap_or(u64::MAX);
            log.keys.retain(|_, seq| *seq >= first);
        }
        Ok(deleted)
    }

    async fn unacknowledged(&self, user: &str, channel: &str, upto: u64) -> Result<Vec<u64>> {
        let state = self.state.lock();
        let Some(log) = state.logs.get(channel) else {
            return Ok(Vec::new());
        };
        Ok(log
            .ack_required
            .range(..=upto)
            .filter(|seq| {
                !state
                    .acked
                    .contains(&(user.to_string(), channel.to_string(), **seq))
            })
            .copied()
            .collect())
    }

    async fn acknowledge(&self, user: &str, channel: &str, seq: u64) -> Result<Option<Ticket>> {
        let mut state = self.state.lock();
        if !state.gave(channel, seq) {
            return Ok(None);
        }
        let key = (user.to_string(), channel.to_string(), seq);
        state.acked.insert(key);
        Ok(Some(self.applied()))
    }

    async fn advance_cursor(&self, user: &str, channel: &str, seq: u64) -> Result<Option<Ticket>> {
        let mut state = self.state.lock();
        if !state.gave(channel, seq) {
            return Ok(None);
        }
        let key = (user.to_string(), channel.to_string());
        let cursor = state.cursors.entry(key).or_insert(0);
        *cursor = (*cursor).max(seq);
        Ok(Some(self.applied()))
    }

    async fn cursor(&self, user: &str, channel: &str) -> Result<u64> {
        let state = self.state.lock();
        Ok(state
            .cursors
            .get(&(user.to_string(), channel.to_string()))
            .copied()
            .unwrap_or(0))
    }

    async fn remember_user(&self, user: &str, org: &str, now: u64) -> Result<Remembered> {
        let mut state = self.state.lock();
        if let Some((known, _)) = state.users.get(user) {
            if &**known != org {
                return Ok(Remembered::Conflict(known.clone()));
            }
        }
        state.users.insert(user.to_string(), (Arc::from(org), now));
        self.applied();
        Ok(Remembered::Same)
    }

    async fn user_org(&self, user: &str) -> Result<Option<Arc<str>>> {
        Ok(self
            .state
            .lock()
            .users
            .get(user)
            .map(|(org, _)| org.clone()))
    }

    async fn last_seen(&self, user: &str) -> Result<Option<u64>> {
        Ok(self.state.lock().users.get(user).map(|(_, seen)| *seen))
    }

    async fn job_owner(&self, job: &str) -> Result<Option<Arc<str>>> {
        Ok(self.state.lock().jobs.get(job).cloned())
    }

    async fn claim_job(&self, job: &str, owner: &str) -> Result<Arc<str>> {
        let mut state = self.state.lock();
        if let Some(stored) = state.jobs.get(job) {
            return Ok(stored.clone());
        }
        let owner: Arc<str> = Arc::from(owner);
        state.jobs.insert(job.to_string(), owner.clone());
        self.applied();
        Ok(owner)
    }

    async fn record(&self, key: Record<'_>) -> Result<Option<Vec<u8>>> {
        let state = self.state.lock();
        Ok(match Key::of(&key) {
            Some(k) => state.records.get(&k).cloned(),
            None => match key {
                Record::Timer { due, alert, level } => state
                    .timers
                    .contains(&Timer {
                        due,
                        level,
                        alert: alert.to_string(),
                    })
                    .then(Vec::new),
                _ => None,
            },
        })
    }

    async fn records(&self, set: Records<'_>) -> Result<Vec<Vec<u8>>> {
        let state = self.state.lock();
        Ok(state
            .records
            .iter()
            .filter(|(k, _)| k.in_set(&set))
            .map(|(_, v)| v.clone())
            .collect())
    }

    async fn put_new(&self, key: Record<'_>, value: Vec<u8>) -> Result<Option<Ticket>> {
        let Some(k) = Key::of(&key) else {
            return Err(StoreError::Engine("a timer is not a record".into()));
        };
        {
            let mut state = self.state.lock();
            if state.records.contains_key(&k) {
                return Ok(None);
            }
            state.records.insert(k, value);
        }
        Ok(Some(self.applied()))
    }

    async fn write(&self, changes: &[Change<'_>]) -> Result<Ticket> {
        apply_changes(&mut self.state.lock(), changes);
        Ok(self.applied())
    }

    async fn write_if(
        &self,
        guard: Record<'_>,
        expected: Option<&[u8]>,
        changes: &[Change<'_>],
    ) -> Result<Option<Ticket>> {
        let Some(k) = Key::of(&guard) else {
            return Err(StoreError::Engine("a timer is not a record".into()));
        };
        {
            let mut state = self.state.lock();
            if state.records.get(&k).map(Vec::as_slice) != expected {
                return Ok(None);
            }
            apply_changes(&mut state, changes);
        }
        Ok(Some(self.applied()))
    }

    async fn due_timers(&self, now: u64) -> Result<Vec<Timer>> {
        let state = self.state.lock();
        Ok(state
            .timers
            .iter()
            .take_while(|t| t.due <= now)
            .cloned()
            .collect())
    }

    async fn next_timer(&self) -> Result<Option<u64>> {
        Ok(self.state.lock().timers.first().map(|t| t.due))
    }

    fn is_durable(&self, ticket: Ticket) -> bool {
        *self.committed.borrow() >= ticket.0
    }

    async fn durable(&self, ticket: Ticket) -> Result<()> {
        let mut committed = self.committed.subscribe();
        // The sender lives as long as the store, which `&self` keeps alive.
        let _ = committed.wait_for(|c| *c >= ticket.0).await;
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        let written = Ticket(self.written.load(Ordering::Acquire));
        self.durable(written).await
    }
}

/// Applies `changes` to `state` (under its lock).
fn apply_changes(state: &mut State, changes: &[Change<'_>]) {
    for change in changes {
        let (key, value) = match change {
            Change::Put(key, value) => (key, Some(value)),
            Change::Delete(key) => (key, None),
        };
        match (Key::of(key), value) {
            (Some(k), Some(v)) => {
                state.records.insert(k, v.clone());
            }
            (Some(k), None) => {
                state.records.remove(&k);
            }
            (None, value) => {
                if let Record::Timer { due, alert, level } = *key {
                    let timer = Timer {
                        due,
                        level,
                        alert: alert.to_string(),
                    };
                    if value.is_some() {
                        state.timers.insert(timer);
                    } else {
                        state.timers.remove(&timer);
                    }
                }
            }
        }
    }
}
