//! STOMP 1.2 (and 1.1/1.0) over WebSocket, on the same hub, channels, rights and logs as the
//! native protocol.
//!
//! [`frame`] is the wire format: a bounded, incremental parser and the serializer. It knows
//! nothing of sessions or channels. [`session`] is one STOMP session on the hub.

pub mod frame;
pub mod session;
