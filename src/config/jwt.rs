//! `[jwt]` and `[jwt.claims]`: how tokens are verified (a secret, a key, or an identity
//! provider's key set) and where their claims say who the bearer is.
//!
//! Only the settings and their checks live here; reading keys, fetching key sets and verifying
//! tokens is `auth`'s job (which builds on this module, so nothing here may use `auth`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::section::{config_section, ConfigError};

/// The JWT signature algorithms Lookout accepts; one is chosen by configuration, never by a token.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

config_section! {
    /// How tokens are verified (and minted by `lookout token`).
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct JwtConfig in "jwt.", cross_checks: problems {
        /// HS256, RS256 or ES256; tokens signed otherwise are refused
        ///
        /// Fixed by the configuration, never taken from a token's header.
        pub algorithm: JwtAlgorithm = JwtAlgorithm::HS256;
        /// HS256 secret given inline
        ///
        /// Prefer `secret_file`, or leave both unset: a configuration file is easier to leak
        /// than the data directory.
        pub secret: Option<String> = None;
        /// file with the HS256 secret; unset: data_dir/jwt.secret, created on first run
        ///
        /// With neither this nor `secret` set, the secret is `data_dir/jwt.secret` (mode 0600),
        /// created on first start.
        pub secret_file: Option<PathBuf> = None;
        /// RS256/ES256 public key (PEM) used to verify tokens
        pub public_key: Option<PathBuf> = None;
        /// RS256/ES256 private key (PEM), only for `lookout token`
        ///
        /// Lookout itself only verifies; the private key is read by `lookout token`, sign-in
        /// links and guard enrollment, which mint tokens.
        pub private_key: Option<PathBuf> = None;
        /// required `iss` claim, when set
        pub issuer: Option<String> = None;
        /// required `aud` claim, when set
        ///
        /// Required with a key set (`jwks_url` or `jwks_file`): a token the identity provider
        /// issued for another application is refused.
        pub audience: Option<String> = None;
        /// clock skew tolerated on exp/nbf
        #[serde(with = "humantime_serde")]
        pub leeway: Duration = Duration::from_secs(30);
        /// https:// URL of the identity provider's key set (JWKS); set: keys chosen by kid
        ///
        /// An OIDC issuer's `jwks_uri`, say. Set: tokens are verified with the provider's
        /// RS256/ES256 keys, chosen by their `kid`, and Lookout mints no tokens of its own. The
        /// last good set is kept in `data_dir/jwks.json` for a restart while the provider is
        /// down. See docs/integrations.md.
        pub jwks_url: Option<String> = None,
            check: |url| url
                .as_deref()
                .is_some_and(|u| !u.starts_with("https://"))
                .then_some("the key set is fetched over https:// only");
        /// a JWKS file instead of jwt.jwks_url
        ///
        /// Read again at each refresh.
        pub jwks_file: Option<PathBuf> = None;
        /// with a key set: the algorithms accepted (RS256, ES256)
        ///
        /// HS256 is refused with a key set; a key of another algorithm is ignored.
        pub algorithms: Vec<JwtAlgorithm> = vec![JwtAlgorithm::RS256, JwtAlgorithm::ES256];
        /// with a key set: how often it is fetched again
        ///
        /// A failed fetch keeps the last good set.
        #[serde(with = "humantime_serde")]
        pub jwks_refresh: Duration = Duration::from_secs(300);
        /// with a key set: an unknown kid fetches it again at most this often
        ///
        /// That is, a token naming a `kid` the set lacks; one fetch at a time, whatever the
        /// number of such tokens.
        #[serde(with = "humantime_serde")]
        pub jwks_min_interval: Duration = Duration::from_secs(10);
        /// Where a token's claims say who it is.
        pub claims: ClaimsConfig;
    }
}

impl JwtConfig {
    /// Whether tokens are verified with a key set (`jwks_url` or `jwks_file`).
    fn uses_key_set(&self) -> bool {
        self.jwks_url.is_some() || self.jwks_file.is_some()
    }

