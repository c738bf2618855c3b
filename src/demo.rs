//! `lookout demo`: the demo org on an empty data directory — its fences and a one-time
//! supervisor sign-in link. Idempotent: a restart on the same directory adds nothing twice, and the PANIC the
//! simulator raises is raised once per directory.
//!
//! It uses the same field operations as the REST API, as an admin would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::alerts::AlertType;
use crate::app::AppState;
use crate::auth::Role;
use crate::simulate::Site;

/// The demo org.
pub const ORG: &str = "demo";

/// What the demo set up.
pub struct Seeded {
    /// A one-time sign-in link's token for the dashboard.
    pub supervisor_link: String,
    /// Whether the demo's PANIC was already raised in this data directory.
    pub panic_raised: bool,
}

/// Demo setup failures.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Minting or verifying a token.
    #[error("token: {0}")]
    Auth(#[from] crate::auth::AuthError),
    /// Creating the fences.
    #[error("fences: {0}")]
    Field(#[from] crate::field::FieldError),
    /// Reading alerts.
    #[error("alerts: {0}")]
    Alerts(#[from] crate::alerts::AlertError),
}

/// Writes the bundled site plan into the data directory; returns its path and its edges
/// `[west, south, east, north]` (the plan covers 500 m × 400 m around the site's centre).
pub fn site_plan(data_dir: &Path, site: &Site) -> std::io::Result<(PathBuf, [f64; 4])> {
    let svg = crate::dashboard::asset("demo/site-plan.svg").ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "site plan not bundled")
    })?;
    // As `serve` makes it: the directory holds the keys.
    crate::server::create_private_dir(data_dir)?;
    let path = data_dir.join("site-plan.svg");
    std::fs::write(&path, svg)?;
    let (south, west) = site.at(-250.0, -200.0);
    let (north, east) = site.at(250.0, 200.0);
    Ok((path, [west, south, east, north]))
}

/// Creates the demo's fences if they are not there yet, and a supervisor login.
pub async fn seed(state: &AppState, site: &Site) -> Result<Seeded, DemoError> {
    let hour = Duration::from_secs(3600);
    let admin = state
        .auth
        .mint("demo-admin", None, &[Role::Admin], hour, None)?;
    let admin = state.auth.verify(&admin)?;
    if state.field.fences(&admin, Some(ORG)).await?.is_empty() {
        for spec in site.fences(ORG) {
            state.field.put_fence(&admin, None, spec).await?;
        }
    }
    let panic_raised = state
        .field
        .alerts()
        .list(&admin, None, None)
        .await?
        .iter()
        .any(|a| a.org == ORG && a.kind == AlertType::Panic);
    let supervisor_link = state.auth.mint_link(
        "supervisor",
        Some(ORG),
        &[Role::Supervisor],
        12 * hour,
        Some("Demo Supervisor"),
    )?;
    Ok(Seeded {
        supervisor_link,
        panic_raised,
    })
}
