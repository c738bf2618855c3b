//! A write buffer that turns the frames a writer has queued into one TLS record and one
//! syscall: written bytes wait here until the writer flushes (it does when its queues are
//! empty) or a record's worth has gathered.
//!
//! Unlike `tokio::io::BufWriter` the buffer is allocated on first use and given back after a
//! flush that found it large, so an idle connection holds none of it.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;

/// One TLS record's plaintext: a fuller buffer is written out at once.
pub const RECORD: usize = 16 * 1024;
/// What a flushed buffer may keep for the next burst.
const KEEP: usize = 4 * 1024;

/// An [`AsyncWrite`] that gathers writes up to [`RECORD`] bytes until flushed.
pub struct Coalesce<W> {
    inner: W,
    buf: Vec<u8>,
    /// How much of `buf` the inner writer has taken.
    written: usize,
}

impl<W: AsyncWrite + Unpin> Coalesce<W> {
    /// Gathers writes to `inner`.
    pub fn new(inner: W) -> Self {
        Coalesce {
            inner,
            buf: Vec::new(),
            written: 0,
        }
    }

    /// Hands everything gathered to the inner writer (without flushing it).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Coalesce<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() + data.len() > RECORD {
            ready!(this.poll_drain(cx))?;
        }
        if data.len() >= RECORD {
            // Large enough to be a record of its own: no copy.
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if this.buf.capacity() > KEEP {
            this.buf = Vec::new();
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_writes_reach_the_peer_together_once_flushed() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut out = Coalesce::new(near);
        out.write_all(b"one ").await.expect("write");
        out.write_all(b"two").await.expect("write");
        let mut got = [0u8; 16];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(50), far.read(&mut got)).await;
        assert!(early.is_err(), "nothing leaves before the flush");
        out.flush().await.expect("flush");
        let n = far.read(&mut got).await.expect("read");
        assert_eq!(&got[..n], b"one two");
        assert!(out.buf.capacity() <= KEEP);
    }

    #[tokio::test]
    async fn a_record_s_worth_leaves_without_a_flush_and_order_is_kept() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut out = Coalesce::new(near);
        let mut sent = Vec::new();
        for n in 0..40u8 {
            let chunk = vec![n; 1000];
            out.write_all(&chunk).await.expect("write");
            sent.extend_from_slice(&chunk);
        }
        let large = vec![200u8; RECORD + 1];
        out.write_all(&large).await.expect("write");
        sent.extend_from_slice(&large);
        // Everything but the last partial gathering is already on its way.
        let mut got = vec![0u8; sent.len()];
        let before_flush = far.read(&mut got).await.expect("read");
        assert!(before_flush >= RECORD);
        out.flush().await.expect("flush");
        drop(out);
        let mut rest = Vec::new();
        far.read_to_end(&mut rest).await.expect("read");
        got.truncate(before_flush);
        got.extend_from_slice(&rest);
        assert_eq!(got, sent);
    }
}
