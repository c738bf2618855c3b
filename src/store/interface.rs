//! The contract between Lookout and a store engine: every piece of durable state is reached
//! through [`Store`], whichever engine holds it.
//!
//! The contract is written for an engine on the other side of a network as much as for one on
//! a local disk: whatever may have to wait for the engine is `async`, and nothing names an
//! engine's types. What stays synchronous is what an engine answers from memory of its own:
//! its epoch, its health, the heads of the channels (kept current by the engine from its own
//! appends) and whether a ticket is durable yet.
//!
//! Durability is explicit: a write returns a [`Ticket`] at once, and [`Store::durable`] waits
//! until the engine has made it durable. Writers that wait together share one commit (group
//! commit), so a caller acknowledges only after `durable`, never after the write alone.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::cluster::Cluster;
use super::error::Result;
pub use super::message::{Draft, Messages, StoredMessage};
use super::records::{decode, Change, Record, Records, Timer};
use crate::counters::Latency;

/// What [`Store::append_once`] did.
#[derive(Debug, Clone)]
pub enum Appended {
    /// Appended now.
    New(Arc<StoredMessage>, Ticket),
    /// The key named this seq already; nothing was written.
    Repeat(u64, Ticket),
}

/// A user's org as remembered, compared with what a new token claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remembered {
    /// First sighting, or the same org again.
    Same,
    /// The user is registered to another org.
    Conflict(Arc<str>),
}

/// Proof of a write; [`Store::durable`] waits until a commit covers it. Tickets of one engine
/// are ordered: a commit that covers a ticket covers every earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(pub(crate) u64);

impl Ticket {
    /// A ticket every engine counts as durable: for a message that was durable when this node
    /// heard of it (another node wrote it).
    pub const DURABLE: Ticket = Ticket(0);
}

/// What opening found, for the start-up log line.
#[derive(Debug, Clone)]
pub struct OpenReport {
    /// The store's epoch.
    pub epoch: String,
    /// Whether this open created the store.
    pub created: bool,
    /// Channels in the registry.
    pub channels: usize,
    /// Messages in the logs.
    pub messages: u64,
}

/// One piece of a store's state, engine-independent: what `lookout migrate` reads from one
/// engine and writes into another, with the same seqs.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A channel and its head (which may be above its last retained message).
    Channel {
        /// Stored name.
        name: String,
        /// Last seq given.
        head: u64,
    },
    /// A retained message.
    Message {
        /// Stored channel name.
        channel: String,
        /// The message with its seq.
        message: StoredMessage,
    },
    /// An idempotency key of a retained message.
    Key {
        /// Stored channel name.
        channel: String,
        /// The client's key.
        key: String,
        /// The seq it answers.
        seq: u64,
    },
    /// A user's acknowledgement of an `ack_required` message.
    Acked {
        /// Who.
        user: String,
        /// Stored channel name.
        channel: String,
        /// Which.
        seq: u64,
    },
    /// A user's delivery cursor on one of its queues.
    Cursor {
        /// Who.
        user: String,
        /// Stored channel name.
        channel: String,
        /// Last acknowledged seq.
        seq: u64,
    },
    /// A user's org and when it was last seen.
    User {
        /// Who.
        user: String,
        /// Its org.
        org: String,
        /// Last seen, ms.
        seen: u64,
    },
    /// A job's owner.
    Job {
        /// The job.
        job: String,
        /// Its owner.
        owner: String,
    },
    /// A domain record's bytes.
    Record(super::records::OwnedRecord, Vec<u8>),
    /// An escalation timer.
    Timer(Timer),
}

/// How many messages of a stored channel to keep and from when: `(keep, older_than)` per
/// stored channel name, `older_than` in ms since the Unix epoch.
pub type RetentionOf = Arc<dyn Fn(&str) -> (usize, u64) + Send + Sync>;

