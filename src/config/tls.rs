//! `[tls]`: the listener's certificate, given or issued by the appliance's own CA.
//!
//! Only the settings and their checks live here: reading, issuing and renewing certificates is
//! `transport::tls`'s job, and nothing here opens a file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::section::{config_section, ConfigError};

/// The check of `tls.names`: each a DNS name or an IP address.
fn names_problems(names: &[String]) -> Vec<String> {
    let is_dns = |name: &str| {
        !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
    };
    names
        .iter()
        .filter(|name| !(name.parse::<std::net::IpAddr>().is_ok() || is_dns(name)))
        .map(|name| format!("{name:?} is neither a DNS name nor an IP address"))
        .collect()
}

config_section! {
    /// TLS certificate and key. Both unset: the appliance's own CA (in the data directory) issues
    /// the certificate.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct TlsConfig in "tls.", cross_checks: problems {
        /// PEM certificate chain; unset: issued by the local CA in data_dir/tls
        ///
        /// Set `tls.cert` and `tls.key` to use a certificate of your own (a site or company CA,
        /// or a public one): there is then no local CA, and `/ca.crt` and `/trust` answer 404.
        /// Replace the files and reload to rotate it.
        pub cert: Option<PathBuf> = None;
        /// PEM private key for tls.cert
        pub key: Option<PathBuf> = None;
        /// more DNS names or IP addresses for the locally issued certificate
        ///
        /// The host name and every address of its interfaces are always in the certificate; add
        /// here the name a site's DNS or a port forward gives the appliance. Refused together
        /// with `tls.cert`.
        pub names: Vec<String> = Vec::new(), check: |names| names_problems(names);
    }
}

impl TlsConfig {
    /// A certificate comes with its key, and carries its own names.
    fn problems(&self, out: &mut Vec<ConfigError>) {
        if self.cert.is_some() != self.key.is_some() {
            out.push(ConfigError::Inconsistent {
                key: "tls.cert",
                message: "tls.cert and tls.key must be given together".into(),
            });
        }
        if self.cert.is_some() && !self.names.is_empty() {
            out.push(ConfigError::Inconsistent {
                key: "tls.names",
                message: "names are for the locally issued certificate: a configured tls.cert \
                          carries its own"
                    .into(),
            });
        }
    }
}
