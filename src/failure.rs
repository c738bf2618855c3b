//! How a failure reaches a client: its stable code ([`ErrorCode`], with the HTTP status each code
//! answers with), the status it answers with, and the message a client may read.
//!
//! Every error type of a boundary (hub, field, alerts, store, admission) implements [`Failure`];
//! [`Report::of`] is the one place that decides what a client sees: the error's own words for
//! the client's mistakes, and for the server's own faults a log line here and "internal error"
//! on the wire. The REST API, the WebSocket upgrade, SockJS, the native protocol and STOMP all
//! report through it. This module knows no transport: it only turns an error into a report.

use serde::Serialize;

/// The stable error codes of the design, shared by WebSocket replies and REST bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or invalid.
    BadRequest,
    /// No or bad credentials.
    Unauthorized,
    /// Credentials fine, action not allowed.
    Forbidden,
    /// No such thing.
    NotFound,
    /// Over a rate or count limit.
    RateLimited,
    /// Over a size limit.
    TooLarge,
    /// Conflicts with existing state.
    Conflict,
    /// A fault of the server.
    Internal,
}

impl ErrorCode {
    /// The HTTP status for a REST response.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
        }
    }

    /// The code as a string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An error a client can be told about.
pub trait Failure: std::error::Error + Send + Sync {
    /// The stable error code.
    fn code(&self) -> ErrorCode;

    /// The HTTP status that answers it (the code's, unless the error knows better).
    fn status(&self) -> u16 {
        self.code().http_status()
    }
}

/// What a client is told about a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The stable code.
    pub code: ErrorCode,
    /// The HTTP status, for the transports that have one.
    pub status: u16,
    /// The message a client may read.
    pub message: String,
}

impl Report {
    /// The report of `e`. A fault of the server is logged here, with its details, and reaches
    /// the client as "internal error" only.
    pub fn of(e: &dyn Failure) -> Report {
        let code = e.code();
        let message = if code == ErrorCode::Internal {
            tracing::error!(error = %e, "internal failure");
            "internal error".to_string()
        } else {
            e.to_string()
        };
        Report {
            code,
            status: e.status(),
            message,
        }
    }

    /// A report of a client's mistake that no error type carries (e.g. a malformed header).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Report {
        Report {
            code,
            status: code.http_status(),
            message: message.into(),
        }
    }

    /// The same report answered with another HTTP status.
    pub fn with_status(mut self, status: u16) -> Report {
        self.status = status;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Sample {
        #[error("no such thing")]
        Missing,
        #[error("disk on fire at /var/lib/lookout")]
        Ours,
    }

    impl Failure for Sample {
        fn code(&self) -> ErrorCode {
            match self {
                Sample::Missing => ErrorCode::NotFound,
                Sample::Ours => ErrorCode::Internal,
            }
        }
    }

    #[test]
    fn a_clients_mistake_is_told_in_the_errors_words_and_a_fault_of_ours_never_is() {
        let told = |e: Sample| {
            let r = Report::of(&e);
            (r.code, r.status, r.message)
        };
        assert_eq!(
            told(Sample::Missing),
            (ErrorCode::NotFound, 404, "no such thing".to_string())
        );
        assert_eq!(
            told(Sample::Ours),
            (ErrorCode::Internal, 500, "internal error".to_string())
        );
    }
}
