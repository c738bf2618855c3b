//! A channel log's message, as the engines keep it and the hub delivers it; shared by the
//! store's interface and the contract between nodes, and knowing neither.

use std::sync::Arc;

/// One message as kept in a channel log (and shared by every delivery of it).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// Per-channel sequence number, from 1, without gaps.
    pub seq: u64,
    /// Publish time, ms since the Unix epoch.
    pub timestamp: u64,
    /// The application payload.
    pub data: rmpv::Value,
    /// Recipients must acknowledge it.
    pub ack_required: bool,
}

/// A message to append: everything but its seq, which the engine gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// Publish time, ms since the Unix epoch.
    pub timestamp: u64,
    /// The application payload.
    pub data: rmpv::Value,
    /// Recipients must acknowledge it.
    pub ack_required: bool,
}

impl Draft {
    /// The stored message this draft becomes with `seq`.
    pub fn with_seq(self, seq: u64) -> StoredMessage {
        StoredMessage {
            seq,
            timestamp: self.timestamp,
            data: self.data,
            ack_required: self.ack_required,
        }
    }
}

/// Messages read from a log, in seq order.
pub type Messages = Vec<Arc<StoredMessage>>;
