//! Transport: TCP accept loop, TLS, HTTP/1.1 (hyper) and routing to the WebSocket upgrade or
//! the REST API.
//!
//! This layer owns sockets up to the upgrade; it knows nothing of channels or rights beyond
//! handing requests to [`upgrade`] and [`crate::api`].

pub mod sockjs;
pub mod tls;
pub mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::server::AppState;

/// The body type of every response Lookout sends: whole bodies, or a stream (SSE).
pub type Body = BoxBody<Bytes, Infallible>;

/// A whole body.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).boxed()
}

/// Paths that accept a WebSocket upgrade.
pub const WS_PATHS: [&str; 4] = ["/ws", "/api/ws", "/ws/job-status", "/ws/upload-progress"];

/// Accepts connections until shutdown; each is served on its own task tracked by the server.
pub async fn accept_loop(
    state: Arc<AppState>,
    listener: TcpListener,
    tls: Option<Arc<arc_swap::ArcSwap<rustls::ServerConfig>>>,
) {
    let shutdown = state.shutdown.clone();
    loop {
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
        let _ = tcp.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        state.tracker.clone().spawn(async move {
            let handshake = state.config.limits.handshake_timeout;
            match tls {
                Some(config) => {
                    // The configuration current now: a reload changes it for new connections.
                    let acceptor = TlsAcceptor::from(config.load_full());
                    match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_http(state, peer, stream, true).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => serve_http(state, peer, tcp, false).await,
            }
        });
    }
}

async fn serve_http<S>(state: Arc<AppState>, peer: SocketAddr, stream: S, secure: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_state = state.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let state = service_state.clone();
        async move { Ok::<_, Infallible>(route(state, peer, secure, req).await) }
    });
    // Without a timer hyper silently ignores header_read_timeout (slowloris).
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.limits.handshake_timeout)
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
        _ = state.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(state.config.limits.shutdown_grace, conn).await;
        }
    }
}

async fn route(
    state: Arc<AppState>,
    peer: SocketAddr,
    secure: bool,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path();
    if WS_PATHS.contains(&path) {
        return upgrade::handle(state, peer, secure, req, crate::session::Framing::Plain).await;
    }
    if sockjs::route(path).is_some() {
        return sockjs::handle(state, peer, secure, req).await;
    }
    if let Some(response) = crate::dashboard::serve(&req) {
        return response;
    }
    crate::api::handle(state, req).await
}
