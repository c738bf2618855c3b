//! Cluster mode: what other nodes published, delivered to this node's subscribers as if it
//! had been published here — logged messages into their channel's pending run (so that own
//! and remote messages share one seq order), live ones straight to the live lanes.
//!
//! The engine's feed is at most once, so every second the heads of the logged channels this
//! node has entries for are compared with what it delivered; a gap that outlasts
//! [`Cluster::gap_grace`] (a publish missed during a reconnect, a publisher that died between
//! its append and its publish) is read from the log and delivered in order, once the replicas
//! have what was read. Nothing here
//! touches a socket or checks a right: the subscribers were checked when they subscribed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::store::{Cluster, Remote, StoredMessage, Ticket};

/// How often the heads are compared with what was delivered.
const SWEEP: Duration = Duration::from_secs(1);
/// At most this many missing messages are read per channel and sweep.
const FILL: usize = 1024;

/// Where a channel's gap started: the delivered seq then, and when it was first seen.
type Gaps = HashMap<Arc<str>, (u64, Instant)>;

impl Hub {
    /// Delivers what the other nodes publish until `shutdown`. Runs only in cluster mode.
    pub async fn run_cluster(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(cluster) = self.store.cluster() else {
            return;
        };
        let Some(mut feed) = cluster.take_feed() else {
            return;
        };
        let mut sweep = tokio::time::interval(SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut gaps = Gaps::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                heard = feed.recv() => match heard {
                    Some(remote) => {
                        self.heard(remote);
                        // What else waits is taken now, without another turn of the select.
                        drain(&self, &mut feed);
                    }
                    None => return,
                },
                _ = sweep.tick() => {
                    if let Err(e) = self.fill_gaps(cluster, &mut gaps).await {
                        tracing::warn!(error = %e, "filling gaps from the cluster's logs");
                    }
                }
            }
        }
    }

    fn heard(&self, remote: Remote) {
        match remote {
            Remote::Logged { channel, message } => self.heard_logged(&channel, message),
            Remote::Live {
                channel,
                message,
                keyframe,
            } => self.deliver_live(&channel, message, keyframe),
        }
    }

    /// A durable message from any node: pending on its channel until the run before it is in.
    fn heard_logged(&self, channel: &str, message: Arc<StoredMessage>) {
        let Some(entry) = self.registry.get(channel) else {
            return;
        };
        {
            let mut st = entry.state.lock();
            if st.removed || message.seq <= st.delivered {
                return;
            }
            st.pending
                .entry(message.seq)
                .or_insert((Ticket::DURABLE, message));
        }
        self.release(&entry);
    }

    /// Reads what the feed missed, for every logged channel whose gap outlasted the grace.
    async fn fill_gaps(
        &self,
        cluster: &dyn Cluster,
        gaps: &mut Gaps,
    ) -> crate::store::error::Result<()> {
        let entries = self.registry.logged();
        if entries.is_empty() {
            gaps.clear();
            return Ok(());
        }
        let names: Vec<Arc<str>> = entries.iter().map(|c| c.name.clone()).collect();
        let heads = cluster.heads(&names).await?;
        let now = Instant::now();
        let grace = cluster.gap_grace();
        let mut open = Gaps::new();
        for (entry, head) in entries.iter().zip(heads) {
            let (delivered, upto) = {
                let st = entry.state.lock();
                let before_pending = st.pending.keys().next().map_or(head, |k| k - 1);
                (st.delivered, before_pending.min(head))
            };
            if upto <= delivered {
                continue;
            }
            let since = match gaps.get(&entry.name) {
                Some(&(at, since)) if at == delivered => since,
                _ => now,
            };
            if now.duration_since(since) < grace {
                open.insert(entry.name.clone(), (delivered, since));
                continue;
            }
            let missing = self.store.read(&entry.name, delivered, upto, FILL).await?;
            if !missing.is_empty() {
                cluster.replicated().await?;
            }
            {
                let mut st = entry.state.lock();
                if st.removed || st.delivered != delivered {
                    continue;
                }
                let first = missing.first().map_or(upto + 1, |m| m.seq);
                if first > delivered + 1 {
                    // Gone from the log (retention): nothing to deliver there; a subscriber
                    // that needs them is told where the log starts when it resumes.
                    tracing::warn!(
                        channel = %entry.name,
                        from = delivered + 1,
                        to = first - 1,
                        "messages of a gap are no longer in the log"
                    );
                    st.delivered = first - 1;
                }
                self.stats
                    .cluster_filled
                    .fetch_add(missing.len() as u64, std::sync::atomic::Ordering::Relaxed);
                for message in missing {
                    st.pending
                        .entry(message.seq)
                        .or_insert((Ticket::DURABLE, message));
                }
            }
            self.release(entry);
        }
        *gaps = open;
        Ok(())
    }
}

fn drain(hub: &Hub, feed: &mut mpsc::Receiver<Remote>) {
    for _ in 0..1024 {
        match feed.try_recv() {
            Ok(remote) => hub.heard(remote),
            Err(_) => return,
        }
    }
}
