//! The alert service: its settings, its state, and what every alert change shares (loading an
//! alert, telling the webhooks, announcing it on the org's alerts channel and to the guard).
//!
//! The changes themselves are `impl Alerts` blocks in `lifecycle.rs` and `escalation.rs`, which
//! sit above this file; it must not import them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::census::Census;
use super::error::AlertError;
use super::model::Alert;
use super::turns::Turns;
use crate::channel::{ChannelKind, Target};
use crate::hub::Hub;
use crate::notify::Hooks;
use crate::store::{Change, Record, Records, Store};

/// Timers kept in the alerts' due-time index that are not an alert's: ids starting with
/// [`OTHER_TIMERS`] (a guard's welfare check-in deadlines). They are claimed across nodes and
/// survive restarts like escalations; what firing one does is the handler's.
#[async_trait::async_trait]
pub trait TimerHandler: Send + Sync {
    /// Fires the timer `(due, level, id)`: must delete it in the write that carries out its
    /// effect, so that it fires once. Errors are the handler's to log.
    async fn fire(&self, due: u64, level: u8, id: &str);
}

/// The prefix of the ids of timers that are not an alert's (alert ids are UUIDs).
pub const OTHER_TIMERS: &str = "welfare/";

/// Another outbox fed from alert changes in the same atomic write: the alarm receiving
/// centres' (`crate::arc`, which sits above this module and implements it).
pub trait AlertOutbox: Send + Sync {
    /// The records for `event` of `alert` (the `index`-th entry of its history), each
    /// `(record id, encoded record)`, kept as [`Record::ArcOutbox`].
    fn outbox(
        &self,
        event: &str,
        alert: &Alert,
        index: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, crate::store::StoreError>;

    /// After the commit of `records` of them for `org`: wake the deliverers.
    fn written(&self, org: &str, records: usize);
}

/// The outbox records of one alert change: the webhooks' and the alarm receiving centres',
/// each `(record id, encoded record)`.
#[derive(Default)]
pub(super) struct Notices {
    hooks: Vec<(String, Vec<u8>)>,
    arc: Vec<(String, Vec<u8>)>,
}

impl Notices {
    /// The writes of these records, to go with the alert change.
    pub(super) fn changes(&self) -> impl Iterator<Item = Change<'_>> {
        let hooks = self
            .hooks
            .iter()
            .map(|(id, bytes)| Change::Put(Record::Outbox { id }, bytes.clone()));
        let arc = self
            .arc
            .iter()
            .map(|(id, bytes)| Change::Put(Record::ArcOutbox { id }, bytes.clone()));
        hooks.chain(arc)
    }
}

/// The prefix of the ids of patrol tours' window timers (see `crate::patrol`).
pub const PATROL_TIMERS: &str = "patrol/";

/// Escalation intervals.
#[derive(Debug, Clone, Copy)]
pub struct Escalation {
    /// Level 2 after this long without acknowledgement.
    pub level2_after: Duration,
    /// Level 3 after this long without acknowledgement.
    pub level3_after: Duration,
}

/// Alert service.
pub struct Alerts {
    pub(super) hub: Arc<Hub>,
    pub(super) store: Arc<dyn Store>,
    pub(super) escalation: Escalation,
    pub(super) wake: Notify,
    /// Alert transitions are read-modify-write of one record plus a durable wait: one at a
    /// time per alert, any number of alerts at once.
    pub(super) turns: Turns,
    /// The alerts kept, by state and level.
    pub census: Census,
    /// The webhooks told of alert changes (through the outbox written with each change).
    pub(super) hooks: Arc<Hooks>,
    /// The alarm receiving centres told of alerts (through their outbox, likewise).
    pub(super) arc: Arc<dyn AlertOutbox>,
    /// Who fires the timers that are not an alert's.
    pub(super) others: std::sync::OnceLock<std::sync::Weak<dyn TimerHandler>>,
    /// Who fires the timers whose ids start with [`PATROL_TIMERS`].
    pub(super) patrols: std::sync::OnceLock<std::sync::Weak<dyn TimerHandler>>,
}

