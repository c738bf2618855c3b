//! The REST API of the design: publish, broadcasts, stats, user status and health.
//!
//! Same JWT and rights as the socket (`Authorization: Bearer`); every error is
//! `{"error":{"code","message"}}` with the matching status. Bad input is answered, not logged
//! as an error; 5xx details are logged here and never sent to the client.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::auth::{Identity, Role};
use crate::hub::{HubError, Publish};
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

impl From<crate::field::FieldError> for ApiError {
    fn from(e: crate::field::FieldError) -> Self {
        match e {
            crate::field::FieldError::Hub(h) => h.into(),
            e if e.code() == ErrorCode::Internal => {
                tracing::error!(error = %e, "field operation failed");
                ApiError::new(ErrorCode::Internal, "internal error")
            }
            e => ApiError::new(e.code(), e.to_string()),
        }
    }
}

impl From<crate::alerts::AlertError> for ApiError {
    fn from(e: crate::alerts::AlertError) -> Self {
        crate::field::FieldError::from(e).into()
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

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        ApiError::new(ErrorCode::Internal, "internal error")
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
    let mut response = Response::new(crate::transport::full(bytes));
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
        (Method::GET, ["readyz"]) => {
            // Ready: the store is open and healthy and the server is not shutting down.
            if state.hub.store().healthy() && !state.shutdown.is_cancelled() {
                Ok(json_response(200, &serde_json::json!({"status": "ready"})))
            } else {
                Ok(json_response(
                    503,
                    &serde_json::json!({"status": "not ready"}),
                ))
            }
        }
        (Method::GET, ["metrics"]) => {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &state.metrics)
                .map_err(|_| ApiError::new(ErrorCode::Internal, "cannot encode metrics"))?;
            let mut response = Response::new(crate::transport::full(Bytes::from(out)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            Ok(response)
        }
        (Method::GET, ["api", "v1", "channels", "history"]) => history(state, &req),
        (Method::POST, ["api", "v1", "auth", "link"]) => exchange_link(state, req).await,
        (Method::GET, ["api", "v1", "site"]) => {
            authenticate(state, &req)?;
            let d = &state.config.dashboard;
            let plan = d
                .site_plan_bounds
                .filter(|_| d.site_plan.is_some())
                .map(|bounds| serde_json::json!({"url": "/api/v1/site/plan", "bounds": bounds}));
            Ok(json_response(200, &serde_json::json!({ "plan": plan })))
        }
        (Method::GET, ["api", "v1", "site", "plan"]) => site_plan(state, &req).await,
        (Method::GET, ["api", "v1", "geofences"]) => {
            let who = authenticate(state, &req)?;
            let org = query(&req).get("org").cloned();
            Ok(json_response(
                200,
                &state.field.fences(&who, org.as_deref())?,
            ))
        }
        (Method::POST, ["api", "v1", "geofences"]) => {
            let who = authenticate(state, &req)?;
            let spec = read_json(state, req).await?;
            Ok(json_response(
                201,
                &state.field.put_fence(&who, None, spec).await?,
            ))
        }
        (Method::PUT, ["api", "v1", "geofences", id]) => {
            let who = authenticate(state, &req)?;
            let id = id.to_string();
            let spec = read_json(state, req).await?;
            Ok(json_response(
                200,
                &state.field.put_fence(&who, Some(&id), spec).await?,
            ))
        }
        (Method::DELETE, ["api", "v1", "geofences", id]) => {
            let who = authenticate(state, &req)?;
            let org = query(&req).get("org").cloned();
            state.field.delete_fence(&who, id, org.as_deref()).await?;
            Ok(json_response(200, &serde_json::json!({"deleted": id})))
        }
        (Method::GET, ["api", "v1", "alerts"]) => list_alerts(state, &req),
        (Method::POST, ["api", "v1", "alerts"]) => create_alert(state, req).await,
        (Method::GET, ["api", "v1", "alerts", id]) => {
            let who = authenticate(state, &req)?;
            Ok(json_response(200, &state.field.alerts().get(&who, id)?))
        }
        (Method::POST, ["api", "v1", "alerts", id, action @ ("ack" | "resolve")]) => {
            let who = authenticate(state, &req)?;
            let (id, action) = (id.to_string(), action.to_string());
            let body: NoteBody = read_json_or_empty(state, req).await?;
            let alerts = state.field.alerts();
            let alert = if action == "ack" {
                alerts.acknowledge(&who, &id, body.note).await?
            } else {
                alerts
                    .resolve(Some(&who), &id, &who.user, body.note, Vec::new())
                    .await?
            };
            Ok(json_response(200, &alert))
        }
        (Method::GET, ["api", "v1", "locations"]) => {
            let who = authenticate(state, &req)?;
            Ok(json_response(200, &state.field.locations(&who)?))
        }
        (Method::GET, ["api", "v1", "locations", user, "history"]) => {
            location_history(state, &req, user)
        }
        (Method::GET, ["api", "v1", "shifts"]) => {
            let who = authenticate(state, &req)?;
            Ok(json_response(200, &state.field.shifts(&who)?))
        }
        (Method::POST, ["api", "v1", "shifts"]) => {
            let who = authenticate(state, &req)?;
            let spec = read_json(state, req).await?;
            Ok(json_response(
                201,
                &state.field.add_shift(&who, spec).await?,
            ))
        }
        (Method::DELETE, ["api", "v1", "shifts", id]) => {
            let who = authenticate(state, &req)?;
            state.field.delete_shift(&who, id).await?;
            Ok(json_response(200, &serde_json::json!({"deleted": id})))
        }
        (Method::GET, ["api", "v1", "tracking", "stats"]) => {
            let who = authenticate(state, &req)?;
            let params = query(&req);
            let from = number(&params, "from", 0u64)?;
            let to = number(&params, "to", u64::MAX)?;
            let user = params.get("user").map(String::as_str);
            Ok(json_response(
                200,
                &state.field.tracking_stats(&who, user, from, to)?,
            ))
        }
        (Method::GET, ["api", "v1", "presence"]) => {
            let who = authenticate(state, &req)?;
            let org = match (&who.org, query(&req).get("org")) {
                (_, Some(org)) if who.is(Role::Admin) => org.clone(),
                (Some(org), _) => org.to_string(),
                (None, _) => {
                    return Err(ApiError::new(
                        ErrorCode::BadRequest,
                        "an admin must name the `org`",
                    ))
                }
            };
            let online: Vec<serde_json::Value> = state
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
        (Method::GET, ["api", "v1", "poll"]) => poll(state, &req).await,
        (Method::GET, ["api", "v1", "events"]) => events(state, &req),
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
        | (_, ["readyz"])
        | (_, ["metrics"])
        | (_, ["api", "v1", "publish"])
        | (_, ["api", "v1", "broadcast", _])
        | (_, ["api", "v1", "websocket", "stats"])
        | (_, ["api", "v1", "channels", "history"])
        | (_, ["api", "v1", "geofences", ..])
        | (_, ["api", "v1", "alerts", ..])
        | (_, ["api", "v1", "locations", ..])
        | (_, ["api", "v1", "shifts", ..])
        | (_, ["api", "v1", "presence"])
        | (_, ["api", "v1", "tracking", "stats"])
        | (_, ["api", "v1", "site", ..])
        | (_, ["api", "v1", "auth", "link"])
        | (_, ["api", "v1", "poll"])
        | (_, ["api", "v1", "events"])
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
        state.hub.stats.auth_failed();
        ApiError::new(ErrorCode::Unauthorized, message)
    };
    let token = token_from(req).ok_or_else(|| fail("missing token".into()))?;
    state.auth.verify(&token).map_err(|e| fail(e.to_string()))
}

/// The request body, at most `limits.max_message_size` bytes.
async fn read_body(state: &AppState, req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let limit = state.config.limits.max_message_size;
    Ok(Limited::new(req.into_body(), limit)
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
        .to_bytes())
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("invalid JSON body: {e}")))
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    parse_json(&read_body(state, req).await?)
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
        .field
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
    Ok(json_response(200, &published))
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
    Ok(json_response(200, &published))
}

