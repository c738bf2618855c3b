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

use fastwebsockets::{Frame, OpCode, Payload, WebSocket};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use hyper::upgrade::Upgraded;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tracing::Instrument;

use super::admission::{admit, origin_allowed, Admitted};
use super::framing;
use super::progress::Drained;
use super::websocket::{self, Framing};
use crate::app::AppState;
use crate::failure::ErrorCode;
use crate::http::{token_from, Body, HttpError};
use crate::protocol::{close, Encoding, Protocol};
use crate::session::Speaks;
use crate::stomp::frame::{Event, Frame as StompFrame, Parser};
use crate::stomp::{connect_token, error_frame, error_message};

type Socket = WebSocket<TokioIo<Upgraded>>;

/// Paths that accept a WebSocket upgrade (and carry SockJS under them).
pub const WS_PATHS: [&str; 5] = [
    "/ws",
    "/api/ws",
    "/ws/job-status",
    "/ws/job-status-native",
    "/ws/upload-progress",
];

/// Handles a request on a WebSocket path.
pub async fn handle(
    state: Arc<AppState>,
    peer: SocketAddr,
    secure: bool,
    mut req: Request<Incoming>,
    framing: Framing,
) -> Response<Body> {
    let choice = match choose(&state, &req, framing) {
        Ok(choice) => choice,
        Err(refused) => return refused.response(),
    };
    let admitted = match token_from(&req) {
        Some(token) => match admit(&state, &token, choice.encoding, choice.protocol, peer).await {
            Ok(admitted) => Some(admitted),
            Err(refused) => return refused.response(),
        },
        // A STOMP client may bring its token in CONNECT instead (SockJS: in the query).
        None if choice.stomp && framing == Framing::Plain => None,
        None => {
            state.hub.stats.auth_failed();
            return HttpError::new(ErrorCode::Unauthorized, "missing token").response();
        }
    };
    let drained = req.extensions().get::<Drained>().cloned();
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(e) => return HttpError::new(ErrorCode::BadRequest, e.to_string()).response(),
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
        proto = match (framing, choice.echo) {
            (Framing::Plain, Some(echo)) => echo,
            _ => choice.protocol.name(),
        },
        tls = secure,
    );
    let handshake = state.hub.limits().handshake_timeout;
    let tracker = state.tracker.clone();
    tracker.spawn(
        async move {
            let mut ws = match tokio::time::timeout(handshake, upgrade).await {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => return tracing::debug!(error = %e, "upgrade failed"),
                Err(_) => return tracing::debug!("upgrade timed out"),
            };
            let (admitted, speaks) = match admitted {
                Some(admitted) => {
                    let speaks = if choice.stomp {
                        Speaks::Stomp(crate::stomp::parser(&state.hub.limits()), None)
                    } else {
                        Speaks::Native
                    };
                    (admitted, speaks)
                }
                // Boxed: reading a CONNECT frame is a large future, needed only once.
                None => match Box::pin(admit_on_connect(&state, &mut ws, &choice, peer)).await {
                    Some((admitted, parser, connect)) => {
                        (admitted, Speaks::Stomp(parser, Some(connect)))
                    }
                    None => return,
                },
            };
            let (conn, rx, admission) = admitted;
            let span = tracing::Span::current();
            span.record("session", conn.session_id.as_str());
            span.record("user", &*conn.identity.user);
            tracing::info!("connected");
            let ctx = state.session_context();
            if let Some(stamp) = drained {
                conn.watch_drains(stamp);
            }
            websocket::run(ctx, conn, rx, admission, speaks, framing, ws).await;
            tracing::info!("disconnected");
        }
        .instrument(span),
    );
    response
}

/// `/echo`: upgrades without a token or admission (the route exists only with
/// `testing.echo_endpoint`) and echoes on a tracked task.
pub async fn echo(
    state: Arc<AppState>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<Body> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return HttpError::with_status(
            426,
            ErrorCode::BadRequest,
            "this endpoint needs a WebSocket upgrade",
        )
        .response();
    }
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(e) => return HttpError::new(ErrorCode::BadRequest, e.to_string()).response(),
    };
    let handshake = state.hub.limits().handshake_timeout;
    state.tracker.spawn(
        async move {
            match tokio::time::timeout(handshake, upgrade).await {
                Ok(Ok(ws)) => websocket::echo(ws, peer).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "upgrade failed"),
                Err(_) => tracing::debug!("upgrade timed out"),
            }
        }
        .instrument(tracing::info_span!("echo", peer = %peer)),
    );
    response.map(|_| Body::default())
}

