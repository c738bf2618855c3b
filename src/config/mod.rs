//! Configuration: every setting Lookout reads, its safe default and its documentation.
//!
//! Sources, later ones winning: built-in defaults, an optional TOML file (`lookout.toml` in the
//! working directory, or `--config FILE`), `LOOKOUT_*` environment variables (nested keys joined
//! with `__`, e.g. `LOOKOUT_LIMITS__MAX_CONNECTIONS_PER_USER=3`), then command-line flags.
//!
//! Each table of the file has a file of its own here (`limits.rs` for `[limits]`, `jwt.rs` for
//! `[jwt]` and `[jwt.claims]`, …), where each key is declared once with `config_section!`
//! (`section.rs`): its type, default, documentation (the first line of its doc comment is its
//! help text) and check; the checks between keys of a table sit beside its declaration. This file
//! holds only the root: the top-level keys, the help ([`KEYS`], [`keys_help`]) and
//! [`default_values`] assembled from the tables, loading, and the driver of the checks
//! ([`Config::problems`]); no table's keys or checks belong here.
//!
//! This module only describes and loads settings; it never opens files other than the config
//! file itself and never creates anything (that is the job of `transport::tls` and `auth`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod alerts;
mod amqp;
mod arc;
mod cluster;
mod dashboard;
mod field;
mod jwt;
mod limits;
mod metrics;
mod notify;
mod patrol;
mod retention;
mod section;
mod store;
mod testing;
mod tls;

pub use alerts::AlertSettings;
pub use amqp::{AmqpBinding, AmqpSettings};
pub use arc::{ArcFormat, ArcReceiver, ArcSettings, ArcTransport, ARC_ALERT_TYPES};
pub use cluster::ClusterSettings;
pub use dashboard::DashboardSettings;
pub use field::FieldSettings;
pub use jwt::{ClaimsConfig, JwtAlgorithm, JwtConfig};
pub use limits::Limits;
pub use metrics::MetricsSettings;
pub use notify::{NotifySettings, Webhook, ALERT_EVENTS};
pub use patrol::PatrolSettings;
pub use retention::{Retention, RetentionRule, RETENTION_KINDS};
pub use section::ConfigError;
pub use store::StoreSettings;
pub use testing::TestingSettings;
pub use tls::TlsConfig;

use section::{config_section, Section};

config_section! {
    /// The whole configuration of one Lookout process.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct Config in "" {
        /// TLS listener address (port 0 picks a free port)
        ///
        /// A port below 1024 (443, say) needs the capability to bind it, which the packaged
        /// service has; port 0 is for tests.
        pub listen: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 8443));
        /// plain-HTTP listener, only behind a TLS-terminating proxy
        ///
        /// Unset by default. Only for a reverse proxy on the same host that terminates TLS
        /// itself: phones and browsers must never reach it, since tokens would cross the
        /// network in clear.
        pub plain_listen: Option<SocketAddr> = None;
        /// data directory: certificate, JWT secret, store
        ///
        /// Created mode 0700 on first start: the store (`store/`), the JWT secret
        /// (`jwt.secret`), the local certificate authority and the certificate it issued
        /// (`tls/`), the epoch. The Debian package sets `/var/lib/lookout`; every `lookout`
        /// command given the same configuration file uses the same directory.
        pub data_dir: PathBuf = PathBuf::from("lookout-data");
        /// browser Origins allowed to open a WebSocket; empty: same host only; "*": any
        ///
        /// Other Origins get 403. Only needed when a web application served from another host
        /// opens the WebSocket; the dashboard and the guard app are served by Lookout itself.
        /// Applied by a reload.
        pub allowed_origins: Vec<String> = Vec::new();
        /// TLS certificate settings.
        pub tls: TlsConfig;
        /// JWT verification settings.
        pub jwt: JwtConfig;
        /// Limits and timeouts.
        pub limits: Limits;
        /// How long channel logs are kept.
        pub retention: Retention;
        /// The store's memory.
        pub store: StoreSettings;
        /// Cluster mode on Redis.
        pub cluster: ClusterSettings;
        /// Field operations: locations and geofences.
        pub field: FieldSettings;
        /// Patrols: checkpoints, tours and scans.
        pub patrol: PatrolSettings;
        /// Alert escalation.
        pub alerts: AlertSettings;
        /// The dashboard.
        pub dashboard: DashboardSettings;
        /// Who may scrape `/metrics`.
        pub metrics: MetricsSettings;
        /// Alert notifications out (webhooks).
        pub notify: NotifySettings;
        /// Alarms to alarm receiving centres over ANSI/SIA DC-09.
        pub arc: ArcSettings;
        /// Task events from the site's RabbitMQ.
        pub amqp: AmqpSettings;
        /// What only test rigs turn on.
        pub testing: TestingSettings;
    }
}

/// Each key, with its documentation: the text `lookout serve --help` prints. Assembled from the
/// tables' declarations (the first line of each key's doc comment), in their order.
pub const KEYS: &[(&str, &str)] = <Config as Section>::HELP;

/// Each key with the rest of its doc comment, in [`KEYS`]' order: the longer text of
/// `docs/configuration.md`.
const DETAILS: &[(&str, &str)] = <Config as Section>::DETAILS;

