//! SockJS: the protocol `sockjs-client` speaks when a front end cannot rely on WebSocket.
//!
//! Frames from the server are `o` (open), `h` (heart-beat), `a[…]` (messages as JSON strings)
//! and `c[code,"reason"]` (close); the client sends JSON arrays of strings. Under each WebSocket
//! path (`/ws`, `/api/ws`, …) this module serves `/info` and
//! `/{server}/{session}/{websocket|xhr|xhr_streaming|eventsource|xhr_send}`.
//!
//! A session carries STOMP (the default: SockJS users are stomp.js and Spring front ends) or,
//! with `?protocol=lookout.json`, the native protocol; the token comes in the query string. The
//! `websocket` transport is a WebSocket session with SockJS framing. The HTTP transports share
//! one [`HttpSession`] per session id: `xhr_send` feeds its reader, and one receiving request
//! at a time (`xhr` polls, `xhr_streaming`, `eventsource`) drains what its writer queued. A
//! session nobody receives for is ended by the dead-peer clock, like a silent WebSocket.

pub mod session;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::mpsc;
use tracing::Instrument;

use self::session::{HttpSession, InboxSource, OutboxSink, Receiving, Sessions, Taken};
use super::framing::{client_messages, close_frame, speaks};
use super::upgrade::WS_PATHS;
use super::websocket::Framing;
use super::{admission, upgrade};
use crate::app::AppState;
use crate::failure::ErrorCode;
use crate::http::{cors_allow, cors_preflight, error_response, full, token_from, Body, HttpError};
use crate::protocol::{Encoding, Protocol};
use crate::session::{self as sessions, Speaks};

/// `xhr_streaming` and `eventsource` responses end after this many bytes, so that a client
/// behind a buffering proxy does not hold an ever-growing response; the client reopens.
const STREAM_RESPONSE_LIMIT: usize = 128 * 1024;
/// Client messages waiting for the session's reader.
const INBOX: usize = 64;
/// How long a closed session keeps answering with its close frame before it is forgotten.
const CLOSED_LINGER: Duration = Duration::from_secs(5);

/// A SockJS request path.
#[derive(Debug, PartialEq, Eq)]
pub enum SockJsPath<'a> {
    /// `…/info`.
    Info,
    /// `…/{server}/{session}/{transport}`.
    Session {
        /// Session id, chosen by the client.
        session: &'a str,
        /// Transport name.
        transport: &'a str,
    },
}

/// SockJS's transports, the last segment of a session's path; no other is routed here.
pub const TRANSPORTS: [&str; 5] = [
    "websocket",
    "xhr",
    "xhr_streaming",
    "eventsource",
    "xhr_send",
];

/// The SockJS route of `path`, if it is one (under any WebSocket path).
pub fn route(path: &str) -> Option<SockJsPath<'_>> {
    let mut prefixes = WS_PATHS;
    prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for prefix in prefixes {
        let Some(rest) = path.strip_prefix(prefix) else {
            continue;
        };
        if rest == "/info" {
            return Some(SockJsPath::Info);
        }
        let Some(rest) = rest.strip_prefix('/') else {
            continue;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if let [server, session, transport] = parts.as_slice() {
            let valid = |s: &str| !s.is_empty() && !s.contains('.');
            if valid(server)
                && valid(session)
                && session.len() <= 64
                && TRANSPORTS.contains(transport)
            {
                return Some(SockJsPath::Session { session, transport });
            }
        }
    }
    None
}

