//! Enrollment of guard devices: supervisors and admins mint one-time sign-in links that open
//! the guard app (`/guard`) on a phone, for guards of their own organization only. The link is
//! exchanged at `POST /api/v1/auth/link` like a supervisor's, for a session as long as a
//! shift (`field.guard_session`).
//!
//! This module mints links; it never stores a guard's session or decides what a guard may do.

use std::time::Duration;

use hyper::Response;
use serde::Deserialize;

use super::extract::Call;
use crate::auth::Role;
use crate::channel::{names, Target};
use crate::failure::ErrorCode;
use crate::http::{json_response, Body, HttpError};
use crate::hub::admission::Member;
use crate::store::Record;

/// How long a minted link can wait to be scanned: enrollment happens with the phone in hand.
pub const GUARD_LINK_TTL: Duration = Duration::from_secs(3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardLinkBody {
    /// The guard's user id.
    guard: String,
    /// Display name.
    #[serde(default)]
    name: Option<String>,
    /// The organization; only an admin without one of its own may name it, anyone else may
    /// only repeat their own.
    #[serde(default)]
    org: Option<String>,
}

/// `POST /api/v1/guard-links {"guard", "name"?, "org"?}` → 201 `{"link", "path", "expiresIn",
/// "url", "qr"}`: `path` is `/guard#link=…`; `url` puts it after the address the request came
/// to (its `Host`), and `qr` is that URL's QR code as SVG.
pub async fn mint(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who_is(
        &[Role::Supervisor, Role::Admin],
        "guard links are minted by supervisors and admins",
    )?;
    let state = call.state.clone();
    // The address the supervisor reached the appliance at is the one the phone will use.
    let authority = crate::http::authority(&call.req);
    let body: GuardLinkBody = call.json().await?;
    let org = match (who.org.as_deref(), body.org.as_deref()) {
        (Some(own), Some(asked)) if own != asked => {
            return Err(HttpError::new(
                ErrorCode::Forbidden,
                "guard links are minted for your own organization only",
            ))
        }
        (Some(own), _) => own.to_string(),
        (None, Some(asked)) if who.is(Role::Admin) => asked.to_string(),
        (None, _) => {
            return Err(HttpError::new(
                ErrorCode::BadRequest,
                "`org` is required for an admin without an organization",
            ))
        }
    };
    // The guard's id names its channels: it must be a valid channel segment.
    if Target::parse(&names::location(&body.guard), Some(&org), None).is_err() {
        return Err(HttpError::new(
            ErrorCode::BadRequest,
            "`guard` must be 1–128 letters, digits or _ - . @ :",
        ));
    }
    // A link makes a guard identity: never one of an id that is someone else in this org (a
    // supervisor's or a service's), which would read its queue and speak in its name.
    let key = crate::auth::principal_key(Some(&org), &body.guard);
    let member: Option<Member> = state.store.load(Record::Member { key: &key }).await?;
    if member.is_some_and(|m| m.holds_other_than(Role::Guard)) || *who.user == *body.guard {
        return Err(HttpError::new(
            ErrorCode::Conflict,
            format!(
                "`{}` holds another role in {org}: a guard link is for a guard's own id",
                body.guard
            ),
        ));
    }
    let link = state
        .auth
        .mint_link(
            &body.guard,
            Some(&org),
            &[Role::Guard],
            GUARD_LINK_TTL,
            body.name.as_deref(),
        )
        .map_err(|e| HttpError::new(ErrorCode::Internal, e.to_string()))?;
    tracing::info!(guard = %body.guard, %org, by = %who.user, "guard link minted");
    let path = format!("/guard#link={link}");
    let mut answer = serde_json::json!({
        "path": path,
        "link": link,
        "expiresIn": GUARD_LINK_TTL.as_secs(),
    });
    if let Some(authority) = authority {
        let url = format!("https://{authority}{path}");
        let qr = crate::dashboard::qr_svg(&url, 320)
            .map_err(|e| HttpError::new(ErrorCode::Internal, format!("QR code: {e}")))?;
        answer["qr"] = qr.into();
        answer["url"] = url.into();
    }
    Ok(json_response(201, &answer))
}