    /// The checks between the keys of `[jwt]`: a key set, or else the algorithm's key.
    fn problems(&self, out: &mut Vec<ConfigError>) {
        let mut bad = |key: &'static str, message: &str| {
            out.push(ConfigError::Inconsistent {
                key,
                message: message.to_string(),
            })
        };
        if self.uses_key_set() {
            if self.jwks_url.is_some() && self.jwks_file.is_some() {
                bad(
                    "jwt.jwks_url",
                    "set jwt.jwks_url or jwt.jwks_file, not both",
                );
            }
            if self.secret.is_some() || self.secret_file.is_some() || self.public_key.is_some() {
                bad(
                    "jwt.jwks_url",
                    "a key set replaces jwt.secret, jwt.secret_file and jwt.public_key: unset them",
                );
            }
            if self.algorithms.is_empty() || self.algorithms.contains(&JwtAlgorithm::HS256) {
                bad(
                    "jwt.algorithms",
                    "with a key set: RS256 and/or ES256 (a shared secret is never in a key set)",
                );
            }
            if self.jwks_refresh.is_zero() {
                bad("jwt.jwks_refresh", "must be positive");
            }
            // A provider signs tokens for many applications: without an audience, a token it
            // issued for another one would open Lookout.
            if self.audience.as_deref().is_none_or(str::is_empty) {
                bad(
                    "jwt.audience",
                    "required with a key set: the audience (client id) the provider puts in Lookout's tokens",
                );
            }
            return;
        }
        match self.algorithm {
            JwtAlgorithm::HS256 => {
                if self.secret.as_deref().is_some_and(|s| s.len() < 32) {
                    bad("jwt.secret", "an HS256 secret must be at least 32 bytes");
                }
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => {
                if self.public_key.is_none() {
                    bad(
                        "jwt.public_key",
                        "RS256/ES256 need jwt.public_key (PEM) to verify tokens",
                    );
                }
            }
        }
    }
}

/// The check of a claim's path: a name, or names joined with dots.
fn claim_path(path: &str) -> Option<&'static str> {
    (path.is_empty() || path.split('.').any(str::is_empty))
        .then_some("a claim name or a dotted path such as realm_access.roles")
}

config_section! {
    /// Which claims (dotted paths into the token's JSON) carry the user, org and roles, and what
    /// an identity provider's role names mean here.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct ClaimsConfig in "jwt.claims." {
        /// claim (dotted path) naming the user
        ///
        /// The user id, e.g. `sub` or `preferred_username`.
        pub user: String = "sub".into(), check: |path| claim_path(path);
        /// claim (dotted path) naming the organization
        ///
        /// E.g. `org_id` (Clerk) or a custom claim such as `tenant` (Keycloak).
        pub org: String = "org".into(), check: |path| claim_path(path);
        /// claim (dotted path) with the roles: a string or a list
        ///
        /// E.g. `realm_access.roles` (Keycloak) or `org_role` (Clerk).
        pub roles: String = "roles".into(), check: |path| claim_path(path);
        /// identity-provider role name -> guard, supervisor, admin or service
        ///
        /// E.g. `{ "ops-lead" = "supervisor" }`. With a key set, names not listed grant nothing
        /// (a provider role that happens to be called `admin` included); with a secret or key
        /// of Lookout's own, a role named as one of the four counts.
        pub role_map: BTreeMap<String, String> = BTreeMap::new(),
            check: |map| map
                .iter()
                // The role names of the design (auth builds on this module, so not `Role::parse`).
                .filter(|(_, role)| {
                    !["guard", "supervisor", "admin", "service"].contains(&role.as_str())
                })
                .map(|(name, role)| {
                    format!("{name:?} maps to {role:?}: guard, supervisor, admin or service")
                })
                .collect::<Vec<_>>();
    }
}
