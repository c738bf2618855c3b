//! WebSocket close codes Lookout sends, each with the situation that causes it.
//!
//! Only the codes: what sends them is in the session, the hub and the transport.

/// Normal closure (answering a client's close).
pub const NORMAL: u16 = 1000;
/// Server shutting down.
pub const GOING_AWAY: u16 = 1001;
/// WebSocket protocol violation by the peer.
pub const PROTOCOL_ERROR: u16 = 1002;
/// Text frame that is not UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// A STOMP client let too many messages await `ACK`.
pub const POLICY: u16 = 1008;
/// Message larger than the configured limit.
pub const TOO_BIG: u16 = 1009;
/// Server fault.
pub const INTERNAL: u16 = 1011;
/// The token expired and was not refreshed.
pub const TOKEN_EXPIRED: u16 = 4001;
/// The outbound queue overflowed on a logged channel: resubscribe with `since` to resume.
pub const SLOW_CONSUMER: u16 = 4002;
/// No subscription for `limits.idle_timeout`.
pub const IDLE: u16 = 4003;
/// Nothing received (not even a pong) for `limits.dead_peer_timeout`.
pub const DEAD_PEER: u16 = 4004;
/// A supervisor revoked the device the connection's session belongs to.
pub const REVOKED: u16 = 4005;
