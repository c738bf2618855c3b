//! Lost contact: a guard on shift whose phone has had no connection and no position for
//! `field.lost_contact_after` raises LOST_CONTACT with its last known position; when the
//! phone comes back (a connection or a fix) the alert resolves itself (audit: by `lookout`),
//! a supervisor's acknowledgement staying in its trail.
//!
//! Every node sweeps the guards on shift now and then: for a guard connected to it, it stores
//! the time (`contact/{guard}`), so that every node knows of a connection held anywhere; for a
//! silent one it puts a timer (`welfare/{org}/{user}`, level 2) due when the silence reached
//! the limit, the same key from every node. The alerts' timer task claims it once across nodes
//! and fires it here: still silent and no alert open, LOST_CONTACT is raised with the alert's
//! id in `lost/{guard}` in one atomic write.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::error::FieldError;
use super::service::{derived_id, Field};
use super::welfare::{lost_key, timer_id, utc, LOST_CONTACT_LEVEL};
use crate::alerts::{AlertError, AlertType};
use crate::auth::principal_key;
use crate::clock::now_millis;
use crate::store::{Change, Record};

fn contact_key(org: &str, user: &str) -> String {
    format!("contact/{}", principal_key(Some(org), user))
}

impl Field {
    /// Sweeps the guards on shift every quarter of `field.lost_contact_after` (at most every
    /// 30 s) until `shutdown`.
    pub async fn run_contact_sweep(self: std::sync::Arc<Self>, shutdown: CancellationToken) {
        let period = (self.config.lost_contact_after / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            if let Err(e) = self.sweep_contact(period).await {
                tracing::error!(error = %e, "sweeping guards for lost contact");
            }
        }
    }

    /// When the guard was last heard of: a connection to any node, a fix, the shift's start.
    async fn last_contact(&self, org: &str, user: &str, start: u64) -> Result<u64, FieldError> {
        let key = contact_key(org, user);
        let contact: Option<u64> = self.store.load(Record::Welfare { key: &key }).await?;
        let fix = self.last_location(org, user).await?.map(|l| l.received_at);
        Ok(start.max(contact.unwrap_or(0)).max(fix.unwrap_or(0)))
    }

    async fn sweep_contact(&self, period: Duration) -> Result<(), FieldError> {
        let now = now_millis();
        let after = self.config.lost_contact_after.as_millis() as u64;
        for (org, user, start) in self.on_shift_now(now).await? {
            let here = self.hub.connected_here(&principal_key(Some(&org), &user));
            let key = contact_key(&org, &user);
            if here {
                let kept: Option<u64> = self.store.load(Record::Welfare { key: &key }).await?;
                if kept.is_none_or(|at| now.saturating_sub(at) >= period.as_millis() as u64) {
                    self.store
                        .commit(&[Change::put(Record::Welfare { key: &key }, &now)?])
                        .await?;
                }
            }
            let last = if here {
                now
            } else {
                self.last_contact(&org, &user, start).await?
            };
            let lost = lost_key(&org, &user);
            let open: Option<String> = self.store.load(Record::Welfare { key: &lost }).await?;
            match open {
                Some(alert) if now.saturating_sub(last) < after => {
                    self.contact_restored(&org, &user, &alert).await?
                }
                None if now.saturating_sub(last) >= after => {
                    let id = timer_id(&org, &user);
                    let timer = Record::Timer {
                        due: last + after,
                        alert: &id,
                        level: LOST_CONTACT_LEVEL,
                    };
                    self.store.commit(&[Change::Put(timer, Vec::new())]).await?;
                    self.alerts.timers_changed();
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The phone is back: its LOST_CONTACT resolves itself.
    async fn contact_restored(&self, org: &str, user: &str, alert: &str) -> Result<(), FieldError> {
        let lost = lost_key(org, user);
        let note = Some("contact restored: the phone is back".to_string());
        let clear = vec![Change::Delete(Record::Welfare { key: &lost })];
        match self
            .alerts
            .resolve(None, alert, "lookout", note, clear.clone())
            .await
        {
            Ok(_) => Ok(()),
            // Resolved (or purged) already: only the marker is left to clear.
            Err(AlertError::State(_) | AlertError::NotFound(_)) => {
                Ok(self.store.commit(&clear).await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A lost-contact timer fell due (claimed by this node alone): raises LOST_CONTACT if the
    /// guard is still on shift, silent and without one open.
    pub(super) async fn fire_lost_contact(
        &self,
        due: u64,
        org: &str,
        user: &str,
    ) -> Result<(), FieldError> {
        let id = timer_id(org, user);
        let timer = Record::Timer {
            due,
            alert: &id,
            level: LOST_CONTACT_LEVEL,
        };
        let key = super::welfare::guard_key(org, user);
        let _turn = self.welfare_turns.take(&key).await;
        let now = now_millis();
        let after = self.config.lost_contact_after.as_millis() as u64;
        let lost = lost_key(org, user);
        let open: Option<String> = self.store.load(Record::Welfare { key: &lost }).await?;
        let shift = self
            .on_shift_now(now)
            .await?
            .into_iter()
            .find(|(o, u, _)| o == org && u == user);
        let silent = match shift {
            Some((_, _, start)) if open.is_none() => {
                !self.hub.connected_here(&principal_key(Some(org), user))
                    && now.saturating_sub(self.last_contact(org, user, start).await?) >= after
            }
            _ => false,
        };
        if !silent {
            return Ok(self.store.commit(&[Change::Delete(timer)]).await?);
        }
        let alert_id = derived_id(&["lookout-lost-contact", &id, &due.to_string()]);
        let last = due.saturating_sub(after);
        let message = format!("no connection and no position since {}", utc(last));
        let new = self
            .alert_at_last_position(org, user, AlertType::LostContact, Some(message), "lookout")
            .await?;
        let extra = vec![
            Change::Delete(timer),
            Change::put(Record::Welfare { key: &lost }, &alert_id)?,
        ];
        // Raised only while no LOST_CONTACT is open for the guard, whichever node raised it.
        let raised = self
            .alerts
            .create_with_id_if(
                alert_id.clone(),
                new,
                extra,
                Record::Welfare { key: &lost },
                None,
            )
            .await?;
        match raised {
            Some(_) => {
                self.welfare_stats
                    .lost_contact
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            None => self.store.commit(&[Change::Delete(timer)]).await?,
        }
        Ok(())
    }
}
