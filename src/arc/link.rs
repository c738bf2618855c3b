//! One path to a receiver: a TCP connection kept open between messages, or a UDP socket; one
//! frame out, one reply back within the timeout. Knows bytes and sockets, not DC-09's fields.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::config::ArcTransport;

/// The longest reply read: a DC-09 reply is well under this.
const MAX_REPLY: usize = 1024;

/// Why a path gave no reply.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The address does not resolve.
    #[error("cannot resolve the receiver's address")]
    Resolve,
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No reply within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The receiver closed the connection.
    #[error("the receiver closed the connection")]
    Closed,
    /// A reply longer than any DC-09 reply.
    #[error("a reply of more than {MAX_REPLY} bytes")]
    TooLong,
}

/// A path: its address and, over TCP, its open connection.
#[derive(Debug)]
pub struct Path {
    /// `host:port`.
    pub address: String,
    transport: ArcTransport,
    tcp: Option<TcpStream>,
}

impl Path {
    /// A path to `address` (`host:port`) over `transport`; nothing is opened yet.
    pub fn new(address: String, transport: ArcTransport) -> Path {
        Path {
            address,
            transport,
            tcp: None,
        }
    }

    /// Closes the connection, if any: the next exchange opens a new one.
    pub fn reset(&mut self) {
        self.tcp = None;
    }

    /// Sends `frame` and returns the reply's bytes, all within `timeout`. Over TCP a kept
    /// connection that fails is replaced once by a new one (the receiver may have restarted).
    pub async fn exchange(
        &mut self,
        frame: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, LinkError> {
        match self.transport {
            ArcTransport::Udp => tokio::time::timeout(timeout, self.udp(frame))
                .await
                .map_err(|_| LinkError::Timeout(timeout))?,
            ArcTransport::Tcp => {
                let reused = self.tcp.is_some();
                let first = tokio::time::timeout(timeout, self.tcp(frame))
                    .await
                    .map_err(|_| LinkError::Timeout(timeout))
                    .and_then(|r| r);
                match first {
                    Ok(reply) => Ok(reply),
                    Err(e) => {
                        self.tcp = None;
                        if !reused || matches!(e, LinkError::Timeout(_)) {
                            return Err(e);
                        }
                        let again = tokio::time::timeout(timeout, self.tcp(frame))
                            .await
                            .map_err(|_| LinkError::Timeout(timeout))
                            .and_then(|r| r);
                        if again.is_err() {
                            self.tcp = None;
                        }
                        again
                    }
                }
            }
        }
    }

    async fn resolve(&self) -> Result<std::net::SocketAddr, LinkError> {
        tokio::net::lookup_host(&self.address)
            .await?
            .next()
            .ok_or(LinkError::Resolve)
    }

    async fn tcp(&mut self, frame: &[u8]) -> Result<Vec<u8>, LinkError> {
        if self.tcp.is_none() {
            let stream = TcpStream::connect(self.resolve().await?).await?;
            stream.set_nodelay(true)?;
            self.tcp = Some(stream);
        }
        let Some(stream) = self.tcp.as_mut() else {
            return Err(LinkError::Closed);
        };
        stream.write_all(frame).await?;
        let mut reply = Vec::with_capacity(64);
        let mut buf = [0u8; 256];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(LinkError::Closed);
            }
            reply.extend_from_slice(&buf[..n]);
            // A reply ends with CR (after at least its CRC and length).
            if reply.len() > 2 && reply.ends_with(b"\r") {
                return Ok(reply);
            }
            if reply.len() > MAX_REPLY {
                return Err(LinkError::TooLong);
            }
        }
    }

    async fn udp(&mut self, frame: &[u8]) -> Result<Vec<u8>, LinkError> {
        let to = self.resolve().await?;
        let local: std::net::SocketAddr = if to.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(to).await?;
        socket.send(frame).await?;
        let mut buf = vec![0u8; MAX_REPLY];
        let n = socket.recv(&mut buf).await?;
        buf.truncate(n);
        Ok(buf)
    }
}
