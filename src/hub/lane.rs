//! A connection's live lane: live-only deliveries (video, org locations, presence) queued apart
//! from logged traffic, so that they never delay an alert and never make a connection close.
//!
//! The lane is bounded: when it is full a new live message is dropped for this connection, as
//! a video frame always was. A delivery that names what it supersedes (a guard's position on
//! an org's locations) replaces the one still waiting with the same key: the latest position of
//! each guard wins, and a slow supervisor catches up on where everyone is now, not where they
//! were. The lane never blocks and never touches a socket.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// What became of an offered delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Queued at the back.
    Queued,
    /// It took the place of a waiting delivery with the same key.
    Replaced,
    /// The lane is full (or closed): dropped for this connection.
    Dropped,
}

struct Slot<T> {
    key: Option<Arc<str>>,
    item: T,
}

struct Lane<T> {
    slots: VecDeque<Slot<T>>,
    /// The absolute position of `slots[0]`.
    front: u64,
    /// Key → absolute position of the waiting delivery with it.
    by_key: HashMap<Arc<str>, u64>,
    closed: bool,
}

impl<T> Default for Lane<T> {
    fn default() -> Self {
        Lane {
            slots: VecDeque::new(),
            front: 0,
            by_key: HashMap::new(),
            closed: false,
        }
    }
}

/// The live lane of one connection, of whatever the connection's writer takes (`T`).
pub struct LiveLane<T> {
    lane: Mutex<Lane<T>>,
    ready: Notify,
    capacity: usize,
}

impl<T> LiveLane<T> {
    /// A lane holding at most `capacity` deliveries.
    pub fn new(capacity: usize) -> Self {
        LiveLane {
            lane: Mutex::new(Lane::default()),
            ready: Notify::new(),
            capacity,
        }
    }

    /// Queues `item`, replacing the waiting one with the same `key` if there is one.
    pub fn offer(&self, item: T, key: Option<Arc<str>>) -> Offered {
        let mut lane = self.lane.lock();
        if lane.closed {
            return Offered::Dropped;
        }
        if let Some(at) = key.as_ref().and_then(|k| lane.by_key.get(k)).copied() {
            let index = (at - lane.front) as usize;
            if let Some(slot) = lane.slots.get_mut(index) {
                slot.item = item;
                return Offered::Replaced;
            }
        }
        if lane.slots.len() >= self.capacity {
            return Offered::Dropped;
        }
        let at = lane.front + lane.slots.len() as u64;
        if let Some(k) = &key {
            lane.by_key.insert(k.clone(), at);
        }
        lane.slots.push_back(Slot { key, item });
        drop(lane);
        self.ready.notify_one();
        Offered::Queued
    }

    /// The oldest waiting delivery.
    pub fn pop(&self) -> Option<T> {
        let mut lane = self.lane.lock();
        let slot = lane.slots.pop_front()?;
        let at = lane.front;
        lane.front += 1;
        if let Some(k) = &slot.key {
            if lane.by_key.get(k) == Some(&at) {
                lane.by_key.remove(k);
            }
        }
        Some(slot.item)
    }

    /// Waits for the next delivery. Cancel-safe: a delivery is taken only when this resolves.
    pub async fn next(&self) -> T {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(item) = self.pop() {
                return item;
            }
            notified.await;
        }
    }

    /// Deliveries waiting.
    pub fn len(&self) -> usize {
        self.lane.lock().slots.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops what waits and refuses what comes: the connection is over.
    pub fn close(&self) {
        let mut lane = self.lane.lock();
        lane.closed = true;
        lane.slots.clear();
        lane.by_key.clear();
    }
}
