//! One-time sign-in links: minting a link's token, verifying one (it is only good for
//! exchanging), and the session token a used link is exchanged for.

use std::time::Duration;

use super::authenticator::Authenticator;
use super::claims::{identity_from_claims, Claims};
use super::error::AuthError;
use super::identity::{Identity, Role};

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

impl Authenticator {
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::authenticator::tests::{hs, SECRET};

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
}
