//! The command line: `serve`, `token`, `check-config`. Parses arguments, sets up logging and
//! calls into the library; no server logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::{Authenticator, Role};
use crate::config::{self, Config, Overrides};
use crate::server::{shutdown_signal, Server};

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
    },
    /// Restore a backup into an empty data directory.
    Restore {
        /// The backup file to read.
        #[arg(long)]
        from: PathBuf,
    },
}

/// `serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TLS listen address, e.g. 127.0.0.1:0 (port 0 picks a free port). Overrides `listen`.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
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
        _ => None,
    };
    let config = match config::load(cli.config.as_deref(), &overrides(listen)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lookout: configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(_) => serve(config),
        Command::Token(args) => token(&config, &args),
        Command::CheckConfig => check_config(&config),
        Command::Backup { to } => match crate::store::backup::backup(&config.data_dir, &to) {
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
        Command::Restore { from } => match crate::store::backup::restore(&from, &config.data_dir) {
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn serve(config: Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lookout: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let data_dir = config.data_dir.clone();
        let server = match Server::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("lookout: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = server.local_addr();
        let cert = &server.certificate;
        println!(
            "certificate {} (SHA-256 {}){}",
            cert.path.display(),
            cert.fingerprint,
            if cert.generated {
                ", generated now"
            } else {
                ""
            }
        );
        println!(
            "mint a token: lookout token --data-dir {} --sub alice --org demo --role supervisor",
            data_dir.display()
        );
        if let Some(plain) = server.plain_addr() {
            println!("plain HTTP (behind a TLS proxy only) on http://{plain}");
        }
        println!("lookout listening on https://{addr}");
        match server.run(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lookout: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn token(config: &Config, args: &TokenArgs) -> ExitCode {
    if args.org.is_none() && !args.roles.contains(&Role::Admin) {
        eprintln!("lookout: --org is required for every role but admin");
        return ExitCode::FAILURE;
    }
    let minted = Authenticator::from_config(config).and_then(|auth| {
        auth.mint(
            &args.sub,
            args.org.as_deref(),
            &args.roles,
            args.ttl,
            args.name.as_deref(),
        )
    });
    match minted {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lookout: {e}");
            ExitCode::FAILURE
        }
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
    let uses_generated_secret = config.jwt.algorithm == crate::config::JwtAlgorithm::HS256
        && config.jwt.secret.is_none()
        && config.jwt.secret_file.is_none();
    if !uses_generated_secret {
        if let Err(e) = Authenticator::from_config(config) {
            problems.push(format!("jwt: {e}"));
        }
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
