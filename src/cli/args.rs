//! What the command line accepts: the global flags, the subcommands and their flags, as clap
//! parses them.
//!
//! Only the definitions; what each command does is in `commands.rs`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::Role;
use crate::config;

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
