//! Welfare check-ins run by the server: an org's settings (and a guard's override), a durable
//! per-guard deadline armed while the guard is on shift or in lone work, a pre-alarm to the
//! guard's own queue before it, "I'm OK" that resets it, and CHECK_IN_MISSED raised once at
//! deadline plus grace.
//!
//! The deadline's timers live in the alerts' due-time index (ids `welfare/{org}/{user}`, level 0
//! the pre-alarm, level 1 the miss), so they survive a restart or kill -9 and are claimed by one
//! node of a cluster; a timer is deleted in the write that carries out its effect (the missed
//! check-in's alert, the guard's state), and one the guard's state no longer lists is stale.
//! Times are the server's: a phone's clock never sets a deadline.

use serde::Deserialize;

use super::error::{bad, FieldError};
use super::records::{GuardWelfare, WelfareSettings};
use super::service::{derived_id, Field};
use crate::alerts::{AlertType, TimerHandler, OTHER_TIMERS};
use crate::auth::{principal_key, Identity, Role};
use crate::channel::Target;
use crate::clock::now_millis;
use crate::hub::HubError;
use crate::store::{Change, Record, Records};

/// The level of a guard's lost-contact timer (0 and 1 are its check-in's).
pub(super) const LOST_CONTACT_LEVEL: u8 = 2;

/// The longest check-in interval, pre-alarm or grace.
const MAX_INTERVAL_MS: u64 = 24 * 3600 * 1000;

/// The guard's own queue the pre-alarm goes to (`/user/queue/welfare`).
pub(super) const WELFARE_QUEUE: &str = "welfare";

pub(super) fn org_key(org: &str) -> String {
    format!("org/{org}")
}

pub(super) fn guard_key(org: &str, user: &str) -> String {
    format!("guard/{}", principal_key(Some(org), user))
}

pub(super) fn timer_id(org: &str, user: &str) -> String {
    format!("{OTHER_TIMERS}{}", principal_key(Some(org), user))
}

/// The id of the CHECK_IN_MISSED a timer raises: the same however often the timer is fired.
fn missed_alert_id(timer: &str, due: u64) -> String {
    derived_id(&["lookout-check-in-missed", timer, &due.to_string()])
}

/// Whose a welfare record is, read from any of them (org settings have neither field).
#[derive(Deserialize)]
struct Owner {
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

impl Field {
    /// The guard's state as kept, if any.
    pub(super) async fn guard_welfare(
        &self,
        org: &str,
        user: &str,
    ) -> Result<Option<GuardWelfare>, FieldError> {
        let key = guard_key(org, user);
        Ok(self.store.load(Record::Welfare { key: &key }).await?)
    }

    /// A new state for a guard of `org`, within `field.max_welfare_guards_per_org`.
    pub(super) async fn new_guard_welfare(
        &self,
        org: &str,
        user: &str,
    ) -> Result<GuardWelfare, FieldError> {
        let mut kept = 0usize;
        for raw in self.store.records(Records::Welfare).await? {
            if let Ok(owner) = crate::store::records::decode::<Owner>(&raw) {
                kept += usize::from(owner.user.is_some() && owner.org.as_deref() == Some(org));
            }
        }
        if kept >= self.config.max_welfare_guards_per_org {
            return Err(FieldError::Hub(HubError::OverBudget(
                "guards with lone-worker state per org (field.max_welfare_guards_per_org)".into(),
            )));
        }
        Ok(GuardWelfare {
            org: org.to_string(),
            user: user.to_string(),
            ..GuardWelfare::default()
        })
    }

    /// An org's check-in settings (the defaults, off, until it sets its own).
    pub(super) async fn org_welfare(&self, org: &str) -> Result<WelfareSettings, FieldError> {
        let key = org_key(org);
        Ok(self
            .store
            .load(Record::Welfare { key: &key })
            .await?
            .unwrap_or_default())
    }

    /// The settings that apply to a guard: its own, else its org's.
    async fn effective(&self, state: &GuardWelfare) -> Result<WelfareSettings, FieldError> {
        match state.settings {
            Some(own) => Ok(own),
            None => self.org_welfare(&state.org).await,
        }
    }

