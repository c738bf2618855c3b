//! STOMP 1.2 (and 1.1/1.0) as bytes on the wire: frames, the bounded incremental parser, the
//! `ERROR` frame and where a `CONNECT` carries its token.
//!
//! [`frame`] is the format itself. Nothing here knows sessions, channels or sockets: the STOMP
//! session on the hub is `session::stomp`, the pre-admission `CONNECT` is read by the
//! WebSocket upgrade.

pub mod frame;

use bytes::Bytes;

use self::frame::{Frame, Parser};
use crate::failure::ErrorCode;

/// Most headers in one frame.
pub const MAX_HEADERS: usize = 64;

/// A parser sized for this server's limits.
pub fn parser(limits: &crate::config::Limits) -> Parser {
    Parser::new(limits.max_message_size, MAX_HEADERS)
}

/// The `message` header of an `ERROR` for a failure with `code`: the stable code, or
/// "internal error" for a fault of the server.
pub fn error_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Internal => "internal error",
        code => code.as_str(),
    }
}

/// An `ERROR` frame.
pub fn error_frame(receipt: Option<&str>, message: &str, detail: &str) -> Bytes {
    let mut frame = Frame::new("ERROR").header("message", message);
    if let Some(r) = receipt {
        frame = frame.header("receipt-id", r);
    }
    if !detail.is_empty() {
        frame = frame
            .header("content-type", "text/plain")
            .body(Bytes::copy_from_slice(detail.as_bytes()));
    }
    Bytes::from(frame.to_bytes())
}

/// The token a `CONNECT` frame carries: `Authorization` (with or without `Bearer`), else
/// `passcode`.
pub fn connect_token(frame: &Frame) -> Option<&str> {
    if let Some(value) = frame.get("Authorization").or(frame.get("authorization")) {
        let value = value.trim();
        let token = match value.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ => value,
        };
        if !token.is_empty() {
            return Some(token);
        }
    }
    frame.get("passcode").filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_authorization_or_passcode() {
        let f = Frame::new("CONNECT").header("Authorization", "Bearer abc");
        assert_eq!(connect_token(&f), Some("abc"));
        let f = Frame::new("CONNECT").header("passcode", "xyz");
        assert_eq!(connect_token(&f), Some("xyz"));
        let f = Frame::new("CONNECT").header("login", "x");
        assert_eq!(connect_token(&f), None);
    }
}
