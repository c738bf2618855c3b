//! One session: a reader that turns client messages into hub requests, and a writer task that
//! owns the transport's write half and the connection's clocks.
//!
//! Two layers meet here. The transport ([`Source`]/[`Sink`], implemented in
//! `crate::transport`) moves whole messages: a plain WebSocket, or SockJS framing over a
//! WebSocket or over HTTP requests. The wire protocol gives them meaning: [`native`] or
//! [`stomp`], each a reader keeping its [`subscriptions`] the same way. One [`writer`] serves
//! both. A native reader hands guards' plain location fixes to the server-wide [`positions`]
//! pipeline instead of processing them itself, so it reads on (an emergency behind them
//! included); [`reply`] is what a publish is answered, by either.
//!
//! The reader never writes to the transport and the hub never waits on it: everything reaches
//! the writer through the connection's single bounded queue, and close requests through
//! `ConnHandle::close` (at once) or `Outbound::Close` (after what is queued). This module
//! knows no sockets, HTTP or TLS.

pub mod autoack;
pub mod context;
pub mod native;
pub mod pipeline;
pub mod positions;
pub mod reply;
pub mod stomp;
pub mod subscriptions;
pub mod writer;

use std::sync::Arc;

// The read-ahead queue is futures' bounded channel: it allocates per message instead of
// holding tokio's 32-slot block (1.4 KiB here) for every idle connection.
use futures_channel::mpsc as ahead;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::context::next_message;
pub use self::context::{SessionContext, Sink, Source, Speaks};
use self::writer::{ConnLimits, Wire, Writer};
use crate::clock::now_millis;
use crate::hub::admission::Admission;
use crate::hub::{ConnHandle, Outbound};
use crate::protocol::{close, Established};

/// Client messages read ahead of the reader. The transport goes on being read (pongs, the
/// dead-peer clock) while the reader waits on the hub, e.g. through a long replay; a client
/// that sends more than this meanwhile waits for the reader.
const READ_AHEAD: usize = 16;

/// A whole client message: whether it is text, and its bytes.
type Message = (bool, Vec<u8>);

/// Reads the transport into the read-ahead queue until the peer is gone, the reader stopped
/// taking messages, or the writer ended the connection.
async fn pump<S: Source>(
    mut source: S,
    conn: Arc<ConnHandle>,
    stop: CancellationToken,
    mut ahead: ahead::Sender<Message>,
) {
    while let Some(message) = next_message(&mut source, &conn, &stop).await {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            sent = ahead.send(message) => if sent.is_err() { return },
        }
    }
}

/// The reader's side of the read-ahead queue.
struct ReadAhead(ahead::Receiver<Message>);

impl Source for ReadAhead {
    async fn next(&mut self, _conn: &ConnHandle) -> Option<Message> {
        self.0.next().await
    }
}

/// The reader of the protocol a session speaks.
enum Reader {
    Native(native::Reader),
    Stomp(Box<stomp::StompSession>),
}

/// Runs a session on any transport to its end: both halves finished, subscriptions dropped,
/// slot released.
///
/// The writer and the transport's pump are spawned when this is called; the future returned
/// holds only what the reader needs. It is kept small on purpose: it lives as long as the
/// connection, and every idle connection pays for its largest state (a setup's locals kept
/// inside it would be paid for life).
pub fn drive<Src, Snk>(
    ctx: SessionContext,
    conn: Arc<ConnHandle>,
    rx: mpsc::Receiver<Outbound>,
    admission: Admission,
    speaks: Speaks,
    source: Src,
    sink: Snk,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    Src: Source + 'static,
    Snk: Sink + 'static,
{
    let limits = ctx.hub.limits().clone();
    let (wire, reader) = match speaks {
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
                    let _ = conn.try_send(Outbound::frame(bytes));
                }
                Err(e) => {
                    conn.close(close::INTERNAL, e.to_string());
                }
            }
            ctx.hub.tell_viewers(&conn);
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
        auto_acks: Default::default(),
    };
    let writer = tokio::spawn(writer.run(sink, rx));

    let (ahead, behind) = ahead::channel(READ_AHEAD);
    let pump = tokio::spawn(pump(source, conn.clone(), stop_reader.clone(), ahead));
    let mut source = ReadAhead(behind);
    let mut reader = reader;
    async move {
        match &mut reader {
            Reader::Native(r) => r.run(&mut source, &stop_reader).await,
            Reader::Stomp(s) => s.run(&mut source, &stop_reader).await,
        }
        // The pump ends with the connection: the peer's close, or the writer's stop.
        drop(source);
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
        if let Err(e) = pump.await {
            tracing::error!(error = %e, "reader pump failed");
        }
        drop(admission);
        tracing::debug!("session ended");
    }
}
