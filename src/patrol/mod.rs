//! Patrols: checkpoints with signed codes, tours on a schedule, guards' scans, and
//! `TOUR_MISSED` when a round's window ends with checkpoints unscanned, and guards' incident
//! reports with photos (issue 37; the design and what is left are in `docs/plans/patrols.md`).
//!
//! # Layout
//! One file per concern, each adding its operations to [`Patrols`] (`impl Patrols` blocks):
//! `checkpoints.rs`, `tours.rs`, `scans.rs`, `timers.rs` (the window's end), `incidents.rs`
//! (incident reports and their photos), `sheet.rs` (the printable QR sheet) and `history.rs`
//! (a guard's scans and ended rounds, for the shift report) on top; `codes.rs`
//! (signed checkpoint ids) and `schedule.rs` (rounds) below them; `service.rs` (the service,
//! access rules, budgets), `records.rs` and `error.rs` at the bottom. Records are
//! `Record::Patrol { org, kind, id }`, one set per kind (`records.rs` names the kinds).

mod checkpoints;
mod codes;
mod error;
mod history;
mod incidents;
mod records;
mod scans;
mod schedule;
mod service;
mod sheet;
mod timers;
mod tours;

pub use self::checkpoints::CheckpointView;
pub use self::error::PatrolError;
pub use self::history::{PatrolHistory, RoundOutcome};
pub use self::incidents::{Filed, CATEGORIES};
pub use self::records::{
    Checkpoint, CheckpointSpec, Comment, Incident, IncidentSpec, PhotoInfo, Scan, ScanSpec,
    Schedule, Tour, TourSpec, TourState,
};
pub use self::scans::ScanResult;
pub use self::schedule::{hh_mm, round_after, Round, MINUTE};
pub use self::service::{PatrolStats, Patrols};
pub use self::tours::{CurrentTour, TourStop};
