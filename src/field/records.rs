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
