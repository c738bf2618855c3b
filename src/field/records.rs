//! Fences and shifts as kept and served, and what clients send to make them.
//!
//! Plain data: the service (`service.rs`) caches fences and shifts, so these types sit below it;
//! the rules that read and write them are in `fences.rs` and `shifts.rs`.

use serde::{Deserialize, Serialize};

use crate::geofence::{FenceKind, Shape};

/// A geofence as kept and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fence {
    /// Id.
    pub id: String,
    /// Org.
    pub org: String,
    /// Name.
    pub name: String,
    /// Required or forbidden.
    pub kind: FenceKind,
    /// The area.
    pub shape: Shape,
    /// Guards it applies to; none: the whole org.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guards: Option<Vec<String>>,
    /// Site it belongs to; `required` fences of a site apply only while the guard is on shift
    /// there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Creation time, ms.
    pub created_at: u64,
}

/// What clients send to create or replace a fence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FenceSpec {
    /// Name.
    pub name: String,
    /// Required or forbidden.
    pub kind: FenceKind,
    /// The area.
    pub shape: Shape,
    /// Guards it applies to.
    #[serde(default)]
    pub guards: Option<Vec<String>>,
    /// Site.
    #[serde(default)]
    pub site: Option<String>,
    /// Org, for admins (others: their own).
    #[serde(default)]
    pub org: Option<String>,
}

/// Whether a guard is in violation of a fence, and the alert that says so.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FenceState {
    /// In violation now.
    pub violating: bool,
    /// The open GEOFENCE alert.
    #[serde(default)]
    pub alert: Option<String>,
}

/// A guard's shift at a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    /// Id.
    pub id: String,
    /// Org.
    pub org: String,
    /// The guard.
    pub user: String,
    /// The site.
    pub site: String,
    /// Start, ms.
    pub start: u64,
    /// End, ms.
    pub end: u64,
}

/// What clients send to create a shift.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftSpec {
    /// The guard.
    pub user: String,
    /// The guard's org: the caller's own; an admin of no org names it.
    #[serde(default)]
    pub org: Option<String>,
    /// The site.
    pub site: String,
    /// Start, ms.
    pub start: u64,
    /// End, ms.
    pub end: u64,
}

/// Lone-worker settings, of an org, of a site (for the guards on shift there) or of one guard.
/// Times in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WelfareSettings {
    /// Whether check-ins run (off unless an org turns them on).
    #[serde(default)]
    pub enabled: bool,
    /// From one check-in to the next deadline.
    #[serde(default = "WelfareSettings::default_interval")]
    pub interval_ms: u64,
    /// How long before the deadline the guard's phone is reminded.
    #[serde(default = "WelfareSettings::default_pre_alarm")]
    pub pre_alarm_ms: u64,
    /// How long after the deadline CHECK_IN_MISSED is raised.
    #[serde(default = "WelfareSettings::default_grace")]
    pub grace_ms: u64,
    /// Whether the guard app watches for no motion while on shift or in lone work.
    #[serde(default = "WelfareSettings::default_man_down")]
    pub man_down: bool,
    /// How long without significant motion (or lying flat) starts the man-down countdown.
    #[serde(default = "WelfareSettings::default_man_down_after")]
    pub man_down_after_ms: u64,
    /// How long the countdown on the phone lasts before MAN_DOWN is raised.
    #[serde(default = "WelfareSettings::default_man_down_countdown")]
    pub man_down_countdown_ms: u64,
    /// Whether a position fix from the guard's phone counts as a check-in.
    #[serde(default)]
    pub activity_resets: bool,
}

impl WelfareSettings {
    fn default_interval() -> u64 {
        30 * 60_000
    }
    fn default_pre_alarm() -> u64 {
        2 * 60_000
    }
    fn default_grace() -> u64 {
        2 * 60_000
    }
    fn default_man_down() -> bool {
        true
    }
    fn default_man_down_after() -> u64 {
        120_000
    }
    fn default_man_down_countdown() -> u64 {
        15_000
    }
}

impl Default for WelfareSettings {
    fn default() -> Self {
        WelfareSettings {
            enabled: false,
            interval_ms: Self::default_interval(),
            pre_alarm_ms: Self::default_pre_alarm(),
            grace_ms: Self::default_grace(),
            man_down: Self::default_man_down(),
            man_down_after_ms: Self::default_man_down_after(),
            man_down_countdown_ms: Self::default_man_down_countdown(),
            activity_resets: false,
        }
    }
}

/// A PIN as kept: PBKDF2-HMAC-SHA256 with a random salt, never the PIN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinHash {
    /// Random salt, hex.
    pub salt: String,
    /// Derived key, hex.
    pub hash: String,
}

/// One guard's lone-worker state: its check-in deadline and pending timers, lone work, PINs
/// and contact. Kept under `guard/{principal key}`; every change of it is one atomic write with
/// its timers (and the alert it raises).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GuardWelfare {
    /// Org.
    pub org: String,
    /// Guard.
    pub user: String,
    /// Settings overriding the org's for this guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<WelfareSettings>,
    /// Since when the guard is in a session of lone work started in the app (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lone_work_since: Option<u64>,
    /// The next check-in deadline (server time, ms), when armed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<u64>,
    /// Timers pending in the due-time index: (due ms, 0 = pre-alarm | 1 = missed).
    #[serde(default)]
    pub timers: Vec<(u64, u8)>,
    /// The last CHECK_IN_MISSED raised (until the next check-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<String>,
    /// The last check-in (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_in_at: Option<u64>,
    /// The guard's PIN (ends lone work, cancels a countdown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<PinHash>,
    /// The guard's duress PIN: accepted like the PIN, and silently raises DURESS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duress_pin: Option<PinHash>,
    /// The open LOST_CONTACT alert, until the phone comes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_contact: Option<String>,
}
