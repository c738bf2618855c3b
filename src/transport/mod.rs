//! Transport: TCP accept loop, TLS, HTTP/1.1 (hyper) and routing to the WebSocket upgrade,
//! SockJS, the dashboard's files, the local CA's certificate or the REST API; and the adapters
//! that make a WebSocket or SockJS requests a session's source and sink.
//!
//! - [`tls`]: the certificate, configured or issued by the appliance's own CA;
//! - [`tls_stream`]: TLS over a socket with buffers of our own, none held while idle;
//! - [`ca_scope`]: the names that CA may vouch for (its name constraints);
//! - [`trust`]: `/ca.crt` and `/trust`, for phones to trust that CA;
//! - [`coalesce`]: frames written together leave in one TLS record and one syscall;
//! - [`framing`]: SockJS's frames as bytes, for the WebSocket adapter and the HTTP transports;
//! - [`progress`]: the socket notes when the peer made room for a waiting write;
//! - [`admission`]: the origin check and the admission every transport shares;
//! - [`upgrade`]: what is settled before the first WebSocket frame (origin, subprotocol,
//!   token, admission);
//! - [`websocket`]: a WebSocket as a session's transport (plain or SockJS framing);
//! - [`sockjs`]: SockJS's paths and its HTTP transports;
//! - [`socketio`]: Socket.IO clients (WebSocket and long-polling) as native sessions;
//! - [`pending`]: the budget of connections before their first request;
//! - [`gateway`]: what the transport holds beyond the application's state.
//!
//! This layer owns sockets up to the session; it knows nothing of channels or rights.

pub mod admission;
pub mod ca_scope;
pub mod coalesce;
pub mod framing;
pub mod gateway;
pub mod pending;
pub mod progress;
pub mod socketio;
pub mod sockjs;
pub mod tls;
pub mod tls_stream;
pub mod trust;
pub mod upgrade;
pub mod websocket;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

pub use self::gateway::Gateway;
use self::upgrade::WS_PATHS;
use self::websocket::Framing;
use crate::http::Body;

/// Connections the kernel completes before we accept them. tokio's default (1,024) overflowed
/// when 19,000 clients reconnected at once, and a dropped SYN comes back only after the
/// client's 1 s, 3 s, 7 s retransmits. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`].
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // As tokio's own bind: a restarted server takes its port back while old sockets linger.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Accepts connections until shutdown; each is served on its own task tracked by the server.
pub async fn accept_loop(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<Arc<arc_swap::ArcSwap<rustls::ServerConfig>>>,
) {
    let shutdown = gateway.app.shutdown.clone();
    // Sessions and HTTP run on the async workers; TLS handshakes on the handshake lane.
    let workers = tokio::runtime::Handle::current();
    loop {
        // The limits in force for this connection (a reload applies from the next one).
        let limits = gateway.app.hub.limits();
        // At the bound of connections before their first request, the next ones wait in the
        // listen backlog until a place comes back.
        let waited = tokio::select! {
            _ = shutdown.cancelled() => return,
            waited = gateway.pending.room(limits.max_pending_connections) => waited,
        };
        if waited {
            gateway
                .app
                .hub
                .stats
                .accept_waits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning on a full fd table.
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Before anything else is spent on it: the connection's place before its first
        // request, or (its address holding its share) it is closed now (counted; the peer sees
        // a reset).
        let Some(place) = gateway.pending.take(
            peer.ip(),
            limits.max_pending_connections,
            limits.max_pending_per_peer,
        ) else {
            gateway
                .app
                .hub
                .stats
                .refused(crate::counters::Budget::PendingPerPeer);
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        // Unsent bytes beyond this wait in the connection's lanes, not in the kernel: a PANIC
        // must not queue behind megabytes of positions in a socket buffer.
        let unsent = limits.unsent_bytes;
        if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_notsent_lowat(unsent) {
            tracing::debug!(%peer, error = %e, "cannot bound unsent bytes");
        }
        let (tcp, drained) = progress::Watched::new(tcp);
        let gateway = gateway.clone();
        let tracker = gateway.app.tracker.clone();
        let Some(tls) = &tls else {
            tracker.spawn(serve_http(gateway, peer, tcp, false, drained, place));
            continue;
        };
        // The configuration current now: a reload changes it for new connections.
        let config = tls.load_full();
        let handshake = limits.handshake_timeout;
        let workers = workers.clone();
        let lane = gateway.app.lanes.handshakes.handle().clone();
        // The socket stays registered with the workers' reactor; only the handshake's steps run
        // on the lane, and the connection is served on the workers once it is secure.
        lane.spawn(tracker.clone().track_future(async move {
            match tokio::time::timeout(handshake, tls_stream::accept(config, tcp)).await {
                Ok(Ok(stream)) => {
                    workers.spawn(
                        tracker
                            .track_future(serve_http(gateway, peer, stream, true, drained, place)),
                    );
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }));
    }
}

async fn serve_http<S>(
    gateway: Arc<Gateway>,
    peer: SocketAddr,
    stream: S,
    secure: bool,
    drained: progress::Drained,
    place: pending::Place,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_gateway = gateway.clone();
    // Given back when the first request's headers are in (or with the connection).
    let place = std::sync::Mutex::new(place);
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        if let Ok(mut place) = place.lock() {
            place.release();
        }
        // An upgraded connection's session watches its socket through this.
        req.extensions_mut().insert(drained.clone());
        let gateway = service_gateway.clone();
        async move { Ok::<_, Infallible>(route(gateway, peer, secure, req).await) }
    });
    let limits = gateway.app.hub.limits();
    // Without a timer hyper silently ignores header_read_timeout (slowloris).
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        }
        _ = gateway.app.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.shutdown_grace, conn).await;
        }
    }
}

