//! The contract between nodes that share one engine (cluster mode): what one node's hub must
//! hear of what the others did, and the few counts that only make sense cluster-wide.
//!
//! A store whose engine is shared answers [`super::Store::cluster`] with this interface; the
//! appliance's engines have none, and the hub then does all of it in its own memory. Nothing
//! here delivers to a client or checks a right: the engine carries messages between nodes,
//! the hub of each node delivers them to its own subscribers.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::error::Result;
use super::message::{Draft, StoredMessage};

/// What a node hears from the shared engine about a channel it watches.
#[derive(Debug, Clone)]
pub enum Remote {
    /// A message of a logged channel, durable (and on the replicas `cluster.min_replicas`
    /// asks for) — from any node, this one's included.
    Logged {
        /// Stored channel name.
        channel: Arc<str>,
        /// The message, with its seq.
        message: Arc<StoredMessage>,
    },
    /// A message of a live-only channel, with its cluster-wide seq.
    Live {
        /// Stored channel name.
        channel: Arc<str>,
        /// The message.
        message: Arc<StoredMessage>,
        /// A video keyframe (a late viewer gets the latest one first).
        keyframe: bool,
    },
}

/// What taking a connection slot found, cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Taken; `first` when the user had no connection on any node.
    Taken {
        /// The user's first connection in the cluster.
        first: bool,
    },
    /// The user has `max` connections already, on whatever nodes.
    Full,
}

/// What the nodes sharing an engine tell each other.
#[async_trait::async_trait]
pub trait Cluster: Send + Sync {
    /// This node's name (`cluster.node_id`), for logs and metrics.
    fn node(&self) -> &str;

    /// The feed of [`Remote`] messages of watched channels; taken once, by the hub. Bounded:
    /// when the hub falls behind, live messages are dropped (as for a slow subscriber) and a
    /// logged one is found again by [`Cluster::heads`] and a read of the log.
    fn take_feed(&self) -> Option<mpsc::Receiver<Remote>>;

    /// Starts (`true`) or stops hearing of `channel`'s messages. Cheap and synchronous: the
    /// engine's own task does the subscribing.
    fn watch(&self, channel: &str, watch: bool);

    /// Waits (at most `patience`) until this node hears of `channel`'s messages: from then on
    /// nothing published on it is missed but by a reconnect. `false` when it took longer.
    async fn until_watched(&self, channel: &str, patience: Duration) -> bool;

    /// How long a gap in a watched channel's seqs may last before the hub reads the missing
    /// messages from the log: longer than a publisher's wait for its replicas, so that a
    /// message is not read before its publisher knows whether it is acknowledged.
    fn gap_grace(&self) -> Duration;

    /// Returns once what this node has read from the shared engine so far is on
    /// `cluster.min_replicas` replicas; an error when it is not within `cluster.wait_timeout`.
    /// A gap's messages are delivered only after this: one whose publisher's wait timed out
    /// may never have reached a replica, and a failover would give its seq to another message.
    async fn replicated(&self) -> Result<()>;

    /// The heads of `channels` as the shared engine has them now (the engine's cached heads
    /// are updated from them).
    async fn heads(&self, channels: &[Arc<str>]) -> Result<Vec<u64>>;

    /// Numbers a live-only message with the channel's cluster-wide seq and hands it to every
    /// node watching the channel (this one included, through its feed). A keyframe is kept for
    /// `keyframe_ttl` for late viewers on any node.
    async fn broadcast(
        &self,
        channel: &str,
        draft: &Draft,
        keyframe_ttl: Option<Duration>,
    ) -> Result<u64>;

    /// The latest keyframe of a video channel, if one is kept.
    async fn keyframe(&self, channel: &str) -> Result<Option<Arc<StoredMessage>>>;

    /// Takes one of `user`'s connection slots under `max`, counting every live node's
    /// connections (a dead node's count expires with it).
    async fn take_slot(&self, user: &str, max: usize) -> Result<Slot>;

    /// Gives a slot back; `true` when it was the user's last connection in the cluster.
    async fn give_slot(&self, user: &str) -> Result<bool>;

    /// Takes or renews the lease called `name` for `ttl`: `true` while this node holds it (one
    /// node at a time does a job such as delivering the webhooks' outbox; when it dies the
    /// lease lapses and another takes over).
    async fn lease(&self, name: &str, ttl: Duration) -> Result<bool>;
}
