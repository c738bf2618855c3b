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
/// Incident reports, by id.
pub(super) const INCIDENT: &str = "incident";
/// Incident photos (raw JPEG bytes), by `{incident}/{n}`: kept out of the incident so a
/// listing of incidents never reads photos.
pub(super) const PHOTO: &str = "photo";
/// Each org's incident usage (id: the org), in one set under [`ALL_ORGS`]: every write to
/// an org's incidents goes over its usage record as read, so the byte and count budgets hold
/// exactly across the nodes of a cluster, and the purge task finds the orgs with incidents.
pub(super) const USAGE: &str = "usage";
/// The `org` of records that belong to no one org (never a valid org name: orgs are 1–128
/// characters).
pub(super) const ALL_ORGS: &str = "";
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

/// An incident report, as kept (`incident/{id}`); its photos are records of their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Id (derived from the org, the author and the phone's key).
    pub id: String,
    /// Org.
    pub org: String,
    /// The guard who filed it.
    pub author: String,
    /// What kind of incident (one of `incidents::CATEGORIES`).
    pub category: String,
    /// What happened.
    pub text: String,
    /// The alert it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// `open` or `closed`.
    pub state: String,
    /// Filed, ms.
    pub created_at: u64,
    /// Photos: number and size, in number order.
    #[serde(default)]
    pub photos: Vec<PhotoInfo>,
    /// Comments, oldest first.
    #[serde(default)]
    pub comments: Vec<Comment>,
    /// Closed, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<u64>,
    /// Who closed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
    /// The closing note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_note: Option<String>,
}

/// One photo of an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoInfo {
    /// Its number (1…`patrol.max_photos_per_incident`).
    pub n: u32,
    /// Its size, bytes.
    pub bytes: u64,
}

/// A comment on an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    /// Who wrote it.
    pub by: String,
    /// When, ms.
    pub at: u64,
    /// What.
    pub text: String,
}

/// An org's incident usage (`usage/{org}` under [`ALL_ORGS`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IncidentUsage {
    /// The org.
    pub org: String,
    /// Bytes kept: texts, photos, comments of every incident not purged.
    pub bytes: u64,
    /// The UTC day (days since the epoch) `filed_today` counts.
    pub day: u64,
    /// Reports filed that day, by guard.
    #[serde(default)]
    pub filed_today: BTreeMap<String, u32>,
}

/// What the phone sends to file an incident.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentSpec {
    /// Category.
    pub category: String,
    /// What happened.
    pub text: String,
    /// The alert it is about.
    #[serde(default)]
    pub alert: Option<String>,
    /// The phone's random key for this report (8–64 of `[A-Za-z0-9_-]`).
    pub key: String,
}
