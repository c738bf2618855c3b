//! The channel registry: an entry per channel that has subscribers or messages on their way
//! to durability, with its subscribers, its pending messages and the head readers may see; and
//! the live-only seqs and video keyframes that no store keeps.
//!
//! An entry exists while anything needs it and is dropped when nothing does; whoever holds an
//! `Arc<Channel>` checks [`ChannelState::removed`] under the lock and looks the channel up again.
//! The registry knows no rights, no store calls and no sockets.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::conn::{ConnHandle, View};
use crate::channel::{ChannelKind, Target};
use crate::store::{StoredMessage, Ticket};

/// Messages kept in memory per channel after their delivery, so that a subscriber switching
/// from replay to live delivery can be given the last few under the channel's lock, without
/// reading the store there.
pub const RECENT: usize = 64;

/// One channel that has subscribers or messages on their way to durability.
pub struct Channel {
    /// Stored (unique) name.
    pub name: Arc<str>,
    /// Name as subscribers see it.
    pub public: Arc<str>,
    /// Kind.
    pub kind: ChannelKind,
    pub(super) state: Mutex<ChannelState>,
}

/// What one channel's lock protects.
pub(super) struct ChannelState {
    pub subscribers: HashMap<u64, (Arc<ConnHandle>, View)>,
    /// Publishes that asked the store for a seq and have not queued their message yet; the
    /// entry stays while any is in flight, so its head is never read from a stale store.
    pub in_flight: usize,
    /// Appended to the log, waiting for a commit; by seq. Publishes land out of order when they
    /// race, so delivery takes only the run that follows `delivered` without a gap.
    pub pending: BTreeMap<u64, (Ticket, Arc<StoredMessage>)>,
    /// The last seq handed to subscribers: the durable head as far as readers are concerned.
    pub delivered: u64,
    /// The last [`RECENT`] messages delivered, oldest first.
    pub recent: VecDeque<Arc<StoredMessage>>,
    /// Set when the registry dropped this entry; holders must look the channel up again.
    pub removed: bool,
}

impl ChannelState {
    /// Whether nothing needs the entry any more.
    fn unused(&self) -> bool {
        self.subscribers.is_empty() && self.pending.is_empty() && self.in_flight == 0
    }

    /// Records a delivered message in the in-memory tail.
    pub fn mark_delivered(&mut self, message: &Arc<StoredMessage>) {
        self.delivered = message.seq;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(message.clone());
    }

    /// The delivered messages after `after`, if the in-memory tail still has all of them.
    pub fn tail_after(&self, after: u64) -> Option<Vec<Arc<StoredMessage>>> {
        if after >= self.delivered {
            return Some(Vec::new());
        }
        let oldest = self.recent.front()?.seq;
        (oldest <= after + 1).then(|| {
            self.recent
                .iter()
                .filter(|m| m.seq > after)
                .cloned()
                .collect()
        })
    }
}

/// Told when an entry appears (`true`) or goes (`false`): in cluster mode, which channels this
/// node must hear of from the others. Called under the registry's lock; must not block.
pub type Watcher = Box<dyn Fn(&str, bool) + Send + Sync>;

/// Every channel entry, the live-only heads and the keyframe cache.
#[derive(Default)]
pub struct Registry {
    watcher: std::sync::OnceLock<Watcher>,
    channels: RwLock<HashMap<Arc<str>, Arc<Channel>>>,
    /// Seqs of live-only channels, which the store does not keep.
    live_heads: Mutex<HashMap<Arc<str>, u64>>,
    /// The latest keyframe of each video channel, sent first to a late viewer.
    keyframes: Mutex<HashMap<Arc<str>, Arc<StoredMessage>>>,
}

