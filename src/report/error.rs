//! What can go wrong making a shift report, and what a client is told about it: the errors of
//! the services it reads keep their own mapping.

use crate::alerts::AlertError;
use crate::failure::{ErrorCode, Failure};
use crate::field::FieldError;
use crate::patrol::PatrolError;

/// What can go wrong making a shift report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// From field operations (the shift, its track, check-ins).
    #[error(transparent)]
    Field(#[from] FieldError),
    /// From patrols (scans, rounds).
    #[error(transparent)]
    Patrol(#[from] PatrolError),
    /// From alerts.
    #[error(transparent)]
    Alert(#[from] AlertError),
}

impl Failure for ReportError {
    fn code(&self) -> ErrorCode {
        match self {
            ReportError::Field(e) => e.code(),
            ReportError::Patrol(e) => e.code(),
            ReportError::Alert(e) => e.code(),
        }
    }

    fn status(&self) -> u16 {
        match self {
            ReportError::Field(e) => e.status(),
            ReportError::Patrol(e) => e.status(),
            ReportError::Alert(e) => e.status(),
        }
    }
}
