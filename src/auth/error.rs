//! Why a token was refused, or why keys could not be loaded.

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