fn stats(state: &AppState, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let who = authenticate(state, req)?;
    // The appliance serves one site: its supervisors watch its operations on the dashboard.
    if !(who.is(Role::Admin) || who.is(Role::Supervisor)) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "stats are for admins and supervisors",
        ));
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
    let channels = channels_and_since(
        params.get("channels"),
        params.get("since").map(String::as_str),
    )?;
    let wait = number(&params, "timeout", 25u64)?.min(MAX_POLL);
    let limit = number(&params, "limit", 100usize)?.clamp(1, MAX_PAGE);
    let result = state
        .hub
        .poll(&who, &channels, std::time::Duration::from_secs(wait), limit)
        .await?;
    Ok(json_response(
        200,
        &serde_json::json!({ "channels": result }),
    ))
}

/// How long the dashboard session a sign-in link opens lasts.
const LINK_SESSION: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

#[derive(Deserialize)]
struct LinkBody {
    token: String,
}

/// `POST /api/v1/auth/link {"token"}`: exchanges a one-time sign-in link for a session token,
/// once. The link's id is recorded durably before the session token is handed out, so a link
/// seen in a browser history or a shoulder-surfed screen is worth nothing afterwards.
async fn exchange_link(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: LinkBody = read_json(state, req).await?;
    let link = state.auth.verify_link(&body.token).map_err(|e| {
        state.hub.stats.auth_failed();
        ApiError::new(ErrorCode::Unauthorized, e.to_string())
    })?;
    let store = state.hub.store();
    let key = crate::store::keys::Record::UsedLink { jti: &link.jti };
    // One exchange at a time, so two racing requests cannot both find the link unused.
    let _one = state.links.lock().await;
    if store.record::<u64>(key)?.is_some() {
        state.hub.stats.auth_failed();
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "this sign-in link was already used",
        ));
    }
    let ticket = store.write(&[crate::store::Change::put(
        key,
        &crate::protocol::now_millis(),
    )?])?;
    store.durable(ticket).await?;
    let token = state
        .auth
        .mint_session(&link, LINK_SESSION)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    tracing::info!(user = %link.identity.user, "sign-in link exchanged");
    Ok(json_response(
        200,
        &serde_json::json!({ "token": token, "expiresIn": LINK_SESSION.as_secs() }),
    ))
}

