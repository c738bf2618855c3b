//! Socket.IO v5 over Engine.IO v4 at `/socket.io/`: WebSocket, and HTTP long-polling with
//! upgrade, served by `socketioxide` inside our HTTP connections.
//!
//! A client authenticates as Socket.IO apps do: the JWT in its `auth` payload (`io(url, {auth:
//! {token}})`), or `?token=` / `Authorization` on the handshake. A refusal is a `connect_error`
//! whose `message` is the stable error code. Once admitted (the same admission as every
//! transport), the socket is a native session in MessagePack: its events are native requests
//! with acknowledgements for replies ([`bridge`]), so rights, limits, durable logs and seqs are
//! those of every other protocol. Only the default namespace is served.
//!
//! Engine.IO keeps its own sessions between a handshake and the namespace's `CONNECT`: they
//! are bounded by `limits.socketio_handshakes` (one address holding at most
//! `limits.max_pending_per_peer` of them) and each lasts at most `handshake_timeout`.
//! This module does not look inside channels or payloads.

pub mod bridge;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::ORIGIN;
use hyper::{Method, Request, Response};
use parking_lot::Mutex;
use serde::Deserialize;
use socketioxide::extract::{Event, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::service::SocketIoService;
use socketioxide::{ParserConfig, SocketIo};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use self::bridge::{AckId, Acks, Inbound, SioSink, SioSource};
use super::admission::{self, Admitted};
use super::websocket::frame_limit;
use crate::app::AppState;
use crate::counters::Budget;
use crate::failure::ErrorCode;
use crate::http::{cors_allow, cors_preflight, error_response, token_from_parts, Body};
use crate::protocol::{Encoding, Protocol};
use crate::session::{drive, Speaks};

/// Where Socket.IO is served (the clients' default `path`).
pub const PATH: &str = "/socket.io";
/// Binary attachments one event may carry (a video frame is one).
const ATTACHMENTS: usize = 16;
/// Initial read buffer of an Engine.IO WebSocket.
const WS_READ_BUFFER: usize = 1024;
/// Packets Engine.IO queues for one socket before a write has to wait for the client (each
/// holds its own encoding of a frame: with video frames this is the socket's largest cost).
const ENGINE_BUFFER: usize = 32;

/// Whether `path` is Socket.IO's.
pub fn route(path: &str) -> bool {
    path == PATH || path.starts_with("/socket.io/")
}

/// The Socket.IO server: socketioxide's service and the budget of sessions waiting for their
/// `CONNECT`.
pub struct SocketIoServer {
    service: SocketIoService<NotSocketIo>,
    io: SocketIo,
    handshakes: Arc<super::pending::Pending>,
    /// The admitted sockets' sessions.
    sessions: TaskTracker,
}

impl SocketIoServer {
    /// A server admitting into `app`.
    pub fn new(app: Arc<AppState>) -> Self {
        let limits = &app.config.limits;
        let largest = frame_limit(Encoding::MsgPack, limits);
        let (service, io) = SocketIo::builder()
            .req_path(PATH)
            .ping_interval(limits.ping_interval)
            .ping_timeout(
                limits
                    .dead_peer_timeout
                    .saturating_sub(limits.ping_interval)
                    .max(limits.ping_interval),
            )
            .connect_timeout(limits.handshake_timeout)
            .upgrade_timeout(limits.handshake_timeout)
            .max_buffer_size(ENGINE_BUFFER)
            // A polling request carries binary as base64, a third larger.
            .max_payload((largest * 4 / 3 + 4096) as u64)
            .ws_max_message_size(largest + 4096)
            .ws_max_frame_size(largest + 4096)
            // tungstenite's read buffer lives as long as the socket (engineioxide asks 4 KiB);
            // it grows for a large frame, and most frames here are small events.
            .ws_read_buffer_size(WS_READ_BUFFER)
            .with_parser(
                ParserConfig::common()
                    .max_incoming_binaries(ATTACHMENTS)
                    .max_incoming_binary_buf_size(largest)
                    .packet_completion_timeout(limits.handshake_timeout),
            )
            .build_with_inner_svc(NotSocketIo);
        let handshakes = Arc::new(super::pending::Pending::default());
        // Engine.IO's own tasks hold the namespace (and so its handlers) until their
        // connections end: held weakly, the application (its store) is not kept past shutdown.
        let weak = Arc::downgrade(&app);
        let sessions = TaskTracker::new();
        let connect = {
            let app = weak.clone();
            let sessions = sessions.clone();
            move |socket: SocketRef| {
                match app.upgrade() {
                    Some(app) => start(&app, &sessions, socket),
                    None => socket.close_transport(),
                }
                std::future::ready(())
            }
        };
        let authenticate = move |socket: SocketRef, TryData(auth): TryData<AuthPayload>| {
            let app = weak.clone();
            async move {
                let Some(app) = app.upgrade() else {
                    return Err(Refused(ErrorCode::Internal));
                };
                authenticate(&app, socket, auth.ok()).await
            }
        };
        io.ns("/", connect.with(authenticate));
        SocketIoServer {
            service,
            io,
            handshakes,
            sessions,
        }
    }

    /// On shutdown: waits up to `grace` for the admitted sockets' sessions to end (their
    /// writers send each client its `closing` event, then close its transport), then up to
    /// `grace` more for socketioxide to close what is still in the namespace. Engine.IO
    /// sessions that never joined it are not listed anywhere we can reach: they end at their
    /// connect timeout (`handshake_timeout`) or with the process.
    pub async fn close(&self, grace: std::time::Duration) {
        self.sessions.close();
        if tokio::time::timeout(grace, self.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.sessions.len(),
                "Socket.IO sessions still open after the grace period"
            );
        }
        let _ = tokio::time::timeout(grace, self.io.close()).await;
    }
}

