//! The REST API of the design: publish, broadcasts, history and long-poll, Server-Sent Events,
//! field operations, alerts, operations and metrics.
//!
//! [`ROUTES`] is the one route table: a request is matched against it by path and method, and
//! a path it knows under other methods answers 405 with `Allow`. Handlers live by concern
//! ([`publish`], [`history`], [`events`], [`field`], [`alerts`], [`enroll`], [`devices`],
//! [`admin`], [`metrics`], [`welfare`], [`patrols`], [`incidents`], [`reports`]) and read requests through [`extract`]. Same JWT and rights as the socket (`Authorization:
//! Bearer`); every error is `{"error":{"code","message"}}` with the matching status, made by
//! `crate::http` from the failure. Bad input is answered, not logged as an error; 5xx details
//! are logged and never sent to the client.

pub mod admin;
pub mod alerts;
pub mod devices;
pub mod enroll;
pub mod events;
pub mod extract;
pub mod field;
pub mod history;
pub mod incidents;
pub mod messages;
pub mod metrics;
pub mod patrols;
pub mod publish;
pub mod reports;
pub mod welfare;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW};
use hyper::{Method, Request, Response};
use tracing::Instrument;

use self::extract::Call;
use crate::app::AppState;
use crate::failure::ErrorCode;
use crate::http::{Body, HttpError};

/// What a handler returns.
type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, HttpError>> + Send>>;

/// One route: a method, a path pattern (`{name}` matches one segment) and its handler.
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path, e.g. `/api/v1/alerts/{id}/ack`.
    pub path: &'static str,
    handler: fn(Call) -> Answer,
}

macro_rules! routes {
    ($($method:ident $path:literal => $handler:path,)*) => {
        [$(Route {
            method: Method::$method,
            path: $path,
            handler: |call| Box::pin($handler(call)),
        },)*]
    };
}

