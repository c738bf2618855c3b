//! A connection's live lane: live-only deliveries (video, org locations, presence) queued apart
//! from logged traffic, so that they never delay an alert and never make a connection close.
//!
//! The lane is bounded in deliveries and in bytes: when either is full a new live message is
//! dropped for this connection, as a video frame always was (a phone's 256 KiB frames fill
//! the bytes long before the count). A delivery that names what it supersedes (a guard's position on
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
    /// The lane holds its count of deliveries (or is closed): dropped for this connection.
    Dropped,
    /// The lane holds its bytes: dropped for this connection.
    OverBytes,
}

struct Slot<T> {
    key: Option<Arc<str>>,
    item: T,
    bytes: usize,
}

struct Lane<T> {
    slots: VecDeque<Slot<T>>,
    /// The absolute position of `slots[0]`.
    front: u64,
    /// Key → absolute position of the waiting delivery with it.
    by_key: HashMap<Arc<str>, u64>,
    /// Bytes of the waiting deliveries.
    bytes: usize,
    closed: bool,
}

impl<T> Default for Lane<T> {
    fn default() -> Self {
        Lane {
            slots: VecDeque::new(),
            front: 0,
            by_key: HashMap::new(),
            bytes: 0,
            closed: false,
        }
    }
}

/// The live lane of one connection, of whatever the connection's writer takes (`T`).
pub struct LiveLane<T> {
    lane: Mutex<Lane<T>>,
    ready: Notify,
    capacity: usize,
    capacity_bytes: usize,
}

impl<T> LiveLane<T> {
    /// A lane holding at most `capacity` deliveries of at most `capacity_bytes` together.
    pub fn new(capacity: usize, capacity_bytes: usize) -> Self {
        LiveLane {
            lane: Mutex::new(Lane::default()),
            ready: Notify::new(),
            capacity,
            capacity_bytes,
        }
    }

    /// Queues `item` of `bytes`, replacing the waiting one with the same `key` if there is one.
    pub fn offer(&self, item: T, key: Option<Arc<str>>, bytes: usize) -> Offered {
        let mut lane = self.lane.lock();
        if lane.closed {
            return Offered::Dropped;
        }
        if let Some(at) = key.as_ref().and_then(|k| lane.by_key.get(k)).copied() {
            let index = (at - lane.front) as usize;
            let held = lane.bytes;
            if let Some(slot) = lane.slots.get_mut(index) {
                if held - slot.bytes + bytes <= self.capacity_bytes {
                    let before = std::mem::replace(&mut slot.bytes, bytes);
                    slot.item = item;
                    lane.bytes = held - before + bytes;
                    return Offered::Replaced;
                }
                return Offered::OverBytes;
            }
        }
        if lane.slots.len() >= self.capacity {
            return Offered::Dropped;
        }
        if lane.bytes + bytes > self.capacity_bytes {
            return Offered::OverBytes;
        }
        let at = lane.front + lane.slots.len() as u64;
        if let Some(k) = &key {
            lane.by_key.insert(k.clone(), at);
        }
        lane.bytes += bytes;
        lane.slots.push_back(Slot { key, item, bytes });
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
        lane.bytes -= slot.bytes;
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

    /// Bytes of the deliveries waiting.
    pub fn bytes(&self) -> usize {
        self.lane.lock().bytes
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
        lane.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_full_of_bytes_drops_what_comes_until_the_writer_takes_some() {
        let lane = LiveLane::new(1000, 600 * 1024);
        let frame = 256 * 1024;
        assert_eq!(lane.offer(1, None, frame), Offered::Queued);
        assert_eq!(lane.offer(2, None, frame), Offered::Queued);
        // A third frame would pass 600 KiB: dropped though the count has room for 998 more.
        assert_eq!(lane.offer(3, None, frame), Offered::OverBytes);
        assert_eq!(lane.bytes(), 2 * frame);
        // Small messages still fit beside them.
        assert_eq!(lane.offer(4, None, 100), Offered::Queued);
        assert_eq!(lane.pop(), Some(1));
        assert_eq!(lane.offer(5, None, frame), Offered::Queued);
        assert_eq!(lane.bytes(), 2 * frame + 100);
        lane.close();
        assert_eq!(lane.bytes(), 0);
    }

    #[test]
    fn a_superseding_delivery_is_charged_its_own_size() {
        let lane = LiveLane::new(10, 1000);
        let key: Option<Arc<str>> = Some(Arc::from("g1"));
        assert_eq!(lane.offer(1, key.clone(), 100), Offered::Queued);
        assert_eq!(lane.offer(2, key.clone(), 300), Offered::Replaced);
        assert_eq!(lane.bytes(), 300);
        assert_eq!(lane.offer(3, key.clone(), 1001), Offered::OverBytes);
        assert_eq!(lane.pop(), Some(2));
        assert_eq!(lane.bytes(), 0);
    }
}