/// The service behind socketioxide's, for paths that are not its own: never reached, since
/// only [`route`]'s paths are handed to it.
#[derive(Clone)]
pub struct NotSocketIo;

impl hyper::service::Service<Request<Incoming>> for NotSocketIo {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn call(&self, _: Request<Incoming>) -> Self::Future {
        std::future::ready(Ok(error_response(
            404,
            ErrorCode::NotFound,
            "no such Socket.IO path",
        )))
    }
}

/// The peer of the handshake request, for the admission.
#[derive(Clone, Copy)]
struct Peer(SocketAddr);

/// The peer `socket`'s handshake came from ([`handle`] notes it on every request).
fn peer_of(socket: &SocketRef) -> SocketAddr {
    socket
        .req_parts()
        .extensions
        .get::<Peer>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |p| p.0)
}

/// A place in `limits.socketio_handshakes`, held from the handshake until the namespace's
/// `CONNECT` (or the end of the Engine.IO session, which drops the handshake's request).
#[derive(Clone)]
struct Waiting(Arc<Mutex<Option<super::pending::Place>>>);

/// The admission made by the connect middleware, for the connect handler.
#[derive(Clone)]
struct Slot(Arc<Mutex<Option<Admitted>>>);

/// The client's `auth` payload.
#[derive(Deserialize)]
struct AuthPayload {
    token: Option<String>,
}

