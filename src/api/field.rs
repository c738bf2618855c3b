//! The field routes: the site plan, geofences, last known locations, shifts, tracking
//! statistics and who is online.

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;

use super::extract::{number, Call};
use crate::failure::ErrorCode;
use crate::http::{full, json_response, Body, HttpError};

/// `GET /api/v1/site`: where the site plan is and what it covers.
pub async fn site(call: Call) -> Result<Response<Body>, HttpError> {
    call.who()?;
    let d = &call.state.config.dashboard;
    let plan = d
        .site_plan_bounds
        .filter(|_| d.site_plan.is_some())
        .map(|bounds| serde_json::json!({"url": "/api/v1/site/plan", "bounds": bounds}));
    Ok(json_response(200, &serde_json::json!({ "plan": plan })))
}

/// `GET /api/v1/site/plan`: the configured site-plan image.
pub async fn site_plan(call: Call) -> Result<Response<Body>, HttpError> {
    call.who()?;
    let path = call
        .state
        .config
        .dashboard
        .site_plan
        .as_ref()
        .ok_or_else(|| HttpError::new(ErrorCode::NotFound, "no site plan is configured"))?;
    let content_type = match path.extension().and_then(|e| e.to_str()) {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    let bytes = tokio::fs::read(path).await.map_err(|e| {
        tracing::error!(path = %path.display(), error = %e, "cannot read the site plan");
        HttpError::new(ErrorCode::Internal, "the site plan cannot be read")
    })?;
    let mut response = Response::new(full(Bytes::from(bytes)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

/// `GET /api/v1/geofences?org=`.
pub async fn fences(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = call.query().get("org").cloned();
    let fences = call.state.field.fences(&who, org.as_deref()).await?;
    Ok(json_response(200, &fences))
}

/// `POST /api/v1/geofences`.
pub async fn create_fence(call: Call) -> Result<Response<Body>, HttpError> {
    put_fence(call, None).await
}

/// `PUT /api/v1/geofences/{id}`.
pub async fn replace_fence(call: Call) -> Result<Response<Body>, HttpError> {
    let id = call.param(0).to_string();
    put_fence(call, Some(id)).await
}

async fn put_fence(call: Call, id: Option<String>) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let state = call.state.clone();
    let spec = call.json().await?;
    let fence = state.field.put_fence(&who, id.as_deref(), spec).await?;
    Ok(json_response(if id.is_none() { 201 } else { 200 }, &fence))
}

/// `DELETE /api/v1/geofences/{id}?org=`.
pub async fn delete_fence(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = call.query().get("org").cloned();
    let id = call.param(0);
    call.state
        .field
        .delete_fence(&who, id, org.as_deref())
        .await?;
    Ok(json_response(200, &serde_json::json!({"deleted": id})))
}

/// `GET /api/v1/locations[?org=]`: an admin may name the org; anyone else only their own.
pub async fn locations(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let asked = call.query().get("org").cloned();
    let mut locations = call.state.field.locations(&who).await?;
    if let Some(asked) = asked {
        let org = super::extract::org_of(&who, Some(&asked))?;
        locations.retain(|l| l.org == org);
    }
    Ok(json_response(200, &locations))
}

/// `GET /api/v1/shifts`.
pub async fn shifts(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    Ok(json_response(200, &call.state.field.shifts(&who).await?))
}

/// `POST /api/v1/shifts`.
pub async fn create_shift(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let state = call.state.clone();
    let spec = call.json().await?;
    Ok(json_response(
        201,
        &state.field.add_shift(&who, spec).await?,
    ))
}

/// `DELETE /api/v1/shifts/{id}`.
pub async fn delete_shift(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let id = call.param(0);
    call.state.field.delete_shift(&who, id).await?;
    Ok(json_response(200, &serde_json::json!({"deleted": id})))
}

/// `GET /api/v1/tracking/stats?user=&from=&to=&org=`: an admin names the org of `user`.
pub async fn tracking_stats(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let params = call.query();
    let who = super::extract::acting(who, params.get("org"))?;
    let _reading = call.state.hub.begin_read(&who)?;
    let from = number(&params, "from", 0u64)?;
    let to = number(&params, "to", u64::MAX)?;
    let user = params.get("user").map(String::as_str);
    Ok(json_response(
        200,
        &call
            .state
            .field
            .tracking_stats(&who, user, from, to)
            .await?,
    ))
}

/// `GET /api/v1/presence?org=`: who of the org is connected.
pub async fn presence(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let org = super::extract::org_of(&who, call.query().get("org").map(String::as_str))?;
    let online: Vec<serde_json::Value> = call
        .state
        .hub
        .online(&org)
        .into_iter()
        .map(|(user, name, connections, since)| {
            serde_json::json!({"user": user, "name": name, "connections": connections, "since": since})
        })
        .collect();
    Ok(json_response(
        200,
        &serde_json::json!({"org": org, "online": online}),
    ))
}
