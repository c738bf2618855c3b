//! Incident reports: a guard files one from the phone (a category, text, optionally the alert
//! it is about), then sends its photos one at a time; supervisors read, comment on and close
//! them; the retention task purges closed ones with their photos.
//!
//! Every write to an org's incidents goes over the org's usage record as read
//! (`Store::write_if`): the org's byte budget and each guard's daily count are exact across the
//! nodes of a cluster, and two writes to one report (a photo and a comment, say) never lose
//! either. On this node one write per org takes its turn first, so retries are for other
//! nodes' writes only. Photos are records of their own (`photo/{incident}/{n}`, raw JPEG), so a
//! listing of reports never reads them.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::error::{bad, PatrolError};
use super::records::{
    Comment, Incident, IncidentSpec, IncidentUsage, PhotoInfo, ALL_ORGS, INCIDENT, PHOTO, USAGE,
};
use super::scans::valid_key;
use super::service::{Patrols, WRITE_ATTEMPTS};
use crate::auth::{Identity, Role};
use crate::clock::now_millis;
use crate::store::records::{decode, encode};
use crate::store::{Change, Record};

/// The categories a report may have (the guard app offers them in this order).
pub const CATEGORIES: &[&str] = &[
    "intrusion",
    "theft",
    "damage",
    "fire",
    "medical",
    "safety",
    "suspicious",
    "other",
];

/// Most characters of a report's text.
const MAX_TEXT: usize = 4000;
/// Most characters of a comment or a closing note.
const MAX_COMMENT: usize = 2000;
/// Most comments on one report (a report stays one small record).
const MAX_COMMENTS: usize = 200;
/// What a JPEG file starts with (SOI and the first marker's 0xFF).
const JPEG_MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];

const DAY_MS: u64 = 24 * 3600 * 1000;
const OPEN: &str = "open";
const CLOSED: &str = "closed";

/// What filing a report answers.
#[derive(Debug, Clone, Serialize)]
pub struct Filed {
    /// The report as kept.
    #[serde(flatten)]
    pub incident: Incident,
    /// Whether this request filed it (`false`: a resend of a report already filed).
    pub filed: bool,
}

/// Bytes of a report as `patrol.max_incident_bytes` counts them: its text and its photos.
fn report_bytes(incident: &Incident) -> u64 {
    incident.text.len() as u64 + incident.photos.iter().map(|p| p.bytes).sum::<u64>()
}

/// Bytes a report keeps, as the org's usage counts them: everything a client sent into it.
fn kept_bytes(incident: &Incident) -> u64 {
    report_bytes(incident)
        + incident.category.len() as u64
        + incident
            .comments
            .iter()
            .map(|c| c.text.len() as u64)
            .sum::<u64>()
        + incident.close_note.as_ref().map_or(0, |n| n.len() as u64)
}

