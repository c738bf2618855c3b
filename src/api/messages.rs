//! `GET /api/v1/messages`: the caller's private conversations on `/user/queue/messages`, both
//! ways, with read state (see [`crate::hub::conversation`]). Within the caller's org only.

use hyper::Response;

use super::extract::{number, Call};
use crate::http::{json_response, Body, HttpError};
use crate::hub::ResponseBudget;

/// `GET /api/v1/messages?with=&limit=`: the newest `limit` (default 200, at most 1000)
/// messages between the caller and `with` (or its most recent correspondents), oldest first,
/// within `limits.max_response_bytes`; `truncated` says when older ones were left out.
pub async fn conversation(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let params = call.query();
    // Naming another org than one's own is refused; an admin names the org it reads in.
    let who = super::extract::acting(who, params.get("org"))?;
    let limit = number(&params, "limit", 200usize)?;
    let with = params.get("with").map(String::as_str);
    let hub = &call.state.hub;
    let _reading = hub.begin_read(&who)?;
    let mut budget = ResponseBudget::new(hub.limits().max_response_bytes);
    let page = hub.conversation(&who, with, limit, &mut budget).await?;
    let messages: Vec<_> = page
        .messages
        .iter()
        .map(|m| {
            serde_json::json!({
                "from": m.from,
                "to": m.to,
                "seq": m.seq,
                "timestamp": m.timestamp,
                "read": m.read,
                "data": m.message.data,
            })
        })
        .collect();
    Ok(json_response(
        200,
        &serde_json::json!({"messages": messages, "truncated": page.truncated}),
    ))
}
