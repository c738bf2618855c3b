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

/// The bounds of a man-down watch: no motion for 2 s to 1 h, a countdown of 1 s to 5 min.
const MAN_DOWN_AFTER_MS: std::ops::RangeInclusive<u64> = 2_000..=3_600_000;
const MAN_DOWN_COUNTDOWN_MS: std::ops::RangeInclusive<u64> = 1_000..=300_000;

/// Where the settings that apply come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The org's.
    Org,
    /// A site's (of the guard's shift).
    Site(String),
    /// The guard's own.
    Guard(String),
}

impl Scope {
    /// `org`, `site` or `guard`.
    pub fn name(&self) -> &'static str {
        match self {
            Scope::Org => "org",
            Scope::Site(_) => "site",
            Scope::Guard(_) => "guard",
        }
    }
}

/// How often a change of a guard's state is tried when other nodes keep changing it first.
const WRITE_ATTEMPTS: usize = 16;

/// The guard's own queue the pre-alarm goes to (`/user/queue/welfare`).
pub(super) const WELFARE_QUEUE: &str = "welfare";

pub(super) fn org_key(org: &str) -> String {
    format!("org/{org}")
}

/// `ms` since the epoch as a UTC time for people (`2026-12-07T15:04:05Z`), in alert messages.
pub(super) fn utc(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// A site's own settings: `site/{org}/{site}` (a site's name is free text, and last).
fn site_key(org: &str, site: &str) -> String {
    format!("site/{org}/{site}")
}

/// The LOST_CONTACT alert open for a guard, if any (kept by `contact.rs`).
pub(super) fn lost_key(org: &str, user: &str) -> String {
    format!("lost/{}", principal_key(Some(org), user))
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

    /// A site's own settings, if it has any.
    async fn site_welfare(
        &self,
        org: &str,
        site: &str,
    ) -> Result<Option<WelfareSettings>, FieldError> {
        let key = site_key(org, site);
        Ok(self.store.load(Record::Welfare { key: &key }).await?)
    }

    /// The settings that apply to a guard at `at`: its own, else those of the site of its
    /// shift then, else its org's.
    async fn effective(
        &self,
        state: &GuardWelfare,
        at: u64,
    ) -> Result<(WelfareSettings, Scope), FieldError> {
        if let Some(own) = state.settings {
            return Ok((own, Scope::Guard(state.user.clone())));
        }
        if let Some(site) = self.site_at(&state.org, &state.user, at).await? {
            if let Some(settings) = self.site_welfare(&state.org, &site).await? {
                return Ok((settings, Scope::Site(site)));
            }
        }
        Ok((self.org_welfare(&state.org).await?, Scope::Org))
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
        if !MAN_DOWN_AFTER_MS.contains(&s.man_down_after_ms) {
            return bad(format!(
                "man_down_after_ms must be between {} and {}",
                MAN_DOWN_AFTER_MS.start(),
                MAN_DOWN_AFTER_MS.end()
            ));
        }
        if !MAN_DOWN_COUNTDOWN_MS.contains(&s.man_down_countdown_ms) {
            return bad(format!(
                "man_down_countdown_ms must be between {} and {}",
                MAN_DOWN_COUNTDOWN_MS.start(),
                MAN_DOWN_COUNTDOWN_MS.end()
            ));
        }
        Ok(())
    }

    /// Whose settings a request names: `user`, `site`, or (neither) the org's.
    fn scope(
        who: &Identity,
        org: &str,
        user: Option<&str>,
        site: Option<&str>,
    ) -> Result<Scope, FieldError> {
        match (user, site) {
            (Some(_), Some(_)) => bad("name a `user` or a `site`, not both"),
            (Some(u), None) => Ok(Scope::Guard(u.to_string())),
            (None, Some("")) => bad("`site` is empty"),
            (None, Some(s)) => Ok(Scope::Site(s.to_string())),
            // A guard asking for "the settings" means those that apply to it.
            (None, None) if who.is(Role::Guard) && !Self::may_manage(who, org) => {
                Ok(Scope::Guard(who.user.to_string()))
            }
            (None, None) => Ok(Scope::Org),
        }
    }

    /// The lone-worker settings of the caller's org, of one of its sites (its own if set,
    /// else the org's) or of one of its guards (those that apply to it now), with where they
    /// come from. A guard reads only those that apply to it.
    pub async fn welfare_settings(
        &self,
        who: &Identity,
        org: Option<&str>,
        user: Option<&str>,
        site: Option<&str>,
    ) -> Result<(WelfareSettings, Scope), FieldError> {
        let org = self.org_for(who, org)?;
        let manager = Self::may_manage(who, &org);
        match Self::scope(who, &org, user, site)? {
            Scope::Guard(u) if manager || *who.user == *u => {
                let state = match self.guard_welfare(&org, &u).await? {
                    Some(state) => state,
                    None => GuardWelfare {
                        org: org.clone(),
                        user: u,
                        ..GuardWelfare::default()
                    },
                };
                self.effective(&state, now_millis()).await
            }
            Scope::Guard(_) => Err(FieldError::Forbidden("another guard's settings")),
            _ if !manager => Err(FieldError::Forbidden(
                "only the org's supervisors and admins read its settings",
            )),
            Scope::Site(site) => match self.site_welfare(&org, &site).await? {
                Some(own) => Ok((own, Scope::Site(site))),
                None => Ok((self.org_welfare(&org).await?, Scope::Org)),
            },
            Scope::Org => Ok((self.org_welfare(&org).await?, Scope::Org)),
        }
    }

    /// Sets the lone-worker settings of an org, a site or one guard; supervisors and admins.
    /// `None` removes a site's or a guard's own settings (the org's apply again). Guards on
    /// shift now are armed by the new settings.
    pub async fn set_welfare_settings(
        &self,
        who: &Identity,
        org: Option<&str>,
        user: Option<&str>,
        site: Option<&str>,
        settings: Option<WelfareSettings>,
    ) -> Result<Option<WelfareSettings>, FieldError> {
        let org = self.org_for(who, org)?;
        if !Self::may_manage(who, &org) {
            return Err(FieldError::Forbidden(
                "only the org's supervisors and admins set check-ins",
            ));
        }
        if let Some(settings) = &settings {
            self.check_settings(settings)?;
        }
        let now = now_millis();
        match Self::scope(who, &org, user, site)? {
            Scope::Guard(user) => {
                self.arm(&org, &user, now, Arming::Reset, |s| s.settings = settings)
                    .await?;
            }
            scope => {
                let key = match &scope {
                    Scope::Site(site) => site_key(&org, site),
                    _ => org_key(&org),
                };
                let change = match &settings {
                    Some(settings) => Change::put(Record::Welfare { key: &key }, settings)?,
                    None if scope == Scope::Org => {
                        return bad("an org's settings are changed, not removed")
                    }
                    None => Change::Delete(Record::Welfare { key: &key }),
                };
                self.store.commit(&[change]).await?;
                for (user, start) in self.planned_shifts(&org, now).await? {
                    self.arm_for_shift(&org, &user, start).await;
                }
            }
        }
        Ok(settings)
    }

    /// Every guard of `org` with lone-worker state (check-ins, lone work, lost contact), for
    /// the dashboard; supervisors and admins.
    pub async fn welfare_guards(
        &self,
        who: &Identity,
        org: Option<&str>,
    ) -> Result<serde_json::Value, FieldError> {
        let org = self.org_for(who, org)?;
        if !Self::may_manage(who, &org) {
            return Err(FieldError::Forbidden(
                "only the org's supervisors and admins",
            ));
        }
        let mut guards = Vec::new();
        for raw in self.store.records(Records::Welfare).await? {
            let Ok(state) = crate::store::records::decode::<GuardWelfare>(&raw) else {
                continue;
            };
            if state.org == org && !state.user.is_empty() {
                guards.push(self.status_of(&state).await?);
            }
        }
        Ok(serde_json::json!({ "guards": guards, "now": now_millis() }))
    }

    /// "I'm OK": the guard's next deadline is one interval from now (armed if the guard is on
    /// shift or in lone work and check-ins are on).
    pub async fn check_in(&self, who: &Identity) -> Result<serde_json::Value, FieldError> {
        let org = self.own_org(who)?;
        let state = self.checked_in(&org, &who.user, now_millis()).await?;
        self.status_of(&state).await
    }

    /// The last check-in of `user` of `org` (ms), the only one kept: each check-in replaces
    /// the one before in the guard's welfare record.
    pub async fn last_check_in(&self, org: &str, user: &str) -> Result<Option<u64>, FieldError> {
        Ok(self
            .guard_welfare(org, user)
            .await?
            .and_then(|s| s.checked_in_at))
    }

    /// Records a check-in of `user` at `now` ("I'm OK" or counted activity): the next
    /// deadline one interval on, a missed check-in behind it.
    async fn checked_in(
        &self,
        org: &str,
        user: &str,
        now: u64,
    ) -> Result<GuardWelfare, FieldError> {
        let state = self
            .arm(org, user, now, Arming::Reset, |s| {
                s.checked_in_at = Some(now);
                s.missed = None;
            })
            .await?;
        self.welfare_stats
            .check_ins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(state)
    }

    /// A fix from the guard's phone at `now`: a check-in when the settings that apply count
    /// activity, at most one per tenth of the interval (a phone sends a fix a second).
    pub(super) async fn activity(&self, org: &str, user: &str, now: u64) -> Result<(), FieldError> {
        let Some(state) = self.guard_welfare(org, user).await? else {
            return Ok(());
        };
        if state.deadline.is_none() && state.missed.is_none() {
            return Ok(());
        }
        let (settings, _) = self.effective(&state, now).await?;
        let since = now.saturating_sub(state.checked_in_at.unwrap_or(0));
        if !settings.activity_resets || since < settings.interval_ms / 10 {
            return Ok(());
        }
        self.checked_in(org, user, now).await?;
        Ok(())
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

    /// The guard ends its lone work without a PIN: only while it has none (a guard with a PIN
    /// ends it with the PIN, where the duress PIN works too).
    pub async fn stop_lone_work(&self, who: &Identity) -> Result<serde_json::Value, FieldError> {
        let org = self.own_org(who)?;
        if self
            .guard_welfare(&org, &who.user)
            .await?
            .is_some_and(|s| s.pin.is_some())
        {
            return Err(FieldError::Forbidden(
                "with a PIN set, lone work ends with the PIN (POST /api/v1/welfare/pin)",
            ));
        }
        let state = self
            .arm(&org, &who.user, now_millis(), Arming::Reset, |s| {
                s.lone_work_since = None
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
        let now = now_millis();
        let (settings, from) = self.effective(state, now).await?;
        let pre_alarm_at = state
            .deadline
            .map(|d| d.saturating_sub(settings.pre_alarm_ms));
        let check_in = match (state.deadline, &state.missed) {
            (Some(deadline), _) if now >= deadline => "overdue",
            (Some(_), _) if pre_alarm_at.is_some_and(|at| now >= at) => "pre_alarm",
            (Some(_), _) => "ok",
            (None, Some(_)) => "missed",
            (None, None) => "off",
        };
        let lost = lost_key(&state.org, &state.user);
        let lost_contact: Option<String> = self.store.load(Record::Welfare { key: &lost }).await?;
        Ok(serde_json::json!({
            "user": state.user,
            "settingsFrom": from.name(),
            "site": self.site_at(&state.org, &state.user, now).await?,
            "enabled": settings.enabled,
            "intervalMs": settings.interval_ms,
            "preAlarmMs": settings.pre_alarm_ms,
            "graceMs": settings.grace_ms,
            "manDown": settings.man_down,
            "manDownAfterMs": settings.man_down_after_ms,
            "manDownCountdownMs": settings.man_down_countdown_ms,
            "loneWork": state.lone_work_since.is_some(),
            "checkIn": check_in,
            "deadline": state.deadline,
            "preAlarmAt": pre_alarm_at,
            "checkedInAt": state.checked_in_at,
            "missedAlert": state.missed,
            "lostContact": lost_contact,
            "pinSet": state.pin.is_some(),
            "now": now,
        }))
    }

    /// The guard's state as kept, with the bytes read: a change is written over them only
    /// (see [`Field::write_guard`]).
    async fn read_guard(
        &self,
        key: &str,
    ) -> Result<(Option<GuardWelfare>, Option<Vec<u8>>), FieldError> {
        let raw = self.store.record(Record::Welfare { key }).await?;
        let state = match &raw {
            Some(raw) => Some(crate::store::records::decode(raw)?),
            None => None,
        };
        Ok((state, raw))
    }

    /// Writes `changes` (the guard's new state among them) only over the state as `read`,
    /// and waits until they are durable; `false` when another node changed it meanwhile (the
    /// caller reads again and decides again). One node's changes are serialised by its
    /// `welfare_turns`; this is what keeps two nodes from losing one of theirs.
    pub(super) async fn write_guard(
        &self,
        key: &str,
        read: Option<&[u8]>,
        changes: &[Change<'_>],
    ) -> Result<bool, FieldError> {
        match self
            .store
            .write_if(Record::Welfare { key }, read, changes)
            .await?
        {
            Some(ticket) => {
                self.store.durable(ticket).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Changes a guard's state with `edit` (a new state within the org's budget), its deadline
    /// untouched.
    pub(super) async fn edit_guard(
        &self,
        org: &str,
        user: &str,
        edit: impl Fn(&mut GuardWelfare),
    ) -> Result<GuardWelfare, FieldError> {
        let key = guard_key(org, user);
        let _turn = self.welfare_turns.take(&key).await;
        for _ in 0..WRITE_ATTEMPTS {
            let (kept, read) = self.read_guard(&key).await?;
            let mut state = match kept {
                Some(state) => state,
                None => self.new_guard_welfare(org, user).await?,
            };
            edit(&mut state);
            let changes = [Change::put(Record::Welfare { key: &key }, &state)?];
            if self.write_guard(&key, read.as_deref(), &changes).await? {
                return Ok(state);
            }
        }
        Err(FieldError::Contended("the guard's lone-worker state"))
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
        edit: impl Fn(&mut GuardWelfare),
    ) -> Result<GuardWelfare, FieldError> {
        let key = guard_key(org, user);
        let _turn = self.welfare_turns.take(&key).await;
        for _ in 0..WRITE_ATTEMPTS {
            if let Some((state, before)) =
                self.try_arm(&key, org, user, from, arming, &edit).await?
            {
                self.alerts.timers_changed();
                if state.deadline != before {
                    self.tell_deadline(&state).await;
                }
                return Ok(state);
            }
        }
        Err(FieldError::Contended("the guard's lone-worker state"))
    }

    /// One attempt of [`Field::arm`]: the new state and the deadline before it, or `None`
    /// when another node changed the state meanwhile.
    async fn try_arm(
        &self,
        key: &str,
        org: &str,
        user: &str,
        from: u64,
        arming: Arming,
        edit: &impl Fn(&mut GuardWelfare),
    ) -> Result<Option<(GuardWelfare, Option<u64>)>, FieldError> {
        let (kept, read) = self.read_guard(key).await?;
        let before = kept.as_ref().and_then(|s| s.deadline);
        if arming == Arming::IfIdle && before.is_some() {
            return Ok(kept.map(|s| (s, before)));
        }
        let now = now_millis();
        let at = from.max(now);
        let blank = GuardWelfare {
            org: org.to_string(),
            user: user.to_string(),
            ..GuardWelfare::default()
        };
        let settings = self.effective(kept.as_ref().unwrap_or(&blank), at).await?.0;
        let active = kept.as_ref().is_some_and(|s| s.lone_work_since.is_some())
            || self.on_any_shift(org, user, at).await?;
        let mut state = match kept {
            Some(state) => state,
            // Nothing to keep for a guard check-ins do not concern.
            None if arming == Arming::IfIdle && !(settings.enabled && active) => {
                return Ok(Some((blank, None)))
            }
            None => self.new_guard_welfare(org, user).await?,
        };
        edit(&mut state);
        let settings = self.effective(&state, at).await?.0;
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
        changes.push(Change::put(Record::Welfare { key }, &state)?);
        let written = self.write_guard(key, read.as_deref(), &changes).await?;
        Ok(written.then_some((state, before)))
    }

    /// Tells the guard's phone its deadline changed (armed by a shift, new settings, another
    /// device's check-in) or is gone: `{"kind":"armed","deadline"}` or `{"kind":"disarmed"}` to
    /// its own welfare queue. Best effort: the phone also asks for its status.
    async fn tell_deadline(&self, state: &GuardWelfare) {
        let notice = match state.deadline {
            Some(deadline) => {
                serde_json::json!({"kind": "armed", "deadline": deadline, "now": now_millis()})
            }
            None => serde_json::json!({"kind": "disarmed", "now": now_millis()}),
        };
        self.to_welfare_queue(&state.org, &state.user, notice).await;
    }

    /// Publishes `notice` to the guard's own welfare queue; a refusal is logged.
    async fn to_welfare_queue(&self, org: &str, user: &str, notice: serde_json::Value) -> bool {
        let notice = match rmpv::ext::to_value(notice) {
            Ok(notice) => notice,
            Err(e) => {
                tracing::error!(error = %e, "a welfare notice that MessagePack cannot carry");
                return false;
            }
        };
        let queue = Target::UserQueue {
            org: org.to_string(),
            user: user.to_string(),
            name: WELFARE_QUEUE.into(),
        };
        match self.hub.publish_as_lookout(&queue, notice, false).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(org, user, error = %e, "the guard's welfare queue refused a notice");
                false
            }
        }
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
        let mut warned = false;
        for _ in 0..WRITE_ATTEMPTS {
            if self
                .try_fire(&key, (due, level), id, org, user, &mut warned)
                .await?
            {
                return Ok(());
            }
        }
        Err(FieldError::Contended("the guard's lone-worker state"))
    }

    /// One attempt of [`Field::fire_welfare`]: `false` when another node changed the guard's
    /// state meanwhile. `warned`: whether an earlier attempt sent the pre-alarm.
    async fn try_fire(
        &self,
        key: &str,
        (due, level): (u64, u8),
        id: &str,
        org: &str,
        user: &str,
        warned: &mut bool,
    ) -> Result<bool, FieldError> {
        let timer = Record::Timer {
            due,
            alert: id,
            level,
        };
        let (state, read) = self.read_guard(key).await?;
        let Some(mut state) = state.filter(|s| s.timers.contains(&(due, level))) else {
            // Stale: the guard checked in, or this timer already fired (on another node).
            self.store.commit(&[Change::Delete(timer)]).await?;
            return Ok(true);
        };
        state.timers.retain(|t| *t != (due, level));
        let now = now_millis();
        let settings = self.effective(&state, now).await?.0;
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
            changes.push(Change::put(Record::Welfare { key }, &state)?);
            return self.write_guard(key, read.as_deref(), &changes).await;
        }
        let deadline = state.deadline.unwrap_or(due);
        if level == 0 {
            // Best effort, before the write: a pre-alarm repeated after a crash is harmless.
            if !*warned {
                self.pre_alarm(org, user, deadline, deadline + settings.grace_ms, now)
                    .await?;
                *warned = true;
            }
            changes.push(Change::put(Record::Welfare { key }, &state)?);
            return self.write_guard(key, read.as_deref(), &changes).await;
        }
        let alert_id = missed_alert_id(id, due);
        state.deadline = None;
        state.missed = Some(alert_id.clone());
        changes.push(Change::put(Record::Welfare { key }, &state)?);
        let message = format!(
            "no check-in by {} (deadline, plus {} s grace)",
            utc(deadline),
            settings.grace_ms / 1000
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
        let raised = self
            .alerts
            .create_with_id_if(
                alert_id,
                new,
                changes,
                Record::Welfare { key },
                read.as_deref(),
            )
            .await?;
        if raised.is_some() {
            self.welfare_stats
                .missed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(raised.is_some())
    }

    /// The pre-alarm to the guard's own queue.
    async fn pre_alarm(
        &self,
        org: &str,
        user: &str,
        deadline: u64,
        missed_at: u64,
        now: u64,
    ) -> Result<(), FieldError> {
        let notice = serde_json::json!({
            "kind": "check_in_due",
            "deadline": deadline,
            "missedAt": missed_at,
            "now": now,
        });
        if self.to_welfare_queue(org, user, notice).await {
            self.welfare_stats
                .pre_alarms
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
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