/// The help text listing every key, its environment variable and its default.
pub fn keys_help() -> String {
    let mut out =
        String::from("Configuration keys (lookout.toml key / LOOKOUT_* variable, default):\n");
    for Documented {
        key,
        env,
        default,
        help,
        ..
    } in documented()
    {
        out.push_str(&format!(
            "  {key}  ({env}, default {default})\n      {help}\n"
        ));
    }
    out
}

/// One key as the help and the reference show it.
struct Documented {
    key: &'static str,
    env: String,
    default: String,
    help: &'static str,
    /// The rest of the key's doc comment, its lines joined by single spaces.
    details: String,
}

/// Every key in [`KEYS`]'s order, with its environment variable and default.
fn documented() -> impl Iterator<Item = Documented> {
    let defaults = default_values();
    KEYS.iter().map(move |(key, help)| Documented {
        key,
        env: format!("LOOKOUT_{}", key.replace('.', "__").to_uppercase()),
        default: defaults
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        help,
        details: DETAILS
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, d)| d.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
    })
}

/// `docs/configuration.md`: every key with its environment variable, default and help line, as
/// the tables declare them (a test keeps the file equal to this).
pub fn reference_markdown() -> String {
    let cell = |text: &str| text.replace('|', "\\|");
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the declarations in `src/config/` (`LOOKOUT_WRITE_DOCS=1 cargo test \\\n\
         --test binary the_configuration_reference` rewrites it); a test fails when it is stale.\n\n\
         Sources, later ones winning: defaults, `lookout.toml` in the working directory (or\n\
         `--config FILE`), `LOOKOUT_*` environment variables (nested keys joined by `__`), then\n\
         flags (`--listen`, `--data-dir`). `lookout check-config` validates a configuration;\n\
         `SIGHUP` reloads it (the log says which changed keys apply now). How to install and run\n\
         Lookout: [install.md](install.md); what the keys are for: [README](../README.md#where-to-read-on).\n\n\
         | key | environment variable | default | meaning |\n| --- | --- | --- | --- |\n",
    );
    for Documented {
        key,
        env,
        default,
        help,
        details,
    } in documented()
    {
        let meaning = if details.is_empty() {
            help.to_string()
        } else {
            format!("{help}. {details}")
        };
        out.push_str(&format!(
            "| `{key}` | `{env}` | `{}` | {} |\n",
            cell(&default),
            cell(&meaning)
        ));
    }
    out
}

/// The default configuration as dotted key → display value.
pub fn default_values() -> Vec<(String, String)> {
    values(&Config::default())
}

/// A configuration as dotted key → display value, one entry per documented key.
pub fn values(config: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match serde_json::to_value(config) {
        Ok(v) => flatten("", &v, &mut out),
        Err(e) => out.push(("<error>".into(), e.to_string())),
    }
    out
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    // A documented key is one value even when it is a table (a map keyed by channel kind or by
    // role name); lists (of tables too) are one value anyway.
    if KEYS.iter().any(|(key, _)| *key == prefix) {
        out.push((prefix.to_string(), display(value)));
        return;
    }
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), display(other))),
    }
}

/// How a default value reads in the help.
fn display(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "unset".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Values given on the command line; they override every other source.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    /// `--listen`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--data-dir`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

/// Assembles the configuration from defaults, the file, the environment and the flags.
///
/// `file`: an explicit `--config`; it must exist. Without it, `./lookout.toml` is read if present.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let config: Config = figment(file, overrides)?.extract().map_err(Box::new)?;
    config.validate()?;
    Ok(config)
}

/// Every problem with the configuration, each naming its key: all the values that do not
/// parse (unknown keys, wrong types) or, when they all do, every inconsistency.
pub fn check(file: Option<&Path>, overrides: &Overrides) -> Vec<String> {
    let figment = match figment(file, overrides) {
        Ok(f) => f,
        Err(e) => return vec![e.to_string()],
    };
    match figment.extract::<Config>() {
        Ok(config) => config.problems().iter().map(|p| p.to_string()).collect(),
        Err(errors) => errors.into_iter().map(|e| e.to_string()).collect(),
    }
}

/// The layered sources: defaults ← file ← `LOOKOUT_*` ← flags.
fn figment(file: Option<&Path>, overrides: &Overrides) -> Result<Figment, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    match file {
        Some(path) => {
            if !path.exists() {
                return Err(ConfigError::Inconsistent {
                    key: "config",
                    message: format!("config file {} does not exist", path.display()),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        None if Path::new("lookout.toml").exists() => {
            figment = figment.merge(Toml::file_exact("lookout.toml"))
        }
        None => {}
    }
    Ok(figment
        .merge(
            Env::prefixed("LOOKOUT_")
                .split("__")
                // Variables that steer the CLI or logging, not configuration keys.
                .ignore(&["config", "log", "log_format"]),
        )
        .merge(Serialized::defaults(overrides)))
}

impl Config {
    /// Rejects combinations that would only fail later, naming the key at fault (the first
    /// problem; [`Config::problems`] lists them all).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }

    /// What is allowed but should not be on a site, each naming its key.
    pub fn warnings(&self) -> Vec<String> {
        self.testing.warnings()
    }

    /// Every combination that would only fail later, each naming its key: table by table in
    /// the order of [`Config`]'s fields, each key's own check, then the table's checks between
    /// keys.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        Section::check(self, &mut out);
        out
    }
}

#[cfg(test)]
mod tests;
