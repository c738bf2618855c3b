//! One SockJS session over HTTP requests: what its writer queued for the receiving requests,
//! what `xhr_send` delivered to its reader, and the registry of sessions by id. The session's
//! [`Sink`] and [`Source`] are the two ends the session's writer and reader see.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};

use crate::hub::ConnHandle;
use crate::session::{Sink, Source};
use crate::transport::framing::{close_frame, literal};

/// Sessions of the HTTP transports, by session id.
#[derive(Default)]
pub struct Sessions {
    pub(super) map: Mutex<HashMap<String, Arc<HttpSession>>>,
}

/// One SockJS session over HTTP requests.
pub struct HttpSession {
    pub(super) conn: Arc<ConnHandle>,
    pub(super) inbox: mpsc::Sender<Vec<u8>>,
    out: Mutex<Out>,
    changed: Notify,
    pub(super) receiving: AtomicBool,
    capacity: usize,
}

#[derive(Default)]
struct Out {
    /// Messages as JSON string literals, waiting for a receiving request.
    frames: VecDeque<String>,
    /// The `c[…]` frame once the session is closed.
    closed: Option<String>,
}

pub(super) enum Taken {
    Messages(String),
    Closed(String),
    Idle,
}

impl HttpSession {
    /// A session of `conn` whose writer may queue `capacity` messages for receiving requests.
    pub(super) fn new(
        conn: Arc<ConnHandle>,
        inbox: mpsc::Sender<Vec<u8>>,
        capacity: usize,
    ) -> Arc<Self> {
        Arc::new(HttpSession {
            conn,
            inbox,
            out: Mutex::new(Out::default()),
            changed: Notify::new(),
            receiving: AtomicBool::new(false),
            capacity,
        })
    }

    /// Waits up to `wait` for messages (all of them, as one `a[…]` frame) or the close frame.
    pub(super) async fn take(&self, wait: Duration) -> Taken {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut out = self.out.lock();
                if !out.frames.is_empty() {
                    let joined: Vec<String> = out.frames.drain(..).collect();
                    drop(out);
                    self.changed.notify_waiters();
                    return Taken::Messages(format!("a[{}]", joined.join(",")));
                }
                if let Some(c) = &out.closed {
                    return Taken::Closed(c.clone());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Taken::Idle;
            }
        }
    }

    async fn closed(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.out.lock().closed.is_some() {
                return;
            }
            notified.await;
        }
    }
}

/// Marks the session as having a receiving request until dropped.
pub(super) struct Receiving(pub(super) Arc<HttpSession>);

impl Drop for Receiving {
    fn drop(&mut self) {
        self.0.conn.touch();
        self.0.receiving.store(false, Ordering::Release);
    }
}

/// The writer side of an HTTP session: queues for the receiving requests.
pub(super) struct OutboxSink(pub(super) Arc<HttpSession>);

impl Sink for OutboxSink {
    async fn send(&mut self, _text: bool, bytes: &[u8]) -> std::io::Result<()> {
        let literal = literal(bytes)?;
        loop {
            let notified = self.0.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut out = self.0.out.lock();
                if out.frames.len() < self.0.capacity {
                    out.frames.push_back(literal);
                    drop(out);
                    self.0.changed.notify_waiters();
                    return Ok(());
                }
            }
            // Full: wait for a receiving request (the writer's write_timeout bounds this).
            notified.await;
        }
    }

    async fn keepalive(&mut self) -> std::io::Result<()> {
        // Receiving requests send `h` themselves when they have nothing else.
        Ok(())
    }

    async fn pong(&mut self, _payload: &[u8]) -> std::io::Result<()> {
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        // Receiving requests take what is queued as they come.
        Ok(())
    }

    async fn close(&mut self, code: u16, reason: &str) -> std::io::Result<()> {
        self.0.out.lock().closed = Some(close_frame(code, reason));
        self.0.changed.notify_waiters();
        Ok(())
    }
}

/// The reader side of an HTTP session: what `xhr_send` delivered.
pub(super) struct InboxSource {
    pub(super) rx: mpsc::Receiver<Vec<u8>>,
    pub(super) session: Arc<HttpSession>,
}

impl Source for InboxSource {
    async fn next(&mut self, _conn: &ConnHandle) -> Option<(bool, Vec<u8>)> {
        tokio::select! {
            message = self.rx.recv() => message.map(|m| (true, m)),
            _ = self.session.closed() => None,
        }
    }
}
