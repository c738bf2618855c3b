//! Why the hub refused a request or a connection; each maps to one stable error code.

use crate::channel;
use crate::failure::{ErrorCode, Failure};
use crate::store::StoreError;

/// Why the hub refused a request.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The channel name is not in the table.
    #[error(transparent)]
    Name(#[from] channel::NameError),
    /// The rights table says no.
    #[error(transparent)]
    Denied(#[from] channel::Denied),
    /// The connection already holds this subscription.
    #[error("already subscribed to {0}")]
    AlreadySubscribed(String),
    /// The connection holds no such subscription.
    #[error("not subscribed to {0}")]
    NotSubscribed(String),
    /// Too many subscriptions on one connection.
    #[error("subscription limit ({0}) reached")]
    TooManySubscriptions(usize),
    /// A client reached a budget (e.g. the rooms of its org).
    #[error("{0}")]
    OverBudget(String),
    /// No such message to acknowledge.
    #[error("no message {seq} on {channel}")]
    NoSuchMessage {
        /// Channel named.
        channel: String,
        /// Seq named.
        seq: u64,
    },
    /// The connection went away while the request was served.
    #[error("connection closed")]
    Gone,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Failure for HubError {
    fn code(&self) -> ErrorCode {
        match self {
            HubError::Name(_) => ErrorCode::BadRequest,
            HubError::Denied(channel::Denied::Forbidden(_)) => ErrorCode::Forbidden,
            HubError::Denied(channel::Denied::BadRequest(_)) => ErrorCode::BadRequest,
            HubError::Denied(channel::Denied::Conflict(_)) => ErrorCode::Conflict,
            HubError::AlreadySubscribed(_) => ErrorCode::Conflict,
            HubError::NotSubscribed(_) | HubError::NoSuchMessage { .. } => ErrorCode::NotFound,
            HubError::TooManySubscriptions(_) | HubError::OverBudget(_) => ErrorCode::RateLimited,
            HubError::Gone | HubError::Store(_) => ErrorCode::Internal,
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The user is at `limits.max_connections_per_user`.
    #[error("connection limit per user ({0}) reached")]
    PerUser(usize),
    /// The server is at `limits.max_connections`.
    #[error("server connection limit ({0}) reached")]
    Total(usize),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Failure for Refusal {
    fn code(&self) -> ErrorCode {
        match self {
            Refusal::PerUser(_) | Refusal::Total(_) => ErrorCode::RateLimited,
            Refusal::Store(_) => ErrorCode::Internal,
        }
    }

    fn status(&self) -> u16 {
        match self {
            // The server is full, not the client too fast.
            Refusal::Total(_) => 503,
            other => other.code().http_status(),
        }
    }
}
