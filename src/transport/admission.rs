//! What every transport settles before a session: whether a browser's origin may connect, and
//! the admission (token, then the connection limits) that the WebSocket upgrade, SockJS and
//! Socket.IO share. Nothing here reads or writes a socket.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::header::{HOST, ORIGIN};
use hyper::Request;
use tokio::sync::mpsc;

use crate::app::AppState;
use crate::failure::ErrorCode;
use crate::http::HttpError;
use crate::hub::admission::Admission;
use crate::hub::{ConnHandle, Outbound};
use crate::protocol::{Encoding, Protocol};

/// An admitted connection: its handle, its queue and its slot.
pub type Admitted = (Arc<ConnHandle>, mpsc::Receiver<Outbound>, Admission);

/// Verifies `token` and admits a connection under the limits, or says why not.
pub async fn admit(
    state: &AppState,
    token: &str,
    encoding: Encoding,
    protocol: Protocol,
    peer: SocketAddr,
) -> Result<Admitted, HttpError> {
    let identity = match state.auth.verify_fresh(token).await {
        Ok(id) => id,
        Err(e) => {
            state.hub.stats.auth_failed();
            tracing::debug!(%peer, error = %e, "connection refused");
            return Err(HttpError::new(ErrorCode::Unauthorized, e.to_string()));
        }
    };
    Ok(state.hub.admit(identity, encoding, protocol, peer).await?)
}

/// Browsers always send `Origin`; other clients usually do not and are let through.
pub fn origin_allowed<B>(allowed: &[String], req: &Request<B>) -> bool {
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