/// The durable state of one Lookout: channel logs and their seqs, acknowledgements and
/// delivery cursors, the user directory and job owners, domain records and the escalation
/// timer index, and the commits that make them durable.
///
/// Channel names are stored names (user queues carry their user). An engine never delivers
/// messages and never checks rights: that is the hub's job.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The random id of this store; seqs never repeat within it.
    fn epoch(&self) -> &str;

    /// Whether every commit so far succeeded.
    fn healthy(&self) -> bool;

    /// Fires when a commit failed: the process must stop, nothing more is acknowledged.
    fn failed(&self) -> &CancellationToken;

    /// Durations of the engine's commits.
    fn commit_latency(&self) -> &Latency;

    /// Starts the engine's background work (the group-commit flusher); the store is released
    /// once [`Background::stop`] returns.
    fn start(self: Arc<Self>) -> Background;

    /// Bytes the store takes (0 when the engine cannot tell).
    async fn size(&self) -> u64;

    /// The last seq given on `channel` (0 when none), durable or not.
    fn head(&self, channel: &str) -> u64;

    /// Appends a message with the next seq, with its channel's new head in one atomic write.
    /// Not yet durable: wait on the ticket before acknowledging or delivering. Seqs of one
    /// channel are given in ticket order.
    async fn append(&self, channel: &str, draft: Draft) -> Result<(Arc<StoredMessage>, Ticket)>;

    /// [`Store::append`] once per `key` of `channel`: when `key` already names a message of
    /// the channel, nothing is written and that message's seq comes back as a repeat, with a
    /// ticket that covers its write. The key is written atomically with the message and kept
    /// as long as the message is retained.
    async fn append_once(&self, channel: &str, draft: Draft, key: &str) -> Result<Appended>;

    /// How many channels whose stored names start with `prefix` the store keeps.
    async fn count_channels(&self, prefix: &str) -> Result<usize>;

    /// The oldest seq still in `channel`'s log.
    async fn first_retained(&self, channel: &str) -> Result<Option<u64>>;

    /// Messages with `after < seq <= upto`, at most `limit`, in seq order.
    async fn read(&self, channel: &str, after: u64, upto: u64, limit: usize) -> Result<Messages>;

    /// One message by seq, if still in the log.
    async fn get(&self, channel: &str, seq: u64) -> Result<Option<Arc<StoredMessage>>>;

    /// Deletes messages beyond `keep` per channel or older than `older_than`, as `rule` says
    /// per stored channel name; the heads stay. Returns how many were deleted.
    async fn trim(&self, rule: RetentionOf) -> Result<u64>;

    /// Seqs `<= upto` on `channel` sent with `ack_required` that `user` has not acknowledged.
    async fn unacknowledged(&self, user: &str, channel: &str, upto: u64) -> Result<Vec<u64>>;

    /// Records that `user` acknowledged the `ack_required` message `seq` on `channel`. `None`
    /// when there is no such seq.
    async fn acknowledge(&self, user: &str, channel: &str, seq: u64) -> Result<Option<Ticket>>;

    /// Moves `user`'s cursor on one of its queues to `seq` (never back): everything up to it is
    /// acknowledged. `None` when there is no such seq.
    async fn advance_cursor(&self, user: &str, channel: &str, seq: u64) -> Result<Option<Ticket>>;

    /// The last seq `user` acknowledged on one of its queues (0 when none).
    async fn cursor(&self, user: &str, channel: &str) -> Result<u64>;

    /// Records `user → org` and the time, or says which other org the user belongs to.
    async fn remember_user(&self, user: &str, org: &str, now: u64) -> Result<Remembered>;

    /// The org a user was last seen in, if ever.
    async fn user_org(&self, user: &str) -> Result<Option<Arc<str>>>;

    /// When the user was last seen connecting.
    async fn last_seen(&self, user: &str) -> Result<Option<u64>>;

    /// The owner of a job, set by its first publish.
    async fn job_owner(&self, job: &str) -> Result<Option<Arc<str>>>;

    /// Stores the owner of a job if it has none; returns the owner now stored.
    async fn claim_job(&self, job: &str, owner: &str) -> Result<Arc<str>>;

    /// One domain record, encoded.
    async fn record(&self, key: Record<'_>) -> Result<Option<Vec<u8>>>;

    /// Every record of a set, encoded, in key order.
    async fn records(&self, set: Records<'_>) -> Result<Vec<Vec<u8>>>;

    /// Applies puts and deletes of domain records atomically; wait on the ticket before
    /// acknowledging.
    async fn write(&self, changes: &[Change<'_>]) -> Result<Ticket>;

    /// Stores `value` under `key` only when nothing is there, atomically across every node
    /// sharing the engine: `None` when something was (another request, here or on another
    /// node, took it first). What makes a one-time sign-in link one-time.
    async fn put_new(&self, key: Record<'_>, value: Vec<u8>) -> Result<Option<Ticket>>;

    /// Applies `changes` atomically, like [`Store::write`], only while `guard` still holds
    /// `expected` (`None`: absent), atomically across every node sharing the engine: `None`
    /// when it does not (it changed since it was read; read again and decide again). What
    /// keeps two nodes changing one record at once from losing either change.
    async fn write_if(
        &self,
        guard: Record<'_>,
        expected: Option<&[u8]>,
        changes: &[Change<'_>],
    ) -> Result<Option<Ticket>>;

    /// Escalation timers due at or before `now` (ms), oldest first.
    async fn due_timers(&self, now: u64) -> Result<Vec<Timer>>;

    /// When the next escalation timer is due.
    async fn next_timer(&self) -> Result<Option<u64>>;

    /// Whether a completed commit covers `ticket`.
    fn is_durable(&self, ticket: Ticket) -> bool;

    /// Waits until a commit covers `ticket`.
    async fn durable(&self, ticket: Ticket) -> Result<()>;

    /// Makes everything written so far durable (shutdown, tools).
    async fn flush(&self) -> Result<()>;

    /// What the nodes sharing this store tell each other; `None` for an engine only this
    /// process uses (then its cached heads are always current).
    fn cluster(&self) -> Option<&dyn Cluster> {
        None
    }

    /// The head of `channel` as the engine has it now, even when other nodes appended since
    /// this one last heard (the cached head is brought up to it).
    async fn fresh_head(&self, channel: &str) -> Result<u64> {
        Ok(self.head(channel))
    }

    /// Takes a due escalation timer for this node to fire; `false` when another node took it.
    /// A taken timer whose node dies before deleting it becomes due again a while later.
    async fn claim_timer(&self, _timer: &Timer) -> Result<bool> {
        Ok(true)
    }
}

impl dyn Store {
    /// One domain record, decoded.
    pub async fn load<T: DeserializeOwned>(&self, key: Record<'_>) -> Result<Option<T>> {
        match self.record(key).await? {
            Some(raw) => Ok(Some(decode(&raw)?)),
            None => Ok(None),
        }
    }

    /// Every record of a set, decoded.
    pub async fn load_all<T: DeserializeOwned>(&self, set: Records<'_>) -> Result<Vec<T>> {
        self.records(set)
            .await?
            .iter()
            .map(|raw| decode(raw))
            .collect()
    }

    /// Writes `changes` atomically and waits until they are durable.
    pub async fn commit(&self, changes: &[Change<'_>]) -> Result<()> {
        let ticket = self.write(changes).await?;
        self.durable(ticket).await
    }
}

/// An engine's background work, ended by [`Background::stop`] (or, without waiting, by drop).
pub struct Background {
    stop: CancellationToken,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Background {
    /// Work that ends when `stop` fires and reports on `done` once it let go of the store.
    pub fn new(stop: CancellationToken, done: tokio::sync::oneshot::Receiver<()>) -> Self {
        Background {
            stop,
            done: Some(done),
        }
    }

    /// No background work.
    pub fn none() -> Self {
        Background {
            stop: CancellationToken::new(),
            done: None,
        }
    }

    /// Ends the work and waits until it has let go of the store.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(done) = self.done.take() {
            // An error means the work is already gone.
            let _ = done.await;
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
