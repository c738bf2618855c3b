//! The native wire protocol: client requests, server frames, close codes, and the protocols a
//! connection may speak (for counting them). The error codes an error frame carries are
//! [`ErrorCode`], in `failure.rs` beside the one mapping of errors to them.
//!
//! One envelope, two encodings: `lookout.json` (text frames) and `lookout.msgpack` (binary
//! frames, maps with named fields). Application data is carried as an [`rmpv::Value`] so that
//! MessagePack bytes (video) survive untouched. This module only encodes and decodes; it never
//! touches a socket or the hub.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

// Where they used to live: `transport/` still names them here.
pub use crate::clock::now_millis;
pub use crate::failure::ErrorCode;

/// Opaque request id echoed in replies.
pub type RequestId = rmpv::Value;

/// Which encoding a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `lookout.json`, text frames.
    Json,
    /// `lookout.msgpack`, binary frames.
    MsgPack,
}

impl Encoding {
    /// The WebSocket subprotocol name.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Json => "lookout.json",
            Encoding::MsgPack => "lookout.msgpack",
        }
    }

    /// Index into per-encoding caches.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Number of encodings, for per-encoding caches.
    pub const COUNT: usize = 2;

    /// Encodes one server frame.
    pub fn encode<T: Serialize>(self, value: &T) -> Result<Bytes, EncodeError> {
        match self {
            Encoding::Json => serde_json::to_vec(value)
                .map(Bytes::from)
                .map_err(|e| EncodeError(e.to_string())),
            Encoding::MsgPack => rmp_serde::to_vec_named(value)
                .map(Bytes::from)
                .map_err(|e| EncodeError(e.to_string())),
        }
    }

    /// Decodes one client frame.
    pub fn decode<'de, T: Deserialize<'de>>(self, bytes: &'de [u8]) -> Result<T, DecodeError> {
        match self {
            Encoding::Json => serde_json::from_slice(bytes).map_err(|e| DecodeError(e.to_string())),
            Encoding::MsgPack => {
                rmp_serde::from_slice(bytes).map_err(|e| DecodeError(e.to_string()))
            }
        }
    }
}

/// Whether `data` can reach every subscriber: each encoding a subscriber may speak must be able
/// to carry it. JSON cannot carry a map key that is not a string, a number or a bool (a
/// MessagePack client can send one), nor a NaN or infinite key; such data is refused when
/// published instead of silently missing for JSON subscribers. Names the first offending key.
pub fn check_portable(data: &rmpv::Value) -> Result<(), String> {
    use rmpv::Value;
    let mut stack = vec![data];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Map(entries) => {
                for (key, value) in entries {
                    let portable = match key {
                        Value::String(s) => s.as_str().is_some(),
                        Value::Integer(_) | Value::Boolean(_) => true,
                        Value::F32(f) => f.is_finite(),
                        Value::F64(f) => f.is_finite(),
                        _ => false,
                    };
                    if !portable {
                        return Err(format!(
                            "a map key ({key}) JSON clients cannot receive: keys must be strings, numbers or booleans"
                        ));
                    }
                    stack.push(value);
                }
            }
            Value::String(s) if s.as_str().is_none() => {
                return Err("a string that is not UTF-8".into());
            }
            _ => {}
        }
    }
    Ok(())
}

/// A server frame could not be encoded (e.g. a MessagePack map with non-string keys to JSON).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode frame: {0}")]
pub struct EncodeError(pub String);

/// A client frame could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode frame: {0}")]
pub struct DecodeError(pub String);

/// WebSocket close codes Lookout sends, each with the situation that causes it.
pub mod close {
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
}

