//! Turns: one async lock per alert, so that transitions of one alert run one at a time and
//! transitions of different alerts never wait for each other.

use std::collections::HashMap;
use std::sync::Arc;

/// One async lock per key (an alert, a guard's welfare state), kept only while someone holds it or waits for it.
#[derive(Default)]
pub struct Turns {
    locks: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// An alert's turn; the next transition of the same alert waits for it to be dropped.
pub struct AlertTurn<'a> {
    turns: &'a Turns,
    id: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Turns {
    /// Waits for `id`'s turn.
    pub async fn take(&self, id: &str) -> AlertTurn<'_> {
        let lock = self.locks.lock().entry(id.to_string()).or_default().clone();
        let guard = lock.clone().lock_owned().await;
        AlertTurn {
            turns: self,
            id: id.to_string(),
            lock,
            guard: Some(guard),
        }
    }
}

impl Drop for AlertTurn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.turns.locks.lock();
        // The map's reference and this turn's: nobody else holds or waits for the alert.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn transitions_wait_only_for_their_own_alert_and_leave_no_lock_behind() {
        let turns = Turns::default();
        let a = turns.take("a").await;
        let b = tokio::time::timeout(Duration::from_millis(100), turns.take("b")).await;
        assert!(b.is_ok(), "another alert's turn does not wait");
        drop(b);
        let again = tokio::time::timeout(Duration::from_millis(100), turns.take("a")).await;
        assert!(again.is_err(), "the same alert's turn waits");
        drop(a);
        let again = tokio::time::timeout(Duration::from_millis(100), turns.take("a")).await;
        assert!(again.is_ok(), "and gets it once the first is done");
        drop(again);
        assert!(
            turns.locks.lock().is_empty(),
            "no lock kept for idle alerts"
        );
    }
}
