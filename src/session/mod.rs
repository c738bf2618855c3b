//! One session: a reader that turns client messages into hub requests, and a writer task that
//! owns the transport's write half and the connection's clocks.
//!
//! Two layers meet here. The transport ([`Source`]/[`Sink`], implemented in
//! `crate::transport`) moves whole messages: a plain WebSocket, or SockJS framing over a
//! WebSocket or over HTTP requests. The wire protocol gives them meaning: [`native`] or
//! [`stomp`], each a reader keeping its [`subscriptions`] the same way. One [`writer`] serves
//! both.
//!
//! The reader never writes to the transport and the hub never waits on it: everything reaches
//! the writer through the connection's single bounded queue, and close requests through
//! `ConnHandle::close` (at once) or `Outbound::Close` (after what is queued). This module
//! knows no sockets, HTTP or TLS.

pub mod context;
pub mod native;
pub mod stomp;
pub mod subscriptions;
pub mod writer;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use self::context::{Flow, SessionContext, Sink, Source, Speaks};
use self::writer::{ConnLimits, Wire, Writer};
use crate::hub::admission::Admission;
use crate::hub::{ConnHandle, Outbound};
use crate::protocol::{close, now_millis, Established};

/// The reader of the protocol a session speaks.
enum Reader {
    Native(native::Reader),
    Stomp(Box<stomp::StompSession>),
}

/// Runs a session on any transport to its end: both halves finished, subscriptions dropped,
/// slot released.
pub async fn drive<Src, Snk>(
    ctx: SessionContext,
    conn: Arc<ConnHandle>,
    rx: mpsc::Receiver<Outbound>,
    admission: Admission,
    speaks: Speaks,
    mut source: Src,
    sink: Snk,
) where
    Src: Source,
    Snk: Sink + 'static,
{
    let limits = ctx.hub.limits().clone();
    let (wire, mut reader) = match speaks {
        Speaks::Native => {
            let established = Established {
                kind: "connection_established",
                user_id: &conn.identity.user,
                session_id: &conn.session_id,
                epoch: ctx.hub.epoch(),
                timestamp: now_millis(),
            };
            match conn.encoding.encode(&established) {
                Ok(bytes) => {
                    let _ = conn.try_send(Outbound::Frame(bytes));
                }
                Err(e) => {
                    conn.close(close::INTERNAL, e.to_string());
                }
            }
            let reader = native::Reader::new(ctx.clone(), conn.clone());
            (Wire::Native, Reader::Native(reader))
        }
        Speaks::Stomp(parser, connect) => {
            let shared = stomp::Shared::new(ctx.hub.epoch(), limits.max_unacked_per_connection);
            let session = stomp::StompSession::new(
                ctx.clone(),
                conn.clone(),
                shared.clone(),
                parser,
                connect,
            );
            (Wire::Stomp(shared), Reader::Stomp(Box::new(session)))
        }
    };

    let reader_done = CancellationToken::new();
    let stop_reader = CancellationToken::new();
    let writer = Writer {
        conn: conn.clone(),
        hub: ctx.hub.clone(),
        wire,
        limits: ConnLimits::from(&*limits),
        shutdown: ctx.shutdown.clone(),
        reader_done: reader_done.clone(),
        stop_reader: stop_reader.clone(),
    };
    let writer = tokio::spawn(writer.run(sink, rx));

    match &mut reader {
        Reader::Native(r) => r.run(&mut source, &stop_reader).await,
        Reader::Stomp(s) => s.run(&mut source, &stop_reader).await,
    }
    reader_done.cancel();
    match &mut reader {
        Reader::Native(r) => r.finish(),
        Reader::Stomp(s) => s.finish(),
    }
    if conn.close_requested().is_none() {
        conn.close(close::NORMAL, "");
    }
    if let Err(e) = writer.await {
        tracing::error!(error = %e, "writer task failed");
    }
    drop(admission);
    tracing::debug!("session ended");
}
