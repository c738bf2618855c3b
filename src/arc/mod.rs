//! Alarms to an alarm receiving centre (ARC) over ANSI/SIA DC-09: Lookout as a DC-09
//! transmitter (`[[arc.receivers]]`).
//!
//! An alert change puts one outbox record per receiver that takes the alert in the same atomic
//! write as the alert itself (like the webhooks' outbox in `notify`): the alarm when it is
//! raised, its restoral when it is resolved. One deliverer per receiver sends its records in
//! order, each until the receiver's ACK (a NAK's timestamp sets the clock offset, a `DUH` from
//! every path makes a dead letter after [`MAX_REFUSALS`](transmitter::MAX_REFUSALS)), retries with backoff, fails over to
//! the backup receiver, and only then deletes the record: at least once, in order per
//! receiver and so per account. While idle it supervises each path with `NULL` messages; the
//! paths' states are in the status, `/readyz` and `/metrics`.
//!
//! # Layout
//! `dc09.rs` (the wire format: frames, CRC, AES-CBC, replies) and `codes.rs` (alert types to
//! SIA and Contact ID codes, positions) are pure; `link.rs` moves a frame over TCP or UDP;
//! `transmitter.rs` (outbox, delivery, supervision, status) sits on top. A file imports only
//! files below it.
//!
//! Reaches durable state only through the store. Never logs a key, a frame or an account's
//! data; knows nothing of alerts beyond their type, priority, org, guard and position.

pub(crate) mod codes;
pub mod dc09;
mod link;
mod transmitter;

pub(crate) use self::transmitter::Transmitter;
