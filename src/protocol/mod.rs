//! The native wire protocol: client requests, server frames, close codes, and the protocols a
//! connection may speak (for counting them). The error codes an error frame carries are
//! [`ErrorCode`], in `failure.rs` beside the one mapping of errors to them.
//!
//! One envelope, two encodings: `lookout.json` (text frames) and `lookout.msgpack` (binary
//! frames, maps with named fields). Application data is carried as an [`rmpv::Value`] so that
//! MessagePack bytes (video) survive untouched. This module only encodes and decodes; it never
//! touches a socket or the hub.
//!
//! # Layout
//! `encoding.rs` (the two encodings), `client.rs` (requests), `frames.rs` (what the server
//! sends), `close.rs` (close codes), `kind.rs` (what a connection speaks). This file only
//! declares and re-exports.

mod client;
pub mod close;
mod encoding;
mod frames;
mod kind;

pub use self::client::{nil, ClientMsg, IdOnly, RequestId};
pub use self::encoding::{check_portable, DecodeError, EncodeError, Encoding};
pub use self::frames::{
    DialectFrame, ErrorFrame, Established, MessageFrame, Reply, ReplyFields, Simple,
};
pub use self::kind::Protocol;
