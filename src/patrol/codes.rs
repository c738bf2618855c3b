//! Signed checkpoint ids: what a printed QR code or a written NFC tag carries.
//!
//! `LKCP1.{org}.{id}.{mac}`, where `mac` is the first 16 bytes of HMAC-SHA256 under the org's
//! signing key of `"lookout checkpoint\0{org}\0{id}"`, base64url without padding. The key is 32
//! random bytes made on first use and kept in the store (`Record::Patrol { kind: "key" }`), so
//! every node of a cluster and a restored backup verify the same codes, and another appliance —
//! another key — verifies none of them.

use base64::Engine;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::error::{bad, PatrolError};
use super::records::{KEY, SIGNING_KEY};
use super::service::Patrols;
use crate::store::{Record, StoreError};

const PREFIX: &str = "LKCP1";
const MAC_BYTES: usize = 16;

/// The org and checkpoint id a code names, its mac not yet checked.
pub(super) struct Claimed<'a> {
    pub(super) org: &'a str,
    pub(super) id: &'a str,
    mac: &'a str,
}

/// Splits a code into its parts; `None` when it is not shaped like one.
pub(super) fn parse(code: &str) -> Option<Claimed<'_>> {
    // An org may hold dots; an id and a mac never do.
    let rest = code.trim().strip_prefix(PREFIX)?.strip_prefix('.')?;
    let mut parts = rest.rsplitn(3, '.');
    let (mac, id, org) = (parts.next()?, parts.next()?, parts.next()?);
    if org.is_empty() || id.is_empty() || mac.is_empty() {
        return None;
    }
    Some(Claimed { org, id, mac })
}

fn message(org: &str, id: &str) -> Vec<u8> {
    format!("lookout checkpoint\0{org}\0{id}").into_bytes()
}

fn mac_of(key: &hmac::Key, org: &str, id: &str) -> String {
    let tag = hmac::sign(key, &message(org, id));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag.as_ref()[..MAC_BYTES])
}

impl Patrols {
    /// The org's signing key, made (once, across nodes) when it has none.
    pub(super) async fn signing_key(&self, org: &str) -> Result<hmac::Key, PatrolError> {
        let record = Record::Patrol {
            org,
            kind: KEY,
            id: SIGNING_KEY,
        };
        if let Some(bytes) = self.store.record(record).await? {
            return Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes));
        }
        let mut fresh = [0u8; 32];
        SystemRandom::new()
            .fill(&mut fresh)
            .map_err(|_| StoreError::Engine("no randomness for a signing key".into()))?;
        let ticket = self.store.put_new(record, fresh.to_vec()).await?;
        let bytes = match ticket {
            Some(ticket) => {
                self.store.durable(ticket).await?;
                fresh.to_vec()
            }
            // Another request or node made it first: use theirs.
            None => self
                .store
                .record(record)
                .await?
                .ok_or_else(|| StoreError::Engine("the signing key vanished".into()))?,
        };
        Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
    }

    /// The code of checkpoint `id` of `org`, under the org's key.
    pub(super) fn code(key: &hmac::Key, org: &str, id: &str) -> String {
        format!("{PREFIX}.{org}.{id}.{}", mac_of(key, org, id))
    }

    /// The checkpoint id `code` names, when it was signed here for `org`.
    pub(super) async fn verify<'a>(
        &self,
        org: &str,
        code: &'a str,
    ) -> Result<&'a str, PatrolError> {
        let Some(claimed) = parse(code) else {
            return bad("not a checkpoint code");
        };
        if claimed.org != org {
            return Err(PatrolError::Forbidden(
                "a checkpoint of another organization",
            ));
        }
        let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claimed.mac)
            .ok()
            .filter(|m| m.len() == MAC_BYTES);
        let key = self.signing_key(org).await?;
        let expected = hmac::sign(&key, &message(claimed.org, claimed.id));
        // Constant time over the truncated tags.
        let ok = mac.is_some_and(|m| {
            let diff = expected.as_ref()[..MAC_BYTES]
                .iter()
                .zip(&m)
                .fold(0u8, |d, (a, b)| d | (a ^ b));
            diff == 0
        });
        if !ok {
            return bad("not a checkpoint of this appliance");
        }
        Ok(claimed.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_parses_into_org_and_id_and_nothing_else_does() {
        let c = parse("LKCP1.acme.abc.xyz").expect("a code");
        assert_eq!((c.org, c.id, c.mac), ("acme", "abc", "xyz"));
        let dotted = parse("LKCP1.acme.co.abc.xyz").expect("an org with a dot");
        assert_eq!((dotted.org, dotted.id), ("acme.co", "abc"));
        for bad in [
            "",
            "LKCP1.acme.abc",
            "LKCP2.acme.abc.x",
            "LKCP1..abc.x",
            "LKCP1.a..x",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_mac_depends_on_key_org_and_id() {
        let k1 = hmac::Key::new(hmac::HMAC_SHA256, &[1; 32]);
        let k2 = hmac::Key::new(hmac::HMAC_SHA256, &[2; 32]);
        let m = mac_of(&k1, "acme", "cp1");
        assert_eq!(m.len(), 22);
        assert_ne!(m, mac_of(&k2, "acme", "cp1"));
        assert_ne!(m, mac_of(&k1, "acme2", "cp1"));
        assert_ne!(m, mac_of(&k1, "acme", "cp2"));
    }
}