/// Every REST route.
pub static ROUTES: &[Route] = &routes! {
    GET "/healthz" => admin::healthz,
    GET "/readyz" => admin::readyz,
    GET "/metrics" => metrics::metrics,
    GET "/api/v1/channels/history" => history::history,
    GET "/api/v1/poll" => history::poll,
    GET "/api/v1/events" => events::events,
    POST "/api/v1/publish" => publish::publish,
    POST "/api/v1/broadcast/system" => publish::system,
    POST "/api/v1/broadcast/maintenance" => publish::maintenance,
    POST "/api/v1/auth/link" => admin::exchange_link,
    POST "/api/v1/guard-links" => enroll::mint,
    GET "/api/v1/devices" => devices::list,
    POST "/api/v1/devices/{id}/revoke" => devices::revoke,
    GET "/api/v1/site" => field::site,
    GET "/api/v1/site/plan" => field::site_plan,
    GET "/api/v1/geofences" => field::fences,
    POST "/api/v1/geofences" => field::create_fence,
    PUT "/api/v1/geofences/{id}" => field::replace_fence,
    DELETE "/api/v1/geofences/{id}" => field::delete_fence,
    GET "/api/v1/alerts" => alerts::list,
    POST "/api/v1/alerts" => alerts::create,
    GET "/api/v1/alerts/{id}" => alerts::get,
    POST "/api/v1/alerts/{id}/ack" => alerts::acknowledge,
    POST "/api/v1/alerts/{id}/resolve" => alerts::resolve,
    GET "/api/v1/locations" => field::locations,
    GET "/api/v1/locations/{user}/history" => history::locations,
    GET "/api/v1/shifts" => field::shifts,
    POST "/api/v1/shifts" => field::create_shift,
    DELETE "/api/v1/shifts/{id}" => field::delete_shift,
    GET "/api/v1/shifts/{id}/report.pdf" => reports::pdf,
    GET "/api/v1/shifts/{id}/report.csv" => reports::csv,
    GET "/api/v1/tracking/stats" => field::tracking_stats,
    GET "/api/v1/welfare/settings" => welfare::settings,
    PUT "/api/v1/welfare/settings" => welfare::set_settings,
    DELETE "/api/v1/welfare/settings" => welfare::remove_settings,
    GET "/api/v1/welfare/guards" => welfare::guards,
    GET "/api/v1/welfare/status" => welfare::status,
    POST "/api/v1/welfare/ok" => welfare::check_in,
    POST "/api/v1/welfare/start" => welfare::start,
    POST "/api/v1/welfare/stop" => welfare::stop,
    PUT "/api/v1/welfare/pin" => welfare::set_pins,
    POST "/api/v1/welfare/pin" => welfare::enter_pin,
    GET "/api/v1/checkpoints" => patrols::checkpoints,
    GET "/api/v1/checkpoints/sheet" => patrols::sheet,
    POST "/api/v1/checkpoints" => patrols::create_checkpoint,
    PUT "/api/v1/checkpoints/{id}" => patrols::replace_checkpoint,
    DELETE "/api/v1/checkpoints/{id}" => patrols::delete_checkpoint,
    GET "/api/v1/tours" => patrols::tours,
    GET "/api/v1/tours/current" => patrols::current_tours,
    POST "/api/v1/tours" => patrols::create_tour,
    PUT "/api/v1/tours/{id}" => patrols::replace_tour,
    DELETE "/api/v1/tours/{id}" => patrols::delete_tour,
    GET "/api/v1/tours/{id}/round" => patrols::round,
    POST "/api/v1/patrols/scans" => patrols::scan,
    GET "/api/v1/patrols/scans" => patrols::scans,
    POST "/api/v1/incidents" => incidents::file,
    GET "/api/v1/incidents" => incidents::list,
    GET "/api/v1/incidents/{id}" => incidents::get,
    PUT "/api/v1/incidents/{id}/photos/{n}" => incidents::put_photo,
    GET "/api/v1/incidents/{id}/photos/{n}" => incidents::photo,
    POST "/api/v1/incidents/{id}/comments" => incidents::comment,
    POST "/api/v1/incidents/{id}/close" => incidents::close,
    GET "/api/v1/presence" => field::presence,
    GET "/api/v1/messages" => messages::conversation,
    GET "/api/v1/websocket/stats" => admin::stats,
    GET "/api/v1/notify/status" => admin::notify_status,
    GET "/api/v1/arc/status" => admin::arc_status,
    GET "/api/v1/websocket/user/{user}/status" => admin::user_status,
};

impl Route {
    /// The path's parameters when `path` matches this route's pattern.
    fn matches(&self, path: &str) -> Option<Vec<String>> {
        let mut pattern = self.path.trim_matches('/').split('/');
        let mut segments = path.trim_matches('/').split('/');
        let mut params = Vec::new();
        loop {
            match (pattern.next(), segments.next()) {
                (None, None) => return Some(params),
                (Some(p), Some(s)) if p.starts_with('{') && p.ends_with('}') && !s.is_empty() => {
                    params.push(s.to_string())
                }
                (Some(p), Some(s)) if p == s => {}
                _ => return None,
            }
        }
    }
}

/// Serves one REST request.
pub async fn handle(
    state: Arc<AppState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("request", %method, %path);
    let mut allowed: Vec<&str> = Vec::new();
    for route in ROUTES {
        let Some(params) = route.matches(&path) else {
            continue;
        };
        if route.method != method {
            allowed.push(route.method.as_str());
            continue;
        }
        // A token of a key the identity provider just added is known before any handler
        // checks it (handlers verify synchronously).
        if let Some(token) = crate::http::token_from(&req) {
            state.auth.know_key_of(&token).await;
        }
        let call = Call {
            state,
            peer,
            req,
            params,
        };
        return match (route.handler)(call).instrument(span).await {
            Ok(response) => response,
            Err(e) => e.response(),
        };
    }
    if allowed.is_empty() {
        return HttpError::new(ErrorCode::NotFound, format!("no route {path}")).response();
    }
    let mut response = HttpError::with_status(
        405,
        ErrorCode::BadRequest,
        format!("method {method} not allowed here"),
    )
    .response();
    if let Ok(allow) = HeaderValue::from_str(&allowed.join(", ")) {
        response.headers_mut().insert(ALLOW, allow);
    }
    response
}