    fn check_settings(&self, s: &WelfareSettings) -> Result<(), FieldError> {
        let min = self.config.check_in_min_interval.as_millis() as u64;
        if s.interval_ms < min || s.interval_ms > MAX_INTERVAL_MS {
            return bad(format!(
                "interval_ms must be between {min} (field.check_in_min_interval) and {MAX_INTERVAL_MS}"
            ));
        }
        if s.pre_alarm_ms >= s.interval_ms {
            return bad("pre_alarm_ms must be shorter than interval_ms");
        }
        if s.grace_ms > MAX_INTERVAL_MS {
            return bad(format!("grace_ms must be at most {MAX_INTERVAL_MS}"));
        }
        Ok(())
    }

    /// The check-in settings of the caller's org, or of one of its guards (`user`: its own if
    /// set, else the org's). A guard reads only its own.
    pub async fn welfare_settings(
        &self,
        who: &Identity,
        org: Option<&str>,
        user: Option<&str>,
    ) -> Result<WelfareSettings, FieldError> {
        let org = self.org_for(who, org)?;
        let user = match user {
            Some(u) if Self::may_manage(who, &org) || *who.user == *u => Some(u),
            Some(_) => return Err(FieldError::Forbidden("another guard's settings")),
            None if who.is(Role::Guard) && !Self::may_manage(who, &org) => Some(&*who.user),
            None => None,
        };
        match user {
            Some(u) => match self.guard_welfare(&org, u).await? {
                Some(state) => self.effective(&state).await,
                None => self.org_welfare(&org).await,
            },
            None => self.org_welfare(&org).await,
        }
    }

    /// Sets the check-in settings of an org, or one guard's override (`user`); supervisors and
    /// admins. Guards on shift now are armed by the new settings.
    pub async fn set_welfare_settings(
        &self,
        who: &Identity,
        org: Option<&str>,
        user: Option<&str>,
        settings: WelfareSettings,
    ) -> Result<WelfareSettings, FieldError> {
        let org = self.org_for(who, org)?;
        if !Self::may_manage(who, &org) {
            return Err(FieldError::Forbidden(
                "only the org's supervisors and admins set check-ins",
            ));
        }
        self.check_settings(&settings)?;
        let now = now_millis();
        match user {
            Some(user) => {
                self.arm(&org, user, now, Arming::Reset, |s| {
                    s.settings = Some(settings)
                })
                .await?;
            }
            None => {
                let key = org_key(&org);
                self.store
                    .commit(&[Change::put(Record::Welfare { key: &key }, &settings)?])
                    .await?;
                for (user, start) in self.planned_shifts(&org, now).await? {
                    self.arm_for_shift(&org, &user, start).await;
                }
            }
        }
        Ok(settings)
    }

    /// "I'm OK": the guard's next deadline is one interval from now (armed if the guard is on
    /// shift or in lone work and check-ins are on).
    pub async fn check_in(&self, who: &Identity) -> Result<serde_json::Value, FieldError> {
        let org = self.own_org(who)?;
        let now = now_millis();
        let state = self
            .arm(&org, &who.user, now, Arming::Reset, |s| {
                s.checked_in_at = Some(now);
                s.missed = None;
            })
            .await?;
        self.welfare_stats
            .check_ins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.status_of(&state).await
    }

    /// The guard starts a session of lone work in the app: check-ins run until it ends.
    pub async fn start_lone_work(&self, who: &Identity) -> Result<serde_json::Value, FieldError> {
        let org = self.own_org(who)?;
        let now = now_millis();
        let state = self
            .arm(&org, &who.user, now, Arming::Reset, |s| {
                s.lone_work_since.get_or_insert(now);
            })
            .await?;
        self.status_of(&state).await
    }

    /// The caller's check-in state, or (supervisors, admins) one guard's.
    pub async fn welfare_status(
        &self,
        who: &Identity,
        user: Option<&str>,
    ) -> Result<serde_json::Value, FieldError> {
        let org = self.own_org(who)?;
        let user = match user {
            Some(u) if Self::may_manage(who, &org) || *who.user == *u => u,
            Some(_) => return Err(FieldError::Forbidden("another guard's check-ins")),
            None => &*who.user,
        };
        let state = match self.guard_welfare(&org, user).await? {
            Some(state) => state,
            None => GuardWelfare {
                org: org.clone(),
                user: user.to_string(),
                ..GuardWelfare::default()
            },
        };
        self.status_of(&state).await
    }

