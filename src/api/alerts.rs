//! The alert routes: list, raise (the REST fallback of a guard's emergency), read,
//! acknowledge and resolve.

use hyper::Response;
use serde::Deserialize;

use super::extract::{number, Call};
use std::collections::HashMap;

use crate::alerts::{AlertQuery, AlertState, AlertType};
use crate::failure::ErrorCode;
use crate::http::{json_response, Body, HttpError};
use crate::hub::Publish;

#[derive(Deserialize, Default)]
struct NoteBody {
    #[serde(default)]
    note: Option<String>,
}

/// Alerts one listing returns at most, and by default.
const LIST_MAX: usize = 1000;
const LIST_DEFAULT: usize = 500;

/// The header that says a listing left out older alerts that match (for want of `limit` or of
/// `limits.max_response_bytes`): ask again with `to` = the oldest `created_at` listed − 1.
pub const TRUNCATED_HEADER: &str = "lookout-truncated";

/// `GET /api/v1/alerts?state=&type=&user=&since=&from=&to=&limit=`: the alerts the caller may
/// see, newest first, at most `limit` and `limits.max_response_bytes`.
pub async fn list(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let params = call.query();
    let query = alert_query(&params)?;
    let limit = number(&params, "limit", LIST_DEFAULT)?;
    if limit == 0 || limit > LIST_MAX {
        return Err(HttpError::new(
            ErrorCode::BadRequest,
            format!("`limit` is 1 to {LIST_MAX}"),
        ));
    }
    let alerts = call.state.field.alerts().list(&who, &query).await?;
    let mut left = call.state.hub.limits().max_response_bytes;
    let mut listed = Vec::new();
    for alert in &alerts {
        let value = serde_json::to_value(alert).map_err(|e| {
            HttpError::new(ErrorCode::Internal, format!("cannot encode an alert: {e}"))
        })?;
        let size = value.to_string().len() + 1;
        if listed.len() == limit || (size > left && !listed.is_empty()) {
            break;
        }
        left = left.saturating_sub(size);
        listed.push(value);
    }
    let truncated = listed.len() < alerts.len();
    let mut response = json_response(200, &listed);
    if truncated {
        response.headers_mut().insert(
            TRUNCATED_HEADER,
            hyper::header::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// The listing's conditions from its query string; an unknown state or type is refused.
fn alert_query(params: &HashMap<String, String>) -> Result<AlertQuery, HttpError> {
    let state = match params.get("state").map(String::as_str) {
        None | Some("") => None,
        Some("open") => Some(AlertState::Open),
        Some("acknowledged") => Some(AlertState::Acknowledged),
        Some("resolved") => Some(AlertState::Resolved),
        Some(other) => {
            return Err(HttpError::new(
                ErrorCode::BadRequest,
                format!("unknown state `{other}` (open, acknowledged, resolved)"),
            ))
        }
    };
    let kind = match params.get("type").map(String::as_str) {
        None | Some("") => None,
        Some(name) => Some(
            serde_json::from_value::<AlertType>(serde_json::Value::String(name.to_owned()))
                .map_err(|_| {
                    HttpError::new(
                        ErrorCode::BadRequest,
                        format!(
                            "unknown type `{name}` ({})",
                            AlertType::ALL.map(AlertType::name).join(", ")
                        ),
                    )
                })?,
        ),
    };
    let time = |name: &str| {
        params
            .contains_key(name)
            .then(|| number(params, name, 0u64))
            .transpose()
    };
    Ok(AlertQuery {
        state,
        kind,
        user: params.get("user").filter(|u| !u.is_empty()).cloned(),
        since: time("since")?,
        from: time("from")?,
        to: time("to")?,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAlertBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    message: Option<String>,
    /// For services: the guard concerned; guards raise their own.
    #[serde(default)]
    user: Option<String>,
}

/// The REST fallback of a guard's emergency publish: same channel, same rights, same alert.
pub async fn create(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let state = call.state.clone();
    let body: NewAlertBody = call.json().await?;
    let user = body.user.unwrap_or_else(|| who.user.to_string());
    let mut data = serde_json::json!({"type": body.kind});
    if let Some(p) = body.priority {
        data["priority"] = p.into();
    }
    if let Some(m) = body.message {
        data["message"] = m.into();
    }
    let data = rmpv::ext::to_value(&data)
        .map_err(|e| HttpError::new(ErrorCode::BadRequest, e.to_string()))?;
    let channel = crate::channel::names::emergency(&user);
    let published = state
        .field
        .publish(
            &who,
            Publish {
                channel: &channel,
                to: None,
                owner: None,
                data,
                ack_required: false,
                idempotency_key: None,
            },
        )
        .await?;
    let id = published.alert_id.unwrap_or_default();
    Ok(json_response(
        201,
        &state.field.alerts().get(&who, &id).await?,
    ))
}

/// `GET /api/v1/alerts/{id}`.
pub async fn get(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let alert = call.state.field.alerts().get(&who, call.param(0)).await?;
    Ok(json_response(200, &alert))
}

/// `POST /api/v1/alerts/{id}/ack` with an optional `{"note"}`.
pub async fn acknowledge(call: Call) -> Result<Response<Body>, HttpError> {
    transition(call, AlertState::Acknowledged).await
}

/// `POST /api/v1/alerts/{id}/resolve` with an optional `{"note"}`.
pub async fn resolve(call: Call) -> Result<Response<Body>, HttpError> {
    transition(call, AlertState::Resolved).await
}

async fn transition(call: Call, to: AlertState) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let (state, id) = (call.state.clone(), call.param(0).to_string());
    let body: NoteBody = call.json_or_default().await?;
    let alerts = state.field.alerts();
    let alert = match to {
        AlertState::Acknowledged => alerts.acknowledge(&who, &id, body.note).await?,
        _ => {
            alerts
                .resolve(Some(&who), &id, &who.user, body.note, Vec::new())
                .await?
        }
    };
    Ok(json_response(200, &alert))
}
