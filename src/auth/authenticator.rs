//! The [`Authenticator`]: loads the configured keys (or an identity provider's key set),
//! verifies tokens into identities, refuses revoked devices, and mints tokens.
//!
//! The algorithm is fixed here, never taken from a token's header. Sign-in links are in
//! `links.rs`; what the claims mean is in `claims.rs`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use super::claims::{claims_from, identity_from_claims, Claims};
use super::error::AuthError;
use super::identity::{Identity, Role};
use super::jwks::KeySet;
use super::keyfiles::{default_secret_path, load_or_create_secret, read_file, read_secret};
use super::signing;
use crate::clock::now_secs;
use crate::config::{Config, JwtAlgorithm};

/// What checks signatures: one configured key, or an identity provider's key set.
enum Verifying {
    Fixed(DecodingKey),
    /// With the validation for each algorithm the set may hold.
    Set(Arc<KeySet>, Vec<(Algorithm, Validation)>),
}

/// Verifies tokens (and mints them when a signing key is at hand).
pub struct Authenticator {
    verifying: Verifying,
    encoding: Option<EncodingKey>,
    validation: Validation,
    algorithm: Algorithm,
    claims: crate::config::ClaimsConfig,
    /// With an identity provider's key set, roles come only from `jwt.claims.role_map`: a
    /// provider role that happens to be named `admin` grants nothing by its name.
    pub(super) explicit_roles: bool,
    issuer: Option<String>,
    audience: Option<String>,
    /// Revoked devices (token ids); loaded from the store at start, added to by revocations.
    /// Bounded by the devices ever enrolled, which only supervisors create.
    revoked: parking_lot::RwLock<std::collections::HashSet<String>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Loads the keys the configuration names. For HS256 without a configured secret, the secret
    /// lives in `<data_dir>/jwt.secret` and is created (mode 0600) when absent.
    pub fn from_config(config: &Config) -> Result<Self, AuthError> {
        signing::install();
        let jwt = &config.jwt;
        let key_set = KeySet::from_config(config).map_err(|e| AuthError::Key(e.to_string()))?;
        let (algorithm, decoding, encoding) = match jwt.algorithm {
            // Verified by the set's keys; nothing to mint with.
            _ if key_set.is_some() => (Algorithm::RS256, None, None),
            JwtAlgorithm::HS256 => {
                let secret = match (&jwt.secret, &jwt.secret_file) {
                    (Some(s), _) => s.as_bytes().to_vec(),
                    (None, Some(file)) => read_secret(file)?,
                    (None, None) => load_or_create_secret(&default_secret_path(config))?,
                };
                (
                    Algorithm::HS256,
                    Some(DecodingKey::from_secret(&secret)),
                    Some(EncodingKey::from_secret(&secret)),
                )
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => {
                let rsa = jwt.algorithm == JwtAlgorithm::RS256;
                let public = jwt
                    .public_key
                    .as_ref()
                    .ok_or_else(|| AuthError::Key("jwt.public_key is required".into()))?;
                let pem = read_file(public)?;
                let decoding = if rsa {
                    DecodingKey::from_rsa_pem(&pem)
                } else {
                    DecodingKey::from_ec_pem(&pem)
                }
                .map_err(|e| AuthError::Key(format!("{}: {e}", public.display())))?;
                let encoding = match &jwt.private_key {
                    Some(path) => {
                        let pem = read_file(path)?;
                        let key = if rsa {
                            EncodingKey::from_rsa_pem(&pem)
                        } else {
                            EncodingKey::from_ec_pem(&pem)
                        }
                        .map_err(|e| AuthError::Key(format!("{}: {e}", path.display())))?;
                        Some(key)
                    }
                    None => None,
                };
                let alg = if rsa {
                    Algorithm::RS256
                } else {
                    Algorithm::ES256
                };
                (alg, Some(decoding), encoding)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = jwt.leeway.as_secs();
        validation.validate_nbf = true;
        // The user claim is checked where it is read (it need not be `sub`).
        let mut required = vec!["exp"];
        if let Some(iss) = &jwt.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        if let Some(aud) = &jwt.audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        } else {
            // A token minted for another audience must not pass just because we set none.
            validation.validate_aud = false;
        }
        validation.set_required_spec_claims(&required);
        let explicit_roles = key_set.is_some();
        let verifying = match (key_set, decoding) {
            (Some(set), _) => {
                let per_algorithm = [Algorithm::RS256, Algorithm::ES256]
                    .into_iter()
                    .map(|a| {
                        let mut v = validation.clone();
                        v.algorithms = vec![a];
                        (a, v)
                    })
                    .collect();
                Verifying::Set(Arc::new(set), per_algorithm)
            }
            (None, Some(key)) => Verifying::Fixed(key),
            (None, None) => return Err(AuthError::Key("no key to verify tokens with".into())),
        };
        Ok(Authenticator {
            verifying,
            encoding,
            validation,
            algorithm,
            claims: jwt.claims.clone(),
            explicit_roles,
            issuer: jwt.issuer.clone(),
            audience: jwt.audience.clone(),
            revoked: Default::default(),
        })
    }

    /// The identity provider's key set, when tokens are verified with one.
    pub fn key_set(&self) -> Option<&Arc<KeySet>> {
        match &self.verifying {
            Verifying::Set(set, _) => Some(set),
            Verifying::Fixed(_) => None,
        }
    }

    /// [`Authenticator::verify`] after [`Authenticator::know_key_of`]: a token signed with a
    /// key the provider has just added is accepted at once.
    pub async fn verify_fresh(&self, token: &str) -> Result<Identity, AuthError> {
        self.know_key_of(token).await;
        self.verify(token)
    }

    /// When `token` names a key the identity provider's set lacks (it rotated its keys), the
    /// set is fetched again, at most every `jwt.jwks_min_interval`. Nothing without a key set.
    pub async fn know_key_of(&self, token: &str) {
        let Some(set) = self.key_set() else {
            return;
        };
        let Ok(header) = jsonwebtoken::decode_header(token.trim()) else {
            return;
        };
        if header.kid.is_some_and(|kid| set.get(&kid).is_none()) {
            set.refresh_for_unknown().await;
        }
    }

    /// Verifies a token and returns who it proves. A sign-in link's token is refused: it is
    /// only good for [`Authenticator::verify_link`].
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let claims = self.decode(token)?;
        if claims.purpose.is_some() {
            return Err(AuthError::LinkOnly);
        }
        let identity = identity_from_claims(claims, !self.explicit_roles)?;
        if let Some(device) = &identity.device {
            if self.revoked.read().contains(&**device) {
                return Err(AuthError::Revoked);
            }
        }
        Ok(identity)
    }

    /// Refuses `device`'s tokens from now on (the caller has made it durable).
    pub fn revoke(&self, device: &str) {
        self.revoked.write().insert(device.to_string());
    }

    pub(super) fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let set_key;
        let (key, validation) = match &self.verifying {
            Verifying::Fixed(key) => (key, &self.validation),
            Verifying::Set(set, validations) => {
                let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
                    ErrorKind::Json(_) if header_says_none(token) => AuthError::WrongAlgorithm,
                    other => AuthError::Malformed(format!("{other:?}")),
                })?;
                let kid = header
                    .kid
                    .ok_or_else(|| AuthError::Malformed("no kid in the header".into()))?;
                set_key = set.get(&kid).ok_or(AuthError::UnknownKey)?;
                // The key fixes the algorithm: a header naming another (HS256 with the public
                // key as its secret, say) is refused before any signature is computed.
                if header.alg != set_key.algorithm {
                    return Err(AuthError::WrongAlgorithm);
                }
                let validation = validations
                    .iter()
                    .find(|(a, _)| *a == set_key.algorithm)
                    .map(|(_, v)| v)
                    .ok_or(AuthError::WrongAlgorithm)?;
                (&set_key.decoding, validation)
            }
        };
        let data = jsonwebtoken::decode::<serde_json::Value>(token, key, validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::MissingAlgorithm => AuthError::WrongAlgorithm,
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                    AuthError::WrongIssuerOrAudience
                }
                ErrorKind::MissingRequiredClaim(c) => match c.as_str() {
                    "exp" => AuthError::MissingClaim("exp"),
                    "iss" => AuthError::MissingClaim("iss"),
                    "aud" => AuthError::MissingClaim("aud"),
                    _ => AuthError::MissingClaim("sub"),
                },
                // `alg: none` fails to parse as a header algorithm: refuse it as an algorithm.
                ErrorKind::Json(_) if header_says_none(token) => AuthError::WrongAlgorithm,
                other => AuthError::Malformed(format!("{other:?}")),
            },
        )?;
        claims_from(&data.claims, &self.claims, self.explicit_roles)
    }

    /// Mints a token for `sub` in `org` with `roles`, valid for `ttl`.
    pub fn mint(
        &self,
        sub: &str,
        org: Option<&str>,
        roles: &[Role],
        ttl: Duration,
        name: Option<&str>,
    ) -> Result<String, AuthError> {
        self.mint_claims(sub, org, roles, ttl, name, |_| {})
    }

    pub(super) fn mint_claims(
        &self,
        sub: &str,
        org: Option<&str>,
        roles: &[Role],
        ttl: Duration,
        name: Option<&str>,
        adjust: impl FnOnce(&mut Claims),
    ) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or_else(|| {
            AuthError::Key("no signing key configured (set jwt.private_key)".into())
        })?;
        let now = now_secs();
        let claims = Claims {
            sub: sub.to_string(),
            org: org.map(str::to_string),
            roles: roles.iter().map(|r| r.as_str().to_string()).collect(),
            exp: now + ttl.as_secs(),
            iat: Some(now),
            name: name.map(str::to_string),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            purpose: None,
            jti: None,
        };
        let mut claims = claims;
        adjust(&mut claims);
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|e| AuthError::Key(e.to_string()))
    }
}

