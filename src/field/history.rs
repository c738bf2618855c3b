//! Location history: a user's fixes in a client-time window, read from the channel's log.

use std::time::Duration;

use super::error::FieldError;
use super::location::Location;
use super::service::Field;
use crate::auth::Identity;

/// Messages read per page when a user's location history is walked.
const HISTORY_PAGE: usize = 1000;

/// The earliest server time a location with client time `ts` can have been received at: a
/// fix is refused when its `ts` is more than `max_clock_skew` ahead of its receipt.
fn earliest_receipt(ts: u64, max_clock_skew: Duration) -> u64 {
    ts.saturating_sub(max_clock_skew.as_millis() as u64)
}

impl Field {
    /// `user`'s locations with `from <= ts <= to` (client time, ms), at most `limit`, in seq
    /// order with their seqs; read from where the log can first hold such a fix.
    pub async fn location_history(
        &self,
        who: &Identity,
        user: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Location)>, FieldError> {
        let channel = crate::channel::names::location(user);
        let start = self
            .hub
            .seq_before(
                who,
                &channel,
                earliest_receipt(from, self.config.max_clock_skew),
            )
            .await?;
        let mut points = Vec::new();
        self.hub
            .walk_history(who, &channel, start, HISTORY_PAGE, |m| {
                if let Ok(l) = Location::parse(&m.data, Duration::MAX) {
                    if l.ts >= from && l.ts <= to {
                        points.push((m.seq, l));
                    }
                }
                points.len() < limit
            })
            .await?;
        Ok(points)
    }
}
