//! The patrol routes: checkpoints (with their signed codes), tours, their current round, and
//! guards' scans. An admin names the org with `?org=`; everyone else acts in their own.

use hyper::Response;

use super::extract::Call;
use crate::http::{json_response, Body, HttpError};

/// Each QR code's size on the sheet, px (about 5 cm printed at 96 dpi).
const QR_PX: u32 = 200;

/// The most scans one listing answers.
const MAX_LISTED_SCANS: usize = 1000;

/// `GET /api/v1/checkpoints?org=`: the org's checkpoints, each with its `code`.
pub async fn checkpoints(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = call.query().get("org").cloned();
    let all = call.state.patrols.checkpoints(&who, org.as_deref()).await?;
    Ok(json_response(200, &all))
}

/// `GET /api/v1/checkpoints/sheet?org=&site=`: the printable page of the org's (or a site's)
/// checkpoint QR codes (supervisors, admins).
pub async fn sheet(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let q = call.query();
    let html = call
        .state
        .patrols
        .sheet(
            &who,
            q.get("org").map(String::as_str),
            q.get("site").map(String::as_str),
            &|code| crate::dashboard::qr_svg(code, QR_PX).ok(),
        )
        .await?;
    Ok(crate::dashboard::page(html))
}

/// `POST /api/v1/checkpoints?org=`: creates one (supervisors, admins).
pub async fn create_checkpoint(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = call.query().get("org").cloned();
    let state = call.state.clone();
    let spec = call.json().await?;
    let made = state
        .patrols
        .create_checkpoint(&who, org.as_deref(), spec)
        .await?;
    Ok(json_response(201, &made))
}

/// `PUT /api/v1/checkpoints/{id}?org=`: replaces one; its code stays.
pub async fn replace_checkpoint(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = call.query().get("org").cloned();
    let id = call.param(0).to_string();
    let state = call.state.clone();
    let spec = call.json().await?;
    let made = state
        .patrols
        .replace_checkpoint(&who, org.as_deref(), &id, spec)
        .await?;
    Ok(json_response(200, &made))
}

/// `DELETE /api/v1/checkpoints/{id}?org=`: deletes one no tour lists.
pub async fn delete_checkpoint(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = call.query().get("org").cloned();
    let id = call.param(0);
    call.state
        .patrols
        .delete_checkpoint(&who, org.as_deref(), id)
        .await?;
    Ok(json_response(200, &serde_json::json!({ "deleted": id })))
}

/// `GET /api/v1/tours?org=`: the org's tours.
pub async fn tours(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = call.query().get("org").cloned();
    Ok(json_response(
        200,
        &call.state.patrols.tours(&who, org.as_deref()).await?,
    ))
}

/// `GET /api/v1/tours/current`: the calling guard's tours, each with its round open or next and
/// what is left to scan.
pub async fn current_tours(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    Ok(json_response(
        200,
        &call.state.patrols.current_tours(&who).await?,
    ))
}

/// `POST /api/v1/tours?org=`: creates one (supervisors, admins) and arms its first round.
pub async fn create_tour(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = call.query().get("org").cloned();
    let state = call.state.clone();
    let spec = call.json().await?;
    let made = state
        .patrols
        .create_tour(&who, org.as_deref(), spec)
        .await?;
    Ok(json_response(201, &made))
}

/// `PUT /api/v1/tours/{id}?org=`: replaces one.
pub async fn replace_tour(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = call.query().get("org").cloned();
    let id = call.param(0).to_string();
    let state = call.state.clone();
    let spec = call.json().await?;
    let made = state
        .patrols
        .replace_tour(&who, org.as_deref(), &id, spec)
        .await?;
    Ok(json_response(200, &made))
}

/// `DELETE /api/v1/tours/{id}?org=`: deletes one with its round and timer.
pub async fn delete_tour(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = call.query().get("org").cloned();
    let id = call.param(0);
    call.state
        .patrols
        .delete_tour(&who, org.as_deref(), id)
        .await?;
    Ok(json_response(200, &serde_json::json!({ "deleted": id })))
}

/// `GET /api/v1/tours/{id}/round?org=`: the tour's round open or next, with what was scanned.
pub async fn round(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = call.query().get("org").cloned();
    let id = call.param(0);
    Ok(json_response(
        200,
        &call
            .state
            .patrols
            .tour_round(&who, org.as_deref(), id)
            .await?,
    ))
}

/// `POST /api/v1/patrols/scans`: a guard's scan; 201 when recorded, 200 for a repeat.
pub async fn scan(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let state = call.state.clone();
    let spec = call.json().await?;
    let result = state.patrols.scan(&who, spec).await?;
    Ok(json_response(
        if result.recorded { 201 } else { 200 },
        &result,
    ))
}

/// `GET /api/v1/patrols/scans?org=&user=&tour=`: scans, newest first (a guard its own).
pub async fn scans(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let q = call.query();
    Ok(json_response(
        200,
        &call
            .state
            .patrols
            .scans(
                &who,
                q.get("org").map(String::as_str),
                q.get("user").map(String::as_str),
                q.get("tour").map(String::as_str),
                MAX_LISTED_SCANS,
            )
            .await?,
    ))
}
