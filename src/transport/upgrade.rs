//! The WebSocket upgrade: everything that must be settled before a single WebSocket frame.
//!
//! In order: Origin allowlist (403), subprotocol negotiation (400 when none offered is
//! supported), token from `Authorization: Bearer` or `?token=` (401), connection limits
//! (429/503), then the 101 response and the session task. STOMP clients may instead bring the
//! token in their `CONNECT` frame: then the token and the limits are checked on that frame, and
//! a refusal is a STOMP `ERROR`. fastwebsockets' `upgrade()` checks neither
//! Origin nor subprotocols, so both are done here.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, HOST, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use hyper::{Request, Response};
use tracing::Instrument;

use fastwebsockets::{Frame, OpCode, Payload};

use crate::api::error_response;
use crate::hub::Refusal;
use crate::protocol::{close, Encoding, ErrorCode};
use crate::server::AppState;
use crate::session::{self, Framing, SessionContext, Speaks};
use crate::stomp::frame::{Event, Frame as StompFrame, Parser};
use crate::stomp::session::{connect_token, error_frame, StompSession};

use super::Body;

/// Handles a request on a WebSocket path.
pub async fn handle(
    state: Arc<AppState>,
    peer: SocketAddr,
    secure: bool,
    mut req: Request<Incoming>,
    framing: Framing,
) -> Response<Body> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return error_response(
            426,
            ErrorCode::BadRequest,
            "this endpoint needs a WebSocket upgrade",
        );
    }
    if !origin_allowed(&state.origins.load(), &req) {
        return error_response(403, ErrorCode::Forbidden, "origin not allowed");
    }
    let negotiated = match framing {
        Framing::Plain => negotiate(&req),
        // SockJS has no subprotocols: the query string says what the session speaks.
        Framing::SockJs => match super::sockjs::speaks(&req) {
            Ok(stomp) => Ok(Choice {
                encoding: Encoding::Json,
                stomp,
                echo: None,
            }),
            Err(e) => return error_response(400, ErrorCode::BadRequest, &e),
        },
    };
    let choice = match negotiated {
        Ok(choice) => choice,
        Err(offered) => {
            let msg = format!(
                "no supported subprotocol in `{offered}`; use lookout.json, lookout.msgpack or v12.stomp"
            );
            return error_response(400, ErrorCode::BadRequest, &msg);
        }
    };
    use crate::metrics::Protocol;
    let protocol = match (framing, choice.stomp) {
        (Framing::Plain, true) => Protocol::Stomp,
        (Framing::Plain, false) => Protocol::native(choice.encoding),
        (Framing::SockJs, true) => Protocol::SockJsStomp,
        (Framing::SockJs, false) => Protocol::SockJsJson,
    };
    let admitted = match token_from(&req) {
        Some(token) => match admit(&state, &token, choice.encoding, protocol, peer) {
            Ok(admitted) => Some(admitted),
            Err(refused) => return refused.response(),
        },
        // A STOMP client may bring its token in CONNECT instead (SockJS: in the query).
        None if choice.stomp && framing == Framing::Plain => None,
        None => {
            state.hub.stats.auth_failed();
            return error_response(401, ErrorCode::Unauthorized, "missing token");
        }
    };
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(e) => return error_response(400, ErrorCode::BadRequest, &e.to_string()),
    };
    let mut response = response.map(|_| Body::default());
    if let Some(name) = choice.echo {
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(name));
    }
    let span = tracing::info_span!(
        "conn",
        session = tracing::field::Empty,
        user = tracing::field::Empty,
        peer = %peer,
        proto = match (framing, choice.stomp) {
            (Framing::SockJs, true) => "sockjs+stomp",
            (Framing::SockJs, false) => "sockjs+lookout.json",
            (Framing::Plain, _) => choice.echo.unwrap_or("lookout.json"),
        },
        tls = secure,
    );
    let ctx = SessionContext {
        hub: state.hub.clone(),
        field: state.field.clone(),
        auth: state.auth.clone(),
        shutdown: state.shutdown.clone(),
    };
    let handshake = state.config.limits.handshake_timeout;
    let limits = state.config.limits.clone();
    let tracker = state.tracker.clone();
    tracker.spawn(
        async move {
            let mut ws = match tokio::time::timeout(handshake, upgrade).await {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => return tracing::debug!(error = %e, "upgrade failed"),
                Err(_) => return tracing::debug!("upgrade timed out"),
            };
            let mut parser = None;
            let mut connect = None;
            let admitted = match admitted {
                Some(admitted) => admitted,
                None => {
                    // STOMP without a token at the upgrade: it must come in CONNECT.
                    let mut p = StompSession::parser(&limits);
                    let result = match tokio::time::timeout(
                        handshake,
                        read_connect(&mut ws, &mut p),
                    )
                    .await
                    {
                        Ok(result) => result,
                        Err(_) => Err((
                            "not connected".into(),
                            "no CONNECT within handshake_timeout".into(),
                        )),
                    };
                    let admission = result.and_then(|frame| {
                        let token = connect_token(&frame).unwrap_or_default().to_string();
                        let admitted = admit(&state, &token, choice.encoding, protocol, peer)
                            .map_err(|refused| {
                                // The STOMP `message` header is the error code, as in the session.
                                let message = match refused.code {
                                    ErrorCode::Internal => "internal error",
                                    code => code.as_str(),
                                };
                                (message.to_string(), refused.message)
                            })?;
                        Ok((frame, admitted))
                    });
                    match admission {
                        Ok((frame, admitted)) => {
                            parser = Some(p);
                            connect = Some(frame);
                            admitted
                        }
                        Err((message, detail)) => {
                            tracing::debug!(%message, %detail, "STOMP connection refused");
                            let error = error_frame(None, &message, &detail);
                            let _ = ws.write_frame(Frame::text(Payload::Borrowed(&error))).await;
                            let _ = ws
                                .write_frame(Frame::close(close::NORMAL, message.as_bytes()))
                                .await;
                            return;
                        }
                    }
                }
            };
            let (conn, rx, admission) = admitted;
            let span = tracing::Span::current();
            span.record("session", conn.session_id.as_str());
            span.record("user", &*conn.identity.user);
            let speaks = if choice.stomp {
                let parser = parser.unwrap_or_else(|| StompSession::parser(&limits));
                Speaks::Stomp(parser, connect)
            } else {
                Speaks::Native
            };
            tracing::info!("connected");
            session::run(ctx, conn, rx, admission, speaks, framing, ws).await;
            tracing::info!("disconnected");
        }
        .instrument(span),
    );
    response
}

