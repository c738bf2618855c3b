//! The two ends a Socket.IO socket gives a native session: events in ([`SioSource`]) and
//! events and acknowledgements out ([`SioSink`]).
//!
//! An event `subscribe` `{channel, …}` becomes the native message `{type: "subscribe",
//! channel, …}` in MessagePack (so that binary attachments stay binary), with a request id of
//! our own when the client asked for an acknowledgement. The native reply or error carrying that
//! id comes back through the sink and answers the acknowledgement; every other server message
//! is emitted as an event named after its `type`. Validation, limits, rights and durability are
//! the native reader's: nothing here looks inside a channel or a payload.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rmpv::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;
use socketioxide::{SendError, SocketError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::counters::Stats;
use crate::failure::ErrorCode;
use crate::hub::ConnHandle;
use crate::session::{Sink, Source};

/// Events that may wait for the session's reader (as a WebSocket's read-ahead); beyond them an
/// event is refused, Socket.IO having no way to make its client wait.
pub const INBOX: usize = 16;
/// Acknowledgements awaiting their native reply. Every native request is answered, so this
/// only fills when a client sends faster than its replies leave; beyond it the event is refused.
pub const PENDING_ACKS: usize = 1024;
/// Longest pause between two attempts to queue a packet on a full Engine.IO buffer (the
/// writer's `write_timeout` bounds the whole wait).
const FULL_BUFFER_RETRY: Duration = Duration::from_millis(50);

/// One event from the client, as its handler received it.
pub struct Inbound {
    /// The event name: the native message type.
    pub event: String,
    /// Its first argument, or why it could not be read.
    pub data: Result<Value, String>,
    /// The client's acknowledgement id, if it asked for one.
    pub ack: Option<i64>,
}

/// The client's acknowledgement id, if it asked for one (socketioxide's own `AckSender` is
/// spent by one attempt; the patched `Socket::ack` answers by id and can be retried).
pub struct AckId(pub Option<i64>);

impl<A: Adapter> FromMessageParts<A> for AckId {
    type Error = Infallible;

    fn from_message_parts(
        _: &Arc<Socket<A>>,
        _: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(AckId(*ack_id))
    }
}

/// Acknowledgements awaiting their native reply: the client's id by the request id given to
/// the native reader.
#[derive(Default)]
pub struct Acks {
    next: u64,
    waiting: HashMap<u64, i64>,
}

/// The acknowledgement body of a refusal: `{ok: false, error: {code, message}}`.
pub fn refusal(code: ErrorCode, message: &str) -> Value {
    Value::Map(vec![
        ("ok".into(), false.into()),
        (
            "error".into(),
            Value::Map(vec![
                ("code".into(), code.as_str().into()),
                ("message".into(), message.into()),
            ]),
        ),
    ])
}

/// Queues one event for the session's reader; called by the socket's event handler, in the
/// order the events arrived. A full inbox refuses the event: through its acknowledgement, or
/// an `error` event when it asked for none (counted as rate limited). A client that floods
/// faster than even its refusals can be queued is disconnected: no event is dropped unseen.
pub fn forward(
    socket: &SocketRef,
    inbox: &mpsc::Sender<Box<Inbound>>,
    stats: &Stats,
    inbound: Inbound,
) {
    // Boxed: the channel's first block of slots is allocated with it, for every connection.
    match inbox.try_send(Box::new(inbound)) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(refused)) => {
            stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            let body = refusal(ErrorCode::RateLimited, "too many events waiting; slow down");
            let told = match refused.ack {
                Some(id) => socket.ack(id, &body),
                None => socket.emit("error", &body),
            };
            if told.is_err() {
                tracing::info!("Socket.IO client floods faster than it reads; disconnecting it");
                socket.close_transport();
            }
        }
        // The session is over; the socket is being disconnected.
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

/// The session's read half: events as native MessagePack messages.
pub struct SioSource {
    /// Events from the socket's handler.
    pub inbox: mpsc::Receiver<Box<Inbound>>,
    /// Fires when the socket disconnects.
    pub gone: CancellationToken,
    /// Shared with the sink.
    pub acks: Arc<Mutex<Acks>>,
    /// For refusals the reader never sees.
    pub socket: SocketRef,
}

impl Source for SioSource {
    async fn next(&mut self, conn: &ConnHandle) -> Option<(bool, Vec<u8>)> {
        loop {
            let inbound = tokio::select! {
                // Events that arrived before the disconnect are read first, as a WebSocket's
                // frames before its close.
                biased;
                inbound = self.inbox.recv() => inbound?,
                _ = self.gone.cancelled() => return None,
            };
            conn.touch();
            match native_message(&self.acks, *inbound) {
                Ok(bytes) => return Some((false, bytes)),
                Err((ack, refused)) => {
                    if let Some(id) = ack {
                        let _ = self.socket.ack(id, &refused);
                    }
                }
            }
        }
    }
}

/// The native message for an event, or the refusal to acknowledge it with.
fn native_message(acks: &Mutex<Acks>, inbound: Inbound) -> Result<Vec<u8>, (Option<i64>, Value)> {
    let Inbound { event, data, ack } = inbound;
    let mut entries = match data {
        Ok(Value::Map(entries)) => entries,
        Ok(_) => {
            let why = format!("`{event}` takes an object");
            return Err((ack, refusal(ErrorCode::BadRequest, &why)));
        }
        Err(e) => return Err((ack, refusal(ErrorCode::BadRequest, &e))),
    };
    // The event names the message; the id is ours, so that replies find their acknowledgement.
    entries.retain(|(k, _)| !matches!(k.as_str(), Some("type" | "id")));
    entries.push(("type".into(), event.into()));
    if let Some(client_id) = ack {
        let mut acks = acks.lock();
        if acks.waiting.len() >= PENDING_ACKS {
            drop(acks);
            let why = "too many requests awaiting their reply; slow down";
            return Err((Some(client_id), refusal(ErrorCode::RateLimited, why)));
        }
        acks.next += 1;
        let id = acks.next;
        acks.waiting.insert(id, client_id);
        entries.push(("id".into(), id.into()));
    }
    let mut bytes = Vec::new();
    match rmpv::encode::write_value(&mut bytes, &Value::Map(entries)) {
        Ok(()) => Ok(bytes),
        // Writing to a Vec does not fail.
        Err(e) => Err((ack, refusal(ErrorCode::Internal, &e.to_string()))),
    }
}

/// What one native server message becomes on a Socket.IO socket.
#[derive(Debug, PartialEq)]
pub enum Outgoing {
    /// The answer to the acknowledgement with this request id.
    Ack(u64, Value),
    /// An event.
    Emit(String, Value),
    /// Nothing: a reply to a request that asked for no acknowledgement.
    Nothing,
}

/// Maps a native message (MessagePack) onto Socket.IO: replies and errors with an id of ours
/// answer that acknowledgement (`{ok: true, …reply fields}` or `{ok: false, error: {code,
/// message}}`); anything else is an event named after its `type` with the rest as its data.
pub fn outgoing(bytes: &[u8]) -> std::io::Result<Outgoing> {
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    let value = rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| invalid(e.to_string()))?;
    let Value::Map(mut entries) = value else {
        return Err(invalid("a native message is a map".into()));
    };
    let mut take = |key: &str| {
        let at = entries.iter().position(|(k, _)| k.as_str() == Some(key))?;
        Some(entries.remove(at).1)
    };
    let kind = match take("type") {
        Some(Value::String(s)) => s.into_str().unwrap_or_default(),
        _ => return Err(invalid("a native message has a type".into())),
    };
    let id = take("id").and_then(|id| id.as_u64());
    let mut body = if kind == "error" {
        let code = take("code").unwrap_or(Value::Nil);
        let message = take("message").unwrap_or(Value::Nil);
        let error = Value::Map(vec![("code".into(), code), ("message".into(), message)]);
        let mut body = vec![("ok".into(), false.into()), ("error".into(), error)];
        body.extend(entries);
        body
    } else {
        entries
    };
    Ok(match id {
        Some(id) => {
            if !body.iter().any(|(k, _)| k.as_str() == Some("ok")) {
                body.insert(0, ("ok".into(), true.into()));
            }
            Outgoing::Ack(id, Value::Map(body))
        }
        None if kind == "reply" => Outgoing::Nothing,
        None => Outgoing::Emit(kind, Value::Map(body)),
    })
}

