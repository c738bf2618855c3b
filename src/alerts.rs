//! Emergency alerts: records, their state machine (`open → acknowledged → resolved`), their
//! audit trail, and the escalation timers.
//!
//! An alert and its timers are written in one atomic store write; a timer is removed in the
//! same write that raises the alert's level, so after a restart every pending timer fires once,
//! at its due time or at once if overdue. One task drives all timers from the store's due-time
//! index (`select!` on the next due time against a wake-up for new timers). This module decides
//! what an alert is and when it escalates; it does not know about geometry or sockets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::auth::{Identity, Role};
use crate::channel::{ChannelKind, Target};
use crate::failure::Failure;
use crate::hub::{Hub, HubError};
use crate::notify::Hooks;
use crate::protocol::{now_millis, ErrorCode};
use crate::store::{Change, Record, Records, Store, StoreError};

/// What can go wrong with an alert operation.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// No such alert (or not visible to the caller).
    #[error("no alert {0}")]
    NotFound(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The alert is not in a state that allows it.
    #[error("alert is {0:?}")]
    State(AlertState),
    /// Invalid input.
    #[error("{0}")]
    BadRequest(String),
    /// Publishing failed.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Failure for AlertError {
    fn code(&self) -> ErrorCode {
        match self {
            AlertError::NotFound(_) => ErrorCode::NotFound,
            AlertError::Forbidden(_) => ErrorCode::Forbidden,
            AlertError::State(_) => ErrorCode::Conflict,
            AlertError::BadRequest(_) => ErrorCode::BadRequest,
            AlertError::Hub(e) => e.code(),
            AlertError::Store(_) => ErrorCode::Internal,
        }
    }
}

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
    /// Who raised it.
    pub by: String,
}

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
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    escalation: Escalation,
    wake: Notify,
    /// Alert transitions are read-modify-write of one record plus a durable wait: one at a
    /// time per alert, any number of alerts at once.
    turns: Turns,
    /// The alerts kept, by state and level.
    pub census: Census,
    /// The webhooks told of alert changes (through the outbox written with each change).
    hooks: Arc<Hooks>,
}

/// Alerts kept, by state and escalation level (1 to 3), counted as alerts change so that
/// reading them (`/metrics`) costs nothing per alert.
#[derive(Default)]
pub struct Census {
    counts: [[AtomicI64; 3]; 3],
}

