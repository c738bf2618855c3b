//! Fuzz JWT handling. Half the inputs are raw tokens (a random string never verifies); the other
//! half are a header and claims the fuzzer writes, signed with the site's own secret, so the
//! claims parsing and checks behind the signature are reached: never a panic, and an identity
//! comes only from claims that name a user.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use lookout::auth::Authenticator;
use lookout::config::Config;

const SECRET: &str = "fuzzing-secret-fuzzing-secret-00";

fn auth() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let mut config = Config::default();
        config.jwt.secret = Some(SECRET.into());
        Authenticator::from_config(&config).expect("an HS256 authenticator")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else { return };
        assert!(auth().verify(token).is_err(), "an unsigned string verified");
        let _ = auth().verify_link(token);
        return;
    }
    // Signed: `header \0 claims`.
    let (header, claims) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], rest),
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signing_input = format!("{}.{}", b64.encode(header), b64.encode(claims));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, signing_input.as_bytes());
    let token = format!("{signing_input}.{}", b64.encode(tag.as_ref()));
    if let Ok(id) = auth().verify(&token) {
        assert!(!id.user.trim().is_empty());
    }
    let _ = auth().verify_link(&token);
});