/// The session's write half: acknowledgements and events on the socket.
pub struct SioSink {
    /// The socket.
    pub socket: SocketRef,
    /// Shared with the source.
    pub acks: Arc<Mutex<Acks>>,
    /// The session's connection: a close requested while a write waits for room ends the wait.
    pub conn: Arc<ConnHandle>,
}

impl SioSink {
    /// Queues one packet (`put`), waiting while Engine.IO's buffer for the socket is full (a
    /// polling client between two requests, a slow WebSocket): the writer's `write_timeout`
    /// bounds the wait.
    async fn with_room(&self, put: impl Fn() -> Result<(), SendError>) -> std::io::Result<()> {
        let mut pause = Duration::from_millis(1);
        loop {
            match put() {
                Ok(()) => return Ok(()),
                Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                    if let Some((code, _)) = self.conn.close_requested() {
                        // Closed while full (a slow consumer): no room will come for this.
                        return Err(broken(format!("closed ({code}) while the buffer is full")));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(FULL_BUFFER_RETRY);
                }
                Err(e) => return Err(broken(e)),
            }
        }
    }
}

fn broken(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, e.to_string())
}

impl Sink for SioSink {
    async fn send(&mut self, _text: bool, bytes: &[u8]) -> std::io::Result<()> {
        match outgoing(bytes)? {
            Outgoing::Ack(id, body) => {
                let client_id = self.acks.lock().waiting.remove(&id);
                match client_id {
                    Some(client_id) => self.with_room(|| self.socket.ack(client_id, &body)).await,
                    None => Ok(()),
                }
            }
            Outgoing::Emit(event, data) => self.with_room(|| self.socket.emit(&event, &data)).await,
            Outgoing::Nothing => Ok(()),
        }
    }

