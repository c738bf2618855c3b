//! Enrolled guard devices: a guard link's exchange records the session it opens as a device of
//! the guard's org; supervisors list their org's devices and revoke one, and from then on its
//! session token is refused everywhere and its open connections close with
//! [`close::REVOKED`]. Revocations are durable and loaded again at start. In cluster mode a
//! revocation is also appended to a log every node follows ([`follow_revocations`]), so the
//! phone is cut off on every node within a fraction of a second.
//!
//! This module keeps the device records; verifying tokens is the `Authenticator`'s.

use hyper::Response;
use serde::{Deserialize, Serialize};

use super::extract::Call;
use crate::app::AppState;
use crate::auth::{Identity, Role};
use crate::clock::now_millis;
use crate::counters::Budget;
use crate::failure::ErrorCode;
use crate::http::{json_response, Body, HttpError};
use crate::protocol::close;
use crate::store::{Change, Record, Records, StoreError};

/// An enrolled device, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Its session token's `jti`.
    pub id: String,
    /// The guard.
    pub guard: String,
    /// The guard's org.
    pub org: String,
    /// Display name from the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When the link was exchanged, ms since the Unix epoch.
    pub enrolled_at: u64,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

impl Device {
    /// The key of the principal (org, guard) the device belongs to.
    pub fn key(&self) -> String {
        crate::auth::principal_key(Some(&self.org), &self.guard)
    }
}

/// The record of a device enrolled now (written with the link's use, in one commit).
pub fn enrolled(identity: &Identity, id: &str) -> Device {
    Device {
        id: id.to_string(),
        guard: identity.user.to_string(),
        org: identity.org.as_deref().unwrap_or_default().to_string(),
        name: identity.name.clone(),
        enrolled_at: now_millis(),
        revoked_at: None,
    }
}

/// The log of revocations the nodes of a cluster follow: a stored name no client can name.
const REVOCATIONS: &str = "/lookout/revocations";

/// How often a node of a cluster looks for revocations made on the others.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// A revocation as the nodes tell each other.
#[derive(Serialize, Deserialize)]
struct Revoked {
    device: String,
    key: String,
}

/// Cluster mode: applies the revocations every node appends to [`REVOCATIONS`] — the token
/// refused here too, the phone's connections to this node closed — until `stop`. One read of
/// the log's head per look; the log is read only when it grew.
pub async fn follow_revocations(
    state: std::sync::Arc<AppState>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut seen = 0;
    loop {
        match state.store.fresh_head(REVOCATIONS).await {
            Ok(head) if head > seen => {
                match state.store.read(REVOCATIONS, seen, head, 1000).await {
                    // Trimmed meanwhile: nothing more to apply up to the head (a restart loads
                    // every revocation on record anyway).
                    Ok(messages) if messages.is_empty() => seen = head,
                    Ok(messages) => {
                        for m in messages {
                            seen = m.seq;
                            let Ok(r) = rmpv::ext::from_value::<Revoked>(m.data.clone()) else {
                                continue;
                            };
                            state.auth.revoke(&r.device);
                            state.hub.close_device(
                                &r.key,
                                &r.device,
                                close::REVOKED,
                                "device revoked",
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "reading the cluster's revocations"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "looking for the cluster's revocations"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
    }
}

/// Makes the revocations on record effective again (at start).
pub async fn load_revocations(state: &AppState) -> Result<usize, StoreError> {
    let devices: Vec<Device> = state.store.load_all(Records::Devices).await?;
    let mut revoked = 0;
    for device in devices.iter().filter(|d| d.revoked_at.is_some()) {
        state.auth.revoke(&device.id);
        revoked += 1;
    }
    Ok(revoked)
}

/// Refuses a new device for `org` when it has `limits.max_devices_per_org` enrolled, not
/// revoked and with a session that has not expired (a phone whose shift session ran out
/// holds no place: after a few shift changes the org could otherwise enroll no one).
/// Called under the link-exchange lock, so the count is exact on this node.
pub async fn check_quota(state: &AppState, org: &str) -> Result<(), HttpError> {
    let max = state.hub.limits().max_devices_per_org;
    let session = state.config.field.guard_session.as_millis() as u64;
    let now = now_millis();
    let devices: Vec<Device> = state.store.load_all(Records::Devices).await?;
    let active = devices
        .iter()
        .filter(|d| {
            d.org == org && d.revoked_at.is_none() && d.enrolled_at.saturating_add(session) > now
        })
        .count();
    if active >= max {
        state.hub.stats.refused(Budget::Devices);
        return Err(HttpError::new(
            ErrorCode::RateLimited,
            format!("org {org} has {max} devices enrolled (limits.max_devices_per_org): revoke one first"),
        ));
    }
    Ok(())
}

fn may_manage(who: &Identity, org: &str) -> bool {
    who.is(Role::Admin) || (who.is(Role::Supervisor) && who.in_org(org))
}

/// `GET /api/v1/devices`: the caller's org's devices (an admin's: every org's).
pub async fn list(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who_is(
        &[Role::Supervisor, Role::Admin],
        "devices are managed by supervisors and admins",
    )?;
    let mut devices: Vec<Device> = call.state.store.load_all(Records::Devices).await?;
    devices.retain(|d| may_manage(&who, &d.org));
    devices.sort_by_key(|d| std::cmp::Reverse(d.enrolled_at));
    let listed: Vec<serde_json::Value> = devices
        .iter()
        .map(|d| {
            let (online, seen) = call.state.hub.device_seen(&d.key(), &d.id);
            let mut v = serde_json::to_value(d).unwrap_or_default();
            v["online"] = online.into();
            v["lastSeen"] = seen.into();
            v
        })
        .collect();
    Ok(json_response(
        200,
        &serde_json::json!({ "devices": listed }),
    ))
}

/// `POST /api/v1/devices/{id}/revoke`: durable first, then refused and disconnected.
pub async fn revoke(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who_is(
        &[Role::Supervisor, Role::Admin],
        "devices are managed by supervisors and admins",
    )?;
    let id = call.param(0).to_string();
    let state = call.state.clone();
    let not_found = || HttpError::new(ErrorCode::NotFound, "no such device");
    let mut device: Device = state
        .store
        .load(Record::Device { id: &id })
        .await?
        .ok_or_else(not_found)?;
    // Another org's device does not exist, as far as this caller can tell.
    if !may_manage(&who, &device.org) {
        return Err(not_found());
    }
    if device.revoked_at.is_none() {
        device.revoked_at = Some(now_millis());
        state
            .store
            .commit(&[Change::put(Record::Device { id: &id }, &device)?])
            .await?;
    }
    state.auth.revoke(&id);
    if state.store.cluster().is_some() {
        // The other nodes hear of it from the log they follow.
        let data = rmpv::ext::to_value(Revoked {
            device: id.clone(),
            key: device.key(),
        })
        .map_err(|e| HttpError::new(ErrorCode::Internal, e.to_string()))?;
        let draft = crate::store::Draft {
            timestamp: now_millis(),
            data,
            ack_required: false,
        };
        let (_, ticket) = state.store.append(REVOCATIONS, draft).await?;
        state.store.durable(ticket).await?;
    }
    let closed = state
        .hub
        .close_device(&device.key(), &id, close::REVOKED, "device revoked");
    tracing::info!(device = %id, guard = %device.guard, by = %who.user, closed, "device revoked");
    Ok(json_response(
        200,
        &serde_json::json!({ "device": device, "closed": closed }),
    ))
}
