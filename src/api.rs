//! The REST API of the design: publish, broadcasts, stats, user status and health.
//!
//! Same JWT and rights as the socket (`Authorization: Bearer`); every error is
//! `{"error":{"code","message"}}` with the matching status. Bad input is answered, not logged
//! as an error; 5xx details are logged here and never sent to the client.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::auth::{Identity, Role};
use crate::hub::{HubError, Publish, Published};
use crate::protocol::ErrorCode;
use crate::server::AppState;
use crate::transport::upgrade::token_from;
use crate::transport::Body;

/// A REST failure: status, stable code and message.
#[derive(Debug)]
pub struct ApiError {
    status: u16,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: code.http_status(),
            code,
            message: message.into(),
        }
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        if let HubError::Store(inner) = &e {
            tracing::error!(error = %inner, "store failure");
            return ApiError::new(ErrorCode::Internal, "internal error");
        }
        ApiError::new(e.code(), e.to_string())
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: ErrorCode,
    message: &'a str,
}

/// A JSON error response.
pub fn error_response(status: u16, code: ErrorCode, message: &str) -> Response<Body> {
    let body = ErrorBody {
        error: ErrorDetail { code, message },
    };
    json_response(status, &body)
}

/// A JSON response.
pub fn json_response<T: Serialize>(status: u16, value: &T) -> Response<Body> {
    let (status, bytes) = match serde_json::to_vec(value) {
        Ok(b) => (status, Bytes::from(b)),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode response");
            (
                500,
                Bytes::from_static(br#"{"error":{"code":"internal","message":"internal error"}}"#),
            )
        }
    };
    let mut response = Response::new(Body::new(bytes));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Serves one REST request.
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("request", %method, %path);
    match route(&state, req).instrument(span).await {
        Ok(response) => response,
        Err(e) => error_response(e.status, e.code, &e.message),
    }
}

async fn route(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["healthz"]) => {
            if state.hub.store().healthy() {
                Ok(json_response(200, &serde_json::json!({"status": "ok"})))
            } else {
                Ok(json_response(
                    503,
                    &serde_json::json!({"status": "store failed"}),
                ))
            }
        }
        (Method::GET, ["api", "v1", "channels", "history"]) => history(state, &req),
        (Method::GET, ["api", "v1", "poll"]) => poll(state, &req).await,
        (Method::POST, ["api", "v1", "publish"]) => publish(state, req).await,
        (Method::POST, ["api", "v1", "broadcast", "system"]) => broadcast(state, req, false).await,
        (Method::POST, ["api", "v1", "broadcast", "maintenance"]) => {
            broadcast(state, req, true).await
        }
        (Method::GET, ["api", "v1", "websocket", "stats"]) => stats(state, &req),
        (Method::GET, ["api", "v1", "websocket", "user", user, "status"]) => {
            let who = authenticate(state, &req)?;
            if !state.hub.may_see_user(&who, user) {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "not allowed to see this user",
                ));
            }
            Ok(json_response(200, &state.hub.user_status(user)))
        }
        (_, ["healthz"])
        | (_, ["api", "v1", "publish"])
        | (_, ["api", "v1", "broadcast", _])
        | (_, ["api", "v1", "websocket", "stats"])
        | (_, ["api", "v1", "channels", "history"])
        | (_, ["api", "v1", "poll"])
        | (_, ["api", "v1", "websocket", "user", _, "status"]) => Err(ApiError {
            status: 405,
            code: ErrorCode::BadRequest,
            message: format!("method {method} not allowed here"),
        }),
        _ => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no route {path}"),
        )),
    }
}

fn authenticate<B>(state: &AppState, req: &Request<B>) -> Result<Identity, ApiError> {
    let fail = |message: String| {
        state
            .hub
            .stats
            .auth_failures
            .fetch_add(1, Ordering::Relaxed);
        ApiError::new(ErrorCode::Unauthorized, message)
    };
    let token = token_from(req).ok_or_else(|| fail("missing token".into()))?;
    state.auth.verify(&token).map_err(|e| fail(e.to_string()))
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let limit = state.config.limits.max_message_size;
    let body = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::new(
                    ErrorCode::TooLarge,
                    format!("body larger than {limit} bytes"),
                )
            } else {
                ApiError::new(ErrorCode::BadRequest, format!("reading body: {e}"))
            }
        })?
        .to_bytes();
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("invalid JSON body: {e}")))
}

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
}

