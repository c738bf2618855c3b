//! JWT signatures computed by *ring*, the crypto library rustls already uses here.
//!
//! jsonwebtoken 10 delegates every signature to a process-wide [`CryptoProvider`]. Its built-in
//! `rust_crypto` provider verifies RS256 through the `rsa` crate, which is open to the Marvin
//! timing attack (RUSTSEC-2023-0071, no fixed release); its `aws_lc_rs` provider would add a
//! second C crypto library to the binary. This provider is jsonwebtoken's own `aws_lc` one
//! moved onto *ring*'s API (which aws-lc-rs copies), so the token code above it is unchanged.
//!
//! Nothing here chooses an algorithm: the authenticator fixes it from the configuration.

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{
    self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey,
};
use ring::{digest, hmac};

/// The provider; [`install`] makes it the process default.
pub static RING: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    jwk_utils: JwkUtils {
        extract_rsa_public_key_components,
        extract_ec_public_key_coordinates,
        compute_digest,
    },
};

/// Makes [`RING`] jsonwebtoken's provider for this process. Idempotent; it must run before the
/// first token is signed or checked, which is why the authenticator calls it when it is built.
pub fn install() {
    // An Err means a provider is already installed: ours, since nothing else in the binary
    // installs one (and jsonwebtoken is built without a provider of its own).
    let _ = RING.install_default();
}

/// ring's errors say nothing on purpose (`Unspecified`); neither does a failed signature.
fn failed(_: ring::error::Unspecified) -> signature::Error {
    signature::Error::new()
}

fn family_error() -> Error {
    ErrorKind::InvalidKeyFormat.into()
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    use Algorithm::*;
    Ok(match algorithm {
        HS256 => Box::new(Hmac::signer(*algorithm, hmac::HMAC_SHA256, key)?),
        HS384 => Box::new(Hmac::signer(*algorithm, hmac::HMAC_SHA384, key)?),
        HS512 => Box::new(Hmac::signer(*algorithm, hmac::HMAC_SHA512, key)?),
        RS256 => Box::new(RsaSigner::new(*algorithm, &sig::RSA_PKCS1_SHA256, key)?),
        RS384 => Box::new(RsaSigner::new(*algorithm, &sig::RSA_PKCS1_SHA384, key)?),
        RS512 => Box::new(RsaSigner::new(*algorithm, &sig::RSA_PKCS1_SHA512, key)?),
        PS256 => Box::new(RsaSigner::new(*algorithm, &sig::RSA_PSS_SHA256, key)?),
        PS384 => Box::new(RsaSigner::new(*algorithm, &sig::RSA_PSS_SHA384, key)?),
        PS512 => Box::new(RsaSigner::new(*algorithm, &sig::RSA_PSS_SHA512, key)?),
        ES256 => Box::new(EcdsaSigner::new(
            *algorithm,
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            key,
        )?),
        ES384 => Box::new(EcdsaSigner::new(
            *algorithm,
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            key,
        )?),
        EdDSA => Box::new(EdDsaSigner::new(key)?),
    })
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    use Algorithm::*;
    let public: &'static dyn sig::VerificationAlgorithm = match algorithm {
        HS256 => {
            return Ok(Box::new(Hmac::verifier(
                *algorithm,
                hmac::HMAC_SHA256,
                key,
            )?))
        }
        HS384 => {
            return Ok(Box::new(Hmac::verifier(
                *algorithm,
                hmac::HMAC_SHA384,
                key,
            )?))
        }
        HS512 => {
            return Ok(Box::new(Hmac::verifier(
                *algorithm,
                hmac::HMAC_SHA512,
                key,
            )?))
        }
        RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        ES384 => &sig::ECDSA_P384_SHA384_FIXED,
        EdDSA => &sig::ED25519,
    };
    if key.family() != algorithm.family() {
        return Err(family_error());
    }
    Ok(Box::new(PublicVerifier {
        algorithm: *algorithm,
        public,
        key: key.clone(),
    }))
}

/// HMAC both ways: the key is the shared secret.
struct Hmac {
    algorithm: Algorithm,
    key: hmac::Key,
}

impl Hmac {
    fn signer(algorithm: Algorithm, hash: hmac::Algorithm, key: &EncodingKey) -> Result<Self> {
        Ok(Self {
            algorithm,
            key: hmac::Key::new(hash, key.try_get_hmac_secret()?),
        })
    }

    fn verifier(algorithm: Algorithm, hash: hmac::Algorithm, key: &DecodingKey) -> Result<Self> {
        Ok(Self {
            algorithm,
            key: hmac::Key::new(hash, key.try_get_hmac_secret()?),
        })
    }
}

impl Signer<Vec<u8>> for Hmac {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(hmac::sign(&self.key, msg).as_ref().to_vec())
    }
}

impl JwtSigner for Hmac {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

impl Verifier<Vec<u8>> for Hmac {
    fn verify(&self, msg: &[u8], tag: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        // Constant-time comparison inside ring.
        hmac::verify(&self.key, msg, tag).map_err(failed)
    }
}

impl JwtVerifier for Hmac {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// RSA, ECDSA and Ed25519 verification with a public key.
struct PublicVerifier {
    algorithm: Algorithm,
    public: &'static dyn sig::VerificationAlgorithm,
    key: DecodingKey,
}

impl Verifier<Vec<u8>> for PublicVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        match self.key.kind() {
            DecodingKeyKind::SecretOrDer(der) => UnparsedPublicKey::new(self.public, der)
                .verify(msg, signature)
                .map_err(failed),
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                let params = rsa_parameters(self.algorithm).ok_or_else(signature::Error::new)?;
                sig::RsaPublicKeyComponents { n, e }
                    .verify(params, msg, signature)
                    .map_err(failed)
            }
        }
    }
}

