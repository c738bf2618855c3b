//! What each command does: `serve`, `demo`, `simulate`, `token`, `check-config`, `migrate`,
//! and the passphrase `backup` and `restore` read; with the runtime they run on and the exit
//! code they end with. Each calls into the library; no server logic lives here.

use std::process::ExitCode;
use std::time::Duration;

use super::args::{DemoArgs, SimulateArgs, TokenArgs};
use crate::auth::{Authenticator, Role, Roles};
use crate::config::Config;
use crate::server::{print_certificate, shutdown_signal, Server};

pub(super) fn serve(
    config: Config,
    reloader: crate::server::Reloader,
    config_file: Option<&std::path::Path>,
) -> ExitCode {
    let mint = token_recipe(&config, config_file);
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let server = match Server::bind(config).await {
            Ok(s) => s.reload_with(reloader),
            Err(e) => {
                eprintln!("lookout: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Before the listening line: a supervisor may signal as soon as it reads it.
        let stop = shutdown_signal();
        let addr = server.local_addr();
        print_certificate(&server.certificate);
        println!("mint a token: {mint}");
        if let Some(plain) = server.plain_addr() {
            println!("plain HTTP (behind a TLS proxy only) on http://{plain}");
        }
        println!("lookout listening on https://{addr}");
        exit_code(server.run(stop).await)
    })
}

/// The command an operator runs to mint a token for this server: with the same configuration
/// file (or data directory) and, under systemd, as the service's user (systemd sets `USER` for
/// a unit with `User=`), so that it reads the secret the service signs with.
fn token_recipe(config: &Config, config_file: Option<&std::path::Path>) -> String {
    let source = match config_file {
        Some(file) => format!("--config {}", file.display()),
        None => format!("--data-dir {}", config.data_dir.display()),
    };
    let user = match (std::env::var("INVOCATION_ID"), std::env::var("USER")) {
        (Ok(_), Ok(user)) if !user.is_empty() && user != "root" => format!("sudo -u {user} "),
        _ => String::new(),
    };
    format!("{user}lookout token {source} --sub alice --org demo --role supervisor")
}

/// The key that names the shared Redis in `config`.
fn cluster_key(config: &Config) -> &'static str {
    if config.cluster.redis.is_some() {
        "cluster.redis"
    } else {
        "cluster.sentinels"
    }
}

pub(super) fn migrate(config: &Config, url: &str) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let options = crate::store::RedisOptions {
        endpoint: crate::store::Endpoint::Url(url.to_string()),
        node_id: config.cluster.node(),
        min_replicas: config.cluster.min_replicas,
        wait_timeout: config.cluster.wait_timeout,
    };
    match runtime.block_on(crate::store::migrate::to_redis(&config.data_dir, &options)) {
        Ok((moved, epoch)) => {
            println!(
                "moved {} channels, {} messages ({} items in all, epoch {epoch}) into {url}; \
                 start the nodes with cluster.redis set to it",
                moved.channels, moved.messages, moved.items
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lookout: migrate failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Success, or the error on stderr and a failure exit.
fn exit_code<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lookout: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("lookout: cannot start the runtime: {e}");
            None
        }
    }
}

pub(super) fn demo(config: Config, args: &DemoArgs) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    exit_code(runtime.block_on(crate::demo::run(config, args.guards, args.panic_after)))
}

