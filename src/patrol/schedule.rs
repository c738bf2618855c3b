//! A tour's schedule: checking one, and which round is open or next at a time.
//!
//! Round `k` (0 ≤ k < rounds) of UTC day `d` starts at `d + start + k·every` and has until
//! `start_k + window`; `window ≤ every` and `rounds·every ≤ 24 h`, so the rounds of one day never
//! overlap those of the next.

use super::error::{bad, PatrolError};
use super::records::Schedule;

/// A real minute, ms (tests shorten a schedule's minute: `testing.patrol_minute`).
pub const MINUTE: u64 = 60_000;

/// A round: its start and its window's end, ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Start, ms.
    pub start: u64,
    /// Window end, ms.
    pub end: u64,
}

/// Minutes after midnight of `HH:MM`.
fn start_minute(start: &str) -> Option<u64> {
    let (h, m) = start.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u64, u64) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Checks a schedule.
pub(super) fn check(schedule: &Schedule) -> Result<(), PatrolError> {
    if start_minute(&schedule.start).is_none() {
        return bad("`schedule.start` must be HH:MM (UTC)");
    }
    let (every, rounds, window) = (
        u64::from(schedule.every_minutes),
        u64::from(schedule.rounds),
        u64::from(schedule.window_minutes),
    );
    if every == 0 || rounds == 0 || window == 0 {
        return bad("`schedule.every_minutes`, `rounds` and `window_minutes` must be at least 1");
    }
    if window > every {
        return bad("`schedule.window_minutes` must be at most `every_minutes`");
    }
    if every * rounds > 24 * 60 {
        return bad("`schedule.rounds` × `every_minutes` must be at most 24 h");
    }
    Ok(())
}

/// The earliest round whose window ends after `at`: the one open at `at`, else the next, with
/// minutes of `minute` ms. `None` only for a schedule [`check`] refuses.
pub fn round_after(schedule: &Schedule, minute: u64, at: u64) -> Option<Round> {
    let minute = minute.max(1);
    let day = 24 * 60 * minute;
    let start = start_minute(&schedule.start)? * minute;
    let every = u64::from(schedule.every_minutes) * minute;
    let window = u64::from(schedule.window_minutes) * minute;
    let today = at / day * day;
    let mut best: Option<Round> = None;
    for midnight in [today.saturating_sub(day), today, today + day] {
        for k in 0..u64::from(schedule.rounds) {
            let s = midnight + start + k * every;
            let round = Round {
                start: s,
                end: s + window,
            };
            if round.end > at && best.is_none_or(|b| round.start < b.start) {
                best = Some(round);
            }
        }
    }
    best
}

/// `HH:MM` of a time in ms, with minutes of `minute` ms (UTC).
pub fn hh_mm(at: u64, minute: u64) -> String {
    let minutes = at / minute.max(1) % (24 * 60);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn night() -> Schedule {
        Schedule {
            start: "22:00".into(),
            every_minutes: 120,
            rounds: 4,
            window_minutes: 30,
        }
    }

    #[test]
    fn a_night_tour_has_rounds_at_22_00_24_and_2_and_4() {
        let day = 20_000 * 24 * 60 * MINUTE;
        let h = |n: u64| day + n * 60 * MINUTE;
        // At 21:00: the 22:00 round is next.
        assert_eq!(
            round_after(&night(), MINUTE, h(21)),
            Some(Round {
                start: h(22),
                end: h(22) + 30 * MINUTE
            })
        );
        // At 22:10 it is open.
        assert_eq!(
            round_after(&night(), MINUTE, h(22) + 10 * MINUTE).map(|r| r.start),
            Some(h(22))
        );
        // At 22:30 (its end) the midnight round is next.
        assert_eq!(
            round_after(&night(), MINUTE, h(22) + 30 * MINUTE).map(|r| r.start),
            Some(h(24))
        );
        // At 03:00 the next day: the 04:00 round (22 + 3·2).
        assert_eq!(
            round_after(&night(), MINUTE, h(27)).map(|r| r.start),
            Some(h(28))
        );
        // At 05:00: the next night's 22:00.
        assert_eq!(
            round_after(&night(), MINUTE, h(29)).map(|r| r.start),
            Some(h(46))
        );
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert!(check(&night()).is_ok());
        for (start, every, rounds, window) in [
            ("24:00", 60, 1, 10),
            ("7:00", 60, 1, 10),
            ("07:00", 0, 1, 10),
            ("07:00", 60, 1, 61),
            ("07:00", 60, 25, 10),
            ("07:00", 60, 1, 0),
        ] {
            let s = Schedule {
                start: start.into(),
                every_minutes: every,
                rounds,
                window_minutes: window,
            };
            assert!(check(&s).is_err(), "{s:?}");
        }
    }
}
