//! The command line: `serve`, `demo`, `simulate`, `token`, `check-config`, `backup`,
//! `restore`. Parses arguments, sets up logging and calls into the library; no server logic
//! lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::{Authenticator, Role, Roles};
use crate::config::{self, Config, Overrides};
use crate::server::{print_certificate, shutdown_signal, Server};

/// Lookout: self-hosted real-time hub for field teams.
#[derive(Debug, Parser)]
#[command(name = "lookout", version, about)]
pub struct Cli {
    /// Configuration file (TOML). Default: ./lookout.toml when present.
    #[arg(long, global = true, env = "LOOKOUT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (certificate, JWT secret, store). Overrides `data_dir`.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Log format on stderr; levels come from RUST_LOG (default: info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LOOKOUT_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    #[command(after_long_help = config::keys_help())]
    Serve(ServeArgs),
    /// Run the server with a demo site: an org with fences and simulated guards that walk,
    /// stream video and raise one PANIC. Prints the dashboard link with a supervisor login.
    Demo(DemoArgs),
    /// Run simulated guards against a server (tokens minted with this data directory's key).
    Simulate(SimulateArgs),
    /// Mint a JWT with the configured key (for trying things and for tests).
    Token(TokenArgs),
    /// Validate the configuration and the keys it names, then exit.
    CheckConfig,
    /// Write the data directory (store, certificate, secret) to one file. The server must be
    /// stopped.
    Backup {
        /// The backup file to write.
        #[arg(long)]
        to: PathBuf,
        /// Also carry the local CA's key, sealed with the passphrase in `--passphrase-file`
        /// (whoever holds the key can make certificates the phones accept).
        #[arg(long, requires = "passphrase_file")]
        with_ca_key: bool,
        /// A file whose first line is the passphrase (at least 12 characters).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Move a stopped appliance's store into an empty Redis for cluster mode: logs with their
    /// seqs and epoch, acknowledgements, the user directory, records and timers.
    Migrate {
        /// The Redis to move into (redis://, rediss:// or redis+unix:// URL).
        #[arg(long)]
        to_redis: String,
    },
    /// Restore a backup into an empty data directory.
    Restore {
        /// The backup file to read.
        #[arg(long)]
        from: PathBuf,
        /// The passphrase the CA's key was sealed with, when the backup carries it.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
}

/// `serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TLS listen address, e.g. 127.0.0.1:0 (port 0 picks a free port). Overrides `listen`.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

/// `demo` flags.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// TLS listen address. Overrides `listen`.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Number of simulated guards.
    #[arg(long, default_value_t = 12)]
    pub guards: usize,
    /// When the first guard presses its panic button (once per data directory).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub panic_after: Duration,
}

/// `simulate` flags.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The server's WebSocket endpoint, e.g. wss://appliance:8443/ws.
    #[arg(long)]
    pub url: String,
    /// Number of simulated guards.
    #[arg(long, default_value_t = 12)]
    pub guards: usize,
    /// Their org.
    #[arg(long, default_value = "demo")]
    pub org: String,
    /// The server's certificate (PEM). Default: the data directory's own.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// When the first guard presses its panic button; unset: never.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub panic_after: Option<Duration>,
}