pub(super) fn simulate(config: &Config, args: &SimulateArgs) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let ca = args
        .ca
        .clone()
        .unwrap_or_else(|| config.data_dir.join("tls/ca.pem"));
    let ca_pem = match std::fs::read(&ca) {
        Ok(pem) => pem,
        Err(e) => {
            eprintln!("lookout: reading {}: {e}", ca.display());
            return ExitCode::FAILURE;
        }
    };
    let auth = match Authenticator::from_config(config) {
        Ok(auth) => std::sync::Arc::new(auth),
        Err(e) => {
            eprintln!("lookout: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = crate::simulate::Options {
        url: args.url.clone(),
        ca_pem,
        auth,
        org: args.org.clone(),
        guards: args.guards,
        panic_after: args.panic_after,
        location_every: Duration::from_secs(1),
        frame_every: Duration::from_millis(250),
        site: crate::simulate::Site::default(),
        // Codes are posted on site: `lookout simulate` has none (the demo passes its own).
        codes: Vec::new(),
    };
    runtime.block_on(async move {
        let stop = tokio_util::sync::CancellationToken::new();
        let signal = stop.clone();
        let signalled = shutdown_signal();
        tokio::spawn(async move {
            signalled.await;
            signal.cancel();
        });
        println!("simulating {} guards against {}", args.guards, args.url);
        exit_code(crate::simulate::run(options, stop).await)
    })
}

pub(super) fn token(config: &Config, args: &TokenArgs) -> ExitCode {
    if args.org.is_none() && !args.roles.contains(&Role::Admin) {
        eprintln!("lookout: --org is required for every role but admin");
        return ExitCode::FAILURE;
    }
    let minted = Authenticator::from_config(config).and_then(|auth| {
        let mint = if args.link.is_some() {
            Authenticator::mint_link
        } else {
            Authenticator::mint
        };
        mint(
            &auth,
            &args.sub,
            args.org.as_deref(),
            &args.roles,
            args.ttl,
            args.name.as_deref(),
        )
    });
    match minted {
        Ok(token) => {
            match &args.link {
                // A guard's link opens the guard app; anyone else's, the dashboard.
                Some(base)
                    if args
                        .roles
                        .iter()
                        .copied()
                        .collect::<Roles>()
                        .is_only(Role::Guard) =>
                {
                    println!("{}/guard#link={token}", base.trim_end_matches('/'))
                }
                Some(base) => println!("{}/#link={token}", base.trim_end_matches('/')),
                None => println!("{token}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lookout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Which names the certificate covers, and (issued locally) which it will cover after the next
/// start: a phone that reaches the appliance by another name refuses it.
fn report_certificate_names(config: &Config) {
    use crate::transport::tls;
    match tls::certificate_names(config) {
        Ok((path, names)) => {
            println!("tls: {} covers {}", path.display(), names.join(", "));
            if config.tls.cert.is_none() {
                let wanted = tls::wanted_names(config);
                let missing: Vec<&String> = wanted.iter().filter(|n| !names.contains(n)).collect();
                if !missing.is_empty() {
                    println!(
                        "tls: reissued at the next start to also cover {}",
                        missing
                            .iter()
                            .map(|n| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
        }
        Err(_) if config.tls.cert.is_none() => println!(
            "tls: no certificate yet; the first start issues one from the local CA for {}",
            tls::wanted_names(config).join(", ")
        ),
        Err(e) => println!("tls: cannot read the certificate's names: {e}"),
    }
}

pub(super) fn check_config(config: &Config) -> ExitCode {
    let mut problems = Vec::new();
    if let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) {
        for (name, path) in [("tls.cert", cert), ("tls.key", key)] {
            if !path.exists() {
                problems.push(format!("{name}: {} does not exist", path.display()));
            }
        }
        if problems.is_empty() {
            if let Err(e) = crate::transport::tls::load_or_generate(config) {
                problems.push(format!("tls.cert: {e}"));
            }
        }
    }
    report_certificate_names(config);
    if let Some(options) = crate::store::RedisOptions::from_settings(&config.cluster) {
        match runtime().map(|rt| rt.block_on(crate::store::RedisStore::check(&options))) {
            Some(Ok(found)) => println!("cluster: the Redis is usable: {found}"),
            Some(Err(e)) => problems.push(format!("{}: {e}", cluster_key(config))),
            None => problems.push(format!("{}: no runtime to check it", cluster_key(config))),
        }
    }
    if let Some(plan) = &config.dashboard.site_plan {
        if !plan.is_file() {
            problems.push(format!(
                "dashboard.site_plan: {} is not a readable file",
                plan.display()
            ));
        }
    }
    let uses_generated_secret = config.jwt.algorithm == crate::config::JwtAlgorithm::HS256
        && config.jwt.secret.is_none()
        && config.jwt.secret_file.is_none();
    if !uses_generated_secret {
        if let Err(e) = Authenticator::from_config(config) {
            problems.push(format!("jwt: {e}"));
        }
    }
    for warning in config.warnings() {
        eprintln!("lookout: warning: {warning}");
    }
    if problems.is_empty() {
        println!("configuration OK");
        ExitCode::SUCCESS
    } else {
        for p in problems {
            eprintln!("lookout: {p}");
        }
        ExitCode::FAILURE
    }
}

/// The passphrase in the first line of `file`, if one is named: at least 12 characters.
pub(super) fn passphrase(file: Option<&std::path::Path>) -> Result<Option<Vec<u8>>, String> {
    let Some(file) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let line = text.lines().next().unwrap_or_default().trim_end();
    if line.chars().count() < 12 {
        return Err(format!(
            "{}: a passphrase of at least 12 characters on its first line",
            file.display()
        ));
    }
    Ok(Some(line.as_bytes().to_vec()))
}
