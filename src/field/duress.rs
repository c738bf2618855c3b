//! The guard's PIN and duress PIN: set by the guard, kept hashed (PBKDF2-HMAC-SHA256 with a
//! random salt), and checked where the app asks for the PIN (ending lone work, cancelling a
//! countdown). The duress PIN is accepted exactly like the PIN — same answer, same visible
//! effect — and silently raises DURESS to the org's supervisors; nothing of it is published to
//! the guard's own connections or queues (DURESS is a silent alert type).
//!
//! A PIN has few digits: the hash keeps it out of plain sight in the store, its dumps and
//! backups; it does not make it hard to guess offline.

use std::num::NonZeroU32;

use ring::rand::SecureRandom;
use serde::Deserialize;

use super::error::{bad, FieldError};
use super::records::PinHash;
use super::service::Field;
use super::welfare::Arming;
use crate::alerts::AlertType;
use crate::auth::Identity;
use crate::clock::now_millis;
use crate::hub::HubError;

const ITERATIONS: u32 = 20_000;

/// Wrong PINs a guard may enter per [`WRONG_PIN_WINDOW_MS`] before every entry is refused
/// until the window ends.
const WRONG_PINS: u32 = 5;
const WRONG_PIN_WINDOW_MS: u64 = 5 * 60_000;

/// What a guard sends to set its PINs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinSpec {
    /// The PIN.
    pub pin: String,
    /// The duress PIN (must differ from the PIN).
    pub duress_pin: String,
    /// The PIN now, when one is set.
    #[serde(default)]
    pub current: Option<String>,
}

/// What the app sends where it asks for the PIN.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinEntry {
    /// The PIN entered.
    pub pin: String,
    /// What it confirms: `end_lone_work`, or `cancel` (a countdown; nothing else changes).
    #[serde(default)]
    pub action: Option<String>,
}

fn valid_pin(pin: &str) -> bool {
    (4..=12).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit())
}

fn iterations() -> NonZeroU32 {
    NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN)
}

fn hash_pin(pin: &str) -> Result<PinHash, FieldError> {
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| FieldError::BadRequest("no randomness for a salt".into()))?;
    let mut out = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations(),
        &salt,
        pin.as_bytes(),
        &mut out,
    );
    Ok(PinHash {
        salt: hex::encode(salt),
        hash: hex::encode(out),
    })
}

fn matches(kept: Option<&PinHash>, pin: &str) -> bool {
    let Some(kept) = kept else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (hex::decode(&kept.salt), hex::decode(&kept.hash)) else {
        return false;
    };
    ring::pbkdf2::verify(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations(),
        &salt,
        pin.as_bytes(),
        &hash,
    )
    .is_ok()
}

/// Which PIN was entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entered {
    Pin,
    Duress,
    Wrong,
}

impl Field {
    /// The guard sets its PIN and duress PIN (with the current PIN when one is set).
    pub async fn set_pins(&self, who: &Identity, spec: PinSpec) -> Result<(), FieldError> {
        let org = self.own_org(who)?;
        if !valid_pin(&spec.pin) || !valid_pin(&spec.duress_pin) {
            return bad("a PIN is 4 to 12 digits");
        }
        if spec.pin == spec.duress_pin {
            return bad("the duress PIN must differ from the PIN");
        }
        let kept = self.guard_welfare(&org, &who.user).await?;
        if let Some(pin) = kept.as_ref().and_then(|s| s.pin.clone()) {
            let current = spec.current.clone().unwrap_or_default();
            let ok = tokio::task::spawn_blocking(move || matches(Some(&pin), &current))
                .await
                .map_err(|_| FieldError::Unavailable)?;
            if !ok {
                return Err(FieldError::Forbidden("the current PIN is wrong"));
            }
        }
        let (pin, duress) = tokio::task::spawn_blocking(move || {
            Ok::<_, FieldError>((hash_pin(&spec.pin)?, hash_pin(&spec.duress_pin)?))
        })
        .await
        .map_err(|_| FieldError::Unavailable)??;
        self.edit_guard(&org, &who.user, |s| {
            s.pin = Some(pin.clone());
            s.duress_pin = Some(duress.clone());
        })
        .await?;
        Ok(())
    }

    /// A PIN entered in the app: the same answer for the PIN and the duress PIN (the duress PIN
    /// also raises DURESS, silently); `Forbidden` for any other.
    pub async fn enter_pin(
        &self,
        who: &Identity,
        entry: PinEntry,
    ) -> Result<serde_json::Value, FieldError> {
        let org = self.own_org(who)?;
        let end_lone_work = match entry.action.as_deref() {
            None | Some("cancel") => false,
            Some("end_lone_work") => true,
            Some(_) => return bad("action is end_lone_work or cancel"),
        };
        let kept = self.guard_welfare(&org, &who.user).await?;
        let (pin, duress) = match kept {
            Some(s) => (s.pin, s.duress_pin),
            None => (None, None),
        };
        // Both hashes are checked whichever matches: the same work for either PIN.
        let entered = tokio::task::spawn_blocking(move || {
            let is_pin = matches(pin.as_ref(), &entry.pin);
            let is_duress = matches(duress.as_ref(), &entry.pin);
            match (is_pin, is_duress) {
                (true, _) => Entered::Pin,
                (_, true) => Entered::Duress,
                _ => Entered::Wrong,
            }
        })
        .await
        .map_err(|_| FieldError::Unavailable)?;
        // The duress PIN raises DURESS even when entries are refused: whoever watches the
        // phone sees the refusal a real PIN would get.
        if entered == Entered::Duress {
            self.raise_duress(&org, &who.user);
        }
        if self.pin_locked(&who.key, entered == Entered::Wrong) {
            return Err(FieldError::Hub(HubError::OverBudget(
                "too many wrong PINs: try again later".into(),
            )));
        }
        if entered == Entered::Wrong {
            return Err(FieldError::Forbidden("wrong PIN"));
        }
        if end_lone_work {
            self.arm(&org, &who.user, now_millis(), Arming::Reset, |s| {
                s.lone_work_since = None
            })
            .await?;
        }
        Ok(serde_json::json!({ "accepted": true }))
    }

    /// Counts a wrong PIN of `key` (when `wrong`) and says whether its entries are refused:
    /// more than [`WRONG_PINS`] wrong in the window.
    fn pin_locked(&self, key: &str, wrong: bool) -> bool {
        let now = now_millis();
        let mut counts = self.wrong_pins.lock();
        counts.retain(|_, (since, _)| now.saturating_sub(*since) < WRONG_PIN_WINDOW_MS);
        let (_, count) = counts.entry(key.to_string()).or_insert((now, 0));
        *count += u32::from(wrong);
        let locked = *count > WRONG_PINS;
        if *count == 0 {
            counts.remove(key);
        }
        locked
    }

    /// Raises DURESS on the urgent lane, without making the answer wait for it.
    fn raise_duress(&self, org: &str, user: &str) {
        let Some(field) = self.me.upgrade() else {
            tracing::error!(org, user, "the server is stopping: DURESS not raised");
            return;
        };
        let (org, user) = (org.to_string(), user.to_string());
        self.urgent.spawn(async move {
            let raised = async {
                let new = field
                    .alert_at_last_position(&org, &user, AlertType::Duress, None, &user)
                    .await?;
                field.alerts.create(new, Vec::new()).await?;
                Ok::<_, FieldError>(())
            };
            match raised.await {
                Ok(()) => {
                    field
                        .welfare_stats
                        .duress
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => tracing::error!(org, user, error = %e, "raising DURESS"),
            }
        });
    }
}