impl Registry {
    /// The entry of `stored`, created with `head` as its delivered head when there is none. No
    /// entry means nothing is pending or in flight: everything appended so far is durable and
    /// was delivered by the entry that existed then, so the store's head is the durable head.
    pub fn entry(&self, target: &Target, stored: &str, head: impl FnOnce() -> u64) -> Arc<Channel> {
        if let Some(ch) = self.channels.read().get(stored) {
            return ch.clone();
        }
        let mut channels = self.channels.write();
        channels
            .entry(Arc::from(stored))
            .or_insert_with(|| {
                if let Some(watcher) = self.watcher.get() {
                    watcher(stored, true);
                }
                Arc::new(Channel {
                    name: Arc::from(stored),
                    public: Arc::from(target.public_name()),
                    kind: target.kind(),
                    state: Mutex::new(ChannelState {
                        subscribers: HashMap::new(),
                        in_flight: 0,
                        pending: BTreeMap::new(),
                        delivered: head(),
                        recent: VecDeque::new(),
                        removed: false,
                    }),
                })
            })
            .clone()
    }

    /// The entry of `stored`, if there is one.
    pub fn get(&self, stored: &str) -> Option<Arc<Channel>> {
        self.channels.read().get(stored).cloned()
    }

    /// Drops the entry when nothing needs it.
    pub fn maybe_remove(&self, channel: &Arc<Channel>) {
        {
            let st = channel.state.lock();
            if !st.unused() || st.removed {
                return;
            }
        }
        let mut channels = self.channels.write();
        let mut st = channel.state.lock();
        if st.unused() && !st.removed {
            st.removed = true;
            channels.remove(&channel.name);
            if let Some(watcher) = self.watcher.get() {
                watcher(&channel.name, false);
            }
        }
    }

    /// Sets the watcher (once, before any entry exists).
    pub fn set_watcher(&self, watcher: Watcher) {
        let _ = self.watcher.set(watcher);
    }

    /// The entries of logged channels.
    pub fn logged(&self) -> Vec<Arc<Channel>> {
        self.channels
            .read()
            .values()
            .filter(|c| c.kind.is_logged())
            .cloned()
            .collect()
    }

    /// The head readers may see on `stored`, when it has an entry.
    pub fn delivered(&self, stored: &str) -> Option<u64> {
        let channels = self.channels.read();
        channels.get(stored).map(|ch| ch.state.lock().delivered)
    }

    /// Channel entries.
    pub fn len(&self) -> usize {
        self.channels.read().len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next seq of a live-only channel.
    pub fn next_live_seq(&self, stored: &str) -> u64 {
        let mut heads = self.live_heads.lock();
        let head = heads.entry(Arc::from(stored)).or_insert(0);
        *head += 1;
        *head
    }

    /// Keeps the latest keyframe of a video channel.
    pub fn keep_keyframe(&self, stored: &str, message: Arc<StoredMessage>) {
        self.keyframes.lock().insert(Arc::from(stored), message);
    }

    /// Keeps `message` as the latest keyframe unless a later one is kept already (one read
    /// from the cluster may be older than one heard meanwhile).
    pub fn offer_keyframe(&self, stored: &str, message: Arc<StoredMessage>) {
        let mut keyframes = self.keyframes.lock();
        let newer = keyframes
            .get(stored)
            .is_none_or(|kept| kept.seq < message.seq);
        if newer {
            keyframes.insert(Arc::from(stored), message);
        }
    }

    /// The latest keyframe of a video channel, if it was published at or after `since` (ms).
    pub fn keyframe(&self, stored: &str, since: u64) -> Option<Arc<StoredMessage>> {
        self.keyframes
            .lock()
            .get(stored)
            .filter(|k| k.timestamp >= since)
            .cloned()
    }

    /// Forgets keyframes published before `before` (ms): a late viewer would see a stale
    /// picture, and each may hold a frame of `limits.max_video_frame` bytes.
    pub fn forget_keyframes(&self, before: u64) {
        self.keyframes.lock().retain(|_, k| k.timestamp >= before);
    }
}