impl Alerts {
    /// An alert service keeping its records in `store` and publishing through `hub`.
    pub fn new(
        hub: Arc<Hub>,
        store: Arc<dyn Store>,
        escalation: Escalation,
        hooks: Arc<Hooks>,
        arc: Arc<dyn AlertOutbox>,
    ) -> Arc<Self> {
        Arc::new(Alerts {
            hub,
            store,
            escalation,
            hooks,
            arc,
            wake: Notify::new(),
            turns: Turns::default(),
            census: Census::default(),
            others: std::sync::OnceLock::new(),
            patrols: std::sync::OnceLock::new(),
        })
    }

    /// Sets who fires the timers whose ids start with [`OTHER_TIMERS`] (once).
    pub fn set_timer_handler(&self, handler: std::sync::Weak<dyn TimerHandler>) {
        // A second call keeps the first handler.
        let _ = self.others.set(handler);
    }

    /// Sets who fires the timers whose ids start with [`PATROL_TIMERS`] (once).
    pub fn set_patrol_timer_handler(&self, handler: std::sync::Weak<dyn TimerHandler>) {
        // A second call keeps the first handler.
        let _ = self.patrols.set(handler);
    }

    /// Tells the timer task that a timer was added (it may be due before the one it waits for).
    pub fn timers_changed(&self) {
        self.wake.notify_one();
    }

    /// The webhooks and their outbox.
    pub fn hooks(&self) -> &Arc<Hooks> {
        &self.hooks
    }

    /// The outbox records telling the webhooks and the alarm receiving centres of `event` on
    /// `alert` (its latest audit entry).
    pub(super) fn notices(&self, event: &str, alert: &Alert) -> Result<Notices, AlertError> {
        let json =
            serde_json::to_value(alert).map_err(|e| AlertError::BadRequest(e.to_string()))?;
        let index = alert.audit.len().saturating_sub(1);
        Ok(Notices {
            hooks: self.hooks.outbox(
                &alert.org,
                event,
                alert.level,
                &alert.id,
                index,
                alert.updated_at,
                &json,
            )?,
            arc: self.arc.outbox(event, alert, index)?,
        })
    }

    /// Tells the deliverers of the outbox records written (after their commit).
    pub(super) fn written(&self, org: &str, notices: &Notices) {
        self.hooks.written(org, notices.hooks.len());
        self.arc.written(org, notices.arc.len());
    }

    fn org_alerts(org: &str) -> Target {
        Target::Org {
            kind: ChannelKind::OrgAlerts,
            org: org.to_string(),
        }
    }

    pub(super) async fn announce(&self, alert: &Alert, event: &str) -> Result<(), AlertError> {
        let data = rmpv::ext::to_value(serde_json::json!({ "event": event, "alert": alert }))
            .map_err(|e| AlertError::BadRequest(e.to_string()))?;
        // Creation and escalations need a supervisor's acknowledgement of the message itself.
        let ack = matches!(event, "created" | "escalated");
        self.hub
            .publish_as_lookout(&Self::org_alerts(&alert.org), data.clone(), ack)
            .await?;
        // A silent alert (duress) never reaches the guard: the phone may be in other hands.
        if alert.kind.silent() {
            return Ok(());
        }
        // The guard concerned hears it too (on a phone: "acknowledged by …, on my way"), kept
        // for it while offline. Best effort: a guard's full queue never fails the alert.
        let guard = Target::UserQueue {
            org: alert.org.to_string(),
            user: alert.user.to_string(),
            name: "alerts".into(),
        };
        if let Err(e) = self.hub.publish_as_lookout(&guard, data, false).await {
            tracing::warn!(alert = %alert.id, error = %e, "the guard's alert queue refused an update");
        }
        Ok(())
    }

    pub(super) async fn load(&self, id: &str) -> Result<Alert, AlertError> {
        self.store
            .load(Record::Alert { id })
            .await?
            .ok_or_else(|| AlertError::NotFound(id.to_string()))
    }

    /// Counts the alerts kept, once at start; later changes keep the census up to date.
    pub async fn take_census(&self) -> Result<(), AlertError> {
        for alert in self.all().await? {
            self.census.add(alert.state, alert.level, 1);
        }
        Ok(())
    }

    /// Every alert kept, in no particular order.
    pub async fn all(&self) -> Result<Vec<Alert>, AlertError> {
        Ok(self.store.load_all(Records::Alerts).await?)
    }
}
