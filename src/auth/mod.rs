//! Authentication: JWT verification (and minting for `lookout token`), identities and roles.
//!
//! The algorithm is fixed by configuration (or, with an identity provider's key set, by the key
//! a token's `kid` names), never taken from a token's header; `exp` and the user claim are
//! required, `iss`/`aud` when configured; `jwt.claims` says where the user, org and roles are. This module knows nothing about channels or
//! sockets: it turns a token into an [`Identity`] or an [`AuthError`].

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::clock::now_secs;
use crate::config::{Config, JwtAlgorithm};

pub mod jwks;
pub mod signing;

use jwks::KeySet;

/// Why a token was refused, or why keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token in the header, query string or frame.
    #[error("missing token")]
    Missing,
    /// Not a JWT, or its claims are not the expected shape.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// The signature does not verify with the configured key.
    #[error("invalid token signature")]
    BadSignature,
    /// Signed with another algorithm than the configured one (including `none`).
    #[error("token algorithm not accepted")]
    WrongAlgorithm,
    /// `iss` or `aud` do not match the configuration.
    #[error("token issuer or audience not accepted")]
    WrongIssuerOrAudience,
    /// A required claim is absent or empty.
    #[error("token lacks required claim `{0}`")]
    MissingClaim(&'static str),
    /// The key material could not be read or created.
    #[error("JWT key: {0}")]
    Key(String),
    /// A sign-in link's token used as a credential.
    #[error("a sign-in link is not a credential: open it in the dashboard to sign in")]
    LinkOnly,
    /// Not a sign-in link's token.
    #[error("not a sign-in link")]
    NotALink,
    /// The session of a device a supervisor revoked.
    #[error("this device was revoked: enroll it again with a new link")]
    Revoked,
    /// Signed with a key the identity provider's key set does not hold (or no longer does).
    #[error("token signed with an unknown key (kid)")]
    UnknownKey,
}

/// The roles of the design. A token may carry several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A guard in the field.
    Guard,
    /// Watches the guards of its org.
    Supervisor,
    /// Global administrator, not bound to an org.
    Admin,
    /// A back-end service of an org.
    Service,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 4] = [Role::Guard, Role::Supervisor, Role::Admin, Role::Service];

    /// The claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Guard => "guard",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }

    /// Parses a claim value; unknown roles are `None`.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A small set of roles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Roles(u8);

impl Roles {
    /// Whether the set holds `role`.
    pub fn has(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }
    /// Whether the set holds `role` and nothing else.
    pub fn is_only(self, role: Role) -> bool {
        self.0 == role.bit()
    }
    /// Adds a role.
    pub fn insert(&mut self, role: Role) {
        self.0 |= role.bit();
    }
    /// The roles as claim strings.
    pub fn names(self) -> Vec<&'static str> {
        Role::ALL
            .into_iter()
            .filter(|r| self.has(*r))
            .map(Role::as_str)
            .collect()
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<T: IntoIterator<Item = Role>>(iter: T) -> Self {
        let mut roles = Roles::default();
        for r in iter {
            roles.insert(r);
        }
        roles
    }
}

/// Who is on the other end, as proven by a verified token.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`.
    pub user: Arc<str>,
    /// `org`; only an admin may have none.
    pub org: Option<Arc<str>>,
    /// `roles`.
    pub roles: Roles,
    /// `name`, for display.
    pub name: Option<String>,
    /// `exp`, seconds since the Unix epoch.
    pub exp: u64,
    /// The enrolled device a guard app's session belongs to (its token's `jti`), which a
    /// supervisor can revoke; tokens minted otherwise have none.
    pub device: Option<Arc<str>>,
    /// The principal's key, [`principal_key`] of `org` and `user`: what the user's connections,
    /// records and acknowledgements are kept under. Two orgs may each have a user `carol`;
    /// their keys differ.
    pub key: Arc<str>,
}

/// The key of the principal (`org`, `user`): `{org}/{user}`, or `/{user}` for an admin of no
/// org. An org id never holds `/` (see [`valid_org`]), so two principals never share a key.
pub fn principal_key(org: Option<&str>, user: &str) -> String {
    format!("{}/{user}", org.unwrap_or(""))
}

/// Whether `org` may name an organization: 1–128 of `[A-Za-z0-9_.@:-]`, as a channel
/// segment (it names the org's channels, and it is the first part of a principal's key).
pub fn valid_org(org: &str) -> bool {
    !org.is_empty()
        && org.len() <= 128
        && org
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@' | b':'))
}