/// A client request (both encodings).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Subscribe to a channel, optionally resuming after `since`.
    Subscribe {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// Channel name.
        channel: String,
        /// Resume after this seq.
        #[serde(default)]
        since: Option<u64>,
        /// The epoch `since` belongs to.
        #[serde(default)]
        epoch: Option<String>,
    },
    /// Stop receiving a channel.
    Unsubscribe {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// Channel name.
        channel: String,
    },
    /// Publish `data` to a channel.
    Publish {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// Channel name.
        channel: String,
        /// Application payload.
        #[serde(default = "nil")]
        data: rmpv::Value,
        /// Recipients must acknowledge the message.
        #[serde(default)]
        ack: bool,
        /// Recipient user, for `/user/queue/*`.
        #[serde(default)]
        to: Option<String>,
        /// Owner of a job, on its first publish.
        #[serde(default)]
        owner: Option<String>,
        /// A retry with the same key gets the first reply; stored and delivered once.
        #[serde(default)]
        idempotency_key: Option<String>,
    },
    /// Acknowledge an `ack_required` message.
    Ack {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// Channel name.
        channel: String,
        /// Seq acknowledged.
        seq: u64,
    },
    /// Application-level ping.
    Ping {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
    },
    /// Replace the connection's token before it expires.
    Refresh {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// The new JWT.
        token: String,
    },
    /// Job-status dialect: follow one job.
    SubscribeJob {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// Job id.
        #[serde(rename = "jobId")]
        job_id: String,
    },
    /// Job-status dialect: stop following one job.
    UnsubscribeJob {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// Job id.
        #[serde(rename = "jobId")]
        job_id: String,
    },
    /// Acknowledge an alert (supervisors of its org, admins): it stops escalating.
    AlertAck {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// The alert.
        #[serde(rename = "alertId")]
        alert_id: String,
        /// A note for the audit trail.
        #[serde(default)]
        note: Option<String>,
    },
    /// Resolve an alert.
    AlertResolve {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// The alert.
        #[serde(rename = "alertId")]
        alert_id: String,
        /// A note for the audit trail.
        #[serde(default)]
        note: Option<String>,
    },
    /// A typing indicator, relayed on the org's presence channel.
    Typing {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// Where: a room, or a user for a private conversation.
        #[serde(default)]
        room: Option<String>,
        /// Typing or stopped.
        #[serde(default = "yes")]
        active: bool,
    },
    /// Job-status dialect: follow any channel, with dialect frames.
    SubscribeChannel {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// Channel name.
        channel: String,
    },
}

fn yes() -> bool {
    true
}

/// The payload of a publish without `data`.
pub fn nil() -> rmpv::Value {
    rmpv::Value::Nil
}

/// Enough of a malformed request to echo its id in the error.
#[derive(Debug, Default, Deserialize)]
pub struct IdOnly {
    /// The id, if it could be read.
    #[serde(default)]
    pub id: Option<RequestId>,
}

/// `connection_established`, the first frame on every connection.
#[derive(Debug, Serialize)]
pub struct Established<'a> {
    /// Always `connection_established`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The authenticated user.
    #[serde(rename = "userId")]
    pub user_id: &'a str,
    /// This connection's session id.
    #[serde(rename = "sessionId")]
    pub session_id: &'a str,
    /// The store's epoch.
    pub epoch: &'a str,
    /// Server time, ms since the Unix epoch.
    pub timestamp: u64,
}

/// A channel message as delivered.
#[derive(Debug, Serialize)]
pub struct MessageFrame<'a> {
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Channel name as the subscriber knows it.
    pub channel: &'a str,
    /// Per-channel sequence number.
    pub seq: u64,
    /// Publish time, ms since the Unix epoch.
    pub timestamp: u64,
    /// Application payload.
    pub data: &'a rmpv::Value,
    /// The recipient must acknowledge it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ack_required: bool,
}

/// Job-status dialect frames (`job_status_update`, `job_completed`, `system_notification`).
#[derive(Debug, Serialize)]
pub struct DialectFrame<'a> {
    /// The dialect frame type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The job, for job frames.
    #[serde(rename = "jobId", skip_serializing_if = "Option::is_none")]
    pub job_id: Option<&'a str>,
    /// `data.status`, for job frames.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'a str>,
    /// `data.progress`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<&'a rmpv::Value>,
    /// `data.message`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a rmpv::Value>,
    /// Channel name.
    pub channel: &'a str,
    /// Per-channel sequence number.
    pub seq: u64,
    /// Publish time.
    pub timestamp: u64,
    /// The whole payload.
    pub data: &'a rmpv::Value,
}