/// The conformance suites' echo WebSocket, served only with `testing.echo_endpoint`.
pub const ECHO: &str = "/echo";

/// Every route the server answers, as the documentation writes them, drawn from the lists
/// [`route`] dispatches on: `METHOD /path` for the REST API (`{name}` is one segment), the
/// path alone for the rest, which answer their own methods — the WebSocket paths, SockJS
/// under the first of them (`{server}/{session}/{transport}`, and the same under every other),
/// Socket.IO, the echo endpoint, the pages and the local CA's paths.
pub fn routes() -> Vec<String> {
    let mut out: Vec<String> = WS_PATHS.iter().map(|p| p.to_string()).collect();
    out.push(format!("{}/info", WS_PATHS[0]));
    for transport in sockjs::TRANSPORTS {
        out.push(format!(
            "{}/{{server}}/{{session}}/{transport}",
            WS_PATHS[0]
        ));
    }
    out.push(format!("{}/", socketio::PATH));
    out.push(ECHO.to_string());
    out.extend(crate::dashboard::PAGES.iter().map(|p| p.to_string()));
    out.extend(trust::PATHS.iter().map(|p| p.to_string()));
    out.extend(
        crate::api::ROUTES
            .iter()
            .map(|r| format!("{} {}", r.method, r.path)),
    );
    out
}

async fn route(
    gateway: Arc<Gateway>,
    peer: SocketAddr,
    secure: bool,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path();
    if WS_PATHS.contains(&path) {
        return upgrade::handle(gateway.app.clone(), peer, secure, req, Framing::Plain).await;
    }
    if sockjs::route(path).is_some() {
        return sockjs::handle(
            gateway.app.clone(),
            gateway.sockjs.clone(),
            peer,
            secure,
            req,
        )
        .await;
    }
    if socketio::route(path) {
        return socketio::handle(&gateway.socketio, &gateway.app, peer, req).await;
    }
    if path == ECHO && gateway.app.config.testing.echo_endpoint {
        return upgrade::echo(gateway.app.clone(), peer, req).await;
    }
    if let Some(response) = crate::dashboard::serve(&req) {
        return response;
    }
    if let Some(response) = trust::serve(&gateway.app, &req).await {
        return response;
    }
    crate::api::handle(gateway.app.clone(), peer, req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_websocket_sockjs_and_socketio_path_is_routed_to_its_transport() {
        let routes = routes();
        for path in routes.iter().filter(|r| r.starts_with('/')) {
            let concrete = path.replace("{server}", "000").replace("{session}", "abc");
            let transport = WS_PATHS.contains(&concrete.as_str())
                || sockjs::route(&concrete).is_some()
                || socketio::route(&concrete);
            let elsewhere = concrete == ECHO
                || crate::dashboard::PAGES.contains(&concrete.as_str())
                || trust::PATHS.contains(&concrete.as_str());
            assert!(
                transport != elsewhere,
                "{path} is routed once: {transport} {elsewhere}"
            );
        }
        assert!(
            sockjs::route("/ws/000/abc/nosuch").is_none(),
            "an unknown transport is no route"
        );
        assert!(routes.contains(&"POST /api/v1/alerts/{id}/ack".to_string()));
    }
}
