//! The facts the rights table needs beyond the token — who owns a job — read from the store
//! before the table is consulted, so that the table itself stays a pure function
//! ([`crate::channel`]) while the store may have to wait.

use std::sync::Arc;

use crate::channel::{Directory, Target};
use crate::store::{Store, StoreError};

/// What the store said about the jobs one request names.
#[derive(Debug, Default)]
pub struct Facts {
    jobs: Vec<(String, Option<Arc<str>>)>,
}

/// The key a job's owner is stored under: jobs are an org's, like their channels.
pub fn job_key(org: &str, job: &str) -> String {
    format!("{org}/{job}")
}

impl Facts {
    /// Everything the rights table may ask about `target`.
    pub async fn about(store: &dyn Store, target: &Target) -> Result<Facts, StoreError> {
        let mut facts = Facts::default();
        if let Target::Job { org, job } = target {
            let stored = store.job_owner(&job_key(org, job)).await?;
            facts.jobs.push((job.clone(), stored));
        }
        Ok(facts)
    }
}

impl Directory for Facts {
    fn job_owner(&self, job: &str) -> Option<Arc<str>> {
        self.jobs
            .iter()
            .find(|(j, _)| j == job)
            .and_then(|(_, owner)| owner.clone())
    }
}