/// `token` flags.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// User id (`sub`).
    #[arg(long)]
    pub sub: String,
    /// Organization (`org`); required for every role but admin.
    #[arg(long)]
    pub org: Option<String>,
    /// Role; repeat for several (guard, supervisor, admin, service).
    #[arg(long = "role", required = true, value_parser = parse_role)]
    pub roles: Vec<Role>,
    /// Lifetime, e.g. 8h, 30m.
    #[arg(long, default_value = "8h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Print a one-time sign-in link for this base URL (e.g. https://appliance:8443) instead of
    /// a token: `BASE/guard#link=…` (the guard app) for a guard, `BASE/#link=…` (the dashboard)
    /// otherwise. The link is exchanged once for a session (a guard's lasts
    /// `field.guard_session`, anyone else's 12 hours); it travels in the URL fragment, which
    /// browsers never send, and is not itself a credential.
    #[arg(long, value_name = "BASE_URL")]
    pub link: Option<String>,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("unknown role `{s}` (guard, supervisor, admin, service)"))
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let overrides = |listen| Overrides {
        listen,
        data_dir: cli.data_dir.clone(),
    };
    let listen = match &cli.command {
        Command::Serve(args) => args.listen,
        Command::Demo(args) => args.listen,
        _ => None,
    };
    let mut overrides = overrides(listen);
    if matches!(cli.command, Command::Demo(_)) && overrides.data_dir.is_none() {
        // The demo keeps its state apart from a real installation's.
        overrides.data_dir = Some(PathBuf::from("lookout-demo"));
    }
    if matches!(cli.command, Command::CheckConfig) {
        let problems = config::check(cli.config.as_deref(), &overrides);
        if !problems.is_empty() {
            for p in &problems {
                eprintln!("lookout: {p}");
            }
            eprintln!(
                "lookout: {} problem(s) in the configuration",
                problems.len()
            );
            return ExitCode::FAILURE;
        }
    }
    let config = match config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lookout: configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(_) => {
            // SIGHUP reads the same sources again.
            let path = cli.config.clone();
            let reload_overrides = overrides.clone();
            let reloader: crate::server::Reloader = Box::new(move || {
                config::load(path.as_deref(), &reload_overrides).map_err(|e| e.to_string())
            });
            serve(config, reloader)
        }
        Command::Demo(args) => demo(config, &args),
        Command::Simulate(args) => simulate(&config, &args),
        Command::Token(args) => token(&config, &args),
        Command::CheckConfig => check_config(&config),
        Command::Backup {
            to,
            with_ca_key,
            passphrase_file,
        } => match passphrase(passphrase_file.as_deref()).and_then(|p| {
            let sealed_by = p.as_deref().filter(|_| with_ca_key);
            crate::store::backup(&config.data_dir, &to, sealed_by).map_err(|e| e.to_string())
        }) {
            Ok(m) => {
                println!(
                    "backed up {} entries and {} files to {}",
                    m.entries,
                    m.files,
                    to.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lookout: backup failed: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Migrate { to_redis } => migrate(&config, &to_redis),
        Command::Restore {
            from,
            passphrase_file,
        } => match passphrase(passphrase_file.as_deref()).and_then(|p| {
            crate::store::restore(&from, &config.data_dir, p.as_deref()).map_err(|e| e.to_string())
        }) {
            Ok(m) => {
                println!(
                    "restored {} entries and {} files into {}",
                    m.entries,
                    m.files,
                    config.data_dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lookout: restore failed: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal, not in files or the journal.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn serve(config: Config, reloader: crate::server::Reloader) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let data_dir = config.data_dir.clone();
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
        println!(
            "mint a token: lookout token --data-dir {} --sub alice --org demo --role supervisor",
            data_dir.display()
        );
        if let Some(plain) = server.plain_addr() {
            println!("plain HTTP (behind a TLS proxy only) on http://{plain}");
        }
        println!("lookout listening on https://{addr}");
        exit_code(server.run(stop).await)
    })
}

/// The key that names the shared Redis in `config`.
fn cluster_key(config: &Config) -> &'static str {
    if config.cluster.redis.is_some() {
        "cluster.redis"
    } else {
        "cluster.sentinels"
    }
}

fn migrate(config: &Config, url: &str) -> ExitCode {
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

fn demo(config: Config, args: &DemoArgs) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    exit_code(runtime.block_on(crate::demo::run(config, args.guards, args.panic_after)))
}

fn simulate(config: &Config, args: &SimulateArgs) -> ExitCode {
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

fn token(config: &Config, args: &TokenArgs) -> ExitCode {
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

fn check_config(config: &Config) -> ExitCode {
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
fn passphrase(file: Option<&std::path::Path>) -> Result<Option<Vec<u8>>, String> {
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