    pub(super) fn own_org(&self, who: &Identity) -> Result<String, FieldError> {
        match &who.org {
            Some(org) => Ok(org.to_string()),
            None => bad("lone-worker safety is for members of an org"),
        }
    }

    async fn status_of(&self, state: &GuardWelfare) -> Result<serde_json::Value, FieldError> {
        let settings = self.effective(state).await?;
        let pre_alarm = state.timers.iter().find(|t| t.1 == 0).map(|t| t.0);
        Ok(serde_json::json!({
            "user": state.user,
            "enabled": settings.enabled,
            "intervalMs": settings.interval_ms,
            "preAlarmMs": settings.pre_alarm_ms,
            "graceMs": settings.grace_ms,
            "loneWork": state.lone_work_since.is_some(),
            "deadline": state.deadline,
            "preAlarmAt": pre_alarm,
            "checkedInAt": state.checked_in_at,
            "missedAlert": state.missed,
            "now": now_millis(),
        }))
    }

    /// Changes a guard's state with `edit` (a new state within the org's budget), its deadline
    /// untouched.
    pub(super) async fn edit_guard(
        &self,
        org: &str,
        user: &str,
        edit: impl FnOnce(&mut GuardWelfare),
    ) -> Result<GuardWelfare, FieldError> {
        let key = guard_key(org, user);
        let _turn = self.welfare_turns.take(&key).await;
        let mut state = match self.guard_welfare(org, user).await? {
            Some(state) => state,
            None => self.new_guard_welfare(org, user).await?,
        };
        edit(&mut state);
        self.store
            .commit(&[Change::put(Record::Welfare { key: &key }, &state)?])
            .await?;
        Ok(state)
    }

    /// A shift was planned: its guard is armed from the shift's start unless already armed.
    pub(super) async fn arm_for_shift(&self, org: &str, user: &str, start: u64) {
        let from = start.max(now_millis());
        if let Err(e) = self.arm(org, user, from, Arming::IfIdle, |_| {}).await {
            tracing::warn!(org, user, error = %e, "arming check-ins for a shift");
        }
    }

    /// Changes a guard's state with `edit` and sets its deadline one interval after `from`
    /// (or disarms it when check-ins are off or the guard is neither on shift nor in lone
    /// work), its timers written in the same atomic write.
    pub(super) async fn arm(
        &self,
        org: &str,
        user: &str,
        from: u64,
        arming: Arming,
        edit: impl FnOnce(&mut GuardWelfare),
    ) -> Result<GuardWelfare, FieldError> {
        let key = guard_key(org, user);
        let _turn = self.welfare_turns.take(&key).await;
        let kept = self.guard_welfare(org, user).await?;
        if arming == Arming::IfIdle && kept.as_ref().is_some_and(|s| s.deadline.is_some()) {
            return kept.ok_or(FieldError::Unavailable);
        }
        let now = now_millis();
        let at = from.max(now);
        let settings = match &kept {
            Some(state) => self.effective(state).await?,
            None => self.org_welfare(org).await?,
        };
        let active = kept.as_ref().is_some_and(|s| s.lone_work_since.is_some())
            || self.on_any_shift(org, user, at).await?;
        let mut state = match kept {
            Some(state) => state,
            None if arming == Arming::IfIdle && !(settings.enabled && active) => {
                // Nothing to keep for a guard check-ins do not concern.
                return Ok(GuardWelfare {
                    org: org.to_string(),
                    user: user.to_string(),
                    ..GuardWelfare::default()
                });
            }
            None => self.new_guard_welfare(org, user).await?,
        };
        edit(&mut state);
        let settings = self.effective(&state).await?;
        let active = state.lone_work_since.is_some() || self.on_any_shift(org, user, at).await?;
        let old = std::mem::take(&mut state.timers);
        if settings.enabled && active {
            let deadline = at + settings.interval_ms;
            let pre = deadline.saturating_sub(settings.pre_alarm_ms);
            if settings.pre_alarm_ms > 0 && pre > now {
                state.timers.push((pre, 0));
            }
            state.timers.push((deadline + settings.grace_ms, 1));
            state.deadline = Some(deadline);
        } else {
            state.deadline = None;
        }
        let id = timer_id(org, user);
        let mut changes = Vec::new();
        for (due, level) in old.iter().filter(|t| !state.timers.contains(t)) {
            changes.push(Change::Delete(Record::Timer {
                due: *due,
                alert: &id,
                level: *level,
            }));
        }
        for (due, level) in state.timers.iter().filter(|t| !old.contains(t)) {
            changes.push(Change::Put(
                Record::Timer {
                    due: *due,
                    alert: &id,
                    level: *level,
                },
                Vec::new(),
            ));
        }
        changes.push(Change::put(Record::Welfare { key: &key }, &state)?);
        self.store.commit(&changes).await?;
        self.alerts.timers_changed();
        Ok(state)
    }

