//! `lookout demo`: the demo org on an empty data directory — its fences, its patrol (checkpoints
//! along a guard's round, a tour every five minutes, the guard on shift) and a one-time
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
    /// The codes posted along guard 01's round (the simulated guard scans them).
    pub codes: Vec<crate::simulate::PostedCode>,
}

/// The guard the demo's tour is for (the simulator's first guard), its site and the tour.
pub const PATROL_GUARD: &str = "guard-01";
/// The demo's site (its shift, checkpoints and tour).
pub const SITE: &str = "Demo site";
/// The demo's tour: every five minutes, three minutes to go round.
const TOUR: &str = "Perimeter round";

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
    /// Creating the patrol.
    #[error("patrol: {0}")]
    Patrol(#[from] crate::patrol::PatrolError),
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
/// `[west, south, east, north]` (the plan covers 500 m × 400 m around the site's centre). It is
/// the JPEG rendered from `web/demo/site-plan.svg` (tests/node/render_site_plan.mjs): the shift
/// report's PDF embeds a JPEG as it is.
pub fn site_plan(data_dir: &Path, site: &Site) -> std::io::Result<(PathBuf, [f64; 4])> {
    let jpeg = crate::dashboard::asset("demo/site-plan.jpg").ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "site plan not bundled")
    })?;
    // As `serve` makes it: the directory holds the keys.
    crate::server::create_private_dir(data_dir)?;
    let path = data_dir.join("site-plan.jpg");
    std::fs::write(&path, jpeg)?;
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
    let codes = seed_patrol(state, &admin, site).await?;
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
        codes,
    })
}

/// The demo's patrol, made once per data directory: the site's checkpoints and a tour of them
/// for guard 01, and guard 01 on shift at the site while none of its shifts covers now. Returns
/// the codes posted on guard 01's round.
async fn seed_patrol(
    state: &AppState,
    admin: &crate::auth::Identity,
    site: &Site,
) -> Result<Vec<crate::simulate::PostedCode>, DemoError> {
    use crate::patrol::{CheckpointSpec, Schedule, TourSpec};
    let patrols = &state.patrols;
    if patrols.checkpoints(admin, Some(ORG)).await?.is_empty() {
        for (name, east, north, _) in site.checkpoints() {
            let (lat, lon) = site.at(east, north);
            let spec = CheckpointSpec {
                name: name.into(),
                site: Some(SITE.into()),
                lat,
                lon,
                radius_m: Some(15.0),
                instructions: None,
            };
            patrols.create_checkpoint(admin, Some(ORG), spec).await?;
        }
    }
    let checkpoints = patrols.checkpoints(admin, Some(ORG)).await?;
    if patrols.tours(admin, Some(ORG)).await?.is_empty() {
        let spec = TourSpec {
            name: TOUR.into(),
            site: Some(SITE.into()),
            checkpoints: checkpoints
                .iter()
                .map(|c| c.checkpoint.id.clone())
                .collect(),
            ordered: false,
            schedule: Schedule {
                start: "00:00".into(),
                every_minutes: 5,
                rounds: 288,
                window_minutes: 3,
            },
            guards: vec![PATROL_GUARD.into()],
        };
        patrols.create_tour(admin, Some(ORG), spec).await?;
    }
    let now = crate::clock::now_millis();
    let on_shift = state
        .field
        .shifts(admin)
        .await?
        .iter()
        .any(|s| s.org == ORG && s.user == PATROL_GUARD && s.start <= now && now < s.end);
    if !on_shift {
        let spec = crate::field::ShiftSpec {
            user: PATROL_GUARD.into(),
            org: Some(ORG.into()),
            site: SITE.into(),
            start: now,
            end: now + 12 * 3_600_000,
        };
        state.field.add_shift(admin, spec).await?;
    }
    let on_round: Vec<&str> = site
        .checkpoints()
        .iter()
        .filter(|c| c.3)
        .map(|c| c.0)
        .collect();
    Ok(checkpoints
        .into_iter()
        .filter(|c| on_round.contains(&c.checkpoint.name.as_str()))
        .filter_map(|c| {
            c.code.map(|code| crate::simulate::PostedCode {
                lat: c.checkpoint.lat,
                lon: c.checkpoint.lon,
                code,
            })
        })
        .collect())
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
        codes: seeded.codes,
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
