//! The incident report routes: a guard files a report and sends its photos (raw JPEG, one
//! request each); supervisors list, read, comment on and close reports. An admin names the org
//! with `?org=`; everyone else acts in their own.

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use hyper::Response;
use serde::Deserialize;

use super::extract::Call;
use crate::failure::ErrorCode;
use crate::http::{full, json_response, Body, HttpError};

/// The most reports one listing answers (the newest).
const MAX_LISTED_INCIDENTS: usize = 1000;

/// A comment as sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentBody {
    text: String,
}

/// A close as sent.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    #[serde(default)]
    note: Option<String>,
}

/// The photo number of the path (`…/photos/{n}`).
fn photo_number(call: &Call) -> Result<u32, HttpError> {
    call.param(1).parse().map_err(|_| {
        HttpError::new(
            ErrorCode::BadRequest,
            "a photo's number must be a positive integer",
        )
    })
}

/// `POST /api/v1/incidents`: a guard files a report; 201 when filed, 200 for a resend.
pub async fn file(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let state = call.state.clone();
    let spec = call.json().await?;
    let result = state.patrols.file_incident(&who, spec).await?;
    Ok(json_response(if result.filed { 201 } else { 200 }, &result))
}

/// `GET /api/v1/incidents?org=&state=`: reports, newest first (a guard its own), at most
/// [`MAX_LISTED_INCIDENTS`].
pub async fn list(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let q = call.query();
    let all = call
        .state
        .patrols
        .incidents(
            &who,
            q.get("org").map(String::as_str),
            q.get("state").map(String::as_str),
            MAX_LISTED_INCIDENTS,
        )
        .await?;
    Ok(json_response(200, &all))
}

/// `GET /api/v1/incidents/{id}?org=`: one report.
pub async fn get(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = call.query().get("org").cloned();
    let incident = call
        .state
        .patrols
        .incident(&who, org.as_deref(), call.param(0))
        .await?;
    Ok(json_response(200, &incident))
}

/// `PUT /api/v1/incidents/{id}/photos/{n}`: the report's author sends photo `n` (raw JPEG, at
/// most `patrol.max_photo_bytes`, refused before it is read when the report takes no photo).
pub async fn put_photo(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let id = call.param(0).to_string();
    let n = photo_number(&call)?;
    let state = call.state.clone();
    state.patrols.photo_slot(&who, &id, n).await?;
    let limit = state.config.patrol.max_photo_bytes;
    let jpeg = match call.body_within(limit, "patrol.max_photo_bytes").await {
        Ok(jpeg) => jpeg,
        Err(e) => {
            if e.0.code == ErrorCode::TooLarge {
                state.patrols.count_refusal();
            }
            return Err(e);
        }
    };
    let incident = state
        .patrols
        .put_photo(&who, &id, n, Vec::from(jpeg))
        .await?;
    Ok(json_response(200, &incident))
}

/// `GET /api/v1/incidents/{id}/photos/{n}?org=`: photo `n` (`image/jpeg`).
pub async fn photo(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = call.query().get("org").cloned();
    let n = photo_number(&call)?;
    let jpeg = call
        .state
        .patrols
        .photo(&who, org.as_deref(), call.param(0), n)
        .await?;
    let mut response = Response::new(full(Bytes::from(jpeg)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    // The bytes are a phone's (only their JPEG start is checked): never read as anything else.
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // A photo of an incident is not for shared caches; the browser may keep its own copy.
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(response)
}

/// `POST /api/v1/incidents/{id}/comments?org=` `{text}`: a comment on an open report.
pub async fn comment(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = call.query().get("org").cloned();
    let id = call.param(0).to_string();
    let state = call.state.clone();
    let body: CommentBody = call.json().await?;
    let incident = state
        .patrols
        .comment_incident(&who, org.as_deref(), &id, body.text)
        .await?;
    Ok(json_response(200, &incident))
}

/// `POST /api/v1/incidents/{id}/close?org=` `{note?}`: closes an open report (supervisors,
/// admins).
pub async fn close(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = call.query().get("org").cloned();
    let id = call.param(0).to_string();
    let state = call.state.clone();
    let body: CloseBody = call.json_or_default().await?;
    let incident = state
        .patrols
        .close_incident(&who, org.as_deref(), &id, body.note)
        .await?;
    Ok(json_response(200, &incident))
}