impl JwtVerifier for PublicVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn rsa_parameters(algorithm: Algorithm) -> Option<&'static sig::RsaParameters> {
    Some(match algorithm {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

struct RsaSigner {
    algorithm: Algorithm,
    padding: &'static dyn sig::RsaEncoding,
    pair: RsaKeyPair,
}

impl RsaSigner {
    fn new(
        algorithm: Algorithm,
        padding: &'static dyn sig::RsaEncoding,
        key: &EncodingKey,
    ) -> Result<Self> {
        if key.family() != AlgorithmFamily::Rsa {
            return Err(family_error());
        }
        let pair = RsaKeyPair::from_der(key.inner())
            .map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?;
        Ok(Self {
            algorithm,
            padding,
            pair,
        })
    }
}

impl Signer<Vec<u8>> for RsaSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let mut out = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(self.padding, &SystemRandom::new(), msg, &mut out)
            .map_err(failed)?;
        Ok(out)
    }
}

impl JwtSigner for RsaSigner {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

struct EcdsaSigner {
    algorithm: Algorithm,
    pair: EcdsaKeyPair,
}

impl EcdsaSigner {
    fn new(
        algorithm: Algorithm,
        curve: &'static sig::EcdsaSigningAlgorithm,
        key: &EncodingKey,
    ) -> Result<Self> {
        if key.family() != AlgorithmFamily::Ec {
            return Err(family_error());
        }
        let pair = EcdsaKeyPair::from_pkcs8(curve, key.inner(), &SystemRandom::new())
            .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
        Ok(Self { algorithm, pair })
    }
}

impl Signer<Vec<u8>> for EcdsaSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let signature = self.pair.sign(&SystemRandom::new(), msg).map_err(failed)?;
        Ok(signature.as_ref().to_vec())
    }
}

impl JwtSigner for EcdsaSigner {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

struct EdDsaSigner(Ed25519KeyPair);

impl EdDsaSigner {
    fn new(key: &EncodingKey) -> Result<Self> {
        if key.family() != AlgorithmFamily::Ed {
            return Err(family_error());
        }
        // `maybe_unchecked` also takes the PKCS#8 v1 documents OpenSSL writes.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.inner())
            .map_err(|_| ErrorKind::InvalidEddsaKey)?;
        Ok(Self(pair))
    }
}

impl Signer<Vec<u8>> for EdDsaSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(msg).as_ref().to_vec())
    }
}

impl JwtSigner for EdDsaSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

fn extract_rsa_public_key_components(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let pair = RsaKeyPair::from_der(der).map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?;
    let components = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    Ok((components.n, components.e))
}

fn extract_ec_public_key_coordinates(
    der: &[u8],
    algorithm: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    let (signing, curve, width) = match algorithm {
        Algorithm::ES256 => (
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            EllipticCurve::P256,
            32,
        ),
        Algorithm::ES384 => (
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            EllipticCurve::P384,
            48,
        ),
        _ => return Err(ErrorKind::InvalidEcdsaKey.into()),
    };
    let pair = EcdsaKeyPair::from_pkcs8(signing, der, &SystemRandom::new())
        .map_err(|_| ErrorKind::InvalidEcdsaKey)?;
    // An uncompressed SEC1 point: 0x04, then x, then y.
    match pair.public_key().as_ref().split_first() {
        Some((4, xy)) if xy.len() == 2 * width => {
            let (x, y) = xy.split_at(width);
            Ok((curve, x.to_vec(), y.to_vec()))
        }
        _ => Err(ErrorKind::InvalidEcdsaKey.into()),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Vec<u8> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
    };
    digest::digest(algorithm, data).as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(algorithm: Algorithm, encoding: &EncodingKey, decoding: &DecodingKey) {
        install();
        let header = jsonwebtoken::Header::new(algorithm);
        let claims = serde_json::json!({"sub": "g1", "exp": 4_000_000_000u64});
        let token = jsonwebtoken::encode(&header, &claims, encoding).expect("sign");
        let validation = jsonwebtoken::Validation::new(algorithm);
        jsonwebtoken::decode::<serde_json::Value>(&token, decoding, &validation).expect("verify");
        // One flipped bit in the signature fails.
        let mut forged = token.into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).expect("ascii");
        assert!(jsonwebtoken::decode::<serde_json::Value>(&forged, decoding, &validation).is_err());
    }

    #[test]
    fn hs256_tokens_sign_and_verify_and_a_forged_one_fails() {
        round_trip(
            Algorithm::HS256,
            &EncodingKey::from_secret(b"a secret of the site"),
            &DecodingKey::from_secret(b"a secret of the site"),
        );
    }

    #[test]
    fn es256_tokens_sign_and_verify_and_a_forged_one_fails() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        round_trip(
            Algorithm::ES256,
            &EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("private"),
            &DecodingKey::from_ec_pem(pair.public_key_pem().as_bytes()).expect("public"),
        );
    }

    #[test]
    fn rs256_tokens_sign_and_verify_and_a_forged_one_fails() {
        let private = include_bytes!("../../tests/fixtures/jwt-test-rsa.key");
        let public = include_bytes!("../../tests/fixtures/jwt-test-rsa.pub");
        round_trip(
            Algorithm::RS256,
            &EncodingKey::from_rsa_pem(private).expect("private"),
            &DecodingKey::from_rsa_pem(public).expect("public"),
        );
    }

    #[test]
    fn a_key_of_another_family_is_refused_not_misused() {
        install();
        let hmac = DecodingKey::from_secret(b"secret");
        assert!(new_verifier(&Algorithm::RS256, &hmac).is_err());
    }
}