/// Serves one Socket.IO request.
pub async fn handle(
    server: &SocketIoServer,
    app: &AppState,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<Body> {
    if !admission::origin_allowed(&app.origins.load(), &req) {
        return error_response(403, ErrorCode::Forbidden, "origin not allowed");
    }
    let origin = req.headers().get(ORIGIN).cloned();
    let mut response = if req.method() == Method::OPTIONS {
        cors_preflight()
    } else {
        let opens_session = !names_session(&req);
        if opens_session {
            let limits = app.hub.limits();
            let Some(place) = server.handshakes.take(
                peer.ip(),
                limits.socketio_handshakes,
                limits.max_pending_per_peer,
            ) else {
                app.hub.stats.refused(Budget::SocketIoHandshakes);
                return error_response(
                    503,
                    ErrorCode::RateLimited,
                    "too many Socket.IO handshakes waiting for their CONNECT (limits.socketio_handshakes, limits.max_pending_per_peer)",
                );
            };
            req.extensions_mut()
                .insert(Waiting(Arc::new(Mutex::new(Some(place)))));
        }
        req.extensions_mut().insert(Peer(peer));
        let Ok(response) = hyper::service::Service::call(&server.service, req).await;
        response.map(BodyExt::boxed)
    };
    let h = response.headers_mut();
    cors_allow(h, origin);
    response
}

/// Whether the request names an Engine.IO session, read exactly as engineioxide reads it (a
/// raw `sid=` part): any other reading would let a request open a session uncounted.
fn names_session<B>(req: &Request<B>) -> bool {
    req.uri()
        .query()
        .is_some_and(|q| q.split('&').any(|part| part.starts_with("sid=")))
}

/// Why a `CONNECT` was refused: its `Display` is all the client sees (`connect_error`'s
/// `message`), so it is the stable code alone.
struct Refused(ErrorCode);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// The connect middleware: the token from `auth`, else from the handshake; then the admission
/// every transport goes through.
async fn authenticate(
    app: &AppState,
    socket: SocketRef,
    auth: Option<AuthPayload>,
) -> Result<(), Refused> {
    let parts = socket.req_parts();
    let peer = peer_of(&socket);
    let token = auth
        .and_then(|a| a.token)
        .filter(|t| !t.is_empty())
        .or_else(|| token_from_parts(&parts.headers, &parts.uri));
    let Some(token) = token else {
        app.hub.stats.auth_failed();
        tracing::debug!(%peer, "Socket.IO connection refused: no token");
        return Err(Refused(ErrorCode::Unauthorized));
    };
    match admission::admit(app, &token, Encoding::MsgPack, Protocol::SocketIo, peer).await {
        Ok(admitted) => {
            // Admitted: its place among the sessions waiting for a CONNECT is free. A refused
            // CONNECT keeps it until the session ends (at the latest after handshake_timeout),
            // so that retrying CONNECTs cannot hold more sessions than the budget.
            if let Some(Waiting(place)) = parts.extensions.get::<Waiting>() {
                place.lock().take();
            }
            socket
                .extensions
                .insert(Slot(Arc::new(Mutex::new(Some(admitted)))));
            Ok(())
        }
        Err(refused) => {
            tracing::debug!(%peer, code = refused.0.code.as_str(), message = %refused.0.message,
                "Socket.IO connection refused");
            Err(Refused(refused.0.code))
        }
    }
}

/// The connect handler: the admitted socket becomes a native session. It runs synchronously,
/// before socketioxide reads the socket's next packet, so no event can arrive before its
/// handler is in place; the handler queues events in order for the session's reader (an
/// `async` handler would be spawned, one task per event, and could reorder them).
fn start(app: &AppState, sessions: &TaskTracker, socket: SocketRef) {
    let admitted = socket
        .extensions
        .remove::<Slot>()
        .and_then(|Slot(slot)| slot.lock().take());
    let Some((conn, rx, admission)) = admitted else {
        tracing::error!("a Socket.IO socket connected without an admission");
        let _ = socket.disconnect();
        return;
    };
    let peer = peer_of(&socket);
    let (inbox, inbox_rx) = mpsc::channel(bridge::INBOX);
    let gone = CancellationToken::new();
    let acks = Arc::new(Mutex::new(Acks::default()));
    // Weak: the handler lives as long as the socket, which must not keep the hub (and its
    // store) alive past shutdown.
    let hub = Arc::downgrade(&app.hub);
    socket.on_fallback(
        move |socket: SocketRef,
              Event(event): Event,
              TryData(data): TryData<rmpv::Value>,
              AckId(ack): AckId| {
            let inbound = Inbound {
                event,
                data: data.map_err(|e| e.to_string()),
                ack,
            };
            if let Some(hub) = hub.upgrade() {
                bridge::forward(&socket, &inbox, &hub.stats, inbound);
            }
            std::future::ready(())
        },
    );
    {
        let gone = gone.clone();
        socket.on_disconnect(move || {
            gone.cancel();
            std::future::ready(())
        });
    }
    if !socket.connected() {
        // Gone before the handler was in place.
        gone.cancel();
    }
    let span = tracing::info_span!(
        "conn",
        session = %conn.session_id,
        user = %conn.identity.user,
        peer = %peer,
        proto = "socket.io",
        transport = ?socket.transport_type(),
    );
    let source = SioSource {
        inbox: inbox_rx,
        gone,
        acks: acks.clone(),
        socket: socket.clone(),
    };
    let sink = SioSink {
        socket: socket.clone(),
        acks,
        conn: conn.clone(),
    };
    let ctx = app.session_context();
    let session = async move {
        tracing::info!("connected");
        drive(ctx, conn, rx, admission, Speaks::Native, source, sink).await;
        // However the session ended (a broken write closes nothing), its Engine.IO
        // connection does not outlive it.
        socket.close_transport();
        tracing::info!("disconnected");
    };
    app.tracker
        .spawn(sessions.track_future(session.instrument(span)));
}
