//! A server-side TLS stream on rustls's unbuffered API, where the caller owns every buffer.
//!
//! rustls's buffered `ServerConnection` (what `tokio-rustls` drives) sizes a 4 KiB buffer for
//! the records it reads before every read and keeps it while the connection waits for its
//! peer: on an appliance holding thousands of mostly idle guard connections that is 4 KiB of
//! each one's memory. Here the ciphertext read, the plaintext not yet taken and the ciphertext
//! not yet sent live in three `Vec`s of ours, each given back as soon as it is empty; a read
//! that finds nothing waits without any of them. A read lands in a stack buffer first and is
//! then appended: one copy of the ciphertext, the price of not holding the buffer.
//!
//! What lives here is the byte shuffling between rustls's states and the socket, nothing about
//! certificates (`tls.rs`) or HTTP (`mod.rs`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket at once, on the stack of the read that asks for them.
const READ_CHUNK: usize = 16 * 1024;
/// The plaintext one write turns into records: a TLS record's worth.
const WRITE_CHUNK: usize = 16 * 1024;
/// Ciphertext waiting for a complete record (or handshake flight) beyond this is refused: a
/// record is at most 16 KiB plus overhead, a handshake message at most 64 KiB (rustls's own
/// bound for its buffered API).
const MAX_INCOMING: usize = 64 * 1024 + 5;

/// A TLS connection over `io`, after [`accept`] completed its handshake.
pub struct TlsStream<IO> {
    io: IO,
    conn: UnbufferedServerConnection,
    /// Ciphertext read and not yet processed (a partial record).
    incoming: Vec<u8>,
    /// Plaintext decrypted and not yet read, from `taken` on.
    plaintext: Vec<u8>,
    taken: usize,
    /// Ciphertext encoded and not yet written, from `sent` on.
    outgoing: Vec<u8>,
    sent: usize,
    /// The peer sent close_notify or closed the socket: reads end.
    read_closed: bool,
    /// Our close_notify is queued.
    close_queued: bool,
}

/// What processing the records at hand came to.
enum Processed {
    /// More ciphertext is needed to go on (a partial record, or a handshake flight).
    NeedsInput,
    /// Application data may be sent; `encrypted` bytes of the offered plaintext were.
    Writable { encrypted: usize },
    /// The peer sent close_notify: no more plaintext comes.
    PeerClosed,
    /// Both sides sent close_notify.
    Closed,
}

/// Completes a server handshake over `io` with `config`.
pub async fn accept<IO>(config: Arc<ServerConfig>, io: IO) -> io::Result<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let conn = UnbufferedServerConnection::new(config).map_err(io::Error::other)?;
    let mut stream = TlsStream {
        io,
        conn,
        incoming: Vec::new(),
        plaintext: Vec::new(),
        taken: 0,
        outgoing: Vec::new(),
        sent: 0,
        read_closed: false,
        close_queued: false,
    };
    std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
    Ok(stream)
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn too_small(e: InsufficientSizeError) -> usize {
    e.required_size
}