    async fn keepalive(&mut self) -> std::io::Result<()> {
        // Engine.IO pings the client itself and disconnects it when it stops answering; while
        // the socket is connected the peer is alive (its pongs never reach the session, whose
        // dead-peer clock would otherwise close a quiet subscriber).
        if self.socket.connected() {
            self.conn.touch();
            Ok(())
        } else {
            Err(broken("socket disconnected"))
        }
    }

    async fn pong(&mut self, _payload: &[u8]) -> std::io::Result<()> {
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    async fn close(&mut self, code: u16, reason: &str) -> std::io::Result<()> {
        let notice = Value::Map(vec![
            ("code".into(), code.into()),
            ("reason".into(), reason.into()),
        ]);
        let _ = self.socket.emit("closing", &notice);
        self.acks.lock().waiting.clear();
        // Not a namespace DISCONNECT: after one, socket.io-client would not reconnect by
        // itself (see patches/socketioxide.patch).
        self.socket.close_transport();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(v: Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &v).expect("a Vec takes any value");
        out
    }

    fn map(entries: Vec<(&str, Value)>) -> Value {
        Value::Map(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    #[test]
    fn an_event_becomes_a_native_message_named_after_it() {
        let acks = Mutex::new(Acks::default());
        let inbound = Inbound {
            event: "subscribe".into(),
            data: Ok(map(vec![
                ("channel", "/topic/x".into()),
                ("type", "publish".into()),
                ("id", 7.into()),
            ])),
            ack: None,
        };
        let bytes = native_message(&acks, inbound).expect("an object is a message");
        let value = rmpv::decode::read_value(&mut &bytes[..]).expect("MessagePack");
        assert_eq!(
            value,
            map(vec![
                ("channel", "/topic/x".into()),
                ("type", "subscribe".into())
            ])
        );
    }

    #[test]
    fn an_event_that_is_not_an_object_is_refused() {
        let acks = Mutex::new(Acks::default());
        let inbound = Inbound {
            event: "subscribe".into(),
            data: Ok("/topic/x".into()),
            ack: None,
        };
        let Err((_, refused)) = native_message(&acks, inbound) else {
            panic!("accepted a string");
        };
        assert_eq!(
            refused,
            refusal(ErrorCode::BadRequest, "`subscribe` takes an object")
        );
    }

    #[test]
    fn a_reply_with_an_id_answers_that_acknowledgement() {
        let reply = map(vec![
            ("type", "reply".into()),
            ("id", 3.into()),
            ("ok", true.into()),
            ("seq", 12.into()),
        ]);
        assert_eq!(
            outgoing(&encode(reply)).expect("a native message"),
            Outgoing::Ack(3, map(vec![("ok", true.into()), ("seq", 12.into())]))
        );
    }

    #[test]
    fn an_error_with_an_id_answers_with_ok_false_and_the_code() {
        let error = map(vec![
            ("type", "error".into()),
            ("id", 4.into()),
            ("code", "forbidden".into()),
            ("message", "no".into()),
        ]);
        assert_eq!(
            outgoing(&encode(error)).expect("a native message"),
            Outgoing::Ack(4, refusal(ErrorCode::Forbidden, "no"))
        );
    }

    #[test]
    fn a_pong_with_an_id_answers_ok() {
        let pong = map(vec![("type", "pong".into()), ("id", 5.into())]);
        assert_eq!(
            outgoing(&encode(pong)).expect("a native message"),
            Outgoing::Ack(5, map(vec![("ok", true.into())]))
        );
    }

    #[test]
    fn a_message_is_an_event_with_the_rest_as_data() {
        let message = map(vec![
            ("type", "message".into()),
            ("channel", "/topic/x".into()),
            ("seq", 1.into()),
            ("data", Value::Binary(vec![0, 159, 255])),
        ]);
        assert_eq!(
            outgoing(&encode(message)).expect("a native message"),
            Outgoing::Emit(
                "message".into(),
                map(vec![
                    ("channel", "/topic/x".into()),
                    ("seq", 1.into()),
                    ("data", Value::Binary(vec![0, 159, 255])),
                ])
            )
        );
    }

    #[test]
    fn an_error_without_an_id_is_an_error_event_and_a_bare_reply_is_dropped() {
        let error = map(vec![
            ("type", "error".into()),
            ("code", "rate_limited".into()),
            ("message", "slow down".into()),
        ]);
        assert_eq!(
            outgoing(&encode(error)).expect("a native message"),
            Outgoing::Emit("error".into(), refusal(ErrorCode::RateLimited, "slow down"))
        );
        let reply = map(vec![("type", "reply".into()), ("id", Value::Nil)]);
        assert_eq!(
            outgoing(&encode(reply)).expect("a native message"),
            Outgoing::Nothing
        );
    }
}
