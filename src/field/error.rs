//! What can go wrong with a field operation, and what a client is told about it.
//!
//! Only the error type and its mapping live here; the rules that raise these errors are in the
//! concern files beside this one.

use crate::alerts::AlertError;
use crate::failure::{ErrorCode, Failure};
use crate::hub::HubError;
use crate::store::StoreError;

/// What can go wrong with a field operation.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    /// Invalid input.
    #[error("{0}")]
    BadRequest(String),
    /// Not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such record.
    #[error("{0}")]
    NotFound(String),
    /// A frame over the size limit.
    #[error("{0}")]
    TooLarge(String),
    /// From the hub.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// From alerts.
    #[error(transparent)]
    Alert(#[from] AlertError),
    /// From the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server is stopping: the work could not be carried through.
    #[error("the server is stopping")]
    Unavailable,
    /// A record kept changing under other nodes' writes while this one tried to change it.
    #[error("{0} kept changing on other nodes: try again")]
    Contended(&'static str),
}

impl Failure for FieldError {
    fn code(&self) -> ErrorCode {
        match self {
            FieldError::BadRequest(_) => ErrorCode::BadRequest,
            FieldError::Forbidden(_) => ErrorCode::Forbidden,
            FieldError::NotFound(_) => ErrorCode::NotFound,
            FieldError::TooLarge(_) => ErrorCode::TooLarge,
            FieldError::Hub(e) => e.code(),
            FieldError::Alert(e) => e.code(),
            FieldError::Contended(_) => ErrorCode::Conflict,
            FieldError::Store(_) | FieldError::Unavailable => ErrorCode::Internal,
        }
    }
}

pub(super) fn bad<T>(message: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError::BadRequest(message.into()))
}
