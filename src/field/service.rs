//! The field service: its settings, its state (the fence and shift caches), what a publish
//! through it answers, the access rules every concern shares (whose org, who manages it), and
//! reading a named field of a payload.
//!
//! The concerns' operations are `impl Field` blocks in the files beside this one; this file
//! must not import them (it sits below them).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::runtime::Handle;

use super::error::{bad, FieldError};
use super::records::{Fence, Shift};
use crate::alerts::Alerts;
use crate::auth::{Identity, Role};
use crate::geofence::FenceIndex;
use crate::hub::{Hub, Published};
use crate::store::Store;

/// Field settings.
#[derive(Debug, Clone, Copy)]
pub struct FieldConfig {
    /// How far in the future a location's `ts` may be.
    pub max_clock_skew: Duration,
    /// Vertices a polygon fence may have.
    pub max_fence_vertices: usize,
    /// The shortest welfare check-in interval.
    pub check_in_min_interval: Duration,
    /// Guards per org with lone-worker state.
    pub max_welfare_guards_per_org: usize,
    /// Silence (no connection, no position) of a guard on shift before LOST_CONTACT.
    pub lost_contact_after: Duration,
}

/// Lone-worker counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct WelfareStats {
    /// "I'm OK" check-ins.
    pub check_ins: AtomicU64,
    /// Pre-alarms sent to guards' phones.
    pub pre_alarms: AtomicU64,
    /// CHECK_IN_MISSED alerts raised.
    pub missed: AtomicU64,
    /// DURESS alerts raised.
    pub duress: AtomicU64,
    /// LOST_CONTACT alerts raised.
    pub lost_contact: AtomicU64,
}

/// Result of a publish through the field layer.
#[derive(Debug, Clone, Serialize)]
pub struct FieldPublished {
    /// What the hub reports.
    #[serde(flatten)]
    pub published: Published,
    /// The alert an emergency publish raised.
    #[serde(rename = "alertId", skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
}

/// The field operations service.
pub struct Field {
    pub(super) me: Weak<Field>,
    /// Where emergencies are handled (see [`crate::urgent`]).
    pub(super) urgent: Handle,
    pub(super) hub: Arc<Hub>,
    pub(super) store: Arc<dyn Store>,
    pub(super) alerts: Arc<Alerts>,
    pub(super) config: FieldConfig,
    /// Compiled fences per org, rebuilt when a fence changes.
    pub(super) fences: Mutex<HashMap<String, Arc<FenceIndex<Fence>>>>,
    /// Shifts by guard, for the fence checks of every location; rebuilt when a shift changes.
    pub(super) shifts: Mutex<ShiftIndex>,
    /// One change at a time per guard's lone-worker state.
    pub(super) welfare_turns: crate::alerts::Turns,
    /// Lone-worker counters.
    pub welfare_stats: WelfareStats,
    /// Wrong PINs per guard on this node: (window start ms, count).
    pub(super) wrong_pins: Mutex<HashMap<String, (u64, u32)>>,
}

/// Shifts by guard, and which change of the shifts it was loaded after.
#[derive(Default)]
pub(super) struct ShiftIndex {
    pub(super) by_user: Option<Arc<HashMap<String, Vec<Shift>>>>,
    /// Bumped by every shift change, so a load that raced one is not kept.
    pub(super) generation: u64,
}

/// An id shaped like the random (UUID) ids of alerts, the same for the same `parts`: what
/// makes a retried or refired raise find the alert it raised.
pub(crate) fn derived_id(parts: &[&str]) -> String {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        digest.update(&(part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.finish().as_ref()[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

pub(super) fn map_field<'a>(data: &'a rmpv::Value, name: &str) -> Option<&'a rmpv::Value> {
    data.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}

impl Field {
    /// The service, keeping its records in `store` and publishing through `hub`.
    pub fn new(
        hub: Arc<Hub>,
        store: Arc<dyn Store>,
        alerts: Arc<Alerts>,
        config: FieldConfig,
        urgent: Handle,
    ) -> Arc<Self> {
        let field = Arc::new_cyclic(|me| Field {
            me: me.clone(),
            urgent,
            hub,
            store,
            alerts,
            config,
            fences: Mutex::default(),
            shifts: Mutex::default(),
            welfare_turns: crate::alerts::Turns::default(),
            welfare_stats: WelfareStats::default(),
            wrong_pins: Mutex::default(),
        });
        // The alerts' timer task fires the guards' check-in deadlines through the field.
        let handler: Weak<dyn crate::alerts::TimerHandler> = Arc::downgrade(&field) as Weak<_>;
        field.alerts.set_timer_handler(handler);
        field
    }

    /// The alert service.
    pub fn alerts(&self) -> &Arc<Alerts> {
        &self.alerts
    }

    pub(super) fn org_for(
        &self,
        who: &Identity,
        requested: Option<&str>,
    ) -> Result<String, FieldError> {
        match (requested, &who.org) {
            (Some(org), _) if who.is(Role::Admin) => Ok(org.to_string()),
            (Some(org), Some(own)) if org == &**own => Ok(org.to_string()),
            (Some(_), _) => Err(FieldError::Forbidden("another organization")),
            (None, Some(own)) => Ok(own.to_string()),
            (None, None) => bad("an admin must name the `org`"),
        }
    }

    pub(super) fn may_manage(who: &Identity, org: &str) -> bool {
        who.is(Role::Admin) || (who.is(Role::Supervisor) && who.in_org(org))
    }
}
