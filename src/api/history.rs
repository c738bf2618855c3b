//! Reading channel logs over REST: history pages, long-poll, and a guard's location history by
//! client time. Same rights as subscribe.

use hyper::Response;

use std::time::Duration;

use super::extract::{channels_and_since, number, until_expiry, Call, MAX_PAGE};
use crate::failure::ErrorCode;
use crate::http::{json_response, Body, HttpError};
use crate::hub::ResponseBudget;
use crate::protocol::{Encoding, Protocol};

/// Longest a long-poll request may wait, seconds.
const MAX_POLL: u64 = 60;
/// Most points one location history request returns.
const MAX_POINTS: usize = 10_000;

/// `GET /api/v1/channels/history?channel=&since=&limit=`.
pub async fn history(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let params = call.query();
    let channel = params
        .get("channel")
        .ok_or_else(|| HttpError::new(ErrorCode::BadRequest, "`channel` is required"))?;
    let since = number(&params, "since", 0u64)?;
    let limit = number(&params, "limit", 100usize)?.clamp(1, MAX_PAGE);
    let hub = &call.state.hub;
    let _reading = hub.begin_read(&who)?;
    let mut budget = ResponseBudget::new(hub.limits().max_response_bytes);
    let history = hub
        .history(&who, channel, since, limit, &mut budget)
        .await?;
    Ok(json_response(200, &history))
}

/// `GET /api/v1/poll?channels=&since=&timeout=&limit=`.
pub async fn poll(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let params = call.query();
    let channels = channels_and_since(
        params.get("channels"),
        params.get("since").map(String::as_str),
    )?;
    let wait = Duration::from_secs(number(&params, "timeout", 25u64)?.min(MAX_POLL));
    let limit = number(&params, "limit", 100usize)?.clamp(1, MAX_PAGE);
    let hub = &call.state.hub;
    // A forbidden channel is a 403 before the poll takes a connection's place.
    for (name, _) in &channels {
        hub.may_read(&who, name).await?;
    }
    // A waiting poll is a connection under the limits; it waits no longer than its token.
    let wait = wait.min(until_expiry(who.exp).unwrap_or_default());
    let (conn, _queue, _slot) = hub
        .admit(who.clone(), Encoding::Json, Protocol::LongPoll, call.peer)
        .await?;
    let result = tokio::select! {
        result = hub.poll(&who, &channels, wait, limit, hub.limits().max_response_bytes) => result?,
        // E.g. the device was revoked: the wait ends now, and the next poll is refused.
        (_, reason) = conn.close_wanted() => {
            return Err(HttpError::new(ErrorCode::Unauthorized, reason));
        }
    };
    Ok(json_response(
        200,
        &serde_json::json!({ "channels": result }),
    ))
}

/// `GET /api/v1/locations/{user}/history?from=&to=&limit=`: a user's location history from its
/// channel log, by client time.
pub async fn locations(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let user = call.param(0).to_string();
    let params = call.query();
    let from = number(&params, "from", 0u64)?;
    let to = number(&params, "to", u64::MAX)?;
    let limit = number(&params, "limit", 1000usize)?.clamp(1, MAX_POINTS);
    // An admin names the user's org.
    let who = super::extract::acting(who, params.get("org"))?;
    let _reading = call.state.hub.begin_read(&who)?;
    let points: Vec<_> = call
        .state
        .field
        .location_history(&who, &user, from, to, limit)
        .await?
        .into_iter()
        .map(|(seq, location)| serde_json::json!({"seq": seq, "location": location}))
        .collect();
    Ok(json_response(
        200,
        &serde_json::json!({"user": user, "points": points}),
    ))
}
