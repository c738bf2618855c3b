//! What can go wrong with an alert operation, and what a client is told about it.

use super::model::AlertState;
use crate::failure::{ErrorCode, Failure};
use crate::hub::HubError;
use crate::store::StoreError;

/// What can go wrong with an alert operation.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// No such alert (or not visible to the caller).
    #[error("no alert {0}")]
    NotFound(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The alert is not in a state that allows it.
    #[error("alert is {0:?}")]
    State(AlertState),
    /// Invalid input.
    #[error("{0}")]
    BadRequest(String),
    /// Publishing failed.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Failure for AlertError {
    fn code(&self) -> ErrorCode {
        match self {
            AlertError::NotFound(_) => ErrorCode::NotFound,
            AlertError::Forbidden(_) => ErrorCode::Forbidden,
            AlertError::State(_) => ErrorCode::Conflict,
            AlertError::BadRequest(_) => ErrorCode::BadRequest,
            AlertError::Hub(e) => e.code(),
            AlertError::Store(_) => ErrorCode::Internal,
        }
    }
}
