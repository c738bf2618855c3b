//! The WebSocket upgrade: everything that must be settled before a single WebSocket frame.
//!
//! In order: Origin allowlist (403), token from `Authorization: Bearer` or `?token=` (401),
//! subprotocol negotiation (400 when none offered is supported), connection limits (429/503),
//! then the 101 response and the session task. fastwebsockets' `upgrade()` checks neither
//! Origin nor subprotocols, so both are done here.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, HOST, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use hyper::{Request, Response};
use tracing::Instrument;

use crate::api::error_response;
use crate::hub::Refusal;
use crate::protocol::{Encoding, ErrorCode};
use crate::server::AppState;
use crate::session::{self, SessionContext};

use super::Body;

/// Handles a request on a WebSocket path.
pub async fn handle(
    state: Arc<AppState>,
    peer: SocketAddr,
    secure: bool,
    mut req: Request<Incoming>,
) -> Response<Body> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return error_response(
            426,
            ErrorCode::BadRequest,
            "this endpoint needs a WebSocket upgrade",
        );
    }
    if !origin_allowed(&state.config.allowed_origins, &req) {
        return error_response(403, ErrorCode::Forbidden, "origin not allowed");
    }
    let token = match token_from(&req) {
        Some(t) => t,
        None => {
            state
                .hub
                .stats
                .auth_failures
                .fetch_add(1, Ordering::Relaxed);
            return error_response(401, ErrorCode::Unauthorized, "missing token");
        }
    };
    let identity = match state.auth.verify(&token) {
        Ok(id) => id,
        Err(e) => {
            state
                .hub
                .stats
                .auth_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, error = %e, "upgrade refused");
            return error_response(401, ErrorCode::Unauthorized, &e.to_string());
        }
    };
    let (encoding, echo_protocol) = match negotiate(&req) {
        Ok(choice) => choice,
        Err(offered) => {
            let msg = format!(
                "no supported subprotocol in `{offered}`; use lookout.json or lookout.msgpack"
            );
            return error_response(400, ErrorCode::BadRequest, &msg);
        }
    };
    let (conn, rx, admission) = match state.hub.admit(identity, encoding, peer) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let (status, code) = match &refusal {
                Refusal::PerUser(_) => (429, ErrorCode::RateLimited),
                Refusal::Total(_) => (503, ErrorCode::RateLimited),
                Refusal::OrgConflict => (403, ErrorCode::Forbidden),
                Refusal::Store(e) => {
                    tracing::error!(error = %e, "store failure at admission");
                    return error_response(500, ErrorCode::Internal, "internal error");
                }
            };
            return error_response(status, code, &refusal.to_string());
        }
    };
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(e) => return error_response(400, ErrorCode::BadRequest, &e.to_string()),
    };
    let mut response = response.map(|_| Body::default());
    if echo_protocol {
        response.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(encoding.subprotocol()),
        );
    }
    let span = tracing::info_span!(
        "conn",
        session = %conn.session_id,
        user = %conn.identity.user,
        peer = %peer,
        proto = encoding.subprotocol(),
        tls = secure,
    );
    let ctx = SessionContext {
        hub: state.hub.clone(),
        field: state.field.clone(),
        auth: state.auth.clone(),
        shutdown: state.shutdown.clone(),
    };
    let handshake = state.config.limits.handshake_timeout;
    state.tracker.spawn(
        async move {
            match tokio::time::timeout(handshake, upgrade).await {
                Ok(Ok(ws)) => {
                    tracing::info!("connected");
                    session::run(ctx, conn, rx, admission, ws).await;
                    tracing::info!("disconnected");
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "upgrade failed"),
                Err(_) => tracing::debug!("upgrade timed out"),
            }
        }
        .instrument(span),
    );
    response
}

/// Browsers always send `Origin`; other clients usually do not and are let through.
fn origin_allowed(allowed: &[String], req: &Request<Incoming>) -> bool {
    let Some(origin) = req.headers().get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    if !allowed.is_empty() {
        return false;
    }
    // No list configured: same origin only (the bundled dashboard).
    let host = req.headers().get(HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// The token from `Authorization: Bearer …`, else from `?token=…`.
pub fn token_from<B>(req: &Request<B>) -> Option<String> {
    if let Some(value) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let mut parts = value.splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (parts.next(), parts.next()) {
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
                return Some(token.trim().to_string());
            }
        }
    }
    let query = req.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .filter(|t| !t.is_empty())
}

/// Picks the first subprotocol the client offers that Lookout speaks. No header: JSON, and no
/// header in the response. `Err` carries the offer when nothing in it is supported.
fn negotiate<B>(req: &Request<B>) -> Result<(Encoding, bool), String> {
    let offered: Vec<String> = req
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok((Encoding::Json, false));
    }
    for p in &offered {
        match p.as_str() {
            "lookout.json" => return Ok((Encoding::Json, true)),
            "lookout.msgpack" => return Ok((Encoding::MsgPack, true)),
            _ => {}
        }
    }
    Err(offered.join(", "))
}
