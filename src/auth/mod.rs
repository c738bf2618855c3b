//! Authentication: JWT verification (and minting for `lookout token`), identities and roles.
//!
//! The algorithm is fixed by configuration (or, with an identity provider's key set, by the key
//! a token's `kid` names), never taken from a token's header; `exp` and the user claim are
//! required, `iss`/`aud` when configured; `jwt.claims` says where the user, org and roles are. This module knows nothing about channels or
//! sockets: it turns a token into an [`Identity`] or an [`AuthError`].
//!
//! # Layout
//! `error.rs` and `identity.rs` (roles, identities, principal keys) at the bottom; `claims.rs`
//! (what a token says and the identity it proves) above them; `keyfiles.rs` (key material on
//! disk), `jwks.rs` (an identity provider's key set) and `signing.rs` beside; `authenticator.rs`
//! (verify, revoke, mint) above those; `links.rs` (sign-in links) on top. A file imports only
//! files below it; this file only declares and re-exports.

mod authenticator;
mod claims;
mod error;
mod identity;
pub mod jwks;
mod keyfiles;
mod links;
pub mod signing;

pub use self::authenticator::Authenticator;
pub use self::claims::Claims;
pub use self::error::AuthError;
pub use self::identity::{principal_key, valid_org, Identity, Role, Roles};
pub use self::keyfiles::{default_secret_path, write_private_file};
pub use self::links::Link;