type Admitted = (
    Arc<crate::hub::ConnHandle>,
    tokio::sync::mpsc::Receiver<crate::hub::Outbound>,
    crate::hub::Admission,
);

/// Why a connection was not admitted, as the HTTP refusal it becomes.
pub struct Refused {
    status: u16,
    code: ErrorCode,
    message: String,
}

impl Refused {
    /// A refusal with an HTTP status and a stable code.
    pub fn new(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        Refused {
            status,
            code,
            message: message.into(),
        }
    }

    /// The refusal as a JSON error response.
    pub fn response(&self) -> Response<Body> {
        error_response(self.status, self.code, &self.message)
    }
}

/// Verifies `token` and admits a connection under the limits, or says why not.
pub fn admit(
    state: &AppState,
    token: &str,
    encoding: Encoding,
    protocol: crate::metrics::Protocol,
    peer: SocketAddr,
) -> Result<Admitted, Refused> {
    let identity = match state.auth.verify(token) {
        Ok(id) => id,
        Err(e) => {
            state.hub.stats.auth_failed();
            tracing::debug!(%peer, error = %e, "connection refused");
            return Err(Refused::new(401, ErrorCode::Unauthorized, e.to_string()));
        }
    };
    state
        .hub
        .admit(identity, encoding, protocol, peer)
        .map_err(|refusal| {
            let (status, code) = match &refusal {
                Refusal::PerUser(_) => (429, ErrorCode::RateLimited),
                Refusal::Total(_) => (503, ErrorCode::RateLimited),
                Refusal::OrgConflict => (403, ErrorCode::Forbidden),
                Refusal::Store(e) => {
                    tracing::error!(error = %e, "store failure at admission");
                    return Refused::new(500, ErrorCode::Internal, "internal error");
                }
            };
            Refused::new(status, code, refusal.to_string())
        })
}

/// Reads WebSocket messages until a whole STOMP `CONNECT` (or `STOMP`) frame.
async fn read_connect<S>(
    ws: &mut fastwebsockets::WebSocket<S>,
    parser: &mut Parser,
) -> Result<StompFrame, (String, String)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match parser.next_event() {
            Ok(Some(Event::Heartbeat)) => continue,
            Ok(Some(Event::Frame(frame)))
                if matches!(frame.command.as_str(), "CONNECT" | "STOMP") =>
            {
                return Ok(frame)
            }
            Ok(Some(Event::Frame(frame))) => {
                return Err((
                    "not connected".into(),
                    format!("expected CONNECT, got {}", frame.command),
                ))
            }
            Err(e) => return Err(("malformed frame".into(), e.to_string())),
            Ok(None) => {}
        }
        let frame = ws
            .read_frame()
            .await
            .map_err(|e| ("not connected".to_string(), e.to_string()))?;
        match frame.opcode {
            OpCode::Text | OpCode::Binary | OpCode::Continuation => parser.push(&frame.payload),
            OpCode::Close => return Err(("not connected".into(), "closed before CONNECT".into())),
            OpCode::Ping | OpCode::Pong => {}
        }
    }
}

/// Browsers always send `Origin`; other clients usually do not and are let through.
pub fn origin_allowed(allowed: &[String], req: &Request<Incoming>) -> bool {
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

/// What the upgrade settled on.
#[derive(Debug, Clone, Copy)]
struct Choice {
    encoding: Encoding,
    stomp: bool,
    /// The subprotocol to echo, if the client offered any.
    echo: Option<&'static str>,
}

/// Picks the first subprotocol the client offers that Lookout speaks. No header: native JSON,
/// and no header in the response. `Err` carries the offer when nothing in it is supported.
fn negotiate<B>(req: &Request<B>) -> Result<Choice, String> {
    let offered: Vec<String> = req
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let native = |encoding, echo| Choice {
        encoding,
        stomp: false,
        echo,
    };
    if offered.is_empty() {
        return Ok(native(Encoding::Json, None));
    }
    for p in &offered {
        let stomp = |name| Choice {
            encoding: Encoding::Json,
            stomp: true,
            echo: Some(name),
        };
        match p.as_str() {
            "lookout.json" => return Ok(native(Encoding::Json, Some("lookout.json"))),
            "lookout.msgpack" => return Ok(native(Encoding::MsgPack, Some("lookout.msgpack"))),
            "v12.stomp" => return Ok(stomp("v12.stomp")),
            "v11.stomp" => return Ok(stomp("v11.stomp")),
            "v10.stomp" => return Ok(stomp("v10.stomp")),
            _ => {}
        }
    }
    Err(offered.join(", "))
}
