//! Escalation: the one task that fires every alert's timers from the store's due-time index,
//! and what firing one does (raise the level of a still open alert, remove the timer).
//!
//! The intervals ([`Escalation`](super::Escalation)) are the service's settings, in
//! `service.rs`; the timers are written with the alert in `lifecycle.rs`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::error::AlertError;
use super::model::{Alert, AlertState, AuditEntry};
use super::service::Alerts;
use crate::channel::Target;
use crate::clock::now_millis;
use crate::store::{Change, Record};

impl Alerts {
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
            Default::default()
        };
        let mut changes = vec![
            Change::put(Record::Alert { id }, &alert)?,
            Change::Delete(timer),
        ];
        changes.extend(notices.changes());
        self.store.commit(&changes).await?;
        self.written(&alert.org, &notices);
        if raise {
            self.census.add(AlertState::Open, was, -1);
            self.census.add(AlertState::Open, level, 1);
            self.announce(&alert, "escalated").await?;
            // Not for a silent alert: the guard's phone reads /topic/system too.
            if level >= 3 && !alert.kind.silent() {
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

    /// A timer that is not an alert's, by its handler; without one (never set), it is dropped.
    async fn fire_other(
        &self,
        handler: &std::sync::OnceLock<std::sync::Weak<dyn super::TimerHandler>>,
        due: u64,
        level: u8,
        id: &str,
    ) {
        match handler.get().and_then(std::sync::Weak::upgrade) {
            Some(handler) => handler.fire(due, level, id).await,
            None => {
                let timer = Record::Timer {
                    due,
                    alert: id,
                    level,
                };
                if let Err(e) = self.store.commit(&[Change::Delete(timer)]).await {
                    tracing::error!(timer = %id, error = %e, "dropping a timer without handler");
                }
            }
        }
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
                if id.starts_with(super::service::OTHER_TIMERS) {
                    self.fire_other(&self.others, due, level, id).await;
                    continue;
                }
                if id.starts_with(super::service::PATROL_TIMERS) {
                    self.fire_other(&self.patrols, due, level, id).await;
                    continue;
                }
                if let Err(e) = self.escalate(due, level, id).await {
                    tracing::error!(alert = %id, level, error = %e, "escalation failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