impl Identity {
    /// Whether the identity holds `role`.
    pub fn is(&self, role: Role) -> bool {
        self.roles.has(role)
    }
    /// Whether the identity belongs to `org`.
    pub fn in_org(&self, org: &str) -> bool {
        self.org.as_deref() == Some(org)
    }

    /// An admin acting in `org`: users' channels it names resolve there. Anyone else stays
    /// as it is (and is refused another org's by the rights table).
    pub fn acting_in(&self, org: &str) -> Identity {
        if !self.is(Role::Admin) || self.in_org(org) {
            return self.clone();
        }
        let mut acting = self.clone();
        acting.org = Some(Arc::from(org));
        acting.key = Arc::from(principal_key(Some(org), &self.user));
        acting
    }
}

// Never print the token or claims beyond what a log line needs.
impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("user", &self.user)
            .field("org", &self.org)
            .field("roles", &self.roles.names())
            .finish()
    }
}

/// The claims Lookout reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Organization id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Role names.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Issuer, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// `link` for a one-time sign-in link, which is only good for exchanging.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Token id (sign-in links: to refuse a second use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// What a sign-in link token's claims say: the identity and the link's id.
pub struct Link {
    /// Who signs in.
    pub identity: Identity,
    /// The link's id.
    pub jti: String,
    /// The claims to carry into the session token.
    pub claims: Claims,
}

