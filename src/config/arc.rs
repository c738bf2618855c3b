//! `[arc]`: alarms to alarm receiving centres over ANSI/SIA DC-09, and the checks of each
//! `[[arc.receivers]]` entry.
//!
//! Only the settings live here; the messages, the outbox and the deliveries are `arc`'s job.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::section::config_section;

/// The alert types a receiver can ask for.
pub const ARC_ALERT_TYPES: [&str; 10] = [
    "PANIC",
    "DURESS",
    "MEDICAL",
    "FIRE",
    "SECURITY",
    "GENERAL",
    "MAN_DOWN",
    "CHECK_IN_MISSED",
    "LOST_CONTACT",
    "GEOFENCE",
];

/// TCP or UDP.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ArcTransport {
    /// One connection, kept open, one message at a time.
    #[default]
    Tcp,
    /// One datagram per message, its reply one datagram.
    Udp,
}

/// The event format the receiver reads.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum ArcFormat {
    /// SIA DC-03 event codes (`PA`, `PH`, …).
    #[default]
    #[serde(rename = "SIA-DCS")]
    SiaDcs,
    /// Ademco Contact ID (`1120 01 001`, …).
    #[serde(rename = "ADM-CID")]
    AdmCid,
}

/// One alarm receiving centre's receiver: an entry of `arc.receivers` (documented as part of
/// that key).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArcReceiver {
    /// A short name: in the metrics, the status and the outbox's records (keep it when the
    /// address changes, or the messages waiting for the old name wait until it is back).
    pub name: String,
    /// The receiver's host name or address.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// `tcp` or `udp`.
    #[serde(default)]
    pub transport: ArcTransport,
    /// `SIA-DCS` or `ADM-CID`.
    #[serde(default)]
    pub format: ArcFormat,
    /// The receiver number (`R`), 1 to 6 hex digits, when the ARC gave one.
    #[serde(default)]
    pub receiver_number: Option<String>,
    /// The line (account prefix) number (`L`), 1 to 6 hex digits.
    #[serde(default = "zero")]
    pub line_number: String,
    /// The account of every org without one in `accounts`; none: only those orgs' alarms go.
    #[serde(default)]
    pub account: Option<String>,
    /// Accounts by org (`{ acme = "12AB" }`) or by an org's site (`{ "acme/hq" = "12AC" }`,
    /// for a guard on shift at that site).
    #[serde(default)]
    pub accounts: std::collections::BTreeMap<String, String>,
    /// The AES key, 32, 48 or 64 hex digits (AES-128, -192, -256), when the receiver requires
    /// encryption.
    #[serde(default)]
    pub key: Option<String>,
    /// A backup receiver (`host:port`, same transport, account and key) taken when this one
    /// does not answer.
    #[serde(default)]
    pub backup: Option<String>,
    /// The alert types sent; empty: all.
    #[serde(default)]
    pub types: Vec<String>,
    /// Only alerts of this priority or above: `HIGH` (all) or `CRITICAL`.
    #[serde(default)]
    pub min_priority: Option<String>,
    /// The escalation level at which an alert goes to the ARC: 1 (default) when raised, 2 or 3
    /// when nobody acknowledged it in time (an acknowledged alert stops escalating and never
    /// goes); its restoral goes only if it went.
    #[serde(default)]
    pub min_level: Option<u8>,
    /// The link supervision interval (`NULL` messages while idle); `0s`: none.
    #[serde(default = "supervision", with = "humantime_serde")]
    pub supervision: Duration,
    /// How long to wait for the receiver's answer to one message.
    #[serde(default = "ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
}

fn zero() -> String {
    "0".into()
}

fn supervision() -> Duration {
    Duration::from_secs(60)
}

fn ack_timeout() -> Duration {
    Duration::from_secs(5)
}

// The key never reaches a log.
impl std::fmt::Debug for ArcReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArcReceiver")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("format", &self.format)
            .field("encrypted", &self.key.is_some())
            .field("backup", &self.backup)
            .finish_non_exhaustive()
    }
}

fn hex_digits(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
}

