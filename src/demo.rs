//! `lookout demo`: the demo org on an empty data directory — its fences and a one-time
//! supervisor sign-in link. Idempotent: a restart on the same directory adds nothing twice, and the PANIC the
//! simulator raises is raised once per directory.
//!
//! It uses the same field operations as the REST API, as an admin would. [`run`] runs the
//! server with the demo site and simulated guards; the command line only parses the flags and
//! turns the result into an exit code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::alerts::AlertType;
use crate::app::AppState;
use crate::auth::Role;
use crate::config::Config;
use crate::server::{print_certificate, shutdown_signal, Server, ServerError};
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

/// Why the demo stopped with a failure (what `lookout demo` prints after `lookout: `).
#[derive(Debug, thiserror::Error)]
pub enum DemoRunError {
    /// Binding or running the server.
    #[error("{0}")]
    Server(#[from] ServerError),
    /// Reading the certificate the simulated guards trust.
    #[error("reading the certificate: {0}")]
    Certificate(std::io::Error),
    /// Seeding the demo org.
    #[error("cannot set up the demo: {0}")]
    Setup(DemoError),
    /// The server's task ended without a result.
    #[error("server task failed: {0}")]
    Task(tokio::task::JoinError),
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
        .list(&admin, &crate::alerts::AlertQuery::default())
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

/// Runs the server with the demo site until it stops: the site plan, the demo org seeded
/// alongside the running server, the dashboard link printed, and `guards` simulated guards
/// (the first presses its panic button after `panic_after`, once per data directory).
pub async fn run(
    mut config: Config,
    guards: usize,
    panic_after: Duration,
) -> Result<(), DemoRunError> {
    let site = crate::simulate::Site::default();
    if config.dashboard.site_plan.is_none() {
        match site_plan(&config.data_dir, &site) {
            Ok((path, bounds)) => {
                config.dashboard.site_plan = Some(path);
                config.dashboard.site_plan_bounds = Some(bounds);
            }
            Err(e) => eprintln!("lookout: the demo's site plan is not available: {e}"),
        }
    }
    let server = Server::bind(config).await?;
    let state = server.state().clone();
    let addr = server.local_addr();
    let host = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let ca_pem =
        std::fs::read(&server.certificate.trust_path).map_err(DemoRunError::Certificate)?;
    print_certificate(&server.certificate);
    // The store's writes complete once the server runs: seed alongside it.
    let abort = tokio_util::sync::CancellationToken::new();
    let stop_server = abort.clone();
    let signalled = shutdown_signal();
    let running = tokio::spawn(server.run(async move {
        tokio::select! {
            _ = signalled => {}
            _ = stop_server.cancelled() => {}
        }
    }));
    let seeded = match seed(&state, &site).await {
        Ok(seeded) => seeded,
        Err(e) => {
            abort.cancel();
            let _ = running.await;
            return Err(DemoRunError::Setup(e));
        }
    };
    println!(
        "dashboard (one-time sign-in link): https://{host}/#link={}",
        seeded.supervisor_link
    );
    println!("lookout listening on https://{addr}");
    let stop = tokio_util::sync::CancellationToken::new();
    let options = crate::simulate::Options {
        url: format!("wss://{host}/ws"),
        ca_pem,
        auth: state.auth.clone(),
        org: ORG.into(),
        guards,
        panic_after: (!seeded.panic_raised).then_some(panic_after),
        location_every: Duration::from_secs(1),
        frame_every: Duration::from_millis(250),
        site,
    };
    let simulator = tokio::spawn(crate::simulate::run(options, stop.clone()));
    let result = running.await;
    stop.cancel();
    if let Ok(Err(e)) = simulator.await {
        eprintln!("lookout: simulator: {e}");
    }
    match result {
        Ok(result) => Ok(result?),
        Err(e) => Err(DemoRunError::Task(e)),
    }
}
