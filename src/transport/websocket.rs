//! The WebSocket adapters: a fastwebsockets connection as a session's [`Source`] and
//! [`Sink`], for plain framing (one message per WebSocket message) and SockJS framing (`o`,
//! `a[…]`, `h`, `c[…]`). Control frames, fragments and the message limit are handled here;
//! what the messages mean is the session's business.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use fastwebsockets::{
    Frame, OpCode, Payload, WebSocket, WebSocketError, WebSocketRead, WebSocketWrite,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::coalesce::Coalesce;
use super::framing;
use crate::hub::admission::Admission;
use crate::hub::{ConnHandle, Outbound};
use crate::protocol::{close, Encoding};
use crate::session::{self, SessionContext, Sink, Source, Speaks};

/// How messages are framed on a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One message per WebSocket message.
    Plain,
    /// SockJS: `o`, `a[…]`, `h`, `c[…]` from the server; JSON arrays of strings from the client.
    SockJs,
}

/// Runs a session on a WebSocket to its end: both tasks finished, subscriptions dropped, slot
/// released. Not an `async fn`: the session's future is the one returned by
/// [`session::drive`], with nothing of this setup kept in it for the connection's life.
pub fn run<S>(
    ctx: SessionContext,
    conn: Arc<ConnHandle>,
    rx: mpsc::Receiver<Outbound>,
    admission: Admission,
    speaks: Speaks,
    framing: Framing,
    ws: WebSocket<S>,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = ctx.hub.limits().clone();
    // Frames written together leave together: the writer flushes when its queues are empty.
    let (mut read, write) = ws.split(|io| {
        let (read, write) = tokio::io::split(io);
        (read, Coalesce::new(write))
    });
    read.set_auto_close(false);
    read.set_auto_pong(false);
    // fastwebsockets refuses frames of `>= max`; our limit is inclusive. SockJS wraps each
    // message in a JSON string: allow for its escapes.
    let mut max = frame_limit(conn.encoding, &limits);
    if let Speaks::Stomp(..) = speaks {
        // Room above the STOMP frame limit, so a frame somewhat too large gets a STOMP ERROR
        // that says so rather than a bare 1009.
        max = max.saturating_mul(2);
    }
    if framing == Framing::SockJs {
        max = max.saturating_mul(2).saturating_add(16);
    }
    read.set_max_message_size(max + 1);
    let sink = WsSink { ws: write, framing };
    let source = WsSource {
        ws: read,
        framing,
        fragments: None,
        max,
        queued: VecDeque::new(),
    };
    session::drive(ctx, conn, rx, admission, speaks, source, sink)
}

/// Largest message `/echo` takes: Autobahn's cases go up to 16 MiB.
pub const ECHO_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// `/echo` (only with `testing.echo_endpoint`): every message back as it came, through the
/// same frame handling as a session (control frames, fragments, UTF-8, close codes), for
/// conformance suites. Nothing reaches the hub.
pub async fn echo<S>(ws: WebSocket<S>, peer: std::net::SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut read, write) = ws.split(|io| {
        let (read, write) = tokio::io::split(io);
        (read, Coalesce::new(write))
    });
    read.set_auto_close(false);
    read.set_auto_pong(false);
    read.set_max_message_size(ECHO_MAX_MESSAGE + 1);
    let nobody = crate::auth::Identity {
        key: Arc::from("/echo"),
        user: Arc::from("echo"),
        org: None,
        roles: crate::auth::Roles::default(),
        name: None,
        exp: u64::MAX,
        device: None,
    };
    // The handle carries what the reader asks of the writer: pongs and the close.
    let (conn, mut control) = ConnHandle::new(
        0,
        nobody,
        Encoding::Json,
        crate::protocol::Protocol::Json,
        peer,
        (64, 1024 * 1024),
    );
    let mut source = WsSource {
        ws: read,
        framing: Framing::Plain,
        fragments: None,
        max: ECHO_MAX_MESSAGE,
        queued: VecDeque::new(),
    };
    let mut sink = WsSink {
        ws: write,
        framing: Framing::Plain,
    };
    let (echoes, mut to_echo) = mpsc::channel::<(bool, Vec<u8>)>(16);
    let reader = async {
        while let Some(message) = source.next(&conn).await {
            if echoes.send(message).await.is_err() {
                break;
            }
        }
        drop(echoes);
    };
    let writer = async {
        loop {
            let written = tokio::select! {
                biased;
                Some(out) = control.recv() => match out {
                    Outbound::Pong(payload) => sink.pong(&payload).await,
                    _ => Ok(()),
                },
                message = to_echo.recv() => match message {
                    Some((text, bytes)) => sink.send(text, &bytes).await,
                    None => break,
                },
            };
            if written.is_err() {
                return;
            }
            if (control.is_empty() && to_echo.is_empty()) && sink.flush().await.is_err() {
                return;
            }
        }
        let (code, reason) = conn
            .close_requested()
            .cloned()
            .unwrap_or((close::NORMAL, String::new()));
        let _ = sink.close(code, &reason).await;
    };
    tokio::join!(reader, writer);
}

