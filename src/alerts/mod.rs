//! Emergency alerts: records, their state machine (`open → acknowledged → resolved`), their
//! audit trail, and the escalation timers.
//!
//! An alert and its timers are written in one atomic store write; a timer is removed in the
//! same write that raises the alert's level, so after a restart every pending timer fires once,
//! at its due time or at once if overdue. One task drives all timers from the store's due-time
//! index (`select!` on the next due time against a wake-up for new timers). This module decides
//! what an alert is and when it escalates; it does not know about geometry or sockets.
//!
//! # Layout
//! `model.rs` (what an alert is) and `error.rs` at the bottom; `census.rs` (counts by state
//! and level) and `turns.rs` (one transition at a time per alert) beside them; `service.rs`
//! (the service's settings and state) above those; `lifecycle.rs` (create, read, acknowledge,
//! resolve, purge) and `escalation.rs` (the timers) on top, as `impl Alerts` blocks. A file
//! imports only files below it; this file only declares and re-exports.

mod census;
mod error;
mod escalation;
mod lifecycle;
mod model;
mod service;
mod turns;

pub use self::error::AlertError;
pub use self::model::{Alert, AlertQuery, AlertState, AlertType, NewAlert, Position, Priority};
pub use self::service::{
    AlertOutbox, Alerts, Escalation, TimerHandler, OTHER_TIMERS, PATROL_TIMERS,
};
pub use self::turns::{AlertTurn, Turns};