/// The configured site-plan image.
async fn site_plan(state: &AppState, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    authenticate(state, req)?;
    let path = state
        .config
        .dashboard
        .site_plan
        .as_ref()
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no site plan is configured"))?;
    let content_type = match path.extension().and_then(|e| e.to_str()) {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    let bytes = tokio::fs::read(path).await.map_err(|e| {
        tracing::error!(path = %path.display(), error = %e, "cannot read the site plan");
        ApiError::new(ErrorCode::Internal, "the site plan cannot be read")
    })?;
    let mut response = Response::new(crate::transport::full(Bytes::from(bytes)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

#[derive(Deserialize, Default)]
struct NoteBody {
    #[serde(default)]
    note: Option<String>,
}

/// Like [`read_json`], but an empty body reads as the default.
async fn read_json_or_empty<T: for<'de> Deserialize<'de> + Default>(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let body = read_body(state, req).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(&body)
}

fn list_alerts(state: &AppState, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    use crate::alerts::AlertState;
    let who = authenticate(state, req)?;
    let params = query(req);
    let filter = match params.get("state").map(String::as_str) {
        None | Some("") => None,
        Some("open") => Some(AlertState::Open),
        Some("acknowledged") => Some(AlertState::Acknowledged),
        Some("resolved") => Some(AlertState::Resolved),
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("unknown state `{other}` (open, acknowledged, resolved)"),
            ))
        }
    };
    let since = params
        .contains_key("since")
        .then(|| number(&params, "since", 0u64))
        .transpose()?;
    Ok(json_response(
        200,
        &state.field.alerts().list(&who, filter, since)?,
    ))
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
async fn create_alert(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let who = authenticate(state, &req)?;
    let body: NewAlertBody = read_json(state, req).await?;
    let user = body.user.unwrap_or_else(|| who.user.to_string());
    let mut data = serde_json::json!({"type": body.kind});
    if let Some(p) = body.priority {
        data["priority"] = p.into();
    }
    if let Some(m) = body.message {
        data["message"] = m.into();
    }
    let data = rmpv::ext::to_value(&data)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?;
    let channel = format!("/topic/emergency/{user}");
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
            },
        )
        .await?;
    let id = published.alert_id.unwrap_or_default();
    Ok(json_response(201, &state.field.alerts().get(&who, &id)?))
}