impl Census {
    fn add(&self, state: AlertState, level: u8, n: i64) {
        let s = AlertState::ALL.iter().position(|a| *a == state);
        let cell = s.and_then(|s| self.counts[s].get(usize::from(level).wrapping_sub(1)));
        if let Some(cell) = cell {
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Every (state, level) with its count.
    pub fn counts(&self) -> Vec<(AlertState, u8, i64)> {
        let mut out = Vec::with_capacity(9);
        for (s, state) in AlertState::ALL.iter().enumerate() {
            for level in 1..=3u8 {
                let n = self.counts[s][usize::from(level) - 1].load(Ordering::Relaxed);
                out.push((*state, level, n));
            }
        }
        out
    }
}

/// One async lock per alert, kept only while someone holds it or waits for it.
#[derive(Default)]
struct Turns {
    locks: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// An alert's turn; the next transition of the same alert waits for it to be dropped.
struct Turn<'a> {
    turns: &'a Turns,
    id: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Turns {
    async fn take(&self, id: &str) -> Turn<'_> {
        let lock = self.locks.lock().entry(id.to_string()).or_default().clone();
        let guard = lock.clone().lock_owned().await;
        Turn {
            turns: self,
            id: id.to_string(),
            lock,
            guard: Some(guard),
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.turns.locks.lock();
        // The map's reference and this turn's: nobody else holds or waits for the alert.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.id);
        }
    }
}

/// Who may acknowledge or resolve an alert: the org's supervisors and admins.
fn may_handle(who: &Identity, alert: &Alert) -> bool {
    who.is(Role::Admin) || (who.is(Role::Supervisor) && who.in_org(&alert.org))
}

/// Who may see an alert: admins, the org's supervisors and services, and the guard concerned.
fn may_see(who: &Identity, alert: &Alert) -> bool {
    may_handle(who, alert)
        || (who.is(Role::Service) && who.in_org(&alert.org))
        || (who.in_org(&alert.org) && *who.user == *alert.user)
}

impl Alerts {
    /// An alert service keeping its records in `store` and publishing through `hub`.
    pub fn new(
        hub: Arc<Hub>,
        store: Arc<dyn Store>,
        escalation: Escalation,
        hooks: Arc<Hooks>,
    ) -> Arc<Self> {
        Arc::new(Alerts {
            hub,
            store,
            escalation,
            hooks,
            wake: Notify::new(),
            turns: Turns::default(),
            census: Census::default(),
        })
    }

    /// The webhooks and their outbox.
    pub fn hooks(&self) -> &Arc<Hooks> {
        &self.hooks
    }

    /// The outbox records telling the webhooks of `event` on `alert` (its latest audit entry).
    fn notices(&self, event: &str, alert: &Alert) -> Result<Vec<(String, Vec<u8>)>, AlertError> {
        let json =
            serde_json::to_value(alert).map_err(|e| AlertError::BadRequest(e.to_string()))?;
        Ok(self.hooks.outbox(
            &alert.org,
            event,
            alert.level,
            &alert.id,
            alert.audit.len().saturating_sub(1),
            alert.updated_at,
            &json,
        )?)
    }

    fn org_alerts(org: &str) -> Target {
        Target::Org {
            kind: ChannelKind::OrgAlerts,
            org: org.to_string(),
        }
    }

    async fn announce(&self, alert: &Alert, event: &str) -> Result<(), AlertError> {
        let data = rmpv::ext::to_value(serde_json::json!({ "event": event, "alert": alert }))
            .map_err(|e| AlertError::BadRequest(e.to_string()))?;
        // Creation and escalations need a supervisor's acknowledgement of the message itself.
        let ack = matches!(event, "created" | "escalated");
        self.hub
            .publish_as_lookout(&Self::org_alerts(&alert.org), data.clone(), ack)
            .await?;
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

    /// Raises an alert: level 1 at once to the org's supervisors, escalation timers stored with
    /// it. `extra` changes (e.g. a fence's state) are written in the same atomic write.
    pub async fn create(&self, new: NewAlert, extra: Vec<Change<'_>>) -> Result<Alert, AlertError> {
        self.create_with_id(uuid::Uuid::new_v4().to_string(), new, extra)
            .await
    }

    /// [`Alerts::create`] with the id chosen by the caller (so `extra` can refer to it).
    pub async fn create_with_id(
        &self,
        id: String,
        new: NewAlert,
        extra: Vec<Change<'_>>,
    ) -> Result<Alert, AlertError> {
        let _turn = self.turns.take(&id).await;
        self.create_in_turn(id, new, extra).await
    }

    /// [`Alerts::create_with_id`], unless an alert `id` exists already: then that one. For a
    /// retried emergency (an idempotency key), so a retry never raises a second alert and one
    /// whose first attempt stopped between its message and its alert still gets it.
    pub async fn create_once(&self, id: String, new: NewAlert) -> Result<Alert, AlertError> {
        let _turn = self.turns.take(&id).await;
        match self.load(&id).await {
            Ok(existing) => Ok(existing),
            Err(AlertError::NotFound(_)) => self.create_in_turn(id, new, Vec::new()).await,
            Err(e) => Err(e),
        }
    }

    async fn create_in_turn(
        &self,
        id: String,
        new: NewAlert,
        extra: Vec<Change<'_>>,
    ) -> Result<Alert, AlertError> {
        let now = now_millis();
        let pending = vec![
            (now + self.escalation.level2_after.as_millis() as u64, 2u8),
            (now + self.escalation.level3_after.as_millis() as u64, 3u8),
        ];
        let alert = Alert {
            id,
            org: new.org,
            user: new.user,
            kind: new.kind,
            priority: new.priority,
            state: AlertState::Open,
            level: 1,
            created_at: now,
            updated_at: now,
            position: new.position,
            message: new.message,
            fence: new.fence,
            pending: pending.clone(),
            audit: vec![AuditEntry {
                at: now,
                by: new.by,
                action: "created".into(),
                level: 1,
                note: None,
            }],
        };
        let notices = self.notices("alert.created", &alert)?;
        let mut changes = extra;
        changes.push(Change::put(Record::Alert { id: &alert.id }, &alert)?);
        for (id, bytes) in &notices {
            changes.push(Change::Put(Record::Outbox { id }, bytes.clone()));
        }
        for (due, level) in &pending {
            changes.push(Change::Put(
                Record::Timer {
                    due: *due,
                    alert: &alert.id,
                    level: *level,
                },
                Vec::new(),
            ));
        }
        self.store.commit(&changes).await?;
        drop(changes);
        self.hooks.written(&alert.org, notices.len());
        self.census.add(AlertState::Open, 1, 1);
        self.wake.notify_one();
        self.announce(&alert, "created").await?;
        Ok(alert)
    }

    async fn load(&self, id: &str) -> Result<Alert, AlertError> {
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

    /// An alert the caller may see.
    pub async fn get(&self, who: &Identity, id: &str) -> Result<Alert, AlertError> {
        let alert = self.load(id).await?;
        if may_see(who, &alert) {
            Ok(alert)
        } else {
            Err(AlertError::NotFound(id.to_string()))
        }
    }

    /// Alerts the caller may see, newest first, optionally filtered by state and creation time.
    pub async fn list(
        &self,
        who: &Identity,
        state: Option<AlertState>,
        since: Option<u64>,
    ) -> Result<Vec<Alert>, AlertError> {
        let mut alerts: Vec<Alert> = self
            .all()
            .await?
            .into_iter()
            .filter(|a| may_see(who, a))
            .filter(|a| state.is_none_or(|s| a.state == s))
            .filter(|a| since.is_none_or(|t| a.updated_at >= t))
            .collect();
        alerts.sort_by_key(|a| std::cmp::Reverse(a.created_at));
        Ok(alerts)
    }

    /// A supervisor takes the alert: it stops escalating.
    pub async fn acknowledge(
        &self,
        who: &Identity,
        id: &str,
        note: Option<String>,
    ) -> Result<Alert, AlertError> {
        self.transition(
            id,
            Some(who),
            AlertState::Acknowledged,
            &who.user,
            note,
            Vec::new(),
        )
        .await
    }

    /// The alert is over. `by` is the user, or `lookout` for automatic resolution (without
    /// `who`, no rights are checked).
    pub async fn resolve(
        &self,
        who: Option<&Identity>,
        id: &str,
        by: &str,
        note: Option<String>,
        extra: Vec<Change<'_>>,
    ) -> Result<Alert, AlertError> {
        self.transition(id, who, AlertState::Resolved, by, note, extra)
            .await
    }

    async fn transition(
        &self,
        id: &str,
        who: Option<&Identity>,
        to: AlertState,
        by: &str,
        note: Option<String>,
        extra: Vec<Change<'_>>,
    ) -> Result<Alert, AlertError> {
        let _turn = self.turns.take(id).await;
        let mut alert = self.load(id).await?;
        if let Some(who) = who {
            if !may_see(who, &alert) {
                return Err(AlertError::NotFound(id.to_string()));
            }
            if !may_handle(who, &alert) {
                return Err(AlertError::Forbidden(
                    "only the org's supervisors and admins handle alerts",
                ));
            }
        }
        let allowed = match to {
            AlertState::Acknowledged => alert.state == AlertState::Open,
            AlertState::Resolved => alert.state != AlertState::Resolved,
            AlertState::Open => false,
        };
        if !allowed {
            return Err(AlertError::State(alert.state));
        }
        let now = now_millis();
        let was = (alert.state, alert.level);
        let cancelled = std::mem::take(&mut alert.pending);
        alert.state = to;
        alert.updated_at = now;
        alert.audit.push(AuditEntry {
            at: now,
            by: by.to_string(),
            action: match to {
                AlertState::Acknowledged => "acknowledged",
                _ => "resolved",
            }
            .into(),
            level: alert.level,
            note,
        });
        let event = match to {
            AlertState::Acknowledged => "acknowledged",
            _ => "resolved",
        };
        let notices = self.notices(&format!("alert.{event}"), &alert)?;
        let mut changes = extra;
        changes.push(Change::put(Record::Alert { id: &alert.id }, &alert)?);
        for (id, bytes) in &notices {
            changes.push(Change::Put(Record::Outbox { id }, bytes.clone()));
        }
        for (due, level) in &cancelled {
            changes.push(Change::Delete(Record::Timer {
                due: *due,
                alert: &alert.id,
                level: *level,
            }));
        }
        self.store.commit(&changes).await?;
        drop(changes);
        self.hooks.written(&alert.org, notices.len());
        self.census.add(was.0, was.1, -1);
        self.census.add(alert.state, alert.level, 1);
        self.announce(&alert, event).await?;
        Ok(alert)
    }

    /// Deletes alerts resolved before `cutoff` (ms): an alert and its audit trail are kept until
    /// resolved plus the retention period. Returns how many were deleted.
    pub async fn purge_resolved(&self, cutoff: u64) -> Result<usize, AlertError> {
        let old: Vec<Alert> = self
            .all()
            .await?
            .into_iter()
            .filter(|a| a.state == AlertState::Resolved && a.updated_at < cutoff)
            .collect();
        let changes: Vec<Change<'_>> = old
            .iter()
            .map(|a| Change::Delete(Record::Alert { id: &a.id }))
            .collect();
        if !changes.is_empty() {
            self.store.write(&changes).await?;
        }
        for a in &old {
            self.census.add(AlertState::Resolved, a.level, -1);
        }
        Ok(changes.len())
    }

    /// Raises `id` to `level` if it is still open; removes the timer either way.
    async fn escalate(&self, due: u64, level: u8, id: &str) -> Result<(), AlertError> {
        let _turn = self.turns.take(id).await;
        let timer = Record::Timer {
            due,
            alert: id,
            level,
        };
        let Some(mut alert) = self.store.load::<Alert>(Record::Alert { id }).await? else {
            self.store.commit(&[Change::Delete(timer)]).await?;
            return Ok(());
        };
        alert.pending.retain(|p| *p != (due, level));
        let raise = alert.state == AlertState::Open && level > alert.level;
        let was = alert.level;
        if raise {
            let now = now_millis();
            alert.level = level;
            alert.updated_at = now;
            alert.audit.push(AuditEntry {
                at: now,
                by: "lookout".into(),
                action: "escalated".into(),
                level,
                note: Some(format!("not acknowledged; due at {due}")),
            });
        }
        let notices = if raise {
            self.notices("alert.escalated", &alert)?
        } else {
            Vec::new()
        };
        let mut changes = vec![
            Change::put(Record::Alert { id }, &alert)?,
            Change::Delete(timer),
        ];
        for (id, bytes) in &notices {
            changes.push(Change::Put(Record::Outbox { id }, bytes.clone()));
        }
        self.store.commit(&changes).await?;
        self.hooks.written(&alert.org, notices.len());
        if raise {
            self.census.add(AlertState::Open, was, -1);
            self.census.add(AlertState::Open, level, 1);
            self.announce(&alert, "escalated").await?;
            if level >= 3 {
                // Everyone reads /topic/system: say that an alert escalated, nothing that
                // identifies the org, the guard or where they are.
                let notice = rmpv::ext::to_value(serde_json::json!({
                    "kind": "alert_escalated",
                    "alertId": alert.id,
                    "level": level,
                    "type": alert.kind,
                }))
                .map_err(|e| AlertError::BadRequest(e.to_string()))?;
                self.hub
                    .publish_as_lookout(&Target::System, notice, false)
                    .await?;
            }
        }
        Ok(())
    }

    /// Fires escalation timers at their due time until `shutdown`; overdue ones (after a
    /// restart) fire at once.
    pub async fn run_timers(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let next = match self.store.next_timer().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "reading escalation timers");
                    None
                }
            };
            let sleep = match next {
                Some(due) => Duration::from_millis(due.saturating_sub(now_millis())),
                None => Duration::from_secs(3600),
            };
            // Other nodes add timers this one is not told of, and a claim whose node died
            // lapses: in cluster mode the timers are looked at every second.
            let sleep = match self.store.cluster() {
                Some(_) => sleep.min(Duration::from_secs(1)),
                None => sleep,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => continue,
                _ = tokio::time::sleep(sleep) => {}
            }
            let due = match self.store.due_timers(now_millis()).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!(error = %e, "reading due escalation timers");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            for timer in due {
                let (due, level, id) = (timer.due, timer.level, &timer.alert);
                // With several nodes on one store, exactly one of them fires each timer.
                match self.store.claim_timer(&timer).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::error!(alert = %id, level, error = %e, "claiming an escalation timer");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
                if let Err(e) = self.escalate(due, level, id).await {
                    tracing::error!(alert = %id, level, error = %e, "escalation failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_hooks(store: &Arc<dyn Store>) -> Arc<Hooks> {
        Hooks::new(&crate::config::NotifySettings::default(), store.clone())
    }

    fn count(alerts: &Alerts, state: AlertState, level: u8) -> i64 {
        alerts
            .census
            .counts()
            .into_iter()
            .find(|(s, l, _)| *s == state && *l == level)
            .map_or(-1, |(_, _, n)| n)
    }

    #[tokio::test]
    async fn the_census_follows_every_change_and_a_new_census_agrees() {
        let store: Arc<dyn Store> = Arc::new(crate::store::MemoryStore::new());
        let hub = Hub::new(store.clone(), crate::config::Limits::default());
        let escalation = Escalation {
            level2_after: Duration::from_secs(300),
            level3_after: Duration::from_secs(900),
        };
        let alerts = Alerts::new(hub.clone(), store.clone(), escalation, no_hooks(&store));
        let new = |user: &str| NewAlert {
            org: "acme".into(),
            user: user.into(),
            kind: AlertType::Panic,
            priority: Priority::Critical,
            message: None,
            position: None,
            fence: None,
            by: user.into(),
        };
        let first = alerts.create(new("g1"), Vec::new()).await.expect("create");
        alerts.create(new("g2"), Vec::new()).await.expect("create");
        assert_eq!(count(&alerts, AlertState::Open, 1), 2);
        let sup = Identity {
            key: Arc::from("acme/sup"),
            user: Arc::from("sup"),
            org: Some(Arc::from("acme")),
            roles: [Role::Supervisor].into_iter().collect(),
            name: None,
            exp: u64::MAX,
            device: None,
        };
        alerts
            .acknowledge(&sup, &first.id, None)
            .await
            .expect("ack");
        assert_eq!(count(&alerts, AlertState::Open, 1), 1);
        assert_eq!(count(&alerts, AlertState::Acknowledged, 1), 1);
        let fresh = Alerts::new(hub, store.clone(), escalation, no_hooks(&store));
        fresh.take_census().await.expect("census");
        assert_eq!(fresh.census.counts(), alerts.census.counts());
    }

    #[tokio::test]
    async fn transitions_wait_only_for_their_own_alert_and_leave_no_lock_behind() {
        let turns = Turns::default();
        let a = turns.take("a").await;
        let b = tokio::time::timeout(Duration::from_millis(100), turns.take("b")).await;
        assert!(b.is_ok(), "another alert's turn does not wait");
        drop(b);
        let again = tokio::time::timeout(Duration::from_millis(100), turns.take("a")).await;
        assert!(again.is_err(), "the same alert's turn waits");
        drop(a);
        let again = tokio::time::timeout(Duration::from_millis(100), turns.take("a")).await;
        assert!(again.is_ok(), "and gets it once the first is done");
        drop(again);
        assert!(
            turns.locks.lock().is_empty(),
            "no lock kept for idle alerts"
        );
    }
}
