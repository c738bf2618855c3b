//! Connections before their first request — the TLS handshake, the request line and its
//! headers: what anyone on the network can make the server hold before presenting a token.
//! Bounded server-wide (`limits.max_pending_connections`) and per peer address
//! (`limits.max_pending_per_peer`). At the server-wide bound the accept loop stops accepting
//! until a place comes back ([`Pending::room`]): new connections wait in the kernel's listen
//! backlog, where they cost nothing, instead of being closed and retried with the clients'
//! backoff (a reconnect storm of 19,000 phones took seconds longer that way). A connection over
//! its address's bound is closed as soon as it is accepted. A place is given back when the
//! first request's headers have arrived (from then on the request's own budgets apply) or the
//! connection ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// The places taken, in all and per peer address (an entry lives while its count is above
/// zero, so the map holds at most `max_pending_connections` addresses).
#[derive(Default)]
pub struct Pending {
    taken: Mutex<(usize, HashMap<IpAddr, usize>)>,
    /// Told when a place comes back.
    freed: tokio::sync::Notify,
}

/// One connection's place; given back when dropped or [`Place::release`]d.
pub struct Place {
    pending: Arc<Pending>,
    peer: IpAddr,
    held: bool,
}

impl Pending {
    /// Takes a place for a connection from `peer`, or `None` when the server or the peer is
    /// at its bound.
    pub fn take(self: &Arc<Self>, peer: IpAddr, max: usize, max_per_peer: usize) -> Option<Place> {
        let mut taken = self.taken.lock();
        let (total, per_peer) = &mut *taken;
        let mine = per_peer.get(&peer).copied().unwrap_or(0);
        if *total >= max || mine >= max_per_peer {
            return None;
        }
        *total += 1;
        per_peer.insert(peer, mine + 1);
        Some(Place {
            pending: self.clone(),
            peer,
            held: true,
        })
    }

    /// Waits until fewer than `max` places are taken; whether it had to wait.
    pub async fn room(&self, max: usize) -> bool {
        let mut waited = false;
        loop {
            // Made before the check: a place given back in between leaves a permit here.
            let freed = self.freed.notified();
            if self.len() < max {
                return waited;
            }
            waited = true;
            freed.await;
        }
    }

    /// Places taken now.
    pub fn len(&self) -> usize {
        self.taken.lock().0
    }

    /// Whether no place is taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Place {
    /// Gives the place back (the first request's headers arrived); later calls do nothing.
    pub fn release(&mut self) {
        if !std::mem::replace(&mut self.held, false) {
            return;
        }
        let mut taken = self.pending.taken.lock();
        let (total, per_peer) = &mut *taken;
        *total -= 1;
        if let Some(n) = per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                per_peer.remove(&self.peer);
            }
        }
        drop(taken);
        self.pending.freed.notify_one();
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_at_its_share_is_refused_while_another_peer_still_gets_a_place() {
        let pending = Arc::new(Pending::default());
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        let first = pending.take(a, 3, 2).expect("first");
        let mut second = pending.take(a, 3, 2).expect("second");
        assert!(pending.take(a, 3, 2).is_none(), "a's share is 2");
        let other = pending.take(b, 3, 2).expect("b gets a place");
        assert!(pending.take(b, 3, 2).is_none(), "the server's bound is 3");
        second.release();
        second.release();
        assert_eq!(pending.len(), 2, "released once");
        drop((first, other));
        assert!(pending.is_empty());
        assert!(pending.taken.lock().1.is_empty(), "no address is kept");
    }
}
