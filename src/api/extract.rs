//! What a REST handler is given ([`Call`]) and the ways it reads a request: the caller's
//! identity, the query, the path's parameters and a bounded JSON body.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::Request;
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::{Identity, Role};
use crate::failure::ErrorCode;
use crate::http::{token_from, HttpError};

/// Largest page a history or poll request returns per channel.
pub const MAX_PAGE: usize = 1000;
/// Most channels one poll or event stream names.
pub const MAX_CHANNELS: usize = 32;

/// One REST request on its way to its handler.
pub struct Call {
    /// The application.
    pub state: Arc<AppState>,
    /// Who sent it.
    pub peer: SocketAddr,
    /// The request.
    pub req: Request<Incoming>,
    /// The path's parameters, in the order the route names them.
    pub params: Vec<String>,
}

impl Call {
    /// The caller, from its bearer token.
    pub fn who(&self) -> Result<Identity, HttpError> {
        let fail = |message: String| {
            self.state.hub.stats.auth_failed();
            HttpError::new(ErrorCode::Unauthorized, message)
        };
        let token = token_from(&self.req).ok_or_else(|| fail("missing token".into()))?;
        let who = self
            .state
            .auth
            .verify(&token)
            .map_err(|e| fail(e.to_string()))?;
        // A principal that only ever uses REST (a service) is known in its org too: a guard
        // link is never minted for its id.
        self.state.hub.note_roles(&who);
        Ok(who)
    }

    /// The caller, when it has one of `roles`; else 403 with `why`.
    pub fn who_is(&self, roles: &[Role], why: &str) -> Result<Identity, HttpError> {
        let who = self.who()?;
        if roles.iter().any(|r| who.is(*r)) {
            Ok(who)
        } else {
            Err(HttpError::new(ErrorCode::Forbidden, why))
        }
    }

    /// A request header's value, when it is present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.req.headers().get(name)?.to_str().ok()
    }

    /// The `i`th parameter of the path.
    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map_or("", String::as_str)
    }

    /// Query parameters as a map; a repeated key keeps its last value.
    pub fn query(&self) -> HashMap<String, String> {
        self.req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default()
    }

    /// The request body, at most `limits.max_message_size` bytes, arriving within
    /// `limits.body_timeout` (a client trickling its body holds a task and a buffer).
    pub async fn body(self) -> Result<Bytes, HttpError> {
        let limit = self.state.hub.limits().max_message_size;
        self.body_within(limit, "limits.max_message_size").await
    }

    /// The request body, at most `limit` bytes (the configuration key `key` sets it: a larger
    /// one is refused `too_large` naming it, reading no more than `limit` of it), arriving
    /// within `limits.body_timeout`.
    pub async fn body_within(self, limit: usize, key: &str) -> Result<Bytes, HttpError> {
        let deadline = self.state.hub.limits().body_timeout;
        let collected = tokio::time::timeout(
            deadline,
            Limited::new(self.req.into_body(), limit).collect(),
        )
        .await
        .map_err(|_| {
            HttpError::with_status(
                408,
                ErrorCode::BadRequest,
                format!(
                    "the body did not arrive within {} s (limits.body_timeout)",
                    deadline.as_secs_f64()
                ),
            )
        })?;
        Ok(collected
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    HttpError::new(
                        ErrorCode::TooLarge,
                        format!("body larger than {limit} bytes ({key})"),
                    )
                } else {
                    HttpError::new(ErrorCode::BadRequest, format!("reading body: {e}"))
                }
            })?
            .to_bytes())
    }

    /// The body as JSON.
    pub async fn json<T: for<'de> Deserialize<'de>>(self) -> Result<T, HttpError> {
        parse_json(&self.body().await?)
    }

    /// The body as JSON; an empty body reads as the default.
    pub async fn json_or_default<T: for<'de> Deserialize<'de> + Default>(
        self,
    ) -> Result<T, HttpError> {
        let body = self.body().await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        parse_json(&body)
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, HttpError> {
    serde_json::from_slice(body)
        .map_err(|e| HttpError::new(ErrorCode::BadRequest, format!("invalid JSON body: {e}")))
}

/// The org a request acts in: the caller's own, or for an admin the one it names (`asked`).
/// Naming another org than one's own is refused (403); an admin of no org must name one (400).
pub fn org_of(who: &Identity, asked: Option<&str>) -> Result<String, HttpError> {
    match (who.org.as_deref(), asked) {
        (Some(own), Some(asked)) if own != asked && !who.is(Role::Admin) => Err(HttpError::new(
            ErrorCode::Forbidden,
            "a request acts in the caller's own organization only",
        )),
        (_, Some(asked)) if !crate::auth::valid_org(asked) => Err(HttpError::new(
            ErrorCode::BadRequest,
            "`org` must be 1-128 letters, digits or _ - . @ :",
        )),
        (_, Some(asked)) => Ok(asked.to_string()),
        (Some(own), None) => Ok(own.to_string()),
        (None, None) => Err(HttpError::new(
            ErrorCode::BadRequest,
            "`org` is required for an admin without an organization",
        )),
    }
}

/// `who` acting in the org `asked` names, when it names one: an admin acts there (see
/// `Identity::acting_in`); anyone else may only name its own ([`org_of`]).
pub fn acting(who: Identity, asked: Option<&String>) -> Result<Identity, HttpError> {
    match asked {
        Some(org) => Ok(who.acting_in(&org_of(&who, Some(org))?)),
        None => Ok(who),
    }
}

/// How long a token with `exp` (seconds since the Unix epoch) stays valid; `None` once it has
/// expired. Long-lived requests (SSE, long-poll) end then, as WebSocket sessions do.
pub fn until_expiry(exp: u64) -> Option<Duration> {
    let left = exp.saturating_sub(crate::clock::now_secs());
    (left > 0).then(|| Duration::from_secs(left))
}

/// A non-negative integer query parameter, or its default.
pub fn number<T: std::str::FromStr>(
    params: &HashMap<String, String>,
    name: &str,
    default: T,
) -> Result<T, HttpError> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            HttpError::new(
                ErrorCode::BadRequest,
                format!("`{name}` must be a non-negative integer"),
            )
        }),
    }
}

