//! Reading a client's frames and answering them: the `ERROR` a session ends with ([`Fatal`]),
//! `RECEIPT`s, required headers, Spring's `/app` prefix, the heart-beat header, and a `SEND`
//! body as channel data.

use bytes::Bytes;

use crate::failure::{ErrorCode, Failure, Report};
use crate::protocol::close;
use crate::stomp::error_message;
use crate::stomp::frame::Frame;

/// A STOMP `ERROR` as the session sees it: what to tell the client before closing.
pub(super) struct Fatal {
    pub(super) message: String,
    pub(super) detail: String,
    pub(super) code: u16,
}

impl Fatal {
    pub(super) fn new(message: impl Into<String>, detail: impl Into<String>) -> Self {
        Fatal {
            message: message.into(),
            detail: detail.into(),
            code: close::NORMAL,
        }
    }

    /// Names the destination the error is about.
    pub(super) fn about(mut self, destination: &str) -> Self {
        self.detail = if self.detail.is_empty() {
            destination.to_string()
        } else {
            format!("{destination}: {}", self.detail)
        };
        self
    }

    /// The `ERROR` for a failure: its code as the `message` header, what a client may read
    /// as the body (a fault of ours is logged and says only "internal error").
    pub(super) fn of(e: &dyn Failure) -> Self {
        let report = Report::of(e);
        let detail = match report.code {
            ErrorCode::Internal => String::new(),
            _ => report.message,
        };
        Fatal::new(error_message(report.code), detail)
    }
}

/// A `RECEIPT` for `frame` if it asked for one.
pub(super) fn receipt(frame: &Frame, extra: &[(&str, &str)]) -> Option<Bytes> {
    let id = frame.get("receipt")?;
    let mut r = Frame::new("RECEIPT").header("receipt-id", id);
    for (name, value) in extra {
        r = r.header(name, *value);
    }
    Some(Bytes::from(r.to_bytes()))
}

pub(super) fn required<'f>(frame: &'f Frame, name: &str) -> Result<&'f str, Fatal> {
    frame.get(name).ok_or_else(|| {
        Fatal::new(
            "missing header",
            format!("{} needs `{name}`", frame.command),
        )
    })
}

/// Spring's application prefix: `/app/topic/x` is `/topic/x`.
pub(super) fn strip_app(destination: &str) -> &str {
    match destination.strip_prefix("/app") {
        Some(rest) if rest.starts_with('/') => rest,
        _ => destination,
    }
}

pub(super) fn parse_heartbeat(value: &str) -> Option<(u64, u64)> {
    let (x, y) = value.split_once(',')?;
    Some((x.trim().parse().ok()?, y.trim().parse().ok()?))
}

/// A `SEND` body as channel data. Without a content type the body must be JSON; other types
/// are named explicitly, so a typo in JSON is an error rather than a string.
pub(super) fn decode_body(frame: &Frame) -> Result<rmpv::Value, Fatal> {
    let body = &frame.body;
    let content_type = frame.get("content-type").map(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    let bad = |what: &str| Fatal::new("bad body", what.to_string());
    match content_type.as_deref() {
        None if body.is_empty() => Ok(rmpv::Value::Nil),
        None | Some("application/json") => serde_json::from_slice(body)
            .map_err(|e| bad(&format!("body is not JSON ({e}); set content-type for other bodies"))),
        Some(ct) if ct.ends_with("+json") => {
            serde_json::from_slice(body).map_err(|e| bad(&format!("body is not JSON ({e})")))
        }
        Some("application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack") => {
            rmpv::decode::read_value(&mut &body[..])
                .map_err(|e| bad(&format!("body is not MessagePack ({e})")))
        }
        Some("application/octet-stream") => Ok(rmpv::Value::Binary(body.to_vec())),
        Some(ct) if ct.starts_with("text/") => std::str::from_utf8(body)
            .map(rmpv::Value::from)
            .map_err(|_| bad("text body is not UTF-8")),
        Some(other) => Err(bad(&format!(
            "unsupported content-type {other}; use application/json, text/*, application/msgpack or application/octet-stream"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_prefix_maps_to_the_same_channel() {
        assert_eq!(strip_app("/app/topic/location/u1"), "/topic/location/u1");
        assert_eq!(strip_app("/topic/x"), "/topic/x");
        assert_eq!(strip_app("/apple/x"), "/apple/x");
    }

    #[test]
    fn bodies_need_a_content_type_unless_json() {
        let json = Frame::new("SEND").body(&b"{\"a\":1}"[..]);
        assert!(decode_body(&json).is_ok());
        let text = Frame::new("SEND").body(&b"hello"[..]);
        assert!(decode_body(&text).is_err());
        let text = text.header("content-type", "text/plain;charset=utf-8");
        assert_eq!(decode_body(&text).ok(), Some(rmpv::Value::from("hello")));
        let bin = Frame::new("SEND")
            .header("content-type", "application/octet-stream")
            .body(&[0u8, 1, 2][..]);
        assert_eq!(
            decode_body(&bin).ok(),
            Some(rmpv::Value::Binary(vec![0, 1, 2]))
        );
    }

    #[test]
    fn heartbeats_parse() {
        assert_eq!(parse_heartbeat("10000, 5000"), Some((10000, 5000)));
        assert_eq!(parse_heartbeat("x,1"), None);
    }
}
