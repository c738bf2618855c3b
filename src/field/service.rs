//! The field service: its settings, its state (the fence and shift caches), what a publish
//! through it answers, the access rules every concern shares (whose org, who manages it), and
//! reading a named field of a payload.
//!
//! The concerns' operations are `impl Field` blocks in the files beside this one; this file
//! must not import them (it sits below them).

use std::collections::HashMap;
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
}

/// Shifts by guard, and which change of the shifts it was loaded after.
#[derive(Default)]
pub(super) struct ShiftIndex {
    pub(super) by_user: Option<Arc<HashMap<String, Vec<Shift>>>>,
    /// Bumped by every shift change, so a load that raced one is not kept.
    pub(super) generation: u64,
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
        Arc::new_cyclic(|me| Field {
            me: me.clone(),
            urgent,
            hub,
            store,
            alerts,
            config,
            fences: Mutex::default(),
            shifts: Mutex::default(),
        })
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