/// A successful reply; `fields` carries what the request type adds (channel, seq, head, …).
#[derive(Debug, Serialize)]
pub struct Reply<'a> {
    /// Always `reply`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Echoed request id.
    pub id: Option<&'a RequestId>,
    /// Always true.
    pub ok: bool,
    /// Request-specific fields.
    #[serde(flatten)]
    pub fields: ReplyFields<'a>,
}

/// Fields a reply may carry.
#[derive(Debug, Default, Serialize)]
pub struct ReplyFields<'a> {
    /// Channel concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'a str>,
    /// Seq given to a published message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Store epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<&'a str>,
    /// Channel head at subscribe time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<u64>,
    /// With `since`: whether every missed message was replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// When not recovered: `epoch` (reload state, subscribe without `since`) or `trimmed`
    /// (retention removed messages after `since`; replay starts at `first`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset: Option<&'a str>,
    /// The oldest seq still in the channel's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<u64>,
    /// The alert a publish or alert operation concerns.
    #[serde(rename = "alertId", skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<&'a str>,
    /// The alert's state after an alert operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'a str>,
    /// New expiry after a refresh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// A location fix superseded by a newer one of the same guard before the server processed
    /// it: neither stored nor fanned out (the server was behind; see `limits.positions_in_flight`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shed: Option<bool>,
}

/// An error reply.
#[derive(Debug, Serialize)]
pub struct ErrorFrame<'a> {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Echoed request id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a RequestId>,
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: &'a str,
}

/// `pong` or a `notice`.
#[derive(Debug, Serialize)]
pub struct Simple<'a> {
    /// `pong` or `notice`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Echoed request id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a RequestId>,
    /// For notices: a stable code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'a str>,
    /// For notices: detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a str>,
}

impl<'a> Reply<'a> {
    /// A reply with the given fields.
    pub fn new(id: Option<&'a RequestId>, fields: ReplyFields<'a>) -> Self {
        Reply {
            kind: "reply",
            id,
            ok: true,
            fields,
        }
    }
}

impl<'a> ErrorFrame<'a> {
    /// An error frame.
    pub fn new(id: Option<&'a RequestId>, code: ErrorCode, message: &'a str) -> Self {
        ErrorFrame {
            kind: "error",
            id,
            code,
            message,
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_decodes_from_json_and_msgpack_alike() {
        let json =
            br#"{"type":"publish","id":7,"channel":"/topic/system","data":{"a":1},"ack":true}"#;
        let m: ClientMsg = Encoding::Json.decode(json).expect("json");
        let value: serde_json::Value = serde_json::from_slice(json).expect("value");
        let packed = rmp_serde::to_vec_named(&value).expect("pack");
        let n: ClientMsg = Encoding::MsgPack.decode(&packed).expect("msgpack");
        for msg in [m, n] {
            match msg {
                ClientMsg::Publish {
                    channel, ack, data, ..
                } => {
                    assert_eq!(channel, "/topic/system");
                    assert!(ack);
                    assert_eq!(data["a"], rmpv::Value::from(1));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn msgpack_binary_data_stays_bytes() {
        #[derive(Serialize)]
        struct P<'a> {
            r#type: &'a str,
            channel: &'a str,
            #[serde(with = "serde_bytes_shim")]
            data: &'a [u8],
        }
        mod serde_bytes_shim {
            pub fn serialize<S: serde::Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(b)
            }
        }
        let packed = rmp_serde::to_vec_named(&P {
            r#type: "publish",
            channel: "/topic/video/g1",
            data: &[0xff, 0xd8, 0x00],
        })
        .expect("pack");
        match Encoding::MsgPack
            .decode::<ClientMsg>(&packed)
            .expect("decode")
        {
            ClientMsg::Publish { data, .. } => {
                assert_eq!(data, rmpv::Value::Binary(vec![0xff, 0xd8, 0x00]))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_reply_flattens_its_fields() {
        let id = rmpv::Value::from("r1");
        let bytes = Encoding::Json
            .encode(&Reply::new(
                Some(&id),
                ReplyFields {
                    channel: Some("/topic/system"),
                    seq: Some(3),
                    ..Default::default()
                },
            ))
            .expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"type":"reply","id":"r1","ok":true,"channel":"/topic/system","seq":3})
        );
    }
}