/// Text of at most `max` characters, not blank, without control characters but line breaks
/// and tabs.
fn valid_body(text: &str, max: usize) -> bool {
    !text.trim().is_empty()
        && text.chars().count() <= max
        && !text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

fn photo_id(incident: &str, n: u32) -> String {
    format!("{incident}/{n}")
}

impl Patrols {
    /// Files a report for a guard of the org; a resend (the same `key`) answers the first.
    pub async fn file_incident(
        &self,
        who: &Identity,
        spec: IncidentSpec,
    ) -> Result<Filed, PatrolError> {
        let Some(org) = who.org.as_deref().filter(|_| who.is(Role::Guard)) else {
            return Err(PatrolError::Forbidden(
                "only a guard of an org files incident reports",
            ));
        };
        if !valid_key(&spec.key) {
            return bad("`key` must be 8–64 of A-Z a-z 0-9 - _");
        }
        let id = crate::field::derived_id(&["incident", org, &who.user, &spec.key]);
        if let Some(first) = self.load::<Incident>(org, INCIDENT, &id).await? {
            return Ok(Filed {
                incident: first,
                filed: false,
            });
        }
        if !CATEGORIES.contains(&spec.category.as_str()) {
            return bad(format!(
                "`category` must be one of {}",
                CATEGORIES.join(", ")
            ));
        }
        if !valid_body(&spec.text, MAX_TEXT) {
            return bad(format!("`text` must be 1–{MAX_TEXT} characters"));
        }
        if let Some(alert) = &spec.alert {
            // Only an alert the guard may see, of its own org.
            let found = self.alerts.get(who, alert).await?;
            if found.org != org {
                return Err(PatrolError::NotFound(format!("no alert {alert}")));
            }
        }
        let now = now_millis();
        let incident = Incident {
            id: id.clone(),
            org: org.to_string(),
            author: who.user.to_string(),
            category: spec.category,
            text: spec.text,
            alert: spec.alert,
            state: OPEN.into(),
            created_at: now,
            photos: Vec::new(),
            comments: Vec::new(),
            closed_at: None,
            closed_by: None,
            close_note: None,
        };
        self.within_report_budget(&incident)?;
        let record = Record::Patrol {
            org,
            kind: INCIDENT,
            id: &id,
        };
        let bytes = encode(&incident)?;
        let _turn = self.turns.take(&format!("{org}/{INCIDENT}")).await;
        for _ in 0..WRITE_ATTEMPTS {
            let (mut usage, read) = self.read_usage(org).await?;
            // A resend racing this one (here or on another node) filed it meanwhile.
            if let Some(first) = self.load::<Incident>(org, INCIDENT, &id).await? {
                return Ok(Filed {
                    incident: first,
                    filed: false,
                });
            }
            let today = now / DAY_MS;
            if usage.day != today {
                usage.day = today;
                usage.filed_today.clear();
            }
            let filed = usage.filed_today.entry(who.user.to_string()).or_insert(0);
            self.within_budget(
                usize::try_from(*filed).unwrap_or(usize::MAX),
                self.config.max_incidents_per_guard_per_day,
                "incident reports per guard per day",
                "patrol.max_incidents_per_guard_per_day",
            )?;
            *filed += 1;
            self.grow_usage(&mut usage, 0, kept_bytes(&incident))?;
            let changes = [Change::Put(record, bytes.clone())];
            if self.write_over_usage(org, read, &usage, &changes).await? {
                self.stats.incidents_filed.fetch_add(1, Ordering::Relaxed);
                return Ok(Filed {
                    incident,
                    filed: true,
                });
            }
        }
        Err(PatrolError::Contended("the org's incident reports"))
    }

    /// The org's reports (supervisors, admins; a guard its own), newest first, optionally
    /// only `open` or `closed` ones, at most `limit`.
    pub async fn incidents(
        &self,
        who: &Identity,
        org: Option<&str>,
        state: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Incident>, PatrolError> {
        let org = self.org_for(who, org)?;
        if state.is_some_and(|s| s != OPEN && s != CLOSED) {
            return bad("`state` must be `open` or `closed`");
        }
        let manager = self.manages(who, &org);
        let mut all: Vec<Incident> = self.load_all(&org, INCIDENT).await?;
        all.retain(|i| (manager || i.author == *who.user) && state.is_none_or(|s| i.state == s));
        all.sort_by_key(|i| std::cmp::Reverse(i.created_at));
        all.truncate(limit);
        Ok(all)
    }

    /// One report, to its author and the org's supervisors and admins (anyone else: 404).
    pub async fn incident(
        &self,
        who: &Identity,
        org: Option<&str>,
        id: &str,
    ) -> Result<Incident, PatrolError> {
        let org = self.org_for(who, org)?;
        let incident: Incident = self.existing(&org, INCIDENT, id, "incident").await?;
        if self.manages(who, &org) || incident.author == *who.user {
            Ok(incident)
        } else {
            Err(PatrolError::NotFound(format!("no incident {id}")))
        }
    }

    /// Whether `who` may send photo `n` of report `id` now (its author, while it is open):
    /// asked before the photo is read, so a refused upload is not read at all.
    pub async fn photo_slot(&self, who: &Identity, id: &str, n: u32) -> Result<(), PatrolError> {
        let incident = self.incident(who, None, id).await?;
        self.may_add_photo(who, &incident, n)
    }

    fn may_add_photo(
        &self,
        who: &Identity,
        incident: &Incident,
        n: u32,
    ) -> Result<(), PatrolError> {
        if incident.author != *who.user {
            return Err(PatrolError::Forbidden(
                "only the guard who filed a report sends its photos",
            ));
        }
        if incident.state != OPEN {
            return Err(PatrolError::Conflict(format!(
                "incident {} is closed",
                incident.id
            )));
        }
        if n == 0 {
            return bad("photos are numbered from 1");
        }
        let most = self.config.max_photos_per_incident;
        if usize::try_from(n).map_or(true, |n| n > most) {
            return Err(self.too_large(
                "photos per incident",
                most as u64,
                "patrol.max_photos_per_incident",
            ));
        }
        Ok(())
    }

    /// Stores photo `n` of report `id` (replacing one sent before under `n`: a resend).
    pub async fn put_photo(
        &self,
        who: &Identity,
        id: &str,
        n: u32,
        jpeg: Vec<u8>,
    ) -> Result<Incident, PatrolError> {
        if !jpeg.starts_with(&JPEG_MAGIC) {
            return bad("a photo must be a JPEG image");
        }
        let limit = self.config.max_photo_bytes;
        if jpeg.len() > limit {
            return Err(self.too_large("bytes per photo", limit as u64, "patrol.max_photo_bytes"));
        }
        let Some(org) = who.org.as_deref() else {
            return Err(PatrolError::Forbidden(
                "only the guard who filed a report sends its photos",
            ));
        };
        let size = jpeg.len() as u64;
        let photo = photo_id(id, n);
        let put = Change::Put(
            Record::Patrol {
                org,
                kind: PHOTO,
                id: &photo,
            },
            jpeg,
        );
        let incident = self
            .update_incident(org, id, vec![put], |incident| {
                self.may_add_photo(who, incident, n)?;
                incident.photos.retain(|p| p.n != n);
                incident.photos.push(PhotoInfo { n, bytes: size });
                incident.photos.sort_by_key(|p| p.n);
                Ok(())
            })
            .await?;
        self.stats.incident_photos.fetch_add(1, Ordering::Relaxed);
        Ok(incident)
    }

    /// Photo `n` of report `id`, to whoever may see the report.
    pub async fn photo(
        &self,
        who: &Identity,
        org: Option<&str>,
        id: &str,
        n: u32,
    ) -> Result<Vec<u8>, PatrolError> {
        let incident = self.incident(who, org, id).await?;
        let missing = || PatrolError::NotFound(format!("no photo {n} of incident {id}"));
        if !incident.photos.iter().any(|p| p.n == n) {
            return Err(missing());
        }
        let photo = photo_id(id, n);
        self.store
            .record(Record::Patrol {
                org: &incident.org,
                kind: PHOTO,
                id: &photo,
            })
            .await?
            .ok_or_else(missing)
    }

    /// Adds a comment to an open report (its author, the org's supervisors and admins).
    pub async fn comment_incident(
        &self,
        who: &Identity,
        org: Option<&str>,
        id: &str,
        text: String,
    ) -> Result<Incident, PatrolError> {
        if !valid_body(&text, MAX_COMMENT) {
            return bad(format!("`text` must be 1–{MAX_COMMENT} characters"));
        }
        // Visible to the caller (else 404), which is who may comment.
        let org = self.incident(who, org, id).await?.org;
        let comment = Comment {
            by: who.user.to_string(),
            at: now_millis(),
            text,
        };
        self.update_incident(&org, id, Vec::new(), |incident| {
            if incident.state != OPEN {
                return Err(PatrolError::Conflict(format!("incident {id} is closed")));
            }
            if incident.comments.len() >= MAX_COMMENTS {
                return bad(format!("a report takes at most {MAX_COMMENTS} comments"));
            }
            incident.comments.push(comment.clone());
            Ok(())
        })
        .await
    }

    /// Closes an open report (the org's supervisors and admins), with an optional note.
    pub async fn close_incident(
        &self,
        who: &Identity,
        org: Option<&str>,
        id: &str,
        note: Option<String>,
    ) -> Result<Incident, PatrolError> {
        let org = self.managed_org(who, org)?;
        if note.as_deref().is_some_and(|n| !valid_body(n, MAX_COMMENT)) {
            return bad(format!("`note` must be 1–{MAX_COMMENT} characters"));
        }
        let now = now_millis();
        let closed = self
            .update_incident(&org, id, Vec::new(), |incident| {
                if incident.state != OPEN {
                    return Err(PatrolError::Conflict(format!(
                        "incident {id} is already closed"
                    )));
                }
                incident.state = CLOSED.into();
                incident.closed_at = Some(now);
                incident.closed_by = Some(who.user.to_string());
                incident.close_note = note.clone();
                Ok(())
            })
            .await?;
        self.stats.incidents_closed.fetch_add(1, Ordering::Relaxed);
        Ok(closed)
    }

    /// Deletes reports closed before `now - patrol.incident_retention` with their photos,
    /// freeing their bytes in their org's usage; how many it deleted.
    pub async fn purge_incidents(&self, now: u64) -> Result<usize, PatrolError> {
        let age = u64::try_from(self.config.incident_retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now.saturating_sub(age);
        let orgs: Vec<IncidentUsage> = self.load_all(ALL_ORGS, USAGE).await?;
        let mut purged = 0;
        for org in orgs.iter().map(|u| u.org.as_str()) {
            let old: Vec<Incident> = self.load_all(org, INCIDENT).await?;
            for incident in old
                .iter()
                .filter(|i| i.closed_at.is_some_and(|at| at < cutoff))
            {
                if self.purge_one(org, &incident.id).await? {
                    purged += 1;
                }
            }
        }
        self.stats
            .incidents_purged
            .fetch_add(purged as u64, Ordering::Relaxed);
        Ok(purged)
    }

    /// Deletes one closed report and its photos; `false` when another node did first.
    async fn purge_one(&self, org: &str, id: &str) -> Result<bool, PatrolError> {
        let _turn = self.turns.take(&format!("{org}/{INCIDENT}")).await;
        for _ in 0..WRITE_ATTEMPTS {
            let (mut usage, read) = self.read_usage(org).await?;
            let Some(incident) = self.load::<Incident>(org, INCIDENT, id).await? else {
                return Ok(false);
            };
            usage.bytes = usage.bytes.saturating_sub(kept_bytes(&incident));
            let photos: Vec<String> = incident.photos.iter().map(|p| photo_id(id, p.n)).collect();
            let mut changes = vec![Change::Delete(Record::Patrol {
                org,
                kind: INCIDENT,
                id,
            })];
            changes.extend(photos.iter().map(|photo| {
                Change::Delete(Record::Patrol {
                    org,
                    kind: PHOTO,
                    id: photo,
                })
            }));
            if self.write_over_usage(org, read, &usage, &changes).await? {
                return Ok(true);
            }
        }
        Err(PatrolError::Contended("the org's incident reports"))
    }

    /// Changes report `id` of `org` with `change` and writes it with `extra` (a photo) over
    /// the org's usage as read, within the report's and the org's byte budgets.
    async fn update_incident(
        &self,
        org: &str,
        id: &str,
        mut extra: Vec<Change<'_>>,
        change: impl Fn(&mut Incident) -> Result<(), PatrolError>,
    ) -> Result<Incident, PatrolError> {
        let record = Record::Patrol {
            org,
            kind: INCIDENT,
            id,
        };
        let given = extra.len();
        let _turn = self.turns.take(&format!("{org}/{INCIDENT}")).await;
        for _ in 0..WRITE_ATTEMPTS {
            let (mut usage, read) = self.read_usage(org).await?;
            let mut incident: Incident = self.existing(org, INCIDENT, id, "incident").await?;
            let before = (report_bytes(&incident), kept_bytes(&incident));
            change(&mut incident)?;
            if report_bytes(&incident) > before.0 {
                self.within_report_budget(&incident)?;
            }
            self.grow_usage(&mut usage, before.1, kept_bytes(&incident))?;
            extra.truncate(given);
            extra.push(Change::Put(record, encode(&incident)?));
            if self.write_over_usage(org, read, &usage, &extra).await? {
                return Ok(incident);
            }
        }
        Err(PatrolError::Contended("the org's incident reports"))
    }

    /// The org's incident usage as kept (a new one when it has none), and as read.
    async fn read_usage(&self, org: &str) -> Result<(IncidentUsage, Option<Vec<u8>>), PatrolError> {
        let read = self
            .store
            .record(Record::Patrol {
                org: ALL_ORGS,
                kind: USAGE,
                id: org,
            })
            .await?;
        let usage = match read.as_deref() {
            Some(bytes) => decode(bytes)?,
            None => IncidentUsage {
                org: org.to_string(),
                ..IncidentUsage::default()
            },
        };
        Ok((usage, read))
    }

    /// Writes `usage` and `changes` only over the org's usage as `read` and waits until they
    /// are durable; `false` when another node changed it meanwhile.
    async fn write_over_usage(
        &self,
        org: &str,
        read: Option<Vec<u8>>,
        usage: &IncidentUsage,
        changes: &[Change<'_>],
    ) -> Result<bool, PatrolError> {
        let key = Record::Patrol {
            org: ALL_ORGS,
            kind: USAGE,
            id: org,
        };
        let mut all = Vec::with_capacity(changes.len() + 1);
        all.push(Change::Put(key, encode(usage)?));
        all.extend_from_slice(changes);
        match self.store.write_if(key, read.as_deref(), &all).await? {
            Some(ticket) => {
                self.store.durable(ticket).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// `usage` with a report that kept `before` bytes now keeping `after`; refused when that
    /// grows the org past `patrol.max_incident_bytes_per_org` (shrinking always passes).
    fn grow_usage(
        &self,
        usage: &mut IncidentUsage,
        before: u64,
        after: u64,
    ) -> Result<(), PatrolError> {
        let would = usage.bytes.saturating_sub(before).saturating_add(after);
        let limit = self.config.max_incident_bytes_per_org;
        if after > before && would > limit {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(PatrolError::OverBytes {
                what: "the org's incident reports",
                would,
                limit,
                key: "patrol.max_incident_bytes_per_org",
            });
        }
        usage.bytes = would;
        Ok(())
    }

    fn within_report_budget(&self, incident: &Incident) -> Result<(), PatrolError> {
        let limit = self.config.max_incident_bytes as u64;
        if report_bytes(incident) > limit {
            return Err(self.too_large(
                "bytes per incident report (text and photos)",
                limit,
                "patrol.max_incident_bytes",
            ));
        }
        Ok(())
    }

    /// A refusal of something larger than `key` allows (counted).
    pub(super) fn too_large(
        &self,
        what: &'static str,
        limit: u64,
        key: &'static str,
    ) -> PatrolError {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        PatrolError::TooLarge { what, limit, key }
    }

    /// Counts a request refused over a budget before it reached the service (a photo body
    /// larger than `patrol.max_photo_bytes`, stopped while it was read).
    pub fn count_refusal(&self) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reports_text_may_break_lines_but_not_carry_other_control_characters() {
        assert!(valid_body("Door forced.\nGlass on the floor.\tBay 3", 100));
        assert!(!valid_body("bell\u{7}", 100));
        assert!(!valid_body("   ", 100));
        assert!(!valid_body(&"x".repeat(101), 100));
    }
}
