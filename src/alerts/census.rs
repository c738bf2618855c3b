//! The census: alerts kept, by state and escalation level, counted as they change.
//!
//! Only the counts live here; the changes that move them are in `lifecycle.rs` and
//! `escalation.rs`, the first count at start in `service.rs`.

use std::sync::atomic::{AtomicI64, Ordering};

use super::model::AlertState;

/// Alerts kept, by state and escalation level (1 to 3), counted as alerts change so that
/// reading them (`/metrics`) costs nothing per alert.
#[derive(Default)]
pub struct Census {
    counts: [[AtomicI64; 3]; 3],
}

impl Census {
    pub(super) fn add(&self, state: AlertState, level: u8, n: i64) {
        let s = AlertState::ALL.iter().position(|a| *a == state);
        let cell = s.and_then(|s| self.counts[s].get(usize::from(level).wrapping_sub(1)));
        if let Some(cell) = cell {
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Every (state, level) with its count.
    pub fn counts(&self) -> Vec<(AlertState, u8, i64)> {
        let mut out = Vec::with_capacity(9);
        for (s, state) in AlertState::ALL.iter().enumerate() {
            for level in 1..=3u8 {
                let n = self.counts[s][usize::from(level) - 1].load(Ordering::Relaxed);
                out.push((*state, level, n));
            }
        }
        out
    }
}
