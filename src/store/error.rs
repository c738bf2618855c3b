//! What can go wrong with the store, whatever the engine.

use std::path::PathBuf;

use crate::failure::{ErrorCode, Failure};

/// A store operation's result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another lookout process")]
    Locked(PathBuf),
    /// The directory holds something that is not a Lookout store.
    #[error("{0} is not a Lookout store (refusing to touch it)")]
    Foreign(PathBuf),
    /// Written by another format version.
    #[error("{}", schema_advice(.found, .expected))]
    Schema {
        /// Version on disk.
        found: u32,
        /// Version of this binary.
        expected: u32,
    },
    /// The store could not be read: damaged files or missing metadata.
    #[error("store in {path} is damaged: {message}")]
    Corrupt {
        /// The store's location.
        path: PathBuf,
        /// What was found wrong.
        message: String,
    },
    /// The engine reported an error.
    #[error("store I/O: {0}")]
    Engine(String),
    /// A file around the store could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A record could not be encoded or decoded.
    #[error("store record: {0}")]
    Codec(String),
    /// A commit failed earlier; nothing more is acknowledged.
    #[error("store is unhealthy after a failed flush; not acknowledging")]
    Unhealthy,
    /// A backup cannot be restored as asked (a sealed file without its passphrase, say).
    #[error("{0}")]
    Backup(String),
}

impl Failure for StoreError {
    fn code(&self) -> ErrorCode {
        ErrorCode::Internal
    }
}

/// What an operator is told about a store of another format, and what to do about it.
fn schema_advice(found: &u32, expected: &u32) -> String {
    let this = crate::version::VERSION;
    if found > expected {
        format!(
            "the store was written by a newer lookout (store schema {found}; lookout {this} reads \
             up to {expected}) and is left untouched: run that newer version again, or restore a \
             backup made before the upgrade (`lookout restore`)"
        )
    } else {
        format!(
            "store schema version {found} is not one lookout {this} can read or move forward \
             (it reads {expected} and moves 1 and 2 forward)"
        )
    }
}
