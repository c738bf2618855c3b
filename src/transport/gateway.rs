//! What the transport holds beyond the application's state: the SockJS sessions that live
//! across HTTP requests, the Socket.IO server and the connections before their first request.
//! It sits above the transports it holds; none of them names it.

use std::sync::Arc;

use super::socketio;
use super::sockjs::session::Sessions;
use crate::app::AppState;

/// The transport's view of the server: the application and the SockJS sessions.
pub struct Gateway {
    /// The application's shared state.
    pub app: Arc<AppState>,
    /// SockJS sessions over HTTP requests, by session id.
    pub sockjs: Arc<Sessions>,
    /// Socket.IO's Engine.IO sessions and namespace.
    pub socketio: socketio::SocketIoServer,
    /// Connections before their first request.
    pub pending: Arc<super::pending::Pending>,
}

impl Gateway {
    /// A gateway in front of `app`.
    pub fn new(app: Arc<AppState>) -> Arc<Self> {
        Arc::new(Gateway {
            socketio: socketio::SocketIoServer::new(app.clone()),
            app,
            sockjs: Arc::default(),
            pending: Arc::default(),
        })
    }
}
