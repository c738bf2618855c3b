//! Patrol records as kept (each kind a set of its own under `Record::Patrol { org, kind, id }`)
//! and what clients send to make them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Record kinds (the `kind` of `Record::Patrol`).
pub(super) const CHECKPOINT: &str = "cp";
/// Tours.
pub(super) const TOUR: &str = "tour";
/// A tour's current round.
pub(super) const ROUND: &str = "round";
/// Scans, by `{user}/{client key}`.
pub(super) const SCAN: &str = "scan";
/// A guard's scans received in a day (UTC), by `{user}/{day number}`: the daily budget's
/// count, one small record instead of a read of every scan.
pub(super) const SCAN_COUNT: &str = "count";
/// The org's checkpoint signing key (id [`SIGNING_KEY`]).
pub(super) const KEY: &str = "key";
/// The id of the signing key.
pub(super) const SIGNING_KEY: &str = "checkpoint";

/// A checkpoint: a place a guard on tour scans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Id.
    pub id: String,
    /// Org.
    pub org: String,
    /// Name, printed under its code.
    pub name: String,
    /// Site it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Latitude (WGS84; the site plan is georeferenced).
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// How far from it (m, plus the fix's accuracy) a scan may be before it is flagged far.
    pub radius_m: f64,
    /// What the guard does there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Creation time, ms.
    pub created_at: u64,
}

/// What clients send to create or replace a checkpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Name.
    pub name: String,
    /// Site.
    #[serde(default)]
    pub site: Option<String>,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Radius, m (default 30).
    #[serde(default)]
    pub radius_m: Option<f64>,
    /// Instructions.
    #[serde(default)]
    pub instructions: Option<String>,
}

/// When a tour's rounds are: `rounds` rounds a day, the first at `start` (UTC, `HH:MM`), one
/// every `every_minutes`, each to be completed within `window_minutes` of its start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// First round's start, `HH:MM` UTC.
    pub start: String,
    /// Minutes between round starts.
    pub every_minutes: u32,
    /// Rounds a day (`rounds * every_minutes` ≤ 24 h).
    pub rounds: u32,
    /// Minutes a round has to be completed (≤ `every_minutes`).
    pub window_minutes: u32,
}

/// A tour: checkpoints to scan on a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tour {
    /// Id.
    pub id: String,
    /// Org.
    pub org: String,
    /// Name.
    pub name: String,
    /// Site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Checkpoint ids, in order when `ordered`.
    pub checkpoints: Vec<String>,
    /// Whether the checkpoints are to be scanned in order (out of order is flagged).
    #[serde(default)]
    pub ordered: bool,
    /// When its rounds are.
    pub schedule: Schedule,
    /// The guards it is assigned to.
    pub guards: Vec<String>,
    /// Creation time, ms.
    pub created_at: u64,
}

/// What clients send to create or replace a tour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TourSpec {
    /// Name.
    pub name: String,
    /// Site.
    #[serde(default)]
    pub site: Option<String>,
    /// Checkpoint ids.
    pub checkpoints: Vec<String>,
    /// Ordered.
    #[serde(default)]
    pub ordered: bool,
    /// Schedule.
    pub schedule: Schedule,
    /// Guards (at least one).
    pub guards: Vec<String>,
}

/// A tour's current round, as kept (`round/{tour}`): what was scanned in it and the window
/// timer that ends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TourState {
    /// The round's start, ms.
    pub round_start: u64,
    /// Its window's end, ms: the due time of its timer.
    pub window_end: u64,
    /// Checkpoints scanned in the round: checkpoint id → the scan's key.
    #[serde(default)]
    pub scanned: BTreeMap<String, String>,
}

/// A guard's scans received in a day (`count/{user}/{day}`), for the daily budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct ScanCount {
    /// The guard.
    pub user: String,
    /// Days since 1970-01-01 (UTC).
    pub day: u64,
    /// Scans received that day.
    pub count: usize,
}

/// A recorded scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scan {
    /// The phone's key for it (idempotency).
    pub key: String,
    /// Org.
    pub org: String,
    /// The guard.
    pub user: String,
    /// The checkpoint.
    pub checkpoint: String,
    /// The tour whose open round it counted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tour: Option<String>,
    /// That round's start, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_start: Option<u64>,
    /// When the phone scanned it (its clock), ms.
    pub scanned_at: u64,
    /// When it reached the server, ms.
    pub received_at: u64,
    /// Where the phone was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    /// Where the phone was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    /// The fix's accuracy, m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Distance from the checkpoint, m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
    /// Flagged: further than the checkpoint's radius plus the fix's accuracy.
    pub far: bool,
    /// Flagged: scanned out of the tour's order.
    #[serde(default)]
    pub out_of_order: bool,
    /// Flagged: made inside a round's window (offline) but received after that window ended
    /// and its round was settled; `tour` and `round_start` name that round, which stays as it
    /// was (its `TOUR_MISSED`, if any, stands).
    #[serde(default)]
    pub late_arrival: bool,
    /// `qr` or `nfc`.
    pub via: String,
}

/// What the phone sends for a scan.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanSpec {
    /// The checkpoint's code, as read from its QR code or NFC tag.
    pub code: String,
    /// The phone's random key for this scan (8–64 of `[A-Za-z0-9_-]`).
    pub key: String,
    /// When it was scanned (the phone's clock), ms.
    pub scanned_at: u64,
    /// Position.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Position.
    #[serde(default)]
    pub lon: Option<f64>,
    /// Accuracy, m.
    #[serde(default)]
    pub accuracy: Option<f64>,
    /// `qr` (default) or `nfc`.
    #[serde(default)]
    pub via: Option<String>,
}