    /// Fires one of a guard's check-in timers (see the module's doc).
    async fn fire_welfare(&self, due: u64, level: u8, id: &str) -> Result<(), FieldError> {
        let timer = Record::Timer {
            due,
            alert: id,
            level,
        };
        let Some((org, user)) = id
            .strip_prefix(OTHER_TIMERS)
            .and_then(|k| k.split_once('/'))
        else {
            return Ok(self.store.commit(&[Change::Delete(timer)]).await?);
        };
        if level == LOST_CONTACT_LEVEL {
            return self.fire_lost_contact(due, org, user).await;
        }
        let key = guard_key(org, user);
        let _turn = self.welfare_turns.take(&key).await;
        let state = self.guard_welfare(org, user).await?;
        let Some(mut state) = state.filter(|s| s.timers.contains(&(due, level))) else {
            // Stale: the guard checked in, or this timer already fired (on another node).
            return Ok(self.store.commit(&[Change::Delete(timer)]).await?);
        };
        state.timers.retain(|t| *t != (due, level));
        let now = now_millis();
        let settings = self.effective(&state).await?;
        let active = state.lone_work_since.is_some() || self.on_any_shift(org, user, now).await?;
        let mut changes = vec![Change::Delete(timer)];
        if !settings.enabled || !active {
            // The shift or the lone work ended, or check-ins were turned off: disarmed.
            for (due, level) in std::mem::take(&mut state.timers) {
                changes.push(Change::Delete(Record::Timer {
                    due,
                    alert: id,
                    level,
                }));
            }
            state.deadline = None;
            changes.push(Change::put(Record::Welfare { key: &key }, &state)?);
            return Ok(self.store.commit(&changes).await?);
        }
        let deadline = state.deadline.unwrap_or(due);
        if level == 0 {
            // Best effort, before the write: a pre-alarm repeated after a crash is harmless.
            let notice = rmpv::ext::to_value(serde_json::json!({
                "kind": "check_in_due",
                "deadline": deadline,
                "missedAt": deadline + settings.grace_ms,
                "now": now,
            }))
            .map_err(|e| FieldError::BadRequest(e.to_string()))?;
            let queue = Target::UserQueue {
                org: org.to_string(),
                user: user.to_string(),
                name: WELFARE_QUEUE.into(),
            };
            if let Err(e) = self.hub.publish_as_lookout(&queue, notice, false).await {
                tracing::warn!(org, user, error = %e, "the guard's welfare queue refused a pre-alarm");
            }
            changes.push(Change::put(Record::Welfare { key: &key }, &state)?);
            self.store.commit(&changes).await?;
            self.welfare_stats
                .pre_alarms
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        let alert_id = missed_alert_id(id, due);
        state.deadline = None;
        state.missed = Some(alert_id.clone());
        changes.push(Change::put(Record::Welfare { key: &key }, &state)?);
        let message = format!(
            "no check-in by the deadline {deadline} (+{} ms grace)",
            settings.grace_ms
        );
        let new = self
            .alert_at_last_position(
                org,
                user,
                AlertType::CheckInMissed,
                Some(message),
                "lookout",
            )
            .await?;
        self.alerts.create_with_id(alert_id, new, changes).await?;
        self.welfare_stats
            .missed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// Whether an arming replaces a deadline already set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arming {
    /// A new deadline one interval from now (a check-in, new settings, lone work).
    Reset,
    /// Only when none is set (a shift planned, an org turning check-ins on).
    IfIdle,
}

#[async_trait::async_trait]
impl TimerHandler for Field {
    async fn fire(&self, due: u64, level: u8, id: &str) {
        if let Err(e) = self.fire_welfare(due, level, id).await {
            tracing::error!(timer = %id, level, error = %e, "a check-in timer failed");
            // Left in the index: it fires again (claimed again) a while later.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}
