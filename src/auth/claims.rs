//! Claims: what Lookout reads from and writes into a token, read through `jwt.claims` (where
//! the user, org and roles are, and the identity provider's role names), and the identity they
//! prove.
//!
//! No signatures and no keys here: verifying is `authenticator.rs`'s.

use serde::{Deserialize, Serialize};

use super::error::AuthError;
use super::identity::{principal_key, valid_org, Identity, Role, Roles};

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
pub(super) fn claims_from(
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
pub(super) fn identity_from_claims(claims: Claims, devices: bool) -> Result<Identity, AuthError> {
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
