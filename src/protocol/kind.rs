//! What a connection speaks ([`Protocol`]), for counting connections and for presence.

use super::encoding::Encoding;

/// What a connection speaks, for connection counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Native, `lookout.json`.
    Json,
    /// Native, `lookout.msgpack`.
    MsgPack,
    /// STOMP over WebSocket.
    Stomp,
    /// STOMP over SockJS.
    SockJsStomp,
    /// Native JSON over SockJS.
    SockJsJson,
    /// A Server-Sent-Events stream.
    Sse,
    /// A long-poll request while it waits.
    LongPoll,
    /// Socket.IO v5 (Engine.IO v4, WebSocket or HTTP long-polling).
    SocketIo,
}

impl Protocol {
    /// Every protocol, in label order.
    pub const ALL: [Protocol; 8] = [
        Protocol::Json,
        Protocol::MsgPack,
        Protocol::Stomp,
        Protocol::SockJsStomp,
        Protocol::SockJsJson,
        Protocol::Sse,
        Protocol::LongPoll,
        Protocol::SocketIo,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Json => "lookout.json",
            Protocol::MsgPack => "lookout.msgpack",
            Protocol::Stomp => "stomp",
            Protocol::SockJsStomp => "sockjs+stomp",
            Protocol::SockJsJson => "sockjs+lookout.json",
            Protocol::Sse => "sse",
            Protocol::LongPoll => "long-poll",
            Protocol::SocketIo => "socket.io",
        }
    }

    /// Whether the connection shows in presence: a long-poll request is one poll of a client
    /// that comes and goes every few seconds, not a join and a leave.
    pub fn present(self) -> bool {
        self != Protocol::LongPoll
    }

    /// The native protocol in `encoding`.
    pub fn native(encoding: Encoding) -> Protocol {
        match encoding {
            Encoding::Json => Protocol::Json,
            Encoding::MsgPack => Protocol::MsgPack,
        }
    }
}