impl ArcReceiver {
    /// What is wrong with this receiver, each a problem of `arc.receivers`.
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let name = &self.name;
        if name.is_empty()
            || name.len() > 32
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            out.push("a receiver's name is 1 to 32 letters, digits, - or _".to_string());
        }
        if self.host.is_empty() || self.port == 0 {
            out.push(format!("{name}: host and a port other than 0"));
        }
        if let Some(r) = &self.receiver_number {
            if !hex_digits(r, 1, 6) {
                out.push(format!("{name}: receiver_number is 1 to 6 hex digits"));
            }
        }
        if !hex_digits(&self.line_number, 1, 6) {
            out.push(format!("{name}: line_number is 1 to 6 hex digits"));
        }
        let accounts = self.account.iter().chain(self.accounts.values());
        for account in accounts {
            if !hex_digits(account, 3, 16) {
                out.push(format!("{name}: an account is 3 to 16 hex digits"));
                break;
            }
        }
        if self.account.is_none() && self.accounts.is_empty() {
            out.push(format!("{name}: an account, or accounts by org"));
        }
        if let Some(key) = &self.key {
            if !(hex_digits(key, 32, 32) || hex_digits(key, 48, 48) || hex_digits(key, 64, 64)) {
                out.push(format!(
                    "{name}: key is 32, 48 or 64 hex digits (AES-128, -192, -256)"
                ));
            }
        }
        if let Some(backup) = &self.backup {
            let port = backup.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
            if !matches!(port, Some((h, Ok(p))) if !h.is_empty() && p != 0) {
                out.push(format!("{name}: backup is host:port"));
            }
        }
        if self
            .types
            .iter()
            .any(|t| !ARC_ALERT_TYPES.contains(&t.as_str()))
        {
            out.push(format!(
                "{name}: types are among {}",
                ARC_ALERT_TYPES.join(", ")
            ));
        }
        if self
            .min_priority
            .as_deref()
            .is_some_and(|p| p != "HIGH" && p != "CRITICAL")
        {
            out.push(format!("{name}: min_priority is HIGH or CRITICAL"));
        }
        if self.min_level.is_some_and(|l| !(1..=3).contains(&l)) {
            out.push(format!("{name}: min_level is 1, 2 or 3"));
        }
        if !self.supervision.is_zero() && self.supervision < Duration::from_secs(1) {
            out.push(format!("{name}: supervision is 0s (none) or at least 1s"));
        }
        if self.ack_timeout < Duration::from_millis(100)
            || self.ack_timeout > Duration::from_secs(60)
        {
            out.push(format!("{name}: ack_timeout is between 100ms and 60s"));
        }
        out
    }

    /// The account of `org`'s alarms (of a guard on shift at `site`), if they go to this
    /// receiver: the site's, else the org's, else `account` (uppercase, as sent).
    pub fn account_of(&self, org: &str, site: Option<&str>) -> Option<String> {
        site.and_then(|site| self.accounts.get(&format!("{org}/{site}")))
            .or_else(|| self.accounts.get(org))
            .or(self.account.as_ref())
            .map(|a| a.to_ascii_uppercase())
    }
}

/// Names used twice.
fn duplicate_names(receivers: &[ArcReceiver]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    receivers
        .iter()
        .filter(|r| !seen.insert(r.name.as_str()))
        .map(|r| format!("two receivers are named {}", r.name))
        .collect()
}

config_section! {
    /// Alarms to alarm receiving centres (ARC) over ANSI/SIA DC-09.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct ArcSettings in "arc." {
        /// [[arc.receivers]] entries: name, host, port, transport, format, account(s), key, backup, types
        ///
        /// Each entry: `name`, `host`, `port`, `transport` (`tcp` or `udp`, default tcp),
        /// `format` (`SIA-DCS` or `ADM-CID`, default SIA-DCS), `receiver_number` and
        /// `line_number` (hex, as the ARC gives them), `account` (3 to 16 hex digits, for every
        /// org) and/or `accounts` (by org, or by `org/site` for guards on shift there), `key` (AES, 32/48/64 hex digits, when the receiver
        /// requires encryption), `backup` (`host:port`), `types` (alert types, default all),
        /// `min_priority` (`HIGH` or `CRITICAL`), `min_level` (the escalation level at which
        /// an alert goes: 1 when raised, the default, or 2 or 3 when not acknowledged in
        /// time), `supervision` (the `NULL` message interval,
        /// default 60s, `0s` none) and `ack_timeout` (default 5s). See docs/arc.md.
        pub receivers: Vec<ArcReceiver> = Vec::new(),
            check: |receivers| {
                let mut out: Vec<String> =
                    receivers.iter().flat_map(ArcReceiver::problems).collect();
                out.extend(duplicate_names(receivers));
                out
            };
        /// most alarms of one org waiting for their receivers; beyond it the org's new ones are dropped and counted
        ///
        /// All receivers together, refused ones (dead letters) included. Beyond it the org's
        /// new alarms are not written to the outbox (counted in
        /// `lookout_arc_dropped_total`, logged as errors), never the alert change itself, and
        /// never another org's.
        pub max_outbox: usize = 10_000, check: |max| (*max == 0).then_some("must be positive");
    }
}