/// Largest single message accepted on a connection of this encoding.
pub fn frame_limit(encoding: Encoding, limits: &crate::config::Limits) -> usize {
    match encoding {
        Encoding::Json => limits.max_message_size,
        // Video frames travel as MessagePack: room for the frame plus its envelope.
        Encoding::MsgPack => limits.max_message_size + limits.max_video_frame,
    }
}

/// A WebSocket's write half.
struct WsSink<W> {
    ws: WebSocketWrite<W>,
    framing: Framing,
}

impl<W: AsyncWrite + Unpin + Send> WsSink<W> {
    async fn frame(&mut self, opcode: OpCode, payload: &[u8]) -> std::io::Result<()> {
        let frame = Frame::new(true, opcode, None, Payload::Borrowed(payload));
        self.ws
            .write_frame(frame)
            .await
            .map_err(std::io::Error::other)
    }
}

impl<W: AsyncWrite + Unpin + Send> Sink for WsSink<W> {
    async fn open(&mut self) -> std::io::Result<()> {
        if self.framing == Framing::SockJs {
            self.frame(OpCode::Text, b"o").await?;
            self.flush().await?;
        }
        Ok(())
    }

    async fn send(&mut self, text: bool, bytes: &[u8]) -> std::io::Result<()> {
        match self.framing {
            Framing::Plain => {
                let opcode = if text { OpCode::Text } else { OpCode::Binary };
                self.frame(opcode, bytes).await
            }
            Framing::SockJs => {
                let framed = framing::message_frame(bytes)?;
                self.frame(OpCode::Text, &framed).await
            }
        }
    }

    async fn keepalive(&mut self) -> std::io::Result<()> {
        if self.framing == Framing::SockJs {
            self.frame(OpCode::Text, b"h").await?;
        }
        self.frame(OpCode::Ping, b"").await
    }

    async fn pong(&mut self, payload: &[u8]) -> std::io::Result<()> {
        self.frame(OpCode::Pong, payload).await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.ws.flush().await.map_err(std::io::Error::other)
    }

    async fn close(&mut self, code: u16, reason: &str) -> std::io::Result<()> {
        if self.framing == Framing::SockJs {
            let framed = framing::close_frame(code, reason);
            self.frame(OpCode::Text, framed.as_bytes()).await?;
        }
        self.ws
            .write_frame(Frame::close(code, reason.as_bytes()))
            .await
            .map_err(std::io::Error::other)?;
        self.ws.flush().await.map_err(std::io::Error::other)
    }
}

/// A WebSocket's read half: control frames, fragments and SockJS framing handled here.
struct WsSource<R> {
    ws: WebSocketRead<R>,
    framing: Framing,
    /// A fragmented message being reassembled: its opcode and bytes so far.
    fragments: Option<(OpCode, Vec<u8>)>,
    max: usize,
    /// SockJS: messages of an array not yet handed out.
    queued: VecDeque<Vec<u8>>,
}

