//! What the server sends: `connection_established`, channel messages (native and job-status
//! dialect), replies, error frames, `pong` and notices.
//!
//! Frames are plain serializable structs; encoding them is `encoding.rs`'s.

use serde::Serialize;

use super::client::RequestId;
use crate::failure::ErrorCode;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encoding::Encoding;

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