/// Serves one SockJS request.
pub async fn handle(
    app: Arc<AppState>,
    sessions: Arc<Sessions>,
    peer: SocketAddr,
    secure: bool,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let Some(route) = route(&path) else {
        return error_response(404, ErrorCode::NotFound, "no such SockJS path");
    };
    if !admission::origin_allowed(&app.origins.load(), &req) {
        return error_response(403, ErrorCode::Forbidden, "origin not allowed");
    }
    let origin = req.headers().get(ORIGIN).cloned();
    let mut response = if req.method() == Method::OPTIONS {
        cors_preflight()
    } else {
        match route {
            SockJsPath::Info => info(),
            SockJsPath::Session {
                session,
                transport: "websocket",
            } => {
                let _ = session;
                return upgrade::handle(app, peer, secure, req, Framing::SockJs).await;
            }
            SockJsPath::Session { session, transport } => {
                let session = session.to_string();
                match (req.method().clone(), transport) {
                    (Method::POST, "xhr") => {
                        receive(&app, &sessions, peer, req, session, Kind::Poll).await
                    }
                    (Method::POST, "xhr_streaming") => {
                        receive(&app, &sessions, peer, req, session, Kind::Streaming).await
                    }
                    (Method::GET, "eventsource") => {
                        receive(&app, &sessions, peer, req, session, Kind::EventSource).await
                    }
                    (Method::POST, "xhr_send") => send(&app, &sessions, req, &session).await,
                    _ => error_response(404, ErrorCode::NotFound, "no such SockJS transport"),
                }
            }
        }
    };
    let h = response.headers_mut();
    cors_allow(h, origin);
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
    );
    response
}

fn info() -> Response<Body> {
    let body = serde_json::json!({
        "websocket": true,
        "origins": ["*:*"],
        "cookie_needed": false,
        "entropy": rand::random::<u32>(),
    });
    let mut r = Response::new(full(Bytes::from(body.to_string())));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Poll,
    Streaming,
    EventSource,
}

impl Kind {
    fn content_type(self) -> &'static str {
        match self {
            Kind::Poll | Kind::Streaming => "application/javascript; charset=UTF-8",
            Kind::EventSource => "text/event-stream; charset=UTF-8",
        }
    }

    fn wrap(self, frame: &str) -> Bytes {
        match self {
            Kind::Poll | Kind::Streaming => Bytes::from(format!("{frame}\n")),
            Kind::EventSource => Bytes::from(format!("data: {frame}\r\n\r\n")),
        }
    }
}

/// The session for a request, checking the request's token names the session's user; a new
/// one (admitted under the usual limits) when `create` and there is none.
async fn session_for<B>(
    state: &Arc<AppState>,
    sessions: &Arc<Sessions>,
    peer: SocketAddr,
    req: &Request<B>,
    id: &str,
    create: bool,
) -> Result<(Arc<HttpSession>, bool), HttpError> {
    let token =
        token_from(req).ok_or_else(|| HttpError::new(ErrorCode::Unauthorized, "missing token"))?;
    let existing = sessions.map.lock().get(id).cloned();
    if let Some(existing) = existing {
        let who = state
            .auth
            .verify_fresh(&token)
            .await
            .map_err(|e| HttpError::new(ErrorCode::Unauthorized, e.to_string()))?;
        if who.key != existing.conn.identity.key {
            return Err(HttpError::new(
                ErrorCode::Forbidden,
                "this session belongs to another user",
            ));
        }
        return Ok((existing, false));
    }
    if !create {
        return Err(HttpError::new(ErrorCode::NotFound, "no such session"));
    }
    let stomp = speaks(req).map_err(|e| HttpError::new(ErrorCode::BadRequest, e))?;
    let protocol = if stomp {
        Protocol::SockJsStomp
    } else {
        Protocol::SockJsJson
    };
    let (conn, rx, admission) =
        admission::admit(state, &token, Encoding::Json, protocol, peer).await?;
    let (inbox, inbox_rx) = mpsc::channel(INBOX);
    let session = HttpSession::new(conn.clone(), inbox, state.hub.limits().outbound_queue);
    {
        let mut map = sessions.map.lock();
        if map.contains_key(id) {
            // Another request created it meanwhile; this admission is released on drop.
            return Err(HttpError::new(
                ErrorCode::Conflict,
                "session is being created",
            ));
        }
        map.insert(id.to_string(), session.clone());
    }
    let span = tracing::info_span!(
        "conn",
        session = %conn.session_id,
        user = %conn.identity.user,
        peer = %peer,
        proto = if stomp { "sockjs+stomp" } else { "sockjs+lookout.json" },
    );
    let ctx = state.session_context();
    let speaks = if stomp {
        Speaks::Stomp(crate::stomp::parser(&state.hub.limits()), None)
    } else {
        Speaks::Native
    };
    let source = InboxSource {
        rx: inbox_rx,
        session: session.clone(),
    };
    let sink = OutboxSink(session.clone());
    let registry = sessions.clone();
    let shutdown = state.shutdown.clone();
    let id = id.to_string();
    state.tracker.spawn(
        async move {
            tracing::info!("connected");
            sessions::drive(ctx, conn, rx, admission, speaks, source, sink).await;
            tracing::info!("disconnected");
            // Late requests still get the close frame for a moment, then the id is free.
            tokio::select! {
                _ = tokio::time::sleep(CLOSED_LINGER) => {}
                _ = shutdown.cancelled() => {}
            }
            registry.map.lock().remove(&id);
        }
        .instrument(span),
    );
    Ok((session, true))
}

