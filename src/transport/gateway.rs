//! What the transport holds beyond the application's state: the paths it serves WebSockets
//! on, the SockJS sessions that live across HTTP requests and the Socket.IO server.

use std::sync::Arc;

use super::socketio;
use super::sockjs::session::Sessions;
use crate::app::AppState;

/// Paths that accept a WebSocket upgrade (and carry SockJS under them).
pub const WS_PATHS: [&str; 5] = [
    "/ws",
    "/api/ws",
    "/ws/job-status",
    "/ws/job-status-native",
    "/ws/upload-progress",
];

/// The transport's view of the server: the application and the SockJS sessions.
pub struct Gateway {
    /// The application's shared state.
    pub app: Arc<AppState>,
    /// SockJS sessions over HTTP requests, by session id.
    pub sockjs: Sessions,
    /// Socket.IO's Engine.IO sessions and namespace.
    pub socketio: socketio::Server,
    /// Connections before their first request.
    pub pending: Arc<super::pending::Pending>,
}

impl Gateway {
    /// A gateway in front of `app`.
    pub fn new(app: Arc<AppState>) -> Arc<Self> {
        Arc::new(Gateway {
            socketio: socketio::Server::new(app.clone()),
            app,
            sockjs: Sessions::default(),
            pending: Arc::default(),
        })
    }
}
