//! `POST /api/v1/publish` and the system broadcasts: what services and admins publish over
//! REST, with the same rights and meaning as a publish on the socket.

use hyper::Response;
use serde::Deserialize;

use super::extract::Call;
use crate::auth::Role;
use crate::failure::ErrorCode;
use crate::http::{json_response, Body, HttpError};
use crate::hub::Publish;

#[derive(Deserialize)]
struct PublishBody {
    channel: String,
    #[serde(default = "crate::protocol::nil")]
    data: rmpv::Value,
    /// Recipient of a `/user/queue/*` message.
    #[serde(default)]
    user: Option<String>,
    /// Same as `user`, as the socket protocol names it.
    #[serde(default)]
    to: Option<String>,
    /// Owner of a job, on its first publish.
    #[serde(default)]
    owner: Option<String>,
    #[serde(default, alias = "ack")]
    ack_required: bool,
    /// A retry with the same key gets the first reply (also as the `Idempotency-Key` header).
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// `POST /api/v1/publish`.
pub async fn publish(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who_is(
        &[Role::Service, Role::Admin],
        "REST publish is for services and admins",
    )?;
    let state = call.state.clone();
    let header_key = call.header("idempotency-key").map(str::to_string);
    let body: PublishBody = call.json().await?;
    let recipient = body.user.as_deref().or(body.to.as_deref());
    let idempotency_key = match (&header_key, &body.idempotency_key) {
        (Some(h), Some(b)) if h != b => {
            return Err(HttpError::new(
                ErrorCode::BadRequest,
                "the Idempotency-Key header and the body's idempotency_key differ",
            ))
        }
        (Some(k), _) | (None, Some(k)) => Some(k.as_str()),
        (None, None) => None,
    };
    let published = state
        .field
        .publish(
            &who,
            Publish {
                channel: &body.channel,
                to: recipient,
                owner: body.owner.as_deref(),
                data: body.data,
                ack_required: body.ack_required,
                idempotency_key,
            },
        )
        .await?;
    Ok(json_response(200, &published))
}

/// `POST /api/v1/broadcast/system`.
pub async fn system(call: Call) -> Result<Response<Body>, HttpError> {
    broadcast(call, false).await
}

/// `POST /api/v1/broadcast/maintenance`: admins only; the data says `kind: maintenance`.
pub async fn maintenance(call: Call) -> Result<Response<Body>, HttpError> {
    broadcast(call, true).await
}

async fn broadcast(call: Call, maintenance: bool) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    if maintenance && !who.is(Role::Admin) {
        return Err(HttpError::new(
            ErrorCode::Forbidden,
            "maintenance broadcasts are for admins",
        ));
    }
    let state = call.state.clone();
    let body: serde_json::Value = call.json().await?;
    let mut data = match body.get("data") {
        Some(d) => d.clone(),
        None => body,
    };
    if maintenance {
        data = match data {
            serde_json::Value::Object(mut map) => {
                map.insert("kind".into(), "maintenance".into());
                serde_json::Value::Object(map)
            }
            other => serde_json::json!({"kind": "maintenance", "message": other}),
        };
    }
    let data = rmpv::ext::to_value(&data)
        .map_err(|e| HttpError::new(ErrorCode::BadRequest, format!("invalid data: {e}")))?;
    let published = state
        .hub
        .publish(
            &who,
            Publish {
                channel: crate::channel::names::SYSTEM,
                to: None,
                owner: None,
                data,
                ack_required: false,
                idempotency_key: None,
            },
        )
        .await?;
    Ok(json_response(200, &published))
}