async fn publish(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let who = authenticate(state, &req)?;
    if !(who.is(Role::Service) || who.is(Role::Admin)) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "REST publish is for services and admins",
        ));
    }
    let body: PublishBody = read_json(state, req).await?;
    let recipient = body.user.as_deref().or(body.to.as_deref());
    let published = state
        .hub
        .publish(
            &who,
            Publish {
                channel: &body.channel,
                to: recipient,
                owner: body.owner.as_deref(),
                data: body.data,
                ack_required: body.ack_required,
            },
        )
        .await?;
    Ok(published_response(&published))
}

fn published_response(p: &Published) -> Response<Body> {
    json_response(200, p)
}

async fn broadcast(
    state: &AppState,
    req: Request<Incoming>,
    maintenance: bool,
) -> Result<Response<Body>, ApiError> {
    let who = authenticate(state, &req)?;
    if maintenance && !who.is(Role::Admin) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "maintenance broadcasts are for admins",
        ));
    }
    let body: serde_json::Value = read_json(state, req).await?;
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
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("invalid data: {e}")))?;
    let published = state
        .hub
        .publish(
            &who,
            Publish {
                channel: "/topic/system",
                to: None,
                owner: None,
                data,
                ack_required: false,
            },
        )
        .await?;
    Ok(published_response(&published))
}

fn stats(state: &AppState, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let who = authenticate(state, req)?;
    if !who.is(Role::Admin) {
        return Err(ApiError::new(ErrorCode::Forbidden, "stats are for admins"));
    }
    let hub = &state.hub;
    let snapshot = hub
        .stats
        .snapshot(hub.users_online(), hub.active_channels());
    #[derive(Serialize)]
    struct Stats<'a> {
        epoch: &'a str,
        uptime_seconds: u64,
        #[serde(flatten)]
        counters: crate::metrics::Snapshot,
    }
    Ok(json_response(
        200,
        &Stats {
            epoch: hub.epoch(),
            uptime_seconds: state.started.elapsed().as_secs(),
            counters: snapshot,
        },
    ))
}

/// Query parameters as a map; a repeated key keeps its last value.
fn query(req: &Request<Incoming>) -> std::collections::HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn number<T: std::str::FromStr>(
    params: &std::collections::HashMap<String, String>,
    name: &str,
    default: T,
) -> Result<T, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("`{name}` must be a non-negative integer"),
            )
        }),
    }
}

/// Largest page a history or poll request returns per channel.
const MAX_PAGE: usize = 1000;
/// Longest a long-poll request may wait.
const MAX_POLL: u64 = 60;

fn history(state: &AppState, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let who = authenticate(state, req)?;
    let params = query(req);
    let channel = params
        .get("channel")
        .ok_or_else(|| ApiError::new(ErrorCode::BadRequest, "`channel` is required"))?;
    let since = number(&params, "since", 0u64)?;
    let limit = number(&params, "limit", 100usize)?.clamp(1, MAX_PAGE);
    let history = state.hub.history(&who, channel, since, limit)?;
    Ok(json_response(200, &history))
}

async fn poll(state: &AppState, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let who = authenticate(state, req)?;
    let params = query(req);
    let names: Vec<String> = params
        .get("channels")
        .map(|c| {
            c.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() || names.len() > 32 {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "`channels` must name 1 to 32 channels, comma-separated",
        ));
    }
    // `since` is one seq for every channel, or one per channel in the same order.
    let sinces: Vec<u64> = match params.get("since") {
        None => vec![0; names.len()],
        Some(s) => s
            .split(',')
            .map(|v| v.parse())
            .collect::<Result<_, _>>()
            .map_err(|_| ApiError::new(ErrorCode::BadRequest, "`since` must be seqs"))?,
    };
    let sinces = match sinces.len() {
        1 => vec![sinces[0]; names.len()],
        n if n == names.len() => sinces,
        _ => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "`since` must be one seq or one per channel",
            ))
        }
    };
    let wait = number(&params, "timeout", 25u64)?.min(MAX_POLL);
    let limit = number(&params, "limit", 100usize)?.clamp(1, MAX_PAGE);
    let channels: Vec<(String, u64)> = names.into_iter().zip(sinces).collect();
    let result = state
        .hub
        .poll(&who, &channels, std::time::Duration::from_secs(wait), limit)
        .await?;
    Ok(json_response(
        200,
        &serde_json::json!({ "channels": result }),
    ))
}
