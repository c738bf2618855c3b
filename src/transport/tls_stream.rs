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
    /// rustls failed (its alert, if any, is in `outgoing`): every later call fails alike,
    /// without asking rustls again.
    failed: Option<io::ErrorKind>,
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
        failed: None,
    };
    std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
    Ok(stream)
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Why rustls did not write into the buffer it was given.
enum Refused {
    /// The buffer must be this large.
    Needs(usize),
    /// It cannot write at all.
    Cannot(String),
}

impl From<EncodeError> for Refused {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
                Refused::Needs(required_size)
            }
            other => Refused::Cannot(other.to_string()),
        }
    }
}

impl From<EncryptError> for Refused {
    fn from(e: EncryptError) -> Self {
        match e {
            EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
                Refused::Needs(required_size)
            }
            other => Refused::Cannot(other.to_string()),
        }
    }
}

/// Appends to `outgoing` what `write` puts into a buffer: `room` bytes are offered first, then
/// exactly as many as rustls says it needs.
fn append(
    outgoing: &mut Vec<u8>,
    mut room: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Refused>,
) -> io::Result<()> {
    let start = outgoing.len();
    loop {
        outgoing.resize(start + room, 0);
        match write(&mut outgoing[start..]) {
            Ok(n) => {
                outgoing.truncate(start + n);
                return Ok(());
            }
            Err(Refused::Needs(size)) => room = size,
            Err(Refused::Cannot(why)) => {
                outgoing.truncate(start);
                return Err(io::Error::other(why));
            }
        }
    }
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
        if let Some(kind) = self.failed {
            return Err(io::Error::new(kind, "the TLS connection failed earlier"));
        }
        let TlsStream {
            conn,
            incoming,
            plaintext,
            outgoing,
            read_closed,
            close_queued,
            failed,
            ..
        } = self;
        loop {
            let UnbufferedStatus { mut discard, state } = conn.process_tls_records(incoming);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    // rustls queued the fatal alert for the peer: encode it for the socket, and
                    // never feed rustls again (the discard first, as it requires).
                    incoming.drain(..discard.min(incoming.len()));
                    let UnbufferedStatus { state, .. } = conn.process_tls_records(incoming);
                    if let Ok(ConnectionState::EncodeTlsData(mut alert)) = state {
                        // Best effort: the error below is what the caller hears either way.
                        let _ = append(outgoing, 64, |buf| Ok(alert.encode(buf)?));
                    }
                    let e = tls_error(e);
                    *failed = Some(e.kind());
                    return Err(e);
                }
            };
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
                    append(outgoing, 1024, |buf| Ok(encode.encode(buf)?))?;
                    None
                }
                // What was encoded is in `outgoing`, which is sent before anything waits.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Processed::NeedsInput),
                // Said once, maybe with the last plaintext: the flag outlives this call.
                ConnectionState::PeerClosed => {
                    *read_closed = true;
                    Some(Processed::PeerClosed)
                }
                ConnectionState::Closed => {
                    *read_closed = true;
                    Some(Processed::Closed)
                }
                ConnectionState::WriteTraffic(mut traffic) => {
                    let mut encrypted = 0;
                    if !write.is_empty() {
                        // Records add at most a header, a tag and the content type each.
                        let room = write.len() + 64 * (write.len() / WRITE_CHUNK + 1);
                        append(outgoing, room, |buf| Ok(traffic.encrypt(write, buf)?))?;
                        encrypted = write.len();
                    }
                    if close && !*close_queued {
                        append(outgoing, 64, |buf| Ok(traffic.queue_close_notify(buf)?))?;
                        *close_queued = true;
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
            } else if incoming.capacity() > incoming.len() + READ_CHUNK {
                // A partial record waits: it keeps its own bytes, not a burst's capacity.
                incoming.shrink_to_fit();
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

    /// Sends what is waiting (an alert after a failure) if the socket takes it now.
    fn try_send(&mut self, cx: &mut Context<'_>) {
        if self.sent < self.outgoing.len() {
            let _ = self.poll_send(cx);
        }
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let processed = match self.process(&[], false) {
                Ok(processed) => processed,
                Err(e) => {
                    self.try_send(cx);
                    return Poll::Ready(Err(e));
                }
            };
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
            // What rustls owes the peer after a read waits for the next write: a read that
            // wrote would take the socket's one write waker from a writer waiting on the other
            // half of a split stream (a key update's answer goes with the next data, as rustls
            // sends it). Only a failure's alert is tried at once: the stream ends there.
            let processed = match this.process(&[], false) {
                Ok(processed) => processed,
                Err(e) => {
                    this.try_send(cx);
                    return Poll::Ready(Err(e));
                }
            };
            if this.take_plaintext(buf) {
                return Poll::Ready(Ok(()));
            }
            match processed {
                Processed::PeerClosed | Processed::Closed => return Poll::Ready(Ok(())),
                Processed::NeedsInput | Processed::Writable { .. } => {
                    if !ready!(this.poll_receive(cx))? {
                        this.read_closed = true;
                        // The socket ended without close_notify. Between records that is how
                        // phones leave (radio lost, app killed): the end of the stream. In the
                        // middle of one, data was cut off.
                        if !this.incoming.is_empty() {
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the peer closed in the middle of a TLS record",
                            )));
                        }
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
                Processed::PeerClosed => {}
                // After the handshake (`accept` returns only then) sending is always possible;
                // reading here for rustls would take the reader's waker.
                Processed::NeedsInput => {
                    return Poll::Ready(Err(io::Error::other(
                        "TLS connection cannot send: its handshake is not complete",
                    )))
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
            // A connection that cannot send any more (closed, or broken) closes its socket. The
            // peer's close_notify, said once, may come first: then the next state can send.
            for _ in 0..2 {
                match this.process(&[], true) {
                    Ok(Processed::PeerClosed) => continue,
                    _ => break,
                }
            }
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio_rustls::client::TlsStream as ClientStream;

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    /// A server stream and a tokio-rustls client over an in-memory pipe, handshaken.
    async fn pair() -> (TlsStream<DuplexStream>, ClientStream<DuplexStream>) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let der = cert.cert.der().clone();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key.into())
            .expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).expect("root");
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (server_io, client_io) = tokio::io::duplex(256 * 1024);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let (server, client) = tokio::join!(
            accept(Arc::new(server), server_io),
            connector.connect(name, client_io)
        );
        (
            server.expect("server handshake"),
            client.expect("client handshake"),
        )
    }

    fn holds_nothing(stream: &TlsStream<DuplexStream>) -> bool {
        stream.incoming.capacity() == 0
            && stream.plaintext.capacity() == 0
            && stream.outgoing.capacity() == 0
    }

    #[tokio::test]
    async fn messages_cross_both_ways_and_an_idle_stream_holds_no_buffer() {
        let (mut server, mut client) = pair().await;
        assert!(holds_nothing(&server), "after the handshake");
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        client.write_all(&big).await.expect("client write");
        client.flush().await.expect("client flush");
        let mut got = vec![0; big.len()];
        tokio::time::timeout(WAIT, server.read_exact(&mut got))
            .await
            .expect("in time")
            .expect("server read");
        assert_eq!(got, big);
        server.write_all(&big).await.expect("server write");
        server.flush().await.expect("server flush");
        let mut back = vec![0; big.len()];
        tokio::time::timeout(WAIT, client.read_exact(&mut back))
            .await
            .expect("in time")
            .expect("client read");
        assert_eq!(back, big);
        assert!(holds_nothing(&server), "once everything is read and sent");
    }

    #[tokio::test]
    async fn the_last_message_and_the_peers_close_notify_in_one_flight_end_the_stream() {
        let (mut server, mut client) = pair().await;
        client.write_all(b"last words").await.expect("write");
        // close_notify with the socket left open, as a peer that waits for ours does.
        client.get_mut().1.send_close_notify();
        client.flush().await.expect("close_notify");
        let mut got = Vec::new();
        tokio::time::timeout(WAIT, server.read_to_end(&mut got))
            .await
            .expect("the stream ends")
            .expect("read");
        assert_eq!(got, b"last words");
        // Writing after the peer's close_notify is a half close: still allowed.
        server
            .write_all(b"bye")
            .await
            .expect("write after the peer's close");
        server.shutdown().await.expect("our close_notify");
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.expect("client read");
        assert_eq!(answer, b"bye");
    }

    #[tokio::test]
    async fn a_corrupted_record_fails_the_stream_tells_the_peer_and_later_calls_fail_alike() {
        let (mut server, mut client) = pair().await;
        // An application-data record whose contents no key decrypts.
        let mut junk = vec![0x17, 0x03, 0x03, 0x00, 0x40];
        junk.extend_from_slice(&[0xAB; 0x40]);
        client
            .get_mut()
            .0
            .write_all(&junk)
            .await
            .expect("raw write");
        let mut buf = [0u8; 64];
        let failed = tokio::time::timeout(WAIT, server.read(&mut buf))
            .await
            .expect("in time");
        assert_eq!(
            failed.expect_err("a bad record").kind(),
            io::ErrorKind::InvalidData
        );
        assert!(server.write_all(b"more").await.is_err(), "writes fail too");
        assert!(server.read(&mut buf).await.is_err(), "and reads again");
        let told = tokio::time::timeout(WAIT, client.read(&mut buf))
            .await
            .expect("in time");
        let told = told.expect_err("the peer hears the alert").to_string();
        assert!(told.contains("alert"), "{told}");
    }
}
