//! What a session is given: the server's services ([`SessionContext`]), the two halves of its
//! transport ([`Source`], [`Sink`]) and the protocol it speaks ([`Speaks`]). Types only; the
//! readers and the writer that use them live beside this file.

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::hub::{ConnHandle, Hub};
use crate::stomp::frame::{Frame, Parser};

/// What a session needs from the server.
#[derive(Clone)]
pub struct SessionContext {
    /// The hub.
    pub hub: Arc<Hub>,
    /// Field operations: every publish goes through it.
    pub field: Arc<crate::field::Field>,
    /// Where guards' plain location fixes go (in front of `field`).
    pub positions: Arc<super::positions::Positions>,
    /// Token verification, for `refresh` and STOMP `CONNECT`.
    pub auth: Arc<Authenticator>,
    /// Fires once on server shutdown.
    pub shutdown: CancellationToken,
}

/// The application protocol a connection speaks.
pub enum Speaks {
    /// The native protocol, in the connection's encoding.
    Native,
    /// STOMP; with the `CONNECT` frame and parser state when the frame was read before
    /// admission (its token authenticated the connection).
    Stomp(Parser, Option<Frame>),
}

/// A transport's read half: whole client messages, text or binary.
pub trait Source: Send {
    /// The next message (`true` = text), or `None` when the peer is gone or the transport
    /// asked for a close (through the connection handle).
    fn next(&mut self, conn: &ConnHandle) -> impl Future<Output = Option<(bool, Vec<u8>)>> + Send;
}

/// A transport's write half.
pub trait Sink: Send {
    /// What the transport sends before anything else (SockJS over a WebSocket: its `o`
    /// frame); the writer calls it first.
    fn open(&mut self) -> impl Future<Output = std::io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }
    /// One server message (`text` = a text frame where the transport distinguishes).
    fn send(
        &mut self,
        text: bool,
        bytes: &[u8],
    ) -> impl Future<Output = std::io::Result<()>> + Send;
    /// The transport's keep-alive (WebSocket ping, SockJS `h`).
    fn keepalive(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;
    /// Answers the peer's WebSocket ping.
    fn pong(&mut self, payload: &[u8]) -> impl Future<Output = std::io::Result<()>> + Send;
    /// Sends what the writes before it left gathered; the writer calls it when it has
    /// nothing more queued.
    fn flush(&mut self) -> impl Future<Output = std::io::Result<()>> + Send;
    /// The transport's close, with a code and reason.
    fn close(
        &mut self,
        code: u16,
        reason: &str,
    ) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// Whether a reader goes on after a message.
pub enum Flow {
    /// Read the next message.
    Continue,
    /// The connection is over.
    Stop,
}

/// The next client message, or `None` once the peer is gone or the writer stopped the reader.
/// fastwebsockets' `read_frame` is not cancel-safe, so the reader is only ever interrupted
/// here, when the connection ends anyway.
pub async fn next_message<S: Source>(
    source: &mut S,
    conn: &ConnHandle,
    stop: &CancellationToken,
) -> Option<(bool, Vec<u8>)> {
    tokio::select! {
        biased;
        _ = stop.cancelled() => None,
        message = source.next(conn) => message,
    }
}
