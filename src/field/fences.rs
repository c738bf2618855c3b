//! Geofences: the compiled fences of an org, the check of every fix against them (a crossing
//! into violation raises a GEOFENCE alert, a return resolves it), and their management.
//!
//! Geometry is in [`crate::geofence`]; the fence records are in `records.rs`; whether a guard is
//! on shift at a fence's site is asked of `shifts.rs`.

use std::sync::Arc;

use super::error::{bad, FieldError};
use super::location::Location;
use super::records::{Fence, FenceSpec, FenceState};
use super::service::Field;
use crate::alerts::{AlertError, AlertType, NewAlert, Priority};
use crate::auth::Identity;
use crate::clock::now_millis;
use crate::geofence::{Area, FenceIndex, FenceKind};
use crate::store::{Change, Record, Records};

impl Field {
    pub(super) async fn fence_index(
        &self,
        org: &str,
    ) -> Result<Arc<FenceIndex<Fence>>, FieldError> {
        if let Some(index) = self.fences.lock().get(org) {
            return Ok(index.clone());
        }
        let fences: Vec<Fence> = self.store.load_all(Records::Fences { org }).await?;
        let mut compiled: Vec<(Arc<Fence>, Area)> = Vec::with_capacity(fences.len());
        for fence in fences {
            // Stored fences were validated on the way in; skip (and report) any that no longer
            // compile rather than stop checking the others.
            match fence.shape.compile(usize::MAX) {
                Ok(area) => compiled.push((Arc::new(fence), area)),
                Err(e) => {
                    tracing::error!(fence = %fence.id, error = %e, "stored fence does not compile")
                }
            }
        }
        let index = Arc::new(FenceIndex::new(compiled));
        self.fences.lock().insert(org.to_string(), index.clone());
        Ok(index)
    }

    pub(super) async fn check_fences(
        &self,
        user: &str,
        org: &str,
        location: &Location,
    ) -> Result<(), FieldError> {
        let index = self.fence_index(org).await?;
        if index.is_empty() {
            return Ok(());
        }
        let now = now_millis();
        for (fence, inside) in index.classify(location.lon, location.lat) {
            if fence
                .guards
                .as_ref()
                .is_some_and(|g| !g.iter().any(|u| u == user))
            {
                continue;
            }
            let applies = match (fence.kind, &fence.site) {
                (FenceKind::Required, Some(site)) => self.on_shift(org, user, site, now).await?,
                _ => true,
            };
            let violating = applies
                && match fence.kind {
                    FenceKind::Required => !inside,
                    FenceKind::Forbidden => inside,
                };
            self.fence_transition(user, org, fence, violating, location)
                .await?;
        }
        Ok(())
    }

    async fn fence_transition(
        &self,
        user: &str,
        org: &str,
        fence: &Fence,
        violating: bool,
        location: &Location,
    ) -> Result<(), FieldError> {
        let principal = crate::auth::principal_key(Some(org), user);
        let key = Record::FenceState {
            user: &principal,
            fence: &fence.id,
        };
        let before: FenceState = self.store.load(key).await?.unwrap_or_default();
        if before.violating == violating {
            return Ok(());
        }
        if violating {
            let verb = match fence.kind {
                FenceKind::Required => "left required",
                FenceKind::Forbidden => "entered forbidden",
            };
            // The state is written in the alert's own atomic write; if a crash intervenes,
            // both or neither are there, so a restart neither repeats nor loses the violation.
            let alert_id = uuid::Uuid::new_v4().to_string();
            let state = FenceState {
                violating: true,
                alert: Some(alert_id.clone()),
            };
            let alert = self
                .alerts
                .create_with_id(
                    alert_id,
                    NewAlert {
                        org: org.to_string(),
                        user: user.to_string(),
                        kind: AlertType::Geofence,
                        priority: Priority::High,
                        message: Some(format!("{user} {verb} fence {}", fence.name)),
                        position: Some(location.position()),
                        fence: Some(fence.id.clone()),
                        site: self.site_now(org, user).await,
                        by: "lookout".into(),
                    },
                    vec![Change::put(key, &state)?],
                )
                .await?;
            tracing::info!(alert = %alert.id, user, fence = %fence.id, "geofence violation");
        } else {
            let cleared = FenceState::default();
            let changes = vec![Change::put(key, &cleared)?];
            match &before.alert {
                Some(id) => {
                    let result = self
                        .alerts
                        .resolve(
                            None,
                            id,
                            "lookout",
                            Some("guard returned: fence respected again".into()),
                            changes,
                        )
                        .await;
                    match result {
                        // Already resolved by a supervisor: just record that the guard is back.
                        Err(AlertError::State(_)) => {
                            self.store.commit(&[Change::put(key, &cleared)?]).await?;
                        }
                        other => {
                            other?;
                        }
                    }
                }
                None => self.store.commit(&changes).await?,
            }
        }
        Ok(())
    }

    /// Fences of the caller's org (admins: of `org`).
    pub async fn fences(
        &self,
        who: &Identity,
        org: Option<&str>,
    ) -> Result<Vec<Fence>, FieldError> {
        let org = self.org_for(who, org)?;
        if !(Self::may_manage(who, &org) || who.in_org(&org)) {
            return Err(FieldError::Forbidden("not a member of this organization"));
        }
        Ok(self.store.load_all(Records::Fences { org: &org }).await?)
    }

    /// Creates (`id` none) or replaces a fence.
    pub async fn put_fence(
        &self,
        who: &Identity,
        id: Option<&str>,
        spec: FenceSpec,
    ) -> Result<Fence, FieldError> {
        let org = self.org_for(who, spec.org.as_deref())?;
        if !Self::may_manage(who, &org) {
            return Err(FieldError::Forbidden(
                "only supervisors and admins manage geofences",
            ));
        }
        if spec.name.trim().is_empty() || spec.name.len() > 200 {
            return bad("name must be 1 to 200 characters");
        }
        spec.shape
            .compile(self.config.max_fence_vertices)
            .map_err(|e| FieldError::BadRequest(e.to_string()))?;
        let (id, created_at) = match id {
            Some(id) => {
                let existing: Fence = self
                    .store
                    .load(Record::Fence { org: &org, id })
                    .await?
                    .ok_or_else(|| FieldError::NotFound(format!("no fence {id}")))?;
                (existing.id, existing.created_at)
            }
            None => (uuid::Uuid::new_v4().to_string(), now_millis()),
        };
        let fence = Fence {
            id,
            org: org.clone(),
            name: spec.name,
            kind: spec.kind,
            shape: spec.shape,
            guards: spec.guards,
            site: spec.site,
            created_at,
        };
        let key = Record::Fence {
            org: &org,
            id: &fence.id,
        };
        self.store.commit(&[Change::put(key, &fence)?]).await?;
        self.fences.lock().remove(&org);
        Ok(fence)
    }

    /// Deletes a fence.
    pub async fn delete_fence(
        &self,
        who: &Identity,
        id: &str,
        org: Option<&str>,
    ) -> Result<(), FieldError> {
        let org = self.org_for(who, org)?;
        if !Self::may_manage(who, &org) {
            return Err(FieldError::Forbidden(
                "only supervisors and admins manage geofences",
            ));
        }
        let key = Record::Fence { org: &org, id };
        if self.store.load::<Fence>(key).await?.is_none() {
            return Err(FieldError::NotFound(format!("no fence {id}")));
        }
        self.store.commit(&[Change::Delete(key)]).await?;
        self.fences.lock().remove(&org);
        Ok(())
    }
}
