//! Server-Sent Events: channels as an `EventSource` stream that resumes with
//! `Last-Event-ID`.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;

use super::extract::{channels_and_since, until_expiry, Call};
use crate::failure::{ErrorCode, Report};
use crate::http::{Body, HttpError};
use crate::protocol::{Encoding, Protocol};

/// Events waiting for the client's stream.
const EVENT_QUEUE: usize = 16;
/// Messages read per channel per poll of the stream.
const EVENT_PAGE: usize = 100;

/// Server-Sent Events: `GET /api/v1/events?channels=C1,C2&since=S1,S2`. Each event's `id` is
/// the seq reached on every channel (`S1,S2`), so a browser's automatic reconnect with
/// `Last-Event-ID` resumes exactly where it stopped. Same rights as subscribe.
pub async fn events(call: Call) -> Result<Response<Body>, HttpError> {
    let who = call.who()?;
    let state = &call.state;
    let params = call.query();
    let last_event_id = call
        .req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let since = last_event_id
        .as_deref()
        .or(params.get("since").map(String::as_str));
    let channels = channels_and_since(params.get("channels"), since)?;
    // Refuse before streaming: a forbidden channel is a 403, not an event.
    for (name, _) in &channels {
        state.hub.may_read(&who, name).await?;
    }
    // A stream is a connection: it takes a slot under the per-user and total limits, and
    // gives it back when the stream ends.
    let (conn, _queue, admission) = state
        .hub
        .admit(who.clone(), Encoding::Json, Protocol::Sse, call.peer)
        .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(EVENT_QUEUE);
    let hub = state.hub.clone();
    let shutdown = state.shutdown.clone();
    let keepalive = state.hub.limits().ping_interval;
    let max_bytes = state.hub.limits().max_response_bytes;
    state.tracker.spawn(async move {
        let _admission = admission;
        let (names, mut cursors): (Vec<String>, Vec<u64>) = channels.into_iter().unzip();
        if tx
            .send(Bytes::from_static(b"retry: 2000\n\n"))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let Some(left) = until_expiry(who.exp) else {
                // As a WebSocket closes with 4001: the client reconnects with a fresh token and
                // `Last-Event-ID`, and loses nothing.
                let event = format!(
                    "event: error\ndata: {}\n\n",
                    serde_json::json!({"code": ErrorCode::Unauthorized, "message": "token expired; reconnect with a fresh token"})
                );
                let _ = tx.send(Bytes::from(event)).await;
                return;
            };
            let pairs: Vec<(String, u64)> =
                names.iter().cloned().zip(cursors.iter().copied()).collect();
            let wait = keepalive.min(left);
            let polled = tokio::select! {
                _ = shutdown.cancelled() => return,
                // E.g. the device was revoked: said as an error event, and the stream ends (a
                // browser's EventSource reconnects and is refused).
                (code, reason) = conn.close_wanted() => {
                    let event = format!(
                        "event: error\ndata: {}\n\n",
                        serde_json::json!({"code": ErrorCode::Unauthorized, "message": reason, "close": code})
                    );
                    let _ = tx.send(Bytes::from(event)).await;
                    return;
                }
                polled = hub.poll(&who, &pairs, wait, EVENT_PAGE, max_bytes) => polled,
            };
            let histories = match polled {
                Ok(h) => h,
                Err(e) => {
                    let report = Report::of(&e);
                    let event = format!(
                        "event: error\ndata: {}\n\n",
                        serde_json::json!({"code": report.code, "message": report.message})
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
