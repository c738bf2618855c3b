//! Checkpoints: an org's places to scan, managed by its supervisors, each with its signed code.

use serde::Serialize;

use super::error::{bad, PatrolError};
use super::records::{Checkpoint, CheckpointSpec, Tour, CHECKPOINT, TOUR};
use super::service::{new_id, valid_text, Patrols};
use crate::auth::Identity;
use crate::clock::now_millis;
use crate::store::{Change, Record};

/// A checkpoint as served: the record and the code its QR code and NFC tag carry.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointView {
    /// The checkpoint.
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    /// Its signed code (`LKCP1.…`): only for those who manage the org's patrols. A guard who
    /// could read the codes could scan every checkpoint without going there; guards read the
    /// code where it is posted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// The default radius, m.
const DEFAULT_RADIUS_M: f64 = 30.0;

fn checked(spec: &CheckpointSpec) -> Result<(), PatrolError> {
    if !valid_text(&spec.name, 100) {
        return bad("`name` must be 1–100 characters");
    }
    if !(-90.0..=90.0).contains(&spec.lat) || !(-180.0..=180.0).contains(&spec.lon) {
        return bad("`lat` must be within ±90 and `lon` within ±180");
    }
    if spec
        .radius_m
        .is_some_and(|r| !r.is_finite() || !(1.0..=10_000.0).contains(&r))
    {
        return bad("`radius_m` must be from 1 to 10000");
    }
    if spec.site.as_deref().is_some_and(|s| !valid_text(s, 100)) {
        return bad("`site` must be 1–100 characters");
    }
    if spec
        .instructions
        .as_deref()
        .is_some_and(|s| s.chars().count() > 2000)
    {
        return bad("`instructions` must be at most 2000 characters");
    }
    Ok(())
}

/// The checkpoint `spec` describes (checked), with its id, org and creation time.
fn built(id: String, org: String, created_at: u64, spec: CheckpointSpec) -> Checkpoint {
    Checkpoint {
        id,
        org,
        name: spec.name.trim().to_string(),
        site: spec.site,
        lat: spec.lat,
        lon: spec.lon,
        radius_m: spec.radius_m.unwrap_or(DEFAULT_RADIUS_M),
        instructions: spec.instructions,
        created_at,
    }
}

impl Patrols {
    /// The org's checkpoints (the org's users; an admin names the org), with their codes for
    /// those who manage the org's patrols.
    pub async fn checkpoints(
        &self,
        who: &Identity,
        org: Option<&str>,
    ) -> Result<Vec<CheckpointView>, PatrolError> {
        let org = self.org_for(who, org)?;
        let manages = self.managed_org(who, Some(&org)).is_ok();
        Ok(self
            .coded(&org)
            .await?
            .into_iter()
            .map(|(checkpoint, code)| CheckpointView {
                checkpoint,
                code: manages.then_some(code),
            })
            .collect())
    }

    /// Every checkpoint of `org` by name, each with its signed code.
    pub(super) async fn coded(&self, org: &str) -> Result<Vec<(Checkpoint, String)>, PatrolError> {
        let key = self.signing_key(org).await?;
        let mut all: Vec<Checkpoint> = self.load_all(org, CHECKPOINT).await?;
        all.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(all
            .into_iter()
            .map(|checkpoint| {
                let code = Self::code(&key, org, &checkpoint.id);
                (checkpoint, code)
            })
            .collect())
    }

    /// Creates a checkpoint (supervisors, admins), within `patrol.max_checkpoints_per_org`.
    pub async fn create_checkpoint(
        &self,
        who: &Identity,
        org: Option<&str>,
        spec: CheckpointSpec,
    ) -> Result<CheckpointView, PatrolError> {
        let org = self.managed_org(who, org)?;
        checked(&spec)?;
        let _turn = self
            .creation_turn(
                &org,
                CHECKPOINT,
                self.config.max_checkpoints_per_org,
                "checkpoints per org",
                "patrol.max_checkpoints_per_org",
            )
            .await?;
        let view = self
            .save_checkpoint(built(new_id(), org, now_millis(), spec))
            .await?;
        self.stats
            .checkpoints_created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(view)
    }

    /// Replaces a checkpoint's name, place and instructions; its id and code stay.
    pub async fn replace_checkpoint(
        &self,
        who: &Identity,
        org: Option<&str>,
        id: &str,
        spec: CheckpointSpec,
    ) -> Result<CheckpointView, PatrolError> {
        let org = self.managed_org(who, org)?;
        checked(&spec)?;
        let old: Checkpoint = self.existing(&org, CHECKPOINT, id, "checkpoint").await?;
        self.save_checkpoint(built(old.id, org, old.created_at, spec))
            .await
    }

    /// Deletes a checkpoint no tour lists (409 names the tours that do).
    pub async fn delete_checkpoint(
        &self,
        who: &Identity,
        org: Option<&str>,
        id: &str,
    ) -> Result<(), PatrolError> {
        let org = self.managed_org(who, org)?;
        self.existing::<Checkpoint>(&org, CHECKPOINT, id, "checkpoint")
            .await?;
        let tours: Vec<Tour> = self.load_all(&org, TOUR).await?;
        let using: Vec<&str> = tours
            .iter()
            .filter(|t| t.checkpoints.iter().any(|c| c == id))
            .map(|t| t.name.as_str())
            .collect();
        if !using.is_empty() {
            return Err(PatrolError::InUse(format!(
                "checkpoint {id} is on tours: {}",
                using.join(", ")
            )));
        }
        let record = Record::Patrol {
            org: &org,
            kind: CHECKPOINT,
            id,
        };
        self.store.commit(&[Change::Delete(record)]).await?;
        Ok(())
    }

    /// Writes a checkpoint; answers it with its code.
    async fn save_checkpoint(&self, checkpoint: Checkpoint) -> Result<CheckpointView, PatrolError> {
        let record = Record::Patrol {
            org: &checkpoint.org,
            kind: CHECKPOINT,
            id: &checkpoint.id,
        };
        self.store
            .commit(&[Change::put(record, &checkpoint)?])
            .await?;
        let key = self.signing_key(&checkpoint.org).await?;
        Ok(CheckpointView {
            code: Some(Self::code(&key, &checkpoint.org, &checkpoint.id)),
            checkpoint,
        })
    }
}