/// Channels and their resume points from `channels=` and `since=` (one seq, or one per channel
/// named, or one per distinct channel). A channel named twice is read once, from the lower of
/// its seqs: a request never makes the server read and render one log twice.
pub fn channels_and_since(
    names: Option<&String>,
    since: Option<&str>,
) -> Result<Vec<(String, u64)>, HttpError> {
    let named: Vec<String> = names
        .map(|c| {
            c.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut names: Vec<String> = Vec::with_capacity(named.len());
    for name in &named {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let sinces: Vec<u64> = match since {
        None => Vec::new(),
        Some(s) => s
            .split(',')
            .map(|v| v.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|_| HttpError::new(ErrorCode::BadRequest, "`since` must be seqs"))?,
    };
    // One per channel as named: each distinct channel from the lowest of its seqs.
    let since = if sinces.len() == named.len() && named.len() != names.len() {
        let lowest: Vec<String> = names
            .iter()
            .map(|n| {
                named
                    .iter()
                    .zip(&sinces)
                    .filter(|(m, _)| *m == n)
                    .map(|(_, s)| *s)
                    .min()
                    .unwrap_or(0)
                    .to_string()
            })
            .collect();
        Some(lowest.join(","))
    } else {
        since.map(str::to_string)
    };
    let since = since.as_deref();
    if names.is_empty() || names.len() > MAX_CHANNELS {
        return Err(HttpError::new(
            ErrorCode::BadRequest,
            format!("`channels` must name 1 to {MAX_CHANNELS} channels, comma-separated"),
        ));
    }
    let sinces: Vec<u64> = match since {
        None => vec![0; names.len()],
        Some(s) => s
            .split(',')
            .map(|v| v.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|_| HttpError::new(ErrorCode::BadRequest, "`since` must be seqs"))?,
    };
    let sinces = match sinces.len() {
        1 => vec![sinces[0]; names.len()],
        n if n == names.len() => sinces,
        _ => {
            return Err(HttpError::new(
                ErrorCode::BadRequest,
                "`since` must be one seq or one per channel",
            ))
        }
    };
    Ok(names.into_iter().zip(sinces).collect())
}