const LINK: &str = "link";

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
    explicit_roles: bool,
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

    /// Verifies a one-time sign-in link's token.
    pub fn verify_link(&self, token: &str) -> Result<Link, AuthError> {
        let claims = self.decode(token)?;
        let jti = match (&claims.purpose, &claims.jti) {
            (Some(p), Some(jti)) if p == LINK => jti.clone(),
            _ => return Err(AuthError::NotALink),
        };
        let identity = identity_from_claims(claims.clone(), !self.explicit_roles)?;
        Ok(Link {
            identity,
            jti,
            claims,
        })
    }

    /// A session token for a used link: the same user, org, roles and name, for `ttl`, with a
    /// device id of its own (returned beside it) by which it can be revoked.
    pub fn mint_session(&self, link: &Link, ttl: Duration) -> Result<(String, String), AuthError> {
        let roles: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| link.identity.is(*r))
            .collect();
        let device = uuid::Uuid::new_v4().to_string();
        let token = self.mint_claims(
            &link.claims.sub,
            link.claims.org.as_deref(),
            &roles,
            ttl,
            link.claims.name.as_deref(),
            |c| c.jti = Some(device.clone()),
        )?;
        Ok((token, device))
    }

    /// A one-time sign-in link's token for `sub`, valid for `ttl` and exchangeable once.
    pub fn mint_link(
        &self,
        sub: &str,
        org: Option<&str>,
        roles: &[Role],
        ttl: Duration,
        name: Option<&str>,
    ) -> Result<String, AuthError> {
        self.mint_claims(sub, org, roles, ttl, name, |c| {
            c.purpose = Some(LINK.into());
            c.jti = Some(uuid::Uuid::new_v4().to_string());
        })
    }

    fn decode(&self, token: &str) -> Result<Claims, AuthError> {
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

    fn mint_claims(
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

/// The claim at a dotted `path` (`realm_access.roles`): a key with the whole path as its name
/// wins (some providers use URLs with dots as claim names).
fn claim<'a>(claims: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(claims, |v, part| v.get(part))
}

/// Lookout's claims out of a token's, through `jwt.claims`: the user, org and roles from their
/// configured paths, identity-provider role names mapped by `jwt.claims.role_map`.
fn claims_from(
    value: &serde_json::Value,
    map: &crate::config::ClaimsConfig,
    explicit_roles: bool,
) -> Result<Claims, AuthError> {
    let text = |path: &str| {
        claim(value, path).and_then(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let sub = text(&map.user).ok_or(AuthError::MissingClaim("sub"))?;
    let names: Vec<String> = match claim(value, &map.roles) {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let roles = names
        .into_iter()
        .filter_map(|n| match map.role_map.get(&n) {
            Some(mapped) => Some(mapped.clone()),
            None if explicit_roles => None,
            None => Role::parse(&n).map(|r| r.as_str().to_string()),
        })
        .collect();
    let exp = value
        .get("exp")
        .and_then(serde_json::Value::as_u64)
        .ok_or(AuthError::MissingClaim("exp"))?;
    let string = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
    Ok(Claims {
        sub,
        org: text(&map.org),
        roles,
        exp,
        iat: value.get("iat").and_then(serde_json::Value::as_u64),
        name: string("name"),
        iss: string("iss"),
        aud: string("aud"),
        purpose: string("use"),
        jti: string("jti"),
    })
}

/// The identity a token's claims prove. `devices`: whether a token's `jti` names an enrolled
/// device (Lookout's own tokens); an identity provider's `jti` is a token id and nothing more.
fn identity_from_claims(claims: Claims, devices: bool) -> Result<Identity, AuthError> {
    if claims.sub.trim().is_empty() {
        return Err(AuthError::MissingClaim("sub"));
    }
    let roles: Roles = claims.roles.iter().filter_map(|r| Role::parse(r)).collect();
    let org = claims.org.filter(|o| !o.trim().is_empty());
    if org.is_none() && !roles.has(Role::Admin) {
        return Err(AuthError::MissingClaim("org"));
    }
    if org.as_deref().is_some_and(|o| !valid_org(o)) {
        return Err(AuthError::Malformed(
            "the org claim must be 1-128 letters, digits or _ - . @ :".into(),
        ));
    }
    // A link's jti names the link; a session's, the device it was opened on.
    let device = match claims.purpose {
        None if devices => claims.jti.map(Into::into),
        _ => None,
    };
    Ok(Identity {
        key: principal_key(org.as_deref(), &claims.sub).into(),
        user: claims.sub.into(),
        org: org.map(Into::into),
        roles,
        name: claims.name,
        exp: claims.exp,
        device,
    })
}

/// Where the generated HS256 secret lives.
pub fn default_secret_path(config: &Config) -> PathBuf {
    config.data_dir.join("jwt.secret")
}

fn read_file(path: &Path) -> Result<Vec<u8>, AuthError> {
    fs::read(path).map_err(|e| AuthError::Key(format!("{}: {e}", path.display())))
}

fn read_secret(path: &Path) -> Result<Vec<u8>, AuthError> {
    let raw = read_file(path)?;
    let trimmed = String::from_utf8_lossy(&raw).trim().as_bytes().to_vec();
    if trimmed.len() < 32 {
        return Err(AuthError::Key(format!(
            "{}: an HS256 secret must be at least 32 bytes",
            path.display()
        )));
    }
    Ok(trimmed)
}

fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, AuthError> {
    if path.exists() {
        return read_secret(path);
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    write_private_file(path, secret.as_bytes())
        .map_err(|e| AuthError::Key(format!("{}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), "generated a new HS256 secret");
    Ok(secret.into_bytes())
}

/// Writes a file readable by its owner only (0600), creating parent directories.
/// Fails rather than overwrite: a secret or key is never replaced silently.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(secret: &str) -> Authenticator {
        let mut config = Config::default();
        config.jwt.secret = Some(secret.into());
        Authenticator::from_config(&config).expect("keys")
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_role_set_is_only_a_role_when_it_holds_nothing_else() {
        let guard: Roles = [Role::Guard].into_iter().collect();
        let both: Roles = [Role::Guard, Role::Supervisor].into_iter().collect();
        assert!(guard.is_only(Role::Guard));
        assert!(!both.is_only(Role::Guard));
        assert!(!Roles::default().is_only(Role::Guard));
    }

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
    fn a_sign_in_link_is_only_good_for_exchanging() {
        let auth = hs(SECRET);
        let hour = Duration::from_secs(3600);
        let link = auth
            .mint_link("sup", Some("acme"), &[Role::Supervisor], hour, Some("Sue"))
            .expect("mint");
        assert!(matches!(auth.verify(&link), Err(AuthError::LinkOnly)));
        let used = auth.verify_link(&link).expect("a link");
        assert!(!used.jti.is_empty());
        let (session, _device) = auth.mint_session(&used, hour).expect("session");
        let id = auth.verify(&session).expect("a credential");
        assert_eq!(&*id.user, "sup");
        assert!(id.in_org("acme") && id.is(Role::Supervisor) && !id.is(Role::Admin));
        assert_eq!(id.name.as_deref(), Some("Sue"));
        let plain = auth
            .mint("sup", Some("acme"), &[Role::Supervisor], hour, None)
            .expect("mint");
        assert!(matches!(auth.verify_link(&plain), Err(AuthError::NotALink)));
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
