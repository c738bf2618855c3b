//! Operating the appliance over REST: health and readiness, stats, a user's connection status,
//! and the exchange of a one-time sign-in link for a session token.

use hyper::Response;
use serde::{Deserialize, Serialize};

use super::extract::Call;
use crate::auth::Role;
use crate::failure::ErrorCode;
use crate::http::{json_response, Body, HttpError};
use crate::store::{Change, Record};

/// `GET /healthz`: the store is healthy.
pub async fn healthz(call: Call) -> Result<Response<Body>, HttpError> {
    Ok(status(call.state.store.healthy(), "ok", "store failed"))
}

/// `GET /readyz`: the store is open and healthy and the server is not shutting down. The
/// details name each alarm receiving centre's receiver and whether it answers: a receiver down
/// does not make this node unready (another node would fare no better), but it shows.
pub async fn readyz(call: Call) -> Result<Response<Body>, HttpError> {
    let ready = call.state.store.healthy() && !call.state.shutdown.is_cancelled();
    let arc = call.state.arc.clone();
    if arc.is_empty() {
        return Ok(status(ready, "ready", "not ready"));
    }
    let receivers: Vec<serde_json::Value> = arc
        .links()
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "up": r.up,
                "paths": r.paths,
            })
        })
        .collect();
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "details": { "arc": receivers },
    });
    Ok(json_response(if ready { 200 } else { 503 }, &body))
}

/// `GET /api/v1/arc/status`: each alarm receiving centre's receiver, its paths, outbox,
/// failures and latencies (admins and supervisors: the dashboard's operations panel). A
/// supervisor's counts of alarms waiting and refused are its own org's.
pub async fn arc_status(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who_is(
        &[Role::Admin, Role::Supervisor],
        "ARC status is for admins and supervisors",
    )?;
    let org = match who.is(Role::Admin) {
        true => None,
        false => Some(who.org.as_deref().unwrap_or_default()),
    };
    let arc = call.state.arc.clone();
    let receivers = arc.status(org).await?;
    Ok(json_response(
        200,
        &serde_json::json!({
            // Alarms waiting, all receivers together (the caller's org's for a supervisor).
            "outbox": receivers.iter().map(|r| r.pending).sum::<usize>(),
            // Dropped over arc.max_outbox, every org's: admins only.
            "dropped": org
                .is_none()
                .then(|| arc.dropped.load(std::sync::atomic::Ordering::Relaxed)),
            "receivers": receivers,
        }),
    ))
}

/// `{"status"}`: 200 when `ok`, else 503.
fn status(ok: bool, good: &str, bad: &str) -> Response<Body> {
    match ok {
        true => json_response(200, &serde_json::json!({ "status": good })),
        false => json_response(503, &serde_json::json!({ "status": bad })),
    }
}

/// `GET /api/v1/websocket/stats`: counters, for admins and supervisors.
/// `GET /api/v1/notify/status`: each webhook's outbox and failures (admins only).
pub async fn notify_status(call: Call) -> Result<Response<Body>, HttpError> {
    call.who_is(&[Role::Admin], "notification status is for admins")?;
    let hooks = call.state.field.alerts().hooks().clone();
    let webhooks = hooks.status().await?;
    Ok(json_response(
        200,
        &serde_json::json!({
            "webhooks": webhooks,
            "outbox": hooks.depth(),
            "dropped": hooks.dropped.load(std::sync::atomic::Ordering::Relaxed),
        }),
    ))
}

pub async fn stats(call: Call) -> Result<Response<Body>, HttpError> {
    // The appliance serves one site: its supervisors watch its operations on the dashboard.
    call.who_is(
        &[Role::Admin, Role::Supervisor],
        "stats are for admins and supervisors",
    )?;
    let state = &call.state;
    let hub = &state.hub;
    let snapshot = hub
        .stats
        .snapshot(hub.users_online(), hub.active_channels());
    #[derive(Serialize)]
    struct Stats<'a> {
        /// The running release.
        version: &'static str,
        epoch: &'a str,
        uptime_seconds: u64,
        #[serde(flatten)]
        counters: crate::counters::Snapshot,
        /// Guards whose latest fix waits for a worker: above zero, positions come faster
        /// than the server processes them.
        positions_waiting: usize,
        /// Fixes answered `shed` since start.
        positions_shed: u64,
    }
    Ok(json_response(
        200,
        &Stats {
            version: crate::version::VERSION,
            epoch: hub.epoch(),
            uptime_seconds: state.started.elapsed().as_secs(),
            counters: snapshot,
            positions_waiting: state.positions.waiting(),
            positions_shed: state
                .positions
                .shed
                .load(std::sync::atomic::Ordering::Relaxed),
        },
    ))
}

/// `GET /api/v1/websocket/user/{user}/status[?org=]`: a user of the caller's org (an admin
/// names the org).
pub async fn user_status(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let user = call.param(0);
    let org = super::extract::org_of(&who, call.query().get("org").map(String::as_str))?;
    let hub = &call.state.hub;
    if !hub.may_see_user(&who, &org, user) {
        return Err(HttpError::new(
            ErrorCode::Forbidden,
            "not allowed to see this user",
        ));
    }
    let key = crate::auth::principal_key(Some(&org), user);
    Ok(json_response(200, &hub.user_status(&key, user).await?))
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
pub async fn exchange_link(call: Call) -> Result<Response<Body>, HttpError> {
    let state = call.state.clone();
    let body: LinkBody = call.json().await?;
    let link = state.auth.verify_link(&body.token).map_err(|e| {
        state.hub.stats.auth_failed();
        HttpError::new(ErrorCode::Unauthorized, e.to_string())
    })?;
    let key = Record::UsedLink { jti: &link.jti };
    // On this node, one exchange at a time: the device quota's count is exact here. Across
    // nodes the link's single use is the store's (`put_new`), not this lock's.
    let _one = state.links.lock().await;
    // A guard's phone keeps its session for a shift; a dashboard's lasts LINK_SESSION.
    let guard_only = link.identity.roles.is_only(Role::Guard);
    if guard_only {
        // Before the link is marked used: a refused exchange can be retried after a revoke.
        let org = link.identity.org.as_deref().unwrap_or_default();
        super::devices::check_quota(&state, org).await?;
    }
    let used = crate::store::records::encode(&crate::clock::now_millis())?;
    let Some(ticket) = state.store.put_new(key, used).await? else {
        state.hub.stats.auth_failed();
        return Err(HttpError::new(
            ErrorCode::Unauthorized,
            "this sign-in link was already used",
        ));
    };
    state.store.durable(ticket).await?;
    let session = if guard_only {
        state.config.field.guard_session
    } else {
        LINK_SESSION
    };
    let (token, device) = state
        .auth
        .mint_session(&link, session)
        .map_err(|e| HttpError::new(ErrorCode::Internal, e.to_string()))?;
    // The token is handed out only once the device it opens is durable (a failure here spends
    // the link: the supervisor mints another).
    if guard_only {
        let enrolled = super::devices::enrolled(&link.identity, &device);
        let record = Change::put(Record::Device { id: &device }, &enrolled)?;
        state.store.commit(&[record]).await?;
    }
    state.hub.note_roles(&link.identity);
    tracing::info!(user = %link.identity.user, "sign-in link exchanged");
    Ok(json_response(
        200,
        &serde_json::json!({ "token": token, "expiresIn": session.as_secs() }),
    ))
}
