//! What can go wrong with a patrol operation, and what a client is told about it: the one
//! place these errors map to codes.

use crate::alerts::AlertError;
use crate::failure::{ErrorCode, Failure};
use crate::store::StoreError;

/// What can go wrong with a patrol operation.
#[derive(Debug, thiserror::Error)]
pub enum PatrolError {
    /// Invalid input.
    #[error("{0}")]
    BadRequest(String),
    /// Not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such record.
    #[error("{0}")]
    NotFound(String),
    /// Over a budget: names the configuration key.
    #[error("over budget: at most {limit} {what} ({key})")]
    OverBudget {
        /// What is counted.
        what: &'static str,
        /// The budget.
        limit: usize,
        /// The configuration key that sets it.
        key: &'static str,
    },
    /// One report (or one of its photos) larger than a budget allows: names the key.
    #[error("too large: at most {limit} {what} ({key})")]
    TooLarge {
        /// What is measured.
        what: &'static str,
        /// The budget.
        limit: u64,
        /// The configuration key that sets it.
        key: &'static str,
    },
    /// Over an org's byte budget: names the key.
    #[error("over budget: {what} would be {would} of at most {limit} bytes ({key})")]
    OverBytes {
        /// What is counted.
        what: &'static str,
        /// What it would come to.
        would: u64,
        /// The budget.
        limit: u64,
        /// The configuration key that sets it.
        key: &'static str,
    },
    /// The record is in a state the operation does not apply to (closed, say).
    #[error("{0}")]
    Conflict(String),
    /// Still in use by another record.
    #[error("{0}")]
    InUse(String),
    /// A record kept changing under other nodes' writes.
    #[error("{0} kept changing on other nodes: try again")]
    Contended(&'static str),
    /// From alerts.
    #[error(transparent)]
    Alert(#[from] AlertError),
    /// From the store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Failure for PatrolError {
    fn code(&self) -> ErrorCode {
        match self {
            PatrolError::BadRequest(_) => ErrorCode::BadRequest,
            PatrolError::Forbidden(_) => ErrorCode::Forbidden,
            PatrolError::NotFound(_) => ErrorCode::NotFound,
            PatrolError::OverBudget { .. } | PatrolError::OverBytes { .. } => {
                ErrorCode::RateLimited
            }
            PatrolError::TooLarge { .. } => ErrorCode::TooLarge,
            PatrolError::Contended(_) | PatrolError::InUse(_) | PatrolError::Conflict(_) => {
                ErrorCode::Conflict
            }
            PatrolError::Alert(e) => e.code(),
            PatrolError::Store(_) => ErrorCode::Internal,
        }
    }
}

pub(super) fn bad<T>(message: impl Into<String>) -> Result<T, PatrolError> {
    Err(PatrolError::BadRequest(message.into()))
}
