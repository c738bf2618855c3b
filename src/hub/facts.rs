//! The facts the rights table needs beyond the token — which org a user belongs to, who owns
//! a job — read from the store before the table is consulted, so that the table itself stays
//! a pure function ([`crate::channel`]) while the store may have to wait.

use std::sync::Arc;

use crate::channel::{Directory, Target};
use crate::store::{Store, StoreError};

/// What the store said about the users and jobs one request names.
#[derive(Debug, Default)]
pub struct Facts {
    users: Vec<(String, Option<Arc<str>>)>,
    jobs: Vec<(String, Option<Arc<str>>)>,
}

impl Facts {
    /// Everything the rights table may ask about `target` (and, for a job's first publish, the
    /// `owner` it names).
    pub async fn about(
        store: &dyn Store,
        target: &Target,
        owner: Option<&str>,
    ) -> Result<Facts, StoreError> {
        let mut facts = Facts::default();
        match target {
            Target::User { user, .. } | Target::UserQueue { user, .. } => {
                facts.learn_user(store, user).await?;
            }
            Target::Job { job } => {
                let stored = store.job_owner(job).await?;
                if let Some(stored) = &stored {
                    facts.learn_user(store, stored).await?;
                }
                facts.jobs.push((job.clone(), stored));
                if let Some(owner) = owner {
                    facts.learn_user(store, owner).await?;
                }
            }
            _ => {}
        }
        Ok(facts)
    }

    /// Facts about one user only.
    pub async fn about_user(store: &dyn Store, user: &str) -> Result<Facts, StoreError> {
        let mut facts = Facts::default();
        facts.learn_user(store, user).await?;
        Ok(facts)
    }

    async fn learn_user(&mut self, store: &dyn Store, user: &str) -> Result<(), StoreError> {
        if !self.users.iter().any(|(u, _)| u == user) {
            let org = store.user_org(user).await?;
            self.users.push((user.to_string(), org));
        }
        Ok(())
    }
}

impl Directory for Facts {
    fn user_org(&self, user: &str) -> Option<Arc<str>> {
        self.users
            .iter()
            .find(|(u, _)| u == user)
            .and_then(|(_, org)| org.clone())
    }

    fn job_owner(&self, job: &str) -> Option<Arc<str>> {
        self.jobs
            .iter()
            .find(|(j, _)| j == job)
            .and_then(|(_, owner)| owner.clone())
    }
}
