//! The appliance's engine: the store in one sled database in the data directory.
//!
//! What lives here: the epoch (random, fixed when the data directory is created), the schema
//! version, the channel registry (name → id, floor), the message logs, the index of messages
//! that need acknowledgement and who acknowledged them, per-user delivery cursors, the user
//! directory and job owners, domain records and the timer index. [`keys`] is the only place
//! that knows how keys are laid out, [`flusher`] makes writes durable, [`backup`] moves a data
//! directory. Nothing outside this folder knows that sled is underneath.
//!
//! Durability discipline (sled 0.34 is beta software):
//! - a message and its channel's head are one atomic write: the log key carries the seq, and
//!   the head is the last key of the channel's log (the registry keeps name → id and a floor
//!   that retention moves before it empties a log). A message that needs acknowledgement is
//!   written with its index entry in one atomic batch. Plain inserts, not a batch per message:
//!   in sled 0.34 every batch adds ~130 µs to the next flush, which defeats group commit;
//!   sled recovers a prefix of its writes, so earlier inserts are never lost behind later ones;
//! - a write is acknowledged only after a flush that started after it returned Ok (group
//!   commit, [`flusher`]);
//! - the data directory is locked so a second process cannot open it.
//!
//! sled's calls return from its page cache without waiting for the disk; only flushes wait,
//! and they run on the flusher task.
//!
//! # Layout
//! `datadir.rs` (the store's directory, lock and epoch marker), `values.rs` (the records kept,
//! sealed writes and checked reads), [`keys`], [`sealed`], [`faults`] and [`principals`] (the
//! move to schema 3) at the bottom; [`flusher`] above them; `engine.rs` (the state and the
//! write path) above those; `open.rs` (options, schema, opening) and `interface.rs`
//! (`impl Store`) above it; [`backup`] and [`dump`] on top. This file only declares and
//! re-exports.

pub mod backup;
mod datadir;
pub mod dump;
mod engine;
pub mod faults;
pub mod flusher;
mod interface;
pub mod keys;
mod open;
pub mod principals;
pub mod sealed;
mod values;

pub use self::datadir::{lock_data_dir, EPOCH_FILE, LOCK_FILE, STORE_DIR};
pub use self::engine::SledStore;
pub use self::open::{open_data_dir, StoreOptions, SCHEMA_VERSION};
