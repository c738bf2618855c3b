//! Shifts: who is on shift where and when, the index by guard that every fence check of a fix
//! reads, and shift planning.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::{bad, FieldError};
use super::records::{Shift, ShiftSpec};
use super::service::Field;
use crate::auth::{Identity, Role};
use crate::store::{Change, Record, Records};

impl Field {
    /// Whether `user` of `org` is on shift at `site` now: shifts are an org's, like its users
    /// (another org's shift for the same user id is another guard's).
    pub(super) async fn on_shift(
        &self,
        org: &str,
        user: &str,
        site: &str,
        now: u64,
    ) -> Result<bool, FieldError> {
        let index = self.shift_index().await?;
        let key = crate::auth::principal_key(Some(org), user);
        Ok(index.get(&key).is_some_and(|shifts| {
            shifts
                .iter()
                .any(|s| s.site == site && s.start <= now && now < s.end)
        }))
    }

    /// Whether `user` of `org` is on shift at any site at `at`.
    pub(super) async fn on_any_shift(
        &self,
        org: &str,
        user: &str,
        at: u64,
    ) -> Result<bool, FieldError> {
        let index = self.shift_index().await?;
        let key = crate::auth::principal_key(Some(org), user);
        Ok(index
            .get(&key)
            .is_some_and(|shifts| shifts.iter().any(|s| s.start <= at && at < s.end)))
    }

    /// The site of the shift `user` of `org` is on at `at`, if any (the one that started
    /// last, when shifts overlap).
    pub(super) async fn site_at(
        &self,
        org: &str,
        user: &str,
        at: u64,
    ) -> Result<Option<String>, FieldError> {
        let index = self.shift_index().await?;
        let key = crate::auth::principal_key(Some(org), user);
        Ok(index.get(&key).and_then(|shifts| {
            shifts
                .iter()
                .filter(|s| s.start <= at && at < s.end)
                .max_by_key(|s| s.start)
                .map(|s| s.site.clone())
        }))
    }

    /// Each guard's earliest shift of those `keep` accepts, as (org, user, start).
    async fn earliest_shifts(
        &self,
        keep: impl Fn(&Shift) -> bool,
    ) -> Result<Vec<(String, String, u64)>, FieldError> {
        let index = self.shift_index().await?;
        Ok(index
            .values()
            .filter_map(|shifts| {
                shifts
                    .iter()
                    .filter(|s| keep(s))
                    .min_by_key(|s| s.start)
                    .map(|s| (s.org.clone(), s.user.clone(), s.start))
            })
            .collect())
    }

    /// Every guard on shift at `now`, as (org, user, start of the shift).
    pub(super) async fn on_shift_now(
        &self,
        now: u64,
    ) -> Result<Vec<(String, String, u64)>, FieldError> {
        self.earliest_shifts(|s| s.start <= now && now < s.end)
            .await
    }

    /// The guards of `org` on shift now or later, each with the start of its earliest such
    /// shift.
    pub(super) async fn planned_shifts(
        &self,
        org: &str,
        now: u64,
    ) -> Result<Vec<(String, u64)>, FieldError> {
        let shifts = self
            .earliest_shifts(|s| s.org == org && s.end > now)
            .await?;
        Ok(shifts
            .into_iter()
            .map(|(_, user, start)| (user, start))
            .collect())
    }

    async fn shift_index(&self) -> Result<Arc<HashMap<String, Vec<Shift>>>, FieldError> {
        let generation = {
            let index = self.shifts.lock();
            if let Some(by_user) = &index.by_user {
                return Ok(by_user.clone());
            }
            index.generation
        };
        let mut by_user: HashMap<String, Vec<Shift>> = HashMap::new();
        for shift in self.store.load_all::<Shift>(Records::Shifts).await? {
            let key = crate::auth::principal_key(Some(&shift.org), &shift.user);
            by_user.entry(key).or_default().push(shift);
        }
        let by_user = Arc::new(by_user);
        let mut index = self.shifts.lock();
        if index.generation == generation {
            index.by_user = Some(by_user.clone());
        }
        Ok(by_user)
    }

    fn shifts_changed(&self) {
        let mut index = self.shifts.lock();
        index.by_user = None;
        index.generation += 1;
    }

    /// Shifts of the caller's org.
    pub async fn shifts(&self, who: &Identity) -> Result<Vec<Shift>, FieldError> {
        let all: Vec<Shift> = self.store.load_all(Records::Shifts).await?;
        Ok(all
            .into_iter()
            .filter(|s| who.is(Role::Admin) || who.in_org(&s.org))
            .filter(|s| !who.is(Role::Guard) || who.is(Role::Supervisor) || *who.user == *s.user)
            .collect())
    }

    /// One shift: for the org's supervisors and admins, and the guard on it. Another org's
    /// shift is refused as deleting it is.
    pub async fn shift(&self, who: &Identity, id: &str) -> Result<Shift, FieldError> {
        let shift: Shift = self
            .store
            .load(Record::Shift { id })
            .await?
            .ok_or_else(|| FieldError::NotFound(format!("no shift {id}")))?;
        let own = who.is(Role::Guard) && who.in_org(&shift.org) && *who.user == *shift.user;
        if !Self::may_manage(who, &shift.org) && !own {
            return Err(FieldError::Forbidden(
                "only the org's supervisors and admins, and the guard on it, read a shift",
            ));
        }
        Ok(shift)
    }

    /// Puts a guard on shift at a site.
    pub async fn add_shift(&self, who: &Identity, spec: ShiftSpec) -> Result<Shift, FieldError> {
        // A guard of the caller's org (an admin names the org).
        let org = self.org_for(who, spec.org.as_deref())?;
        if !Self::may_manage(who, &org) {
            return Err(FieldError::Forbidden(
                "only the org's supervisors and admins plan shifts",
            ));
        }
        if spec.end <= spec.start {
            return bad("a shift must end after it starts");
        }
        let shift = Shift {
            id: uuid::Uuid::new_v4().to_string(),
            org: org.to_string(),
            user: spec.user,
            site: spec.site,
            start: spec.start,
            end: spec.end,
        };
        let committed = self
            .store
            .commit(&[Change::put(Record::Shift { id: &shift.id }, &shift)?])
            .await;
        // Also after a failed commit: what the store holds is no longer known.
        self.shifts_changed();
        committed?;
        // Check-ins run while the guard is on shift (if the org or guard has them on).
        self.arm_for_shift(&shift.org, &shift.user, shift.start)
            .await;
        Ok(shift)
    }

    /// Ends a shift early / removes it.
    pub async fn delete_shift(&self, who: &Identity, id: &str) -> Result<(), FieldError> {
        let shift: Shift = self
            .store
            .load(Record::Shift { id })
            .await?
            .ok_or_else(|| FieldError::NotFound(format!("no shift {id}")))?;
        if !Self::may_manage(who, &shift.org) {
            return Err(FieldError::Forbidden(
                "only the org's supervisors and admins plan shifts",
            ));
        }
        let committed = self
            .store
            .commit(&[Change::Delete(Record::Shift { id })])
            .await;
        self.shifts_changed();
        committed?;
        Ok(())
    }
}