/// A user's location history from its channel log, by client time.
fn location_history(
    state: &AppState,
    req: &Request<Incoming>,
    user: &str,
) -> Result<Response<Body>, ApiError> {
    let who = authenticate(state, req)?;
    let params = query(req);
    let from = number(&params, "from", 0u64)?;
    let to = number(&params, "to", u64::MAX)?;
    let limit = number(&params, "limit", 1000usize)?.clamp(1, 10_000);
    let channel = format!("/topic/location/{user}");
    let mut since = 0;
    let mut points = Vec::new();
    loop {
        let page = state.hub.history(&who, &channel, since, MAX_PAGE)?;
        let Some(last) = page.messages.last() else {
            break;
        };
        since = last.seq;
        for m in page.messages {
            let Ok(loc) = crate::field::Location::parse(&m.data, std::time::Duration::MAX) else {
                continue;
            };
            if loc.ts >= from && loc.ts <= to {
                points.push(serde_json::json!({"seq": m.seq, "location": loc}));
            }
        }
        if points.len() >= limit || since >= page.head {
            break;
        }
    }
    points.truncate(limit);
    Ok(json_response(
        200,
        &serde_json::json!({"user": user, "points": points}),
    ))
}

/// Channels and their resume points from `channels=` and `since=` (one seq, or one per channel).
fn channels_and_since(
    names: Option<&String>,
    since: Option<&str>,
) -> Result<Vec<(String, u64)>, ApiError> {
    let names: Vec<String> = names
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
    let sinces: Vec<u64> = match since {
        None => vec![0; names.len()],
        Some(s) => s
            .split(',')
            .map(|v| v.trim().parse())
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
    Ok(names.into_iter().zip(sinces).collect())
}

/// Server-Sent Events: `GET /api/v1/events?channels=C1,C2&since=S1,S2`. Each event's `id` is
/// the seq reached on every channel (`S1,S2`), so a browser's automatic reconnect with
/// `Last-Event-ID` resumes exactly where it stopped. Same rights as subscribe.
fn events(state: &AppState, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let who = authenticate(state, req)?;
    let params = query(req);
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let since = last_event_id
        .as_deref()
        .or(params.get("since").map(String::as_str));
    let channels = channels_and_since(params.get("channels"), since)?;
    // Refuse before streaming: a forbidden channel is a 403, not an event.
    for (name, since) in &channels {
        state.hub.history(&who, name, *since, 1)?;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let hub = state.hub.clone();
    let shutdown = state.shutdown.clone();
    let keepalive = state.config.limits.ping_interval;
    tokio::spawn(async move {
        let (names, mut cursors): (Vec<String>, Vec<u64>) = channels.into_iter().unzip();
        if tx
            .send(Bytes::from_static(b"retry: 2000\n\n"))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let pairs: Vec<(String, u64)> =
                names.iter().cloned().zip(cursors.iter().copied()).collect();
            let polled = tokio::select! {
                _ = shutdown.cancelled() => return,
                polled = hub.poll(&who, &pairs, keepalive, 100) => polled,
            };
            let histories = match polled {
                Ok(h) => h,
                Err(e) => {
                    let event = format!(
                        "event: error\ndata: {}\n\n",
                        serde_json::json!({"code": e.code(), "message": e.to_string()})
                    );
                    let _ = tx.send(Bytes::from(event)).await;
                    return;
                }
            };
            let mut sent = false;
            for (i, history) in histories.iter().enumerate() {
                for m in &history.messages {
                    cursors[i] = m.seq;
                    let id: Vec<String> = cursors.iter().map(u64::to_string).collect();
                    let data = serde_json::json!({
                        "type": "message", "channel": history.channel, "seq": m.seq,
                        "timestamp": m.timestamp, "data": m.data, "epoch": history.epoch,
                    });
                    let event = format!("id: {}\nevent: message\ndata: {data}\n\n", id.join(","));
                    if tx.send(Bytes::from(event)).await.is_err() {
                        return;
                    }
                    sent = true;
                }
            }
            // A comment keeps proxies and the browser from timing the stream out.
            if !sent
                && tx
                    .send(Bytes::from_static(b": keep-alive\n\n"))
                    .await
                    .is_err()
            {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| {
            (
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)),
                rx,
            )
        })
    });
    let mut response = Response::new(http_body_util::StreamBody::new(stream).boxed());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
