//! The entry: parses the command line, sets up logging, loads the configuration and runs the
//! command (`backup` and `restore` here, the others in `commands.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use super::args::{Cli, Command, LogFormat};
use super::commands::{check_config, demo, migrate, passphrase, serve, simulate, token};
use crate::config::{self, Overrides};

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
            serve(config, reloader, cli.config.as_deref())
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
