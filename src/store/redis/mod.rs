//! An engine on Redis, for cluster mode: the durable state lives in a Redis that every node
//! shares (Debian's `redis-server` 7, made durable by `appendonly yes` + `appendfsync always`,
//! which [`RedisStore::open`] checks and refuses to run without).
//!
//! The key layout (every key under `lookout:`) is in `keys.rs`.
//!
//! An append is one server-side script that takes the channel's next seq and appends to its
//! stream (and, with a key, records the idempotency key) atomically, the pattern Centrifugo's
//! Redis engine uses. Redis answers a write only after its fsync (`appendfsync always`), so a
//! ticket is durable when the write returns; with `cluster.min_replicas` > 0 a `WAIT` on the
//! same connection must also report that many replicas, otherwise the write is an error and is
//! never acknowledged.
//!
//! Several nodes run on one Redis side by side ([`bus`]): each append is also published on
//! the channel's pub/sub channel (`live:{channel}`) once it is durable (in the append script
//! itself when no replica is awaited, else after `WAIT`), live-only messages go through
//! pub/sub alone with a cluster-wide seq (`lseq`), each node counts its connections in
//! `conns:{instance}` while it is alive in `nodes`, and an escalation timer is claimed
//! (`claimed`) by the one node that fires it. [`link`] follows the primary the Sentinels name.
//!
//! # Layout
//! `keys.rs` (key names, record slots, message codec, heads) and `scripts.rs` (the Lua) at the
//! bottom; `options.rs` and [`link`] (the connection) beside them; [`bus`] (the other nodes)
//! above; `engine.rs` (the state and the write path) above those; `open.rs` (open, check,
//! import) and `interface.rs` (`impl Store`) on top. This file only declares and re-exports.

mod bus;
mod engine;
mod interface;
mod keys;
pub mod link;
mod open;
mod options;
mod scripts;

pub use self::engine::RedisStore;
pub use self::link::Endpoint;
pub use self::options::RedisOptions;
