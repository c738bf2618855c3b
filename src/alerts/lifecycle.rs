//! An alert's life: creation (with its escalation timers, in one atomic write), the reads a
//! caller may make, acknowledgement, resolution, and the purge of resolved alerts.
//!
//! Who may see and handle an alert is decided here; escalation is in `escalation.rs`.

use super::error::AlertError;
use super::model::{Alert, AlertQuery, AlertState, AuditEntry, NewAlert};
use super::service::Alerts;
use crate::auth::{Identity, Role};
use crate::clock::now_millis;
use crate::store::{Change, Record, StoreError};

/// Who may acknowledge or resolve an alert: the org's supervisors and admins.
fn may_handle(who: &Identity, alert: &Alert) -> bool {
    who.is(Role::Admin) || (who.is(Role::Supervisor) && who.in_org(&alert.org))
}

/// Who may see an alert: admins, the org's supervisors and services, and the guard concerned
/// (unless the alert is silent: a duress alarm is never shown to the guard's phone).
fn may_see(who: &Identity, alert: &Alert) -> bool {
    may_handle(who, alert)
        || (who.is(Role::Service) && who.in_org(&alert.org))
        || (who.in_org(&alert.org) && *who.user == *alert.user && !alert.kind.silent())
}

impl Alerts {
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
        let created = self.create_in_turn(id, new, extra, None).await?;
        created.ok_or(AlertError::Store(StoreError::Engine(
            "an unconditional write was refused".into(),
        )))
    }

    /// [`Alerts::create_with_id`] in a write that applies only while `guard` still holds
    /// `expected` (see [`crate::store::Store::write_if`]): `None`, and nothing raised, when it
    /// changed meanwhile.
    pub async fn create_with_id_if(
        &self,
        id: String,
        new: NewAlert,
        extra: Vec<Change<'_>>,
        guard: Record<'_>,
        expected: Option<&[u8]>,
    ) -> Result<Option<Alert>, AlertError> {
        let _turn = self.turns.take(&id).await;
        self.create_in_turn(id, new, extra, Some((guard, expected)))
            .await
    }

    /// [`Alerts::create_with_id`], unless an alert `id` exists already: then that one. For a
    /// retried emergency (an idempotency key), so a retry never raises a second alert and one
    /// whose first attempt stopped between its message and its alert still gets it.
    pub async fn create_once(&self, id: String, new: NewAlert) -> Result<Alert, AlertError> {
        let _turn = self.turns.take(&id).await;
        match self.load(&id).await {
            Ok(existing) => Ok(existing),
            Err(AlertError::NotFound(_)) => self
                .create_in_turn(id, new, Vec::new(), None)
                .await?
                .ok_or(AlertError::Store(StoreError::Engine(
                    "an unconditional write was refused".into(),
                ))),
            Err(e) => Err(e),
        }
    }

    async fn create_in_turn(
        &self,
        id: String,
        new: NewAlert,
        extra: Vec<Change<'_>>,
        guard: Option<(Record<'_>, Option<&[u8]>)>,
    ) -> Result<Option<Alert>, AlertError> {
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
            site: new.site,
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
        changes.extend(notices.changes());
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
        match guard {
            None => self.store.commit(&changes).await?,
            Some((record, expected)) => {
                match self.store.write_if(record, expected, &changes).await? {
                    Some(ticket) => self.store.durable(ticket).await?,
                    None => return Ok(None),
                }
            }
        }
        drop(changes);
        self.written(&alert.org, &notices);
        self.census.add(AlertState::Open, 1, 1);
        self.wake.notify_one();
        self.announce(&alert, "created").await?;
        Ok(Some(alert))
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

    /// Alerts the caller may see that `query` asks for, newest first.
    pub async fn list(&self, who: &Identity, query: &AlertQuery) -> Result<Vec<Alert>, AlertError> {
        let mut alerts: Vec<Alert> = self
            .all()
            .await?
            .into_iter()
            .filter(|a| may_see(who, a) && query.matches(a))
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
        changes.extend(notices.changes());
        for (due, level) in &cancelled {
            changes.push(Change::Delete(Record::Timer {
                due: *due,
                alert: &alert.id,
                level: *level,
            }));
        }
        self.store.commit(&changes).await?;
        drop(changes);
        self.written(&alert.org, &notices);
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::alerts::{AlertType, Escalation, Priority};
    use crate::hub::Hub;
    use crate::notify::Hooks;
    use crate::store::Store;

    fn no_hooks(store: &Arc<dyn Store>) -> Arc<Hooks> {
        Hooks::new(&crate::config::NotifySettings::default(), store.clone())
    }

    /// No alarm receiving centre.
    struct NoCentre;

    impl crate::alerts::AlertOutbox for NoCentre {
        fn outbox(
            &self,
            _event: &str,
            _alert: &crate::alerts::Alert,
            _index: usize,
        ) -> Result<Vec<(String, Vec<u8>)>, crate::store::StoreError> {
            Ok(Vec::new())
        }

        fn written(&self, _org: &str, _records: usize) {}
    }

    fn no_arc(_store: &Arc<dyn Store>) -> Arc<dyn crate::alerts::AlertOutbox> {
        Arc::new(NoCentre)
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
        let alerts = Alerts::new(
            hub.clone(),
            store.clone(),
            escalation,
            no_hooks(&store),
            no_arc(&store),
        );
        let new = |user: &str| NewAlert {
            org: "acme".into(),
            user: user.into(),
            kind: AlertType::Panic,
            priority: Priority::Critical,
            message: None,
            position: None,
            fence: None,
            site: None,
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
        let fresh = Alerts::new(
            hub,
            store.clone(),
            escalation,
            no_hooks(&store),
            no_arc(&store),
        );
        fresh.take_census().await.expect("census");
        assert_eq!(fresh.census.counts(), alerts.census.counts());
    }
}
