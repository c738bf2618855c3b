//! Who is on the other end: roles, role sets, the [`Identity`] a verified token proves, and
//! the principal key and org names it is kept under.
//!
//! Plain data and its rules; nothing here reads a token (that is `claims.rs` and
//! `authenticator.rs`).

use std::fmt;
use std::sync::Arc;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_set_is_only_a_role_when_it_holds_nothing_else() {
        let guard: Roles = [Role::Guard].into_iter().collect();
        let both: Roles = [Role::Guard, Role::Supervisor].into_iter().collect();
        assert!(guard.is_only(Role::Guard));
        assert!(!both.is_only(Role::Guard));
        assert!(!Roles::default().is_only(Role::Guard));
    }
}