async fn receive(
    state: &Arc<AppState>,
    sessions: &Arc<Sessions>,
    peer: SocketAddr,
    req: Request<Incoming>,
    id: String,
    kind: Kind,
) -> Response<Body> {
    let (session, new) = match session_for(state, sessions, peer, &req, &id, true).await {
        Ok(found) => found,
        Err(refused) => return refused.response(),
    };
    let response = |body: Body| {
        let mut r = Response::new(body);
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(kind.content_type()));
        r
    };
    if kind == Kind::Poll && new {
        return response(full(kind.wrap("o")));
    }
    if session.receiving.swap(true, Ordering::AcqRel) {
        let busy = close_frame(2010, "Another connection still open");
        return response(full(kind.wrap(&busy)));
    }
    session.conn.touch();
    let guard = Receiving(session.clone());
    let heartbeat = state.hub.limits().ping_interval;
    if kind == Kind::Poll {
        let frame = match session.take(heartbeat).await {
            Taken::Messages(a) => a,
            Taken::Closed(c) => c,
            Taken::Idle => "h".to_string(),
        };
        drop(guard);
        return response(full(kind.wrap(&frame)));
    }
    let mut prelude = match kind {
        Kind::Streaming => {
            let mut p = vec![b'h'; 2048];
            p.push(b'\n');
            p
        }
        _ => b"\r\n".to_vec(),
    };
    if new {
        prelude.extend_from_slice(&kind.wrap("o"));
    }
    struct Stream {
        guard: Receiving,
        prelude: Option<Bytes>,
        sent: usize,
        done: bool,
    }
    let stream = futures_util::stream::unfold(
        Stream {
            guard,
            prelude: Some(Bytes::from(prelude)),
            sent: 0,
            done: false,
        },
        move |mut st| async move {
            if let Some(p) = st.prelude.take() {
                return Some((
                    Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(p)),
                    st,
                ));
            }
            if st.done || st.sent >= STREAM_RESPONSE_LIMIT {
                return None;
            }
            let frame = match st.guard.0.take(heartbeat).await {
                Taken::Messages(a) => a,
                Taken::Closed(c) => {
                    st.done = true;
                    c
                }
                Taken::Idle => "h".to_string(),
            };
            st.guard.0.conn.touch();
            let chunk = kind.wrap(&frame);
            st.sent += chunk.len();
            Some((Ok(hyper::body::Frame::data(chunk)), st))
        },
    );
    response(http_body_util::StreamBody::new(stream).boxed())
}

async fn send(
    state: &Arc<AppState>,
    sessions: &Arc<Sessions>,
    req: Request<Incoming>,
    id: &str,
) -> Response<Body> {
    // Never creates a session, so the peer address is not needed.
    let nobody = SocketAddr::from(([0, 0, 0, 0], 0));
    let session = match session_for(state, sessions, nobody, &req, id, false).await {
        Ok((session, _)) => session,
        Err(refused) => return refused.response(),
    };
    // A message may grow by its JSON escapes.
    let limit = state.hub.limits().max_message_size * 2 + 64;
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return error_response(413, ErrorCode::TooLarge, "body too large"),
    };
    let messages = match client_messages(&body) {
        Ok(m) => m,
        Err(e) => {
            let mut r = Response::new(full(Bytes::from_static(e.as_bytes())));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return r;
        }
    };
    session.conn.touch();
    let wait = state.hub.limits().write_timeout;
    for message in messages {
        match tokio::time::timeout(wait, session.inbox.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return error_response(404, ErrorCode::NotFound, "session closed"),
            Err(_) => {
                return error_response(503, ErrorCode::RateLimited, "session is not keeping up")
            }
        }
    }
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    r
}
