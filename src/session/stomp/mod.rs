//! The STOMP reader: one STOMP session on a connection: `CONNECT` negotiation, subscriptions with their ack modes,
//! `SEND`, `ACK`/`NACK`, transactions and receipts — all on the hub's channels, rights and logs,
//! so a STOMP client and a native client on one channel see the same messages and seqs.
//!
//! [`StompSession`] is the reader half: frames in, hub requests out. [`Shared`] is what the
//! writer half needs to turn a delivery into a `MESSAGE` frame: the subscription table (id, ack
//! mode, messages awaiting `ACK`). Nothing here touches a socket; frames leave through the
//! connection's queue, and an `ERROR` is followed by [`Outbound::Close`] so it is written first.
//!
//! # Layout
//! `shared.rs` (the table the writer reads) and `frames.rs` (reading and answering frames) at
//! the bottom; `reader.rs` (the session, dispatch, transactions) above them; `commands.rs`
//! (`CONNECT`, `SUBSCRIBE`, `UNSUBSCRIBE`, `SEND`, `ACK`/`NACK`) on top. This file only
//! declares and re-exports.

mod commands;
mod frames;
mod reader;
mod shared;

pub use self::reader::StompSession;
pub use self::shared::{Rendered, Shared};
