//! Store faults on demand, for tests: with `testing.store_faults = true`, a file named
//! [`FAIL_FLUSH`] or [`FAIL_WRITE`] in the data directory makes every later flush or write of
//! the sled engine fail as a broken disk would. Off (the default), nothing is looked at.
//!
//! This module only answers "fail now?"; what a failure leads to (no acknowledgement, the
//! store unhealthy, the process stopping) is the engine's and the flusher's business.

use std::path::{Path, PathBuf};

use crate::store::error::StoreError;

/// Present in the data directory: flushes fail.
pub const FAIL_FLUSH: &str = "FAULT-flush";
/// Present in the data directory: writes fail.
pub const FAIL_WRITE: &str = "FAULT-write";

/// The fault triggers of one data directory, when enabled.
#[derive(Debug, Clone)]
pub struct Faults {
    data_dir: Option<PathBuf>,
}

impl Faults {
    /// Triggers in `data_dir` when `enabled`; none otherwise.
    pub fn new(enabled: bool, data_dir: &Path) -> Self {
        Faults {
            data_dir: enabled.then(|| data_dir.to_path_buf()),
        }
    }

    /// `Err` when writes are to fail.
    pub fn before_write(&self) -> Result<(), StoreError> {
        self.check(FAIL_WRITE, "write")
    }

    /// `Err` when flushes are to fail.
    pub fn before_flush(&self) -> Result<(), StoreError> {
        self.check(FAIL_FLUSH, "flush")
    }

    fn check(&self, trigger: &str, what: &str) -> Result<(), StoreError> {
        match &self.data_dir {
            Some(dir) if dir.join(trigger).exists() => Err(StoreError::Engine(format!(
                "injected {what} fault (testing.store_faults)"
            ))),
            _ => Ok(()),
        }
    }
}