impl<IO> TlsStream<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    /// Runs rustls over the ciphertext at hand until it needs more, or can send: decrypted
    /// records go to `plaintext`, handshake records and alerts to `outgoing`. With `write`,
    /// encrypts as much of it as one state allows once sending is possible; with `close`,
    /// queues close_notify.
    fn process(&mut self, write: &[u8], close: bool) -> io::Result<Processed> {
        let TlsStream {
            conn,
            incoming,
            plaintext,
            outgoing,
            close_queued,
            ..
        } = self;
        loop {
            let UnbufferedStatus { mut discard, state } = conn.process_tls_records(incoming);
            let state = state.map_err(tls_error)?;
            let outcome = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(tls_error)?;
                        discard += record.discard;
                        plaintext.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::ReadEarlyData(mut records) => {
                    // Early data is not enabled (`max_early_data_size` 0); should a client send
                    // it anyway, it is read like any other.
                    while let Some(record) = records.next_record() {
                        let record = record.map_err(tls_error)?;
                        discard += record.discard;
                        plaintext.extend_from_slice(record.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    let start = outgoing.len();
                    let mut room = 1024;
                    loop {
                        outgoing.resize(start + room, 0);
                        match encode.encode(&mut outgoing[start..]) {
                            Ok(n) => {
                                outgoing.truncate(start + n);
                                break;
                            }
                            Err(EncodeError::InsufficientSize(e)) => room = too_small(e),
                            Err(e) => {
                                outgoing.truncate(start);
                                return Err(io::Error::other(e.to_string()));
                            }
                        }
                    }
                    None
                }
                // What was encoded is in `outgoing`, which is sent before anything waits.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Processed::NeedsInput),
                ConnectionState::PeerClosed => Some(Processed::PeerClosed),
                ConnectionState::Closed => Some(Processed::Closed),
                ConnectionState::WriteTraffic(mut traffic) => {
                    let mut encrypted = 0;
                    if !write.is_empty() {
                        let start = outgoing.len();
                        // Records add at most a header, a tag and the content type each.
                        let mut room = write.len() + 64 * (write.len() / WRITE_CHUNK + 1);
                        loop {
                            outgoing.resize(start + room, 0);
                            match traffic.encrypt(write, &mut outgoing[start..]) {
                                Ok(n) => {
                                    outgoing.truncate(start + n);
                                    encrypted = write.len();
                                    break;
                                }
                                Err(EncryptError::InsufficientSize(e)) => room = too_small(e),
                                Err(e) => {
                                    outgoing.truncate(start);
                                    return Err(io::Error::other(e.to_string()));
                                }
                            }
                        }
                    }
                    if close && !*close_queued {
                        let start = outgoing.len();
                        let mut room = 64;
                        loop {
                            outgoing.resize(start + room, 0);
                            match traffic.queue_close_notify(&mut outgoing[start..]) {
                                Ok(n) => {
                                    outgoing.truncate(start + n);
                                    *close_queued = true;
                                    break;
                                }
                                Err(EncryptError::InsufficientSize(e)) => room = too_small(e),
                                Err(e) => {
                                    outgoing.truncate(start);
                                    return Err(io::Error::other(e.to_string()));
                                }
                            }
                        }
                    }
                    Some(Processed::Writable { encrypted })
                }
                // `ConnectionState` is non-exhaustive: a state this code does not know.
                other => {
                    return Err(io::Error::other(format!(
                        "unexpected TLS connection state {other:?}"
                    )))
                }
            };
            incoming.drain(..discard.min(incoming.len()));
            if incoming.is_empty() {
                *incoming = Vec::new();
            }
            if let Some(outcome) = outcome {
                return Ok(outcome);
            }
        }
    }

    /// Writes `outgoing` to the socket; `Ready` once all of it is, and its memory is given back.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Reads more ciphertext; `Ok(false)` at the end of the stream.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.incoming.len() >= MAX_INCOMING {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS record or handshake message too large",
            )));
        }
        let mut chunk = [0u8; READ_CHUNK];
        let room = READ_CHUNK.min(MAX_INCOMING - self.incoming.len());
        let mut buf = ReadBuf::new(&mut chunk[..room]);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        let read = buf.filled();
        self.incoming.extend_from_slice(read);
        Poll::Ready(Ok(!read.is_empty()))
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let processed = self.process(&[], false)?;
            // A flight is sent whole before its answer is awaited.
            ready!(self.poll_send(cx))?;
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            match processed {
                Processed::NeedsInput | Processed::Writable { .. } => {
                    if !ready!(self.poll_receive(cx))? {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "tls handshake eof",
                        )));
                    }
                }
                Processed::PeerClosed | Processed::Closed => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "peer closed during the TLS handshake",
                    )))
                }
            }
        }
    }

    /// Hands out decrypted plaintext, giving the buffer back once it is all taken.
    fn take_plaintext(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let available = &self.plaintext[self.taken..];
        if available.is_empty() {
            return false;
        }
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        self.taken += n;
        if self.taken == self.plaintext.len() {
            self.plaintext = Vec::new();
            self.taken = 0;
        }
        true
    }
}

impl<IO> AsyncRead for TlsStream<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.take_plaintext(buf) || this.read_closed {
                return Poll::Ready(Ok(()));
            }
            // What rustls owes the peer after a read (the answer to a key update) waits in
            // `outgoing` for the next write or flush: a read that wrote would take the socket's
            // one write waker from a writer waiting on the other half of a split stream.
            let processed = this.process(&[], false)?;
            if this.take_plaintext(buf) {
                return Poll::Ready(Ok(()));
            }
            match processed {
                Processed::PeerClosed | Processed::Closed => {
                    this.read_closed = true;
                    return Poll::Ready(Ok(()));
                }
                Processed::NeedsInput | Processed::Writable { .. } => {
                    if !ready!(this.poll_receive(cx))? {
                        // The socket ended without close_notify: the end of the stream all the
                        // same, as the buffered API reports it to HTTP.
                        this.read_closed = true;
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    }
}

impl<IO> AsyncWrite for TlsStream<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // What was encrypted before leaves first: at most one chunk waits here.
        ready!(this.poll_send(cx))?;
        if this.close_queued {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let data = &data[..data.len().min(WRITE_CHUNK)];
        loop {
            match this.process(data, false)? {
                Processed::Writable { encrypted } => {
                    // Sent now if the socket takes it; otherwise on the next write or flush.
                    if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                        return Poll::Ready(Err(e));
                    }
                    return Poll::Ready(Ok(encrypted));
                }
                Processed::Closed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                // Said once; sending goes on after the peer's close_notify (a half close).
                Processed::PeerClosed => this.read_closed = true,
                // After the handshake sending is always possible; rustls says otherwise only
                // while a flight is incomplete, which needs the peer's bytes.
                Processed::NeedsInput => {
                    ready!(this.poll_send(cx))?;
                    if !ready!(this.poll_receive(cx))? {
                        return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
                    }
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_queued {
            ready!(this.poll_send(cx))?;
            // A connection that cannot send any more (closed, or broken) closes its socket.
            let _ = this.process(&[], true);
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
