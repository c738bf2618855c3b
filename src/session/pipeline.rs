//! Pipelined publishes of one native connection: a client may send publish after publish
//! without waiting for each reply, and their commits overlap (they share the store's flushes).
//!
//! Three rules keep this indistinguishable from one publish at a time, only faster:
//! - **seqs in sending order**: a publish takes its seq only after the one sent before it has
//!   taken its own (or failed first) — each holds a [`Turn`] the next one waits for;
//! - **replies in sending order**: a publish's reply is queued only after the one before it;
//! - **bounded**: at most `limits.max_publishes_in_flight` wait at once; at the bound the reader
//!   stops reading (TCP backpressure), and any other request first waits for all of them
//!   ([`Pipeline::barrier`]), so its reply comes after theirs.
//!
//! This module orders and bounds; what a publish does is the caller's.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{oneshot, Semaphore};

use crate::hub::{ConnHandle, Outbound, Turn};

/// Where replies go: the connection (a test's list in the tests).
pub trait ReplyTo: Send + Sync + 'static {
    /// Queues one reply.
    fn reply(&self, bytes: Bytes) -> impl Future<Output = ()> + Send;
}

impl ReplyTo for ConnHandle {
    async fn reply(&self, bytes: Bytes) {
        // A connection already gone has nobody to answer.
        let _ = self.send(Outbound::frame(bytes)).await;
    }
}

/// The publishes of one connection in flight.
pub struct Pipeline {
    permits: Arc<Semaphore>,
    depth: u32,
    /// Fires (or drops) once the last publish started has its seq.
    appended: Option<oneshot::Receiver<()>>,
    /// Fires (or drops) once the last publish started has queued its reply.
    replied: Option<oneshot::Receiver<()>>,
}

impl Pipeline {
    /// At most `depth` publishes in flight (at least 1).
    pub fn new(depth: usize) -> Self {
        let depth = depth.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Pipeline {
            permits: Arc::new(Semaphore::new(depth)),
            depth: depth as u32,
            appended: None,
            replied: None,
        }
    }

    /// Waits until every publish in flight has queued its reply.
    pub async fn barrier(&mut self) {
        if self.appended.is_none() {
            return;
        }
        // Closed only if dropped, and this holds it.
        let _all = self.permits.acquire_many(self.depth).await;
        self.appended = None;
        self.replied = None;
    }

    /// Starts a publish: `work` runs once the previous publish has its seq, with the turn to
    /// drop when this one has its own, and returns the reply to queue on `conn` (in order).
    /// Waits while the pipeline is full.
    pub async fn start<R, F, Fut>(&mut self, conn: &Arc<R>, work: F)
    where
        R: ReplyTo,
        F: FnOnce(Turn) -> Fut + Send + 'static,
        Fut: Future<Output = Option<Bytes>> + Send,
    {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let (turn, appended) = oneshot::channel();
        let (done, replied) = oneshot::channel::<()>();
        let after_seq = self.appended.replace(appended);
        let after_reply = self.replied.replace(replied);
        let conn = conn.clone();
        tokio::spawn(async move {
            if let Some(previous) = after_seq {
                let _ = previous.await;
            }
            let reply = work(Some(turn)).await;
            if let Some(previous) = after_reply {
                let _ = previous.await;
            }
            if let Some(bytes) = reply {
                conn.reply(bytes).await;
            }
            drop(done);
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use parking_lot::Mutex;

    use super::*;

    #[derive(Default)]
    struct Replies(Mutex<Vec<Bytes>>);

    impl ReplyTo for Replies {
        async fn reply(&self, bytes: Bytes) {
            self.0.lock().push(bytes);
        }
    }

    /// Publish n takes its "seq" after a delay that shrinks with n: without the turns, later
    /// ones would take theirs first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn seqs_and_replies_follow_the_starting_order_whatever_each_one_takes() {
        let replies = Arc::new(Replies::default());
        let taken = Arc::new(Mutex::new(Vec::new()));
        let mut pipeline = Pipeline::new(4);
        for n in 0..12u64 {
            let taken = taken.clone();
            pipeline
                .start(&replies, move |turn| async move {
                    tokio::time::sleep(Duration::from_millis(24 - 2 * n)).await;
                    taken.lock().push(n);
                    drop(turn);
                    // The commit: later ones finish first here, too.
                    tokio::time::sleep(Duration::from_millis(30 - 2 * n)).await;
                    Some(Bytes::from(n.to_string()))
                })
                .await;
        }
        pipeline.barrier().await;
        let expected: Vec<u64> = (0..12).collect();
        assert_eq!(*taken.lock(), expected, "seqs in starting order");
        let replied: Vec<u64> = replies
            .0
            .lock()
            .iter()
            .map(|b| std::str::from_utf8(b).expect("utf8").parse().expect("n"))
            .collect();
        assert_eq!(replied, expected, "replies in starting order");
    }

    #[tokio::test]
    async fn a_full_pipeline_makes_the_next_start_wait() {
        let replies = Arc::new(Replies::default());
        let mut pipeline = Pipeline::new(1);
        let (release, hold) = oneshot::channel::<()>();
        pipeline
            .start(&replies, move |_turn| async move {
                let _ = hold.await;
                Some(Bytes::from_static(b"first"))
            })
            .await;
        {
            let second = pipeline.start(&replies, |_turn| async {
                Some(Bytes::from_static(b"second"))
            });
            tokio::pin!(second);
            assert!(
                tokio::time::timeout(Duration::from_millis(50), &mut second)
                    .await
                    .is_err(),
                "the second publish must wait for room"
            );
            let _ = release.send(());
            second.await;
        }
        pipeline.barrier().await;
        assert_eq!(replies.0.lock().len(), 2);
    }
}
