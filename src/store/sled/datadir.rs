//! The store's place in the data directory: the sled database's directory, the lock that keeps
//! a second process out, and the epoch marker beside the store.

use std::fs::File;
use std::path::Path;

use crate::store::error::{Result, StoreError};

/// The sled database's directory inside the data directory.
pub const STORE_DIR: &str = "store";
/// The lock file inside the data directory.
pub const LOCK_FILE: &str = "lookout.lock";
/// Beside the store, the epoch it was created with. sled reads some kinds of damage as an
/// empty database; this marker is how an empty store is told apart from a lost one.
pub const EPOCH_FILE: &str = "epoch";

/// Locks `data_dir` for this process; released when the file is dropped.
pub fn lock_data_dir(data_dir: &Path) -> Result<File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join(LOCK_FILE))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(data_dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

pub(super) fn read_marker(data_dir: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(data_dir.join(EPOCH_FILE)) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(super) fn write_marker(data_dir: &Path, epoch: &str) -> Result<()> {
    use std::io::Write;
    let path = data_dir.join(EPOCH_FILE);
    let mut file = File::create(&path)?;
    file.write_all(epoch.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