/// What the upgrade settled on.
#[derive(Debug, Clone, Copy)]
struct Choice {
    encoding: Encoding,
    stomp: bool,
    /// The subprotocol to echo, if the client offered any.
    echo: Option<&'static str>,
    /// What the connection is counted as.
    protocol: Protocol,
}

/// Checks the request and settles the protocol, or says why not.
fn choose(
    state: &AppState,
    req: &Request<Incoming>,
    framing: Framing,
) -> Result<Choice, HttpError> {
    if !fastwebsockets::upgrade::is_upgrade_request(req) {
        return Err(HttpError::with_status(
            426,
            ErrorCode::BadRequest,
            "this endpoint needs a WebSocket upgrade",
        ));
    }
    if !origin_allowed(&state.origins.load(), req) {
        return Err(HttpError::new(ErrorCode::Forbidden, "origin not allowed"));
    }
    match framing {
        Framing::Plain => negotiate(req).map_err(|offered| {
            HttpError::new(
                ErrorCode::BadRequest,
                format!(
                    "no supported subprotocol in `{offered}`; use lookout.json, lookout.msgpack or v12.stomp"
                ),
            )
        }),
        // SockJS has no subprotocols: the query string says what the session speaks.
        Framing::SockJs => {
            let stomp =
                framing::speaks(req).map_err(|e| HttpError::new(ErrorCode::BadRequest, e))?;
            Ok(Choice {
                encoding: Encoding::Json,
                stomp,
                echo: None,
                protocol: if stomp {
                    Protocol::SockJsStomp
                } else {
                    Protocol::SockJsJson
                },
            })
        }
    }
}

/// STOMP without a token at the upgrade: reads the `CONNECT` frame within the handshake
/// timeout and admits on its token. A refusal is an `ERROR` frame and a close; `None` then.
async fn admit_on_connect(
    state: &AppState,
    ws: &mut Socket,
    choice: &Choice,
    peer: SocketAddr,
) -> Option<(Admitted, Parser, StompFrame)> {
    let handshake = state.hub.limits().handshake_timeout;
    let mut parser = crate::stomp::parser(&state.hub.limits());
    let read = match tokio::time::timeout(handshake, read_connect(ws, &mut parser)).await {
        Ok(result) => result,
        Err(_) => Err((
            "not connected".into(),
            "no CONNECT within handshake_timeout".into(),
        )),
    };
    let admitted = match read {
        Ok(frame) => {
            let token = connect_token(&frame).unwrap_or_default().to_string();
            match admit(state, &token, choice.encoding, choice.protocol, peer).await {
                Ok(admitted) => Ok((admitted, frame)),
                // The STOMP `message` header is the error code, as in the session.
                Err(HttpError(report)) => {
                    Err((error_message(report.code).to_string(), report.message))
                }
            }
        }
        Err(refusal) => Err(refusal),
    };
    match admitted {
        Ok((admitted, frame)) => Some((admitted, parser, frame)),
        Err((message, detail)) => {
            tracing::debug!(%message, %detail, "STOMP connection refused");
            let error = error_frame(None, &message, &detail);
            let _ = ws.write_frame(Frame::text(Payload::Borrowed(&error))).await;
            let _ = ws
                .write_frame(Frame::close(close::NORMAL, message.as_bytes()))
                .await;
            None
        }
    }
}

/// Reads WebSocket messages until a whole STOMP `CONNECT` (or `STOMP`) frame.
async fn read_connect(
    ws: &mut Socket,
    parser: &mut Parser,
) -> Result<StompFrame, (String, String)> {
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
        protocol: Protocol::native(encoding),
    };
    if offered.is_empty() {
        return Ok(native(Encoding::Json, None));
    }
    for p in &offered {
        let stomp = |name| Choice {
            encoding: Encoding::Json,
            stomp: true,
            echo: Some(name),
            protocol: Protocol::Stomp,
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
