//! The durable store: everything that must survive a restart, behind one interface.
//!
//! - [`interface`]: the [`Store`] contract every engine implements — channel logs and seqs,
//!   acknowledgements and cursors, users and jobs, records and the timer index, and the
//!   commits (tickets) that make writes durable;
//! - [`cluster`]: what nodes sharing an engine tell each other (cluster mode);
//! - [`message`]: a log's message, as kept and delivered;
//! - [`records`]: the typed keys of domain records and the changes that write them;
//! - [`error`]: what can go wrong, whatever the engine;
//! - [`sled`]: the appliance's engine, in the data directory (keys, flusher, backup);
//! - [`memory`]: the reference engine in memory;
//! - [`redis`]: cluster mode's engine, in a Redis every node shares;
//! - [`migrate`]: moving a stopped appliance's sled store into a Redis;
//! - [`principals`]: the renaming rules that moved user-keyed state under (org, user).
//!
//! Callers see `Arc<dyn Store>` and never an engine; only this facade names the engines, to
//! open them. The store never delivers messages and never checks rights: that is the hub's
//! job.

pub mod cluster;
pub mod error;
pub mod interface;
pub mod memory;
pub mod message;
pub mod migrate;
pub mod principals;
pub mod records;
pub mod redis;
pub mod sled;

pub use self::sled::backup::{backup, restore, Moved};
pub use self::sled::dump::dump_data_dir;
pub use self::sled::{open_data_dir, StoreOptions};
pub use cluster::{Cluster, Remote, Slot};
pub use error::StoreError;
pub use interface::{
    Appended, Background, Draft, Item, OpenReport, Remembered, RetentionOf, Store, StoredMessage,
    Ticket,
};
pub use memory::MemoryStore;
pub use records::{Change, OwnedRecord, Record, Records, Timer};
pub use redis::{Endpoint, RedisOptions, RedisStore};

#[cfg(test)]
mod tests;
