//! The lone-worker routes: welfare check-in settings, "I'm OK", lone work, the guard's
//! check-in state, and the PIN and duress PIN.

use hyper::Response;

use super::extract::Call;
use crate::http::{json_response, Body, HttpError};

/// Where the settings a response carries come from: `org`, `site` or `guard`.
const SETTINGS_FROM: &str = "lookout-settings-from";

/// `GET /api/v1/welfare/settings?org=&site=&user=`: the settings of the org, of a site or
/// those that apply to a guard; the `Lookout-Settings-From` header says whose they are.
pub async fn settings(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let params = call.query();
    let (settings, from) = call
        .state
        .field
        .welfare_settings(
            &who,
            params.get("org").map(String::as_str),
            params.get("user").map(String::as_str),
            params.get("site").map(String::as_str),
        )
        .await?;
    let mut response = json_response(200, &settings);
    response.headers_mut().insert(
        SETTINGS_FROM,
        hyper::header::HeaderValue::from_static(from.name()),
    );
    Ok(response)
}

/// `PUT /api/v1/welfare/settings?org=&site=&user=`: sets them (supervisors, admins).
pub async fn set_settings(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let params = call.query();
    let state = call.state.clone();
    let body = call.json().await?;
    let settings = state
        .field
        .set_welfare_settings(
            &who,
            params.get("org").map(String::as_str),
            params.get("user").map(String::as_str),
            params.get("site").map(String::as_str),
            Some(body),
        )
        .await?;
    Ok(json_response(200, &settings))
}

/// `DELETE /api/v1/welfare/settings?site=|user=`: a site or a guard follows the org's
/// settings again.
pub async fn remove_settings(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let params = call.query();
    call.state
        .field
        .set_welfare_settings(
            &who,
            params.get("org").map(String::as_str),
            params.get("user").map(String::as_str),
            params.get("site").map(String::as_str),
            None,
        )
        .await?;
    Ok(json_response(200, &serde_json::json!({ "removed": true })))
}

/// `GET /api/v1/welfare/guards?org=`: every guard of the org with lone-worker state, for the
/// dashboard (supervisors, admins).
pub async fn guards(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = call.query().get("org").cloned();
    Ok(json_response(
        200,
        &call
            .state
            .field
            .welfare_guards(&who, org.as_deref())
            .await?,
    ))
}

/// `POST /api/v1/welfare/ok`: "I'm OK", the guard's next deadline one interval from now.
pub async fn check_in(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    Ok(json_response(200, &call.state.field.check_in(&who).await?))
}

/// `POST /api/v1/welfare/start`: the guard starts a session of lone work.
pub async fn start(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    Ok(json_response(
        200,
        &call.state.field.start_lone_work(&who).await?,
    ))
}

/// `POST /api/v1/welfare/stop`: the guard ends its lone work (only without a PIN set).
pub async fn stop(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    Ok(json_response(
        200,
        &call.state.field.stop_lone_work(&who).await?,
    ))
}

/// `GET /api/v1/welfare/status?user=`: the caller's check-in state, or a guard's.
pub async fn status(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let user = call.query().get("user").cloned();
    Ok(json_response(
        200,
        &call
            .state
            .field
            .welfare_status(&who, user.as_deref())
            .await?,
    ))
}

/// `PUT /api/v1/welfare/pin`: the guard sets its PIN and duress PIN.
pub async fn set_pins(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let state = call.state.clone();
    let spec = call.json().await?;
    state.field.set_pins(&who, spec).await?;
    Ok(json_response(200, &serde_json::json!({ "set": true })))
}

/// `POST /api/v1/welfare/pin`: a PIN entered in the app; the same answer for the PIN and the
/// duress PIN.
pub async fn enter_pin(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let state = call.state.clone();
    let entry = call.json().await?;
    Ok(json_response(
        200,
        &state.field.enter_pin(&who, entry).await?,
    ))
}
