//! Emergencies: a publish on `/topic/emergency/{user}` is logged and turned into an alert (its
//! type, priority and message read from the payload, its id from the idempotency key).
//!
//! Alert life cycles are in [`crate::alerts`]; this file only raises them.

use super::error::{bad, FieldError};
use super::service::{derived_id, map_field, Field, FieldPublished};
use crate::alerts::{AlertType, NewAlert, Priority};
use crate::auth::Identity;
use crate::hub::{HubError, Publish, Turn};

fn emergency_type(s: &str) -> Option<AlertType> {
    Some(match s {
        "PANIC" => AlertType::Panic,
        "MEDICAL" => AlertType::Medical,
        "SECURITY" => AlertType::Security,
        "FIRE" => AlertType::Fire,
        "GENERAL" => AlertType::General,
        "MAN_DOWN" => AlertType::ManDown,
        _ => return None,
    })
}

impl Field {
    /// A publish on `/topic/emergency/{user}`: logged, then raised as an alert, both carried
    /// through on the urgent lane.
    pub(super) async fn publish_emergency(
        &self,
        who: &Identity,
        req: Publish<'_>,
        turn: Turn,
        user: String,
    ) -> Result<FieldPublished, FieldError> {
        let kind = map_field(&req.data, "type")
            .and_then(|t| t.as_str())
            .and_then(emergency_type)
            .ok_or_else(|| {
                FieldError::BadRequest(
                    "an emergency needs `type`: PANIC, MEDICAL, SECURITY, FIRE, GENERAL or MAN_DOWN".into(),
                )
            })?;
        let priority = match map_field(&req.data, "priority").and_then(|p| p.as_str()) {
            None => kind.default_priority(),
            Some("HIGH") => Priority::High,
            Some("CRITICAL") => Priority::Critical,
            Some(_) => return bad("priority must be HIGH or CRITICAL"),
        };
        let message = map_field(&req.data, "message")
            .and_then(|m| m.as_str())
            .map(|m| m.chars().take(1000).collect());
        // Each emergency is a durable alert with timers and notifications: a budget per
        // principal, the same over WebSocket and REST.
        if !self.hub.allow_alert(&who.key) {
            return Err(FieldError::Hub(HubError::OverBudget(
                "emergencies per minute exceeded (limits.alerts_per_minute)".into(),
            )));
        }
        let Some(field) = self.me.upgrade() else {
            return Err(FieldError::Unavailable);
        };
        let (who, channel) = (who.clone(), req.channel.to_string());
        let (data, ack_required) = (req.data, req.ack_required);
        let key = req.idempotency_key.map(str::to_string);
        // Carried through on the urgent lane, also if the publisher goes away meanwhile.
        // Tracked with the hub's tasks, so shutdown flushes only after it.
        let raised = self.urgent.spawn(self.hub.tasks().track_future(async move {
            let req = Publish {
                channel: &channel,
                to: None,
                owner: None,
                data,
                ack_required,
                idempotency_key: key.as_deref(),
            };
            let published = field.hub.publish_in_turn(&who, req, turn).await?;
            // With a key, the alert's id comes from it: a retry finds the first alert.
            let once = key.map(|k| alert_id_for(&who.key, &channel, &k));
            // The hub resolved the channel in the publisher's org: so is the alert.
            let org = who.org.as_deref().unwrap_or_default();
            let alert = field
                .raise(org, &user, kind, priority, message, &who.user, once)
                .await?;
            Ok(FieldPublished {
                published,
                alert_id: Some(alert.id),
            })
        }));
        raised.await.map_err(|_| FieldError::Unavailable)?
    }

    /// An alert of `kind` about `user` of `org` with its last known position, of the type's
    /// default priority.
    pub(super) async fn alert_at_last_position(
        &self,
        org: &str,
        user: &str,
        kind: AlertType,
        message: Option<String>,
        by: &str,
    ) -> Result<NewAlert, FieldError> {
        let position = self
            .last_location(org, user)
            .await?
            .map(|l| l.location.position());
        Ok(NewAlert {
            org: org.to_string(),
            user: user.to_string(),
            kind,
            priority: kind.default_priority(),
            message,
            position,
            fence: None,
            site: self.site_now(org, user).await,
            by: by.to_string(),
        })
    }

    /// The site of the shift `user` of `org` is on now, for the alert (the account an alarm
    /// receiving centre gets it under may be the site's). Never fails an alarm: an index that
    /// cannot be read gives none.
    pub(super) async fn site_now(&self, org: &str, user: &str) -> Option<String> {
        match self.site_at(org, user, crate::clock::now_millis()).await {
            Ok(site) => site,
            Err(e) => {
                tracing::warn!(org, user, error = %e, "reading the guard's shift for an alert");
                None
            }
        }
    }

    /// Raises an emergency alert for `user` of `org` (its last position attached).
    #[allow(clippy::too_many_arguments)]
    pub async fn raise(
        &self,
        org: &str,
        user: &str,
        kind: AlertType,
        priority: Priority,
        message: Option<String>,
        by: &str,
        once: Option<String>,
    ) -> Result<crate::alerts::Alert, FieldError> {
        let mut new = self
            .alert_at_last_position(org, user, kind, message, by)
            .await?;
        new.priority = priority;
        let alert = match once {
            Some(id) => self.alerts.create_once(id, new).await?,
            None => self.alerts.create(new, Vec::new()).await?,
        };
        Ok(alert)
    }
}

/// The id of the alert an emergency with idempotency key `key` raises: the same for every
/// retry by `user` on `channel`, and shaped like the random ids of other alerts.
fn alert_id_for(user: &str, channel: &str, key: &str) -> String {
    derived_id(&["lookout-alert", user, channel, key])
}
