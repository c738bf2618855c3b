//! What an alert is: its type, priority and state, the record as kept and served with its
//! audit trail, and a request to raise one.
//!
//! Plain data; how an alert changes is in `lifecycle.rs` and `escalation.rs`.

use serde::{Deserialize, Serialize};

/// Alert types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AlertType {
    /// Panic button.
    Panic,
    /// Medical emergency.
    Medical,
    /// Security incident.
    Security,
    /// Fire.
    Fire,
    /// Anything else.
    General,
    /// Raised by Lookout when a guard violates a geofence.
    Geofence,
    /// Raised by Lookout when a guard on a welfare check-in did not check in by the deadline
    /// plus grace.
    #[serde(rename = "CHECK_IN_MISSED")]
    CheckInMissed,
    /// Raised by Lookout when a guard on shift had no connection and no position for
    /// `field.lost_contact_after`; resolves itself when the phone comes back.
    #[serde(rename = "LOST_CONTACT")]
    LostContact,
    /// Raised by the guard app when its man-down / no-motion countdown ran out.
    #[serde(rename = "MAN_DOWN")]
    ManDown,
    /// Raised silently when a guard entered the duress PIN: never told to the guard's own
    /// connections or queues.
    Duress,
    /// Raised by Lookout when a patrol tour's round window ended with checkpoints unscanned.
    #[serde(rename = "TOUR_MISSED")]
    TourMissed,
}

impl AlertType {
    /// Every type, in the order the documents list them.
    pub const ALL: [AlertType; 11] = [
        AlertType::Panic,
        AlertType::Medical,
        AlertType::Security,
        AlertType::Fire,
        AlertType::General,
        AlertType::Geofence,
        AlertType::CheckInMissed,
        AlertType::LostContact,
        AlertType::ManDown,
        AlertType::Duress,
        AlertType::TourMissed,
    ];

    /// The type's name on the wire (as serde writes it).
    pub fn name(self) -> &'static str {
        match self {
            AlertType::Panic => "PANIC",
            AlertType::Medical => "MEDICAL",
            AlertType::Security => "SECURITY",
            AlertType::Fire => "FIRE",
            AlertType::General => "GENERAL",
            AlertType::Geofence => "GEOFENCE",
            AlertType::CheckInMissed => "CHECK_IN_MISSED",
            AlertType::LostContact => "LOST_CONTACT",
            AlertType::ManDown => "MAN_DOWN",
            AlertType::Duress => "DURESS",
            AlertType::TourMissed => "TOUR_MISSED",
        }
    }

    /// The priority an alert of this type gets when the raiser names none: a guard who may
    /// be unable to act is critical, a missed check-in or lost contact is high.
    pub fn default_priority(self) -> Priority {
        match self {
            AlertType::Panic | AlertType::ManDown | AlertType::Duress => Priority::Critical,
            _ => Priority::High,
        }
    }

    /// Whether the guard concerned must never learn of the alert (on any connection, queue
    /// or listing): a duress alarm is silent.
    pub fn silent(self) -> bool {
        self == AlertType::Duress
    }
}

/// Alert priorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Priority {
    /// High.
    High,
    /// Critical.
    Critical,
}

/// Alert states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Nobody acknowledged it yet; it escalates.
    Open,
    /// A supervisor took it; it no longer escalates.
    Acknowledged,
    /// Over.
    Resolved,
}

impl AlertState {
    /// Every state, in life-cycle order.
    pub const ALL: [AlertState; 3] = [
        AlertState::Open,
        AlertState::Acknowledged,
        AlertState::Resolved,
    ];

    /// The state's name, as the wire and the metrics say it.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        }
    }
}

/// Where a guard was.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Accuracy in metres.
    pub accuracy: f64,
    /// Client time, ms.
    pub ts: u64,
}

/// One step in an alert's life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, ms since the Unix epoch.
    pub at: u64,
    /// Who: a user id, or `lookout`.
    pub by: String,
    /// What: `created`, `escalated`, `acknowledged`, `resolved`.
    pub action: String,
    /// The level after this step.
    pub level: u8,
    /// A note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Id.
    pub id: String,
    /// Org.
    pub org: String,
    /// The guard concerned.
    pub user: String,
    /// Type.
    #[serde(rename = "type")]
    pub kind: AlertType,
    /// Priority.
    pub priority: Priority,
    /// State.
    pub state: AlertState,
    /// Escalation level reached: 1 at creation, then 2 and 3.
    pub level: u8,
    /// Creation time, ms.
    pub created_at: u64,
    /// Last change, ms.
    pub updated_at: u64,
    /// The guard's last known position at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For GEOFENCE alerts: the fence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<String>,
    /// The site of the guard's shift when the alert was raised, if on one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Escalations still pending: (due ms, level).
    #[serde(default)]
    pub pending: Vec<(u64, u8)>,
    /// Every change, oldest first.
    pub audit: Vec<AuditEntry>,
}

/// A request to raise an alert.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// Org.
    pub org: String,
    /// The guard concerned.
    pub user: String,
    /// Type.
    pub kind: AlertType,
    /// Priority.
    pub priority: Priority,
    /// Free text.
    pub message: Option<String>,
    /// Where the guard was.
    pub position: Option<Position>,
    /// For GEOFENCE alerts.
    pub fence: Option<String>,
    /// The site of the guard's shift, if on one.
    pub site: Option<String>,
    /// Who raised it.
    pub by: String,
}

/// Which alerts a listing asks for: every condition set must hold. Times are the alert's
/// creation (`from`, `to`, inclusive) or last change (`since`), in ms.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    /// Only alerts in this state.
    pub state: Option<AlertState>,
    /// Only alerts of this type.
    pub kind: Option<AlertType>,
    /// Only alerts of this guard.
    pub user: Option<String>,
    /// Only alerts changed at or after this time.
    pub since: Option<u64>,
    /// Only alerts created at or after this time.
    pub from: Option<u64>,
    /// Only alerts created at or before this time.
    pub to: Option<u64>,
}

impl AlertQuery {
    /// Whether `alert` is one the query asks for.
    pub fn matches(&self, alert: &Alert) -> bool {
        self.state.is_none_or(|s| alert.state == s)
            && self.kind.is_none_or(|k| alert.kind == k)
            && self.user.as_deref().is_none_or(|u| alert.user == u)
            && self.since.is_none_or(|t| alert.updated_at >= t)
            && self.from.is_none_or(|t| alert.created_at >= t)
            && self.to.is_none_or(|t| alert.created_at <= t)
    }
}

#[cfg(test)]
mod tests {
    use super::AlertType;

    #[test]
    fn every_type_is_listed_once_under_the_name_serde_gives_it() {
        for (i, kind) in AlertType::ALL.iter().enumerate() {
            let wire = serde_json::to_value(kind).expect("a type serializes");
            assert_eq!(wire, kind.name(), "{kind:?}");
            assert!(!AlertType::ALL[..i].contains(kind), "{kind:?} listed twice");
        }
    }
}