fn header_says_none(token: &str) -> bool {
    use base64::Engine;
    let Some(head) = token.split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("alg").and_then(|a| a.as_str()).map(str::to_lowercase))
        .is_some_and(|alg| alg == "none")
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::Path;

    use super::*;

    pub(in crate::auth) fn hs(secret: &str) -> Authenticator {
        let mut config = Config::default();
        config.jwt.secret = Some(secret.into());
        Authenticator::from_config(&config).expect("keys")
    }

    pub(in crate::auth) const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_minted_token_verifies_to_its_identity() {
        let auth = hs(SECRET);
        let t = auth
            .mint(
                "alice",
                Some("acme"),
                &[Role::Guard],
                Duration::from_secs(60),
                None,
            )
            .expect("mint");
        let id = auth.verify(&t).expect("verify");
        assert_eq!(&*id.user, "alice");
        assert!(id.in_org("acme"));
        assert!(id.is(Role::Guard) && !id.is(Role::Admin));
    }

    #[test]
    fn an_rs256_site_key_mints_and_verifies_and_its_public_half_alone_only_verifies() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut config = Config::default();
        config.jwt.algorithm = JwtAlgorithm::RS256;
        config.jwt.public_key = Some(fixtures.join("jwt-test-rsa.pub"));
        config.jwt.private_key = Some(fixtures.join("jwt-test-rsa.key"));
        let auth = Authenticator::from_config(&config).expect("keys");
        let hour = Duration::from_secs(3600);
        let t = auth
            .mint("g1", Some("acme"), &[Role::Guard], hour, None)
            .expect("mint");
        assert_eq!(&*auth.verify(&t).expect("verify").user, "g1");
        config.jwt.private_key = None;
        let verify_only = Authenticator::from_config(&config).expect("public key");
        assert_eq!(&*verify_only.verify(&t).expect("verify").user, "g1");
        assert!(verify_only
            .mint("g1", Some("acme"), &[Role::Guard], hour, None)
            .is_err());
        // An HS256 token (an attacker's choice of alg) is refused by an RS256 site.
        let forged = hs(SECRET)
            .mint("g1", Some("acme"), &[Role::Guard], hour, None)
            .expect("mint");
        assert!(verify_only.verify(&forged).is_err());
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let t = hs("another-secret-another-secret-xx")
            .mint(
                "a",
                Some("o"),
                &[Role::Guard],
                Duration::from_secs(60),
                None,
            )
            .expect("mint");
        assert!(matches!(
            hs(SECRET).verify(&t),
            Err(AuthError::BadSignature)
        ));
    }

    #[test]
    fn a_non_admin_without_org_is_refused() {
        let auth = hs(SECRET);
        let t = auth
            .mint(
                "a",
                None,
                &[Role::Supervisor],
                Duration::from_secs(60),
                None,
            )
            .expect("mint");
        assert!(matches!(
            auth.verify(&t),
            Err(AuthError::MissingClaim("org"))
        ));
        let admin = auth
            .mint("root", None, &[Role::Admin], Duration::from_secs(60), None)
            .expect("mint");
        assert!(auth.verify(&admin).is_ok());
    }
}
