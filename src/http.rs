//! What every HTTP answer of Lookout is made of: the body type, JSON responses, the one
//! error → response mapping, and where a request's token is found.
//!
//! Shared by the REST API, the WebSocket upgrade, SockJS and the dashboard, so that an error
//! reads the same wherever it happens: `{"error":{"code","message"}}` with the matching status.
//! This module builds responses; it never routes, authenticates or touches the hub.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE,
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE,
};
use hyper::{HeaderMap, Request, Response, StatusCode};
use serde::Serialize;

use crate::failure::{ErrorCode, Failure, Report};

/// The body type of every response Lookout sends: whole bodies, or a stream (SSE).
pub type Body = BoxBody<Bytes, Infallible>;

/// A whole body.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).boxed()
}

/// A refused HTTP request: status, stable code and the message the client may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError(pub Report);

impl HttpError {
    /// A refusal with the code's own status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        HttpError(Report::new(code, message))
    }

    /// A refusal with another status than the code's (405, 426, 503, …).
    pub fn with_status(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        HttpError(Report::new(code, message).with_status(status))
    }

    /// The refusal as a JSON error response.
    pub fn response(&self) -> Response<Body> {
        error_response(self.0.status, self.0.code, &self.0.message)
    }
}

impl<E: Failure> From<E> for HttpError {
    fn from(e: E) -> Self {
        HttpError(Report::of(&e))
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: ErrorCode,
    message: &'a str,
}

/// A JSON error response.
pub fn error_response(status: u16, code: ErrorCode, message: &str) -> Response<Body> {
    let body = ErrorBody {
        error: ErrorDetail { code, message },
    };
    json_response(status, &body)
}

/// A JSON response.
pub fn json_response<T: Serialize>(status: u16, value: &T) -> Response<Body> {
    let (status, bytes) = match serde_json::to_vec(value) {
        Ok(b) => (status, Bytes::from(b)),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode response");
            (
                500,
                Bytes::from_static(br#"{"error":{"code":"internal","message":"internal error"}}"#),
            )
        }
    };
    let mut response = Response::new(full(bytes));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The address a request came to (`Host`, else the URI's authority): the one a phone shown
/// a link on that page will use too.
pub fn authority<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
}

/// The token from `Authorization: Bearer …`, else from `?token=…`.
pub fn token_from<B>(req: &Request<B>) -> Option<String> {
    token_from_parts(req.headers(), req.uri())
}

/// [`token_from`] for a request already taken apart (Socket.IO keeps its handshake's parts).
pub fn token_from_parts(headers: &hyper::HeaderMap, uri: &hyper::Uri) -> Option<String> {
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let mut parts = value.splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (parts.next(), parts.next()) {
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
                return Some(token.trim().to_string());
            }
        }
    }
    let query = uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .filter(|t| !t.is_empty())
}

/// The answer to a CORS preflight on the transports browsers reach from other origins
/// (SockJS, Socket.IO): `GET` and `POST` with a JSON body and a bearer token.
pub fn cors_preflight() -> Response<Body> {
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("OPTIONS, GET, POST"),
    );
    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("31536000"));
    h.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, authorization"),
    );
    r
}

/// Lets the request's origin (already allowed) read the response with its credentials; a
/// request without one (or `null`) gets `*`.
pub fn cors_allow(headers: &mut HeaderMap, origin: Option<HeaderValue>) {
    match origin {
        Some(origin) if origin != "null" => {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        _ => {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
    }
}
