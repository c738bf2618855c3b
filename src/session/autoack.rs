//! STOMP `auto` acknowledgements of one connection, coalesced: a message the writer has written
//! counts as consumed, and its acknowledgement is recorded by one task per connection at a
//! time, which takes everything written meanwhile — one cursor move per user queue, however
//! many messages of it were written.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::channel::ChannelKind;
use crate::hub::{ConnHandle, Hub};

/// What waits to be recorded, per public channel name.
#[derive(Default)]
struct Pending {
    /// A user's queue: the highest seq written (the cursor moves once, to it).
    cursors: BTreeMap<Arc<str>, u64>,
    /// `ack_required` messages: each is recorded.
    singles: BTreeMap<Arc<str>, BTreeSet<u64>>,
    /// Whether a task is recording.
    recording: bool,
}

/// The auto acknowledgements of one connection.
#[derive(Default)]
pub struct AutoAcks {
    pending: Mutex<Pending>,
}

impl AutoAcks {
    /// Records, soon, that `seq` on `channel` (of `kind`) was consumed.
    pub fn consumed(
        self: &Arc<Self>,
        hub: &Arc<Hub>,
        conn: &Arc<ConnHandle>,
        channel: &Arc<str>,
        kind: ChannelKind,
        seq: u64,
    ) {
        let start = {
            let mut pending = self.pending.lock();
            if kind == ChannelKind::UserQueue {
                let cursor = pending.cursors.entry(channel.clone()).or_insert(0);
                *cursor = (*cursor).max(seq);
            } else {
                pending
                    .singles
                    .entry(channel.clone())
                    .or_default()
                    .insert(seq);
            }
            !std::mem::replace(&mut pending.recording, true)
        };
        if start {
            let (acks, hub2, conn) = (self.clone(), hub.clone(), conn.clone());
            hub.tasks()
                .spawn(async move { acks.record(&hub2, &conn).await });
        }
    }

    /// Records what is pending until nothing is.
    async fn record(&self, hub: &Hub, conn: &ConnHandle) {
        loop {
            let (cursors, singles) = {
                let mut pending = self.pending.lock();
                if pending.cursors.is_empty() && pending.singles.is_empty() {
                    pending.recording = false;
                    return;
                }
                (
                    std::mem::take(&mut pending.cursors),
                    std::mem::take(&mut pending.singles),
                )
            };
            let each = cursors.into_iter().chain(
                singles
                    .into_iter()
                    .flat_map(|(c, seqs)| seqs.into_iter().map(move |seq| (c.clone(), seq))),
            );
            for (channel, seq) in each {
                if let Err(e) = hub.acknowledge(&conn.identity, &channel, seq).await {
                    tracing::warn!(%channel, seq, error = %e, "auto acknowledgement failed");
                }
            }
        }
    }
}