impl<R: AsyncRead + Unpin + Send> Source for WsSource<R> {
    async fn next(&mut self, conn: &ConnHandle) -> Option<(bool, Vec<u8>)> {
        let mut no_obligations = |_: Frame<'_>| async { Ok::<(), std::convert::Infallible>(()) };
        loop {
            if let Some(message) = self.queued.pop_front() {
                return Some((true, message));
            }
            let frame = self.ws.read_frame(&mut no_obligations).await;
            conn.touch();
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    read_error(conn, e);
                    return None;
                }
            };
            let (opcode, message) = match frame.opcode {
                OpCode::Close => {
                    let (code, reason) = answer_to_close(&frame.payload);
                    conn.close(code, reason);
                    return None;
                }
                OpCode::Ping => {
                    let _ = conn.try_send(Outbound::pong(Bytes::copy_from_slice(&frame.payload)));
                    continue;
                }
                OpCode::Pong => continue,
                OpCode::Text | OpCode::Binary => {
                    if self.fragments.is_some() {
                        conn.close(
                            close::PROTOCOL_ERROR,
                            "new message before the last one finished",
                        );
                        return None;
                    }
                    if !frame.fin {
                        self.fragments = Some((frame.opcode, frame.payload.to_vec()));
                        continue;
                    }
                    (frame.opcode, frame.payload.to_vec())
                }
                OpCode::Continuation => {
                    // Reassembly enforces the message limit across all fragments
                    // (fastwebsockets only limits each frame).
                    let Some((_, buf)) = self.fragments.as_mut() else {
                        conn.close(close::PROTOCOL_ERROR, "continuation without a message");
                        return None;
                    };
                    if buf.len() + frame.payload.len() > self.max {
                        conn.close(close::TOO_BIG, "message too large");
                        return None;
                    }
                    buf.extend_from_slice(&frame.payload);
                    if !frame.fin {
                        continue;
                    }
                    let Some((opcode, buf)) = self.fragments.take() else {
                        continue;
                    };
                    if opcode == OpCode::Text && std::str::from_utf8(&buf).is_err() {
                        conn.close(close::INVALID_PAYLOAD, "text message is not valid UTF-8");
                        return None;
                    }
                    (opcode, buf)
                }
            };
            match self.framing {
                Framing::Plain => return Some((opcode == OpCode::Text, message)),
                Framing::SockJs => match framing::client_messages(&message) {
                    Ok(messages) => self.queued.extend(messages),
                    Err(e) => {
                        conn.close(close::PROTOCOL_ERROR, e);
                        return None;
                    }
                },
            }
        }
    }
}

/// The close frame that answers the peer's: its own code when it is one a peer may send,
/// else a protocol error (RFC 6455 §7.4: 0–999, 1004–1006, 1015, 1016–2999 and 5000 on are
/// not to be sent; a reason must be UTF-8, §5.5.1).
fn answer_to_close(payload: &[u8]) -> (u16, &'static str) {
    let (code, reason) = match payload {
        [] => return (close::NORMAL, ""),
        [_] => return (close::PROTOCOL_ERROR, "a close code takes two bytes"),
        [a, b, reason @ ..] => (u16::from_be_bytes([*a, *b]), reason),
    };
    if std::str::from_utf8(reason).is_err() {
        return (close::INVALID_PAYLOAD, "close reason is not valid UTF-8");
    }
    match code {
        1000..=1003 | 1007..=1014 | 3000..=4999 => (code, ""),
        _ => (close::PROTOCOL_ERROR, "close code not allowed on the wire"),
    }
}

fn read_error(conn: &ConnHandle, e: WebSocketError) {
    let (code, reason) = match e {
        WebSocketError::FrameTooLarge => (close::TOO_BIG, "message too large".to_string()),
        WebSocketError::InvalidUTF8 => (
            close::INVALID_PAYLOAD,
            "text frame is not valid UTF-8".to_string(),
        ),
        WebSocketError::UnexpectedEOF
        | WebSocketError::IoError(_)
        | WebSocketError::ConnectionClosed => {
            tracing::debug!(error = %e, "peer went away");
            return;
        }
        other => (close::PROTOCOL_ERROR, other.to_string()),
    };
    conn.close(code, reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(code: u16, reason: &[u8]) -> Vec<u8> {
        [&code.to_be_bytes()[..], reason].concat()
    }

    #[test]
    fn a_close_is_answered_with_its_code_only_when_the_code_may_be_sent() {
        let allowed = [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ];
        for code in allowed {
            assert_eq!(answer_to_close(&frame(code, b"bye")).0, code, "{code}");
        }
        let reserved = [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ];
        for code in reserved {
            let answer = answer_to_close(&frame(code, b"")).0;
            assert_eq!(answer, close::PROTOCOL_ERROR, "{code}");
        }
        assert_eq!(answer_to_close(&[]).0, close::NORMAL);
        assert_eq!(answer_to_close(&[3]).0, close::PROTOCOL_ERROR);
    }

    #[test]
    fn a_close_reason_that_is_not_utf8_is_answered_1007() {
        // κόσμε followed by a lone surrogate (Autobahn 7.5.1).
        let reason = [
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
        ];
        assert_eq!(
            answer_to_close(&frame(1000, &reason)).0,
            close::INVALID_PAYLOAD
        );
    }
}
