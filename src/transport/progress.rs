//! A socket that records when the peer made room for a write that had to wait.
//!
//! A write that waited for the socket and then went through means the peer's TCP took data
//! off a full window, which only a live peer that reads does. A slow reader whose answers to
//! pings wait behind a long backlog is alive by that sign; a dead or stuck peer never makes
//! room. Below TLS, because that is where the waiting happens.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When the peer last made room (ms since the Unix epoch), shared with the connection.
pub type Drained = Arc<AtomicU64>;

/// `inner`, noting in `drained` each time a waiting write goes through.
pub struct Watched<S> {
    inner: S,
    drained: Drained,
    waited: bool,
}

impl<S> Watched<S> {
    /// Watches `inner`; the stamp starts now.
    pub fn new(inner: S) -> (Self, Drained) {
        let drained = Arc::new(AtomicU64::new(crate::clock::now_millis()));
        let watched = Watched {
            inner,
            drained: drained.clone(),
            waited: false,
        };
        (watched, drained)
    }

    fn note(&mut self, written: &Poll<io::Result<usize>>) {
        match written {
            Poll::Pending => self.waited = true,
            Poll::Ready(Ok(n)) if *n > 0 && std::mem::take(&mut self.waited) => {
                self.drained
                    .store(crate::clock::now_millis(), Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, data);
        this.note(&written);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn room_made_after_a_wait_is_stamped_and_free_writes_are_not() {
        let (near, mut far) = tokio::io::duplex(1024);
        let (mut watched, drained) = Watched::new(near);
        drained.store(0, Ordering::Relaxed);
        watched.write_all(b"fits").await.expect("write");
        assert_eq!(drained.load(Ordering::Relaxed), 0, "nothing had to wait");
        let reader = tokio::spawn(async move {
            let mut sink = vec![0u8; 8192];
            let mut total = 0;
            while total < 4 + 8192 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                total += far.read(&mut sink).await.expect("read");
            }
        });
        watched.write_all(&[1u8; 8192]).await.expect("write");
        reader.await.expect("reader");
        assert!(drained.load(Ordering::Relaxed) > 0, "the peer made room");
    }
}
