//! Field operations: what a publish means on the domain channels, and the records around them.
//!
//! Every publish from a socket or REST comes through [`Field::publish`]:
//! - `/topic/location/{user}`: validated, logged, kept as the user's last known position, fanned
//!   in to `/topic/org/{org}/locations`, then checked against the org's geofences — a crossing
//!   into violation raises a GEOFENCE alert, a return resolves it;
//! - `/topic/video/{user}`: a frame is validated (codec, keyframe, ts, bytes ≤ the limit);
//! - `/topic/emergency/{user}`: logged and turned into an alert;
//! - everything else goes to the hub unchanged.
//!
//! This module holds the rules of the field domain; geometry is in [`crate::geofence`], alert
//! life cycles in [`crate::alerts`], delivery in [`crate::hub`].

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::alerts::{AlertError, AlertType, Alerts, NewAlert, Position, Priority};
use crate::auth::{Identity, Role};
use crate::channel::{is_video, ChannelKind, Target};
use crate::failure::Failure;
use crate::geofence::{Area, FenceIndex, FenceKind, Shape};
use crate::hub::{Hub, HubError, Publish, Published, Turn};
use crate::protocol::{now_millis, ErrorCode};
use crate::store::{Change, Record, Records, Store, StoreError};

/// What can go wrong with a field operation.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    /// Invalid input.
    #[error("{0}")]
    BadRequest(String),
    /// Not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such record.
    #[error("{0}")]
    NotFound(String),
    /// A frame over the size limit.
    #[error("{0}")]
    TooLarge(String),
    /// From the hub.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// From alerts.
    #[error(transparent)]
    Alert(#[from] AlertError),
    /// From the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server is stopping: the work could not be carried through.
    #[error("the server is stopping")]
    Unavailable,
}

impl Failure for FieldError {
    fn code(&self) -> ErrorCode {
        match self {
            FieldError::BadRequest(_) => ErrorCode::BadRequest,
            FieldError::Forbidden(_) => ErrorCode::Forbidden,
            FieldError::NotFound(_) => ErrorCode::NotFound,
            FieldError::TooLarge(_) => ErrorCode::TooLarge,
            FieldError::Hub(e) => e.code(),
            FieldError::Alert(e) => e.code(),
            FieldError::Store(_) | FieldError::Unavailable => ErrorCode::Internal,
        }
    }
}

/// Messages read per page when a user's location history is walked.
const HISTORY_PAGE: usize = 1000;
/// Points one user's tracking statistics take into account; a longer range is cut here (the
/// statistics say how many points they cover).
const MAX_TRACKED_POINTS: usize = 100_000;

fn bad<T>(message: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError::BadRequest(message.into()))
}

/// Field settings.
#[derive(Debug, Clone, Copy)]
pub struct FieldConfig {
    /// How far in the future a location's `ts` may be.
    pub max_clock_skew: Duration,
    /// Vertices a polygon fence may have.
    pub max_fence_vertices: usize,
    /// Largest video frame payload.
    pub max_video_frame: usize,
}

/// The earliest server time a location with client time `ts` can have been received at: a
/// fix is refused when its `ts` is more than `max_clock_skew` ahead of its receipt.
fn earliest_receipt(ts: u64, max_clock_skew: Duration) -> u64 {
    ts.saturating_sub(max_clock_skew.as_millis() as u64)
}

/// A location update as guards send it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Accuracy, metres.
    pub accuracy: f64,
    /// Heading, degrees from north.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<f64>,
    /// Speed, m/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// Altitude, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude: Option<f64>,
    /// Battery, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery: Option<f64>,
    /// Client time, ms since the Unix epoch.
    pub ts: u64,
}

impl Location {
    /// Parses and checks a location payload.
    pub fn parse(data: &rmpv::Value, max_skew: Duration) -> Result<Location, FieldError> {
        // Read from the message's own value: every fix is parsed, so no detour through JSON.
        let loc = Location::deserialize(&data.as_ref())
            .map_err(|e| FieldError::BadRequest(format!("location: {e}")))?;
        let finite = |v: f64| v.is_finite();
        let in_range =
            |v: Option<f64>, lo: f64, hi: f64| v.is_none_or(|v| finite(v) && v >= lo && v <= hi);
        if !(finite(loc.lat) && (-90.0..=90.0).contains(&loc.lat)) {
            return bad("lat must be a finite number in [-90, 90]");
        }
        if !(finite(loc.lon) && (-180.0..=180.0).contains(&loc.lon)) {
            return bad("lon must be a finite number in [-180, 180]");
        }
        if !(finite(loc.accuracy) && loc.accuracy >= 0.0 && loc.accuracy <= 100_000.0) {
            return bad("accuracy must be a finite number of metres, 0 to 100000");
        }
        if !in_range(loc.heading, 0.0, 360.0) {
            return bad("heading must be in [0, 360]");
        }
        if !in_range(loc.speed, 0.0, 1_000.0) {
            return bad("speed must be in [0, 1000] m/s");
        }
        if !in_range(loc.altitude, -12_000.0, 100_000.0) {
            return bad("altitude must be a finite number of metres");
        }
        if !in_range(loc.battery, 0.0, 100.0) {
            return bad("battery must be in [0, 100]");
        }
        let skew = u64::try_from(max_skew.as_millis()).unwrap_or(u64::MAX);
        if loc.ts > now_millis().saturating_add(skew) {
            return bad("ts is in the future beyond the allowed clock skew");
        }
        Ok(loc)
    }

    /// The fix as the org's locations channel carries it: its fields and whose it is (built
    /// directly: one is built for every fix).
    fn fan_in(&self, user: &str) -> rmpv::Value {
        let field = |name: &str, value: rmpv::Value| (rmpv::Value::from(name), value);
        let mut fields = vec![
            field("lat", self.lat.into()),
            field("lon", self.lon.into()),
            field("accuracy", self.accuracy.into()),
        ];
        for (name, value) in [
            ("heading", self.heading),
            ("speed", self.speed),
            ("altitude", self.altitude),
            ("battery", self.battery),
        ] {
            if let Some(value) = value {
                fields.push(field(name, value.into()));
            }
        }
        fields.push(field("ts", self.ts.into()));
        fields.push(field("user", user.into()));
        rmpv::Value::Map(fields)
    }

    fn position(&self) -> Position {
        Position {
            lat: self.lat,
            lon: self.lon,
            accuracy: self.accuracy,
            ts: self.ts,
        }
    }
}

/// A user's last known location, as kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastLocation {
    /// User.
    pub user: String,
    /// Org.
    pub org: String,
    /// The location.
    pub location: Location,
    /// When Lookout received it, ms.
    pub received_at: u64,
}

/// A geofence as kept and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fence {
    /// Id.
    pub id: String,
    /// Org.
    pub org: String,
    /// Name.
    pub name: String,
    /// Required or forbidden.
    pub kind: FenceKind,
    /// The area.
    pub shape: Shape,
    /// Guards it applies to; none: the whole org.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guards: Option<Vec<String>>,
    /// Site it belongs to; `required` fences of a site apply only while the guard is on shift
    /// there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Creation time, ms.
    pub created_at: u64,
}

/// What clients send to create or replace a fence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FenceSpec {
    /// Name.
    pub name: String,
    /// Required or forbidden.
    pub kind: FenceKind,
    /// The area.
    pub shape: Shape,
    /// Guards it applies to.
    #[serde(default)]
    pub guards: Option<Vec<String>>,
    /// Site.
    #[serde(default)]
    pub site: Option<String>,
    /// Org, for admins (others: their own).
    #[serde(default)]
    pub org: Option<String>,
}

/// Whether a guard is in violation of a fence, and the alert that says so.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FenceState {
    /// In violation now.
    pub violating: bool,
    /// The open GEOFENCE alert.
    #[serde(default)]
    pub alert: Option<String>,
}

/// A guard's shift at a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    /// Id.
    pub id: String,
    /// Org.
    pub org: String,
    /// The guard.
    pub user: String,
    /// The site.
    pub site: String,
    /// Start, ms.
    pub start: u64,
    /// End, ms.
    pub end: u64,
}

/// What clients send to create a shift.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftSpec {
    /// The guard.
    pub user: String,
    /// The guard's org: the caller's own; an admin of no org names it.
    #[serde(default)]
    pub org: Option<String>,
    /// The site.
    pub site: String,
    /// Start, ms.
    pub start: u64,
    /// End, ms.
    pub end: u64,
}

/// A guard's tracking statistics over a time window.
#[derive(Debug, Clone, Serialize)]
pub struct TrackingStats {
    /// The guard.
    pub user: String,
    /// Location updates in the window.
    pub points: usize,
    /// Distance covered, metres (great-circle between consecutive points).
    pub distance_m: f64,
    /// Time spent inside at least one of the guard's fences, ms (each point's state lasting
    /// until the next point).
    pub inside_ms: u64,
    /// Time spent outside all of them, ms.
    pub outside_ms: u64,
    /// When Lookout last received a location, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<u64>,
    /// Battery at the last location, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub battery: Option<f64>,
}

/// Result of a publish through the field layer.
#[derive(Debug, Clone, Serialize)]
pub struct FieldPublished {
    /// What the hub reports.
    #[serde(flatten)]
    pub published: Published,
    /// The alert an emergency publish raised.
    #[serde(rename = "alertId", skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
}

/// The field operations service.
pub struct Field {
    me: Weak<Field>,
    /// Where emergencies are handled (see [`crate::urgent`]).
    urgent: Handle,
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    alerts: Arc<Alerts>,
    config: FieldConfig,
    /// Compiled fences per org, rebuilt when a fence changes.
    fences: Mutex<HashMap<String, Arc<FenceIndex<Fence>>>>,
    /// Shifts by guard, for the fence checks of every location; rebuilt when a shift changes.
    shifts: Mutex<ShiftIndex>,
}

/// Shifts by guard, and which change of the shifts it was loaded after.
#[derive(Default)]
struct ShiftIndex {
    by_user: Option<Arc<HashMap<String, Vec<Shift>>>>,
    /// Bumped by every shift change, so a load that raced one is not kept.
    generation: u64,
}

fn emergency_type(s: &str) -> Option<AlertType> {
    Some(match s {
        "PANIC" => AlertType::Panic,
        "MEDICAL" => AlertType::Medical,
        "SECURITY" => AlertType::Security,
        "FIRE" => AlertType::Fire,
        "GENERAL" => AlertType::General,
        _ => return None,
    })
}

fn map_field<'a>(data: &'a rmpv::Value, name: &str) -> Option<&'a rmpv::Value> {
    data.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}

impl Field {
    /// The service, keeping its records in `store` and publishing through `hub`.
    pub fn new(
        hub: Arc<Hub>,
        store: Arc<dyn Store>,
        alerts: Arc<Alerts>,
        config: FieldConfig,
        urgent: Handle,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Field {
            me: me.clone(),
            urgent,
            hub,
            store,
            alerts,
            config,
            fences: Mutex::default(),
            shifts: Mutex::default(),
        })
    }

    /// The alert service.
    pub fn alerts(&self) -> &Arc<Alerts> {
        &self.alerts
    }

    /// Publishes with the domain's meaning; see the module doc.
    pub async fn publish(
        &self,
        who: &Identity,
        req: Publish<'_>,
    ) -> Result<FieldPublished, FieldError> {
        self.publish_in_turn(who, req, None).await
    }

    /// [`Field::publish`], dropping `turn` once the message has its seq (see [`Turn`]).
    pub async fn publish_in_turn(
        &self,
        who: &Identity,
        req: Publish<'_>,
        turn: Turn,
    ) -> Result<FieldPublished, FieldError> {
        let kind_user = |prefix: &str| req.channel.strip_prefix(prefix).map(str::to_string);
        if let Some(user) = kind_user("/topic/location/") {
            let location = Location::parse(&req.data, self.config.max_clock_skew)?;
            let published = self.hub.publish_in_turn(who, req, turn).await?;
            self.located(who, &user, location).await?;
            return Ok(FieldPublished {
                published,
                alert_id: None,
            });
        }
        if is_video(req.channel) {
            self.check_frame(&req.data)?;
            let published = self.hub.publish_in_turn(who, req, turn).await?;
            return Ok(FieldPublished {
                published,
                alert_id: None,
            });
        }
        if let Some(user) = kind_user("/topic/emergency/") {
            let kind = map_field(&req.data, "type")
                .and_then(|t| t.as_str())
                .and_then(emergency_type)
                .ok_or_else(|| {
                    FieldError::BadRequest(
                        "an emergency needs `type`: PANIC, MEDICAL, SECURITY, FIRE or GENERAL"
                            .into(),
                    )
                })?;
            let priority = match map_field(&req.data, "priority").and_then(|p| p.as_str()) {
                None if kind == AlertType::Panic => Priority::Critical,
                None => Priority::High,
                Some("HIGH") => Priority::High,
                Some("CRITICAL") => Priority::Critical,
                Some(_) => return bad("priority must be HIGH or CRITICAL"),
            };
            let message = map_field(&req.data, "message")
                .and_then(|m| m.as_str())
                .map(|m| m.chars().take(1000).collect());
            // Each emergency is a durable alert with timers and notifications: a budget per
            // principal, the same over WebSocket and REST.
            if !self.hub.allow_alert(&who.key) {
                return Err(FieldError::Hub(HubError::OverBudget(
                    "emergencies per minute exceeded (limits.alerts_per_minute)".into(),
                )));
            }
            let Some(field) = self.me.upgrade() else {
                return Err(FieldError::Unavailable);
            };
            let (who, channel) = (who.clone(), req.channel.to_string());
            let (data, ack_required) = (req.data, req.ack_required);
            let key = req.idempotency_key.map(str::to_string);
            // Carried through on the urgent lane, also if the publisher goes away meanwhile.
            let raised = self.urgent.spawn(async move {
                let req = Publish {
                    channel: &channel,
                    to: None,
                    owner: None,
                    data,
                    ack_required,
                    idempotency_key: key.as_deref(),
                };
                let published = field.hub.publish_in_turn(&who, req, turn).await?;
                // With a key, the alert's id comes from it: a retry finds the first alert.
                let once = key.map(|k| alert_id_for(&who.key, &channel, &k));
                // The hub resolved the channel in the publisher's org: so is the alert.
                let org = who.org.as_deref().unwrap_or_default();
                let alert = field
                    .raise(org, &user, kind, priority, message, &who.user, once)
                    .await?;
                Ok(FieldPublished {
                    published,
                    alert_id: Some(alert.id),
                })
            });
            return raised.await.map_err(|_| FieldError::Unavailable)?;
        }
        let published = self.hub.publish_in_turn(who, req, turn).await?;
        Ok(FieldPublished {
            published,
            alert_id: None,
        })
    }

    /// Raises an emergency alert for `user` of `org` (its last position attached).
    #[allow(clippy::too_many_arguments)]
    pub async fn raise(
        &self,
        org: &str,
        user: &str,
        kind: AlertType,
        priority: Priority,
        message: Option<String>,
        by: &str,
        once: Option<String>,
    ) -> Result<crate::alerts::Alert, FieldError> {
        let position = self
            .last_location(org, user)
            .await?
            .map(|l| l.location.position());
        let new = NewAlert {
            org: org.to_string(),
            user: user.to_string(),
            kind,
            priority,
            message,
            position,
            fence: None,
            by: by.to_string(),
        };
        let alert = match once {
            Some(id) => self.alerts.create_once(id, new).await?,
            None => self.alerts.create(new, Vec::new()).await?,
        };
        Ok(alert)
    }

    fn check_frame(&self, data: &rmpv::Value) -> Result<(), FieldError> {
        let codec = map_field(data, "codec").and_then(|c| c.as_str());
        if !matches!(codec, Some("jpeg" | "h264")) {
            return bad("a video frame needs `codec`: jpeg or h264");
        }
        if !map_field(data, "keyframe").is_some_and(|k| k.is_bool()) {
            return bad("a video frame needs `keyframe`: true or false");
        }
        if map_field(data, "ts").and_then(|t| t.as_u64()).is_none() {
            return bad("a video frame needs `ts`: ms since the Unix epoch");
        }
        match map_field(data, "data") {
            Some(rmpv::Value::Binary(bytes)) if bytes.len() <= self.config.max_video_frame => {
                Ok(())
            }
            Some(rmpv::Value::Binary(bytes)) => Err(FieldError::TooLarge(format!(
                "video frame of {} bytes over the {} byte limit",
                bytes.len(),
                self.config.max_video_frame
            ))),
            _ => bad("a video frame needs `data` as bytes (use lookout.msgpack)"),
        }
    }

    /// After a location was logged: last known, fan-in, fences.
    async fn located(
        &self,
        who: &Identity,
        user: &str,
        location: Location,
    ) -> Result<(), FieldError> {
        // The hub resolved the channel within the publisher's org: the user is of that org.
        let Some(org) = who.org.clone() else {
            return Ok(());
        };
        let principal = crate::auth::principal_key(Some(&org), user);
        let last = LastLocation {
            user: user.to_string(),
            org: org.to_string(),
            location,
            received_at: now_millis(),
        };
        // The log holds every update durably; the last-known record rides the next flush.
        self.store
            .write(&[Change::put(Record::Location { user: &principal }, &last)?])
            .await?;
        let fan_in = location.fan_in(user);
        let org_locations = Target::Org {
            kind: ChannelKind::OrgLocations,
            org: org.to_string(),
        };
        self.hub
            .publish_as_lookout(&org_locations, fan_in, false)
            .await?;
        self.check_fences(user, &org, &location).await
    }

    async fn fence_index(&self, org: &str) -> Result<Arc<FenceIndex<Fence>>, FieldError> {
        if let Some(index) = self.fences.lock().get(org) {
            return Ok(index.clone());
        }
        let fences: Vec<Fence> = self.store.load_all(Records::Fences { org }).await?;
        let mut compiled: Vec<(Arc<Fence>, Area)> = Vec::with_capacity(fences.len());
        for fence in fences {
            // Stored fences were validated on the way in; skip (and report) any that no longer
            // compile rather than stop checking the others.
            match fence.shape.compile(usize::MAX) {
                Ok(area) => compiled.push((Arc::new(fence), area)),
                Err(e) => {
                    tracing::error!(fence = %fence.id, error = %e, "stored fence does not compile")
                }
            }
        }
        let index = Arc::new(FenceIndex::new(compiled));
        self.fences.lock().insert(org.to_string(), index.clone());
        Ok(index)
    }

    /// Whether `user` of `org` is on shift at `site` now: shifts are an org's, like its users
    /// (another org's shift for the same user id is another guard's).
    async fn on_shift(
        &self,
        org: &str,
        user: &str,
        site: &str,
        now: u64,
    ) -> Result<bool, FieldError> {
        let index = self.shift_index().await?;
        let key = crate::auth::principal_key(Some(org), user);
        Ok(index.get(&key).is_some_and(|shifts| {
            shifts
                .iter()
                .any(|s| s.site == site && s.start <= now && now < s.end)
        }))
    }

    async fn shift_index(&self) -> Result<Arc<HashMap<String, Vec<Shift>>>, FieldError> {
        let generation = {
            let index = self.shifts.lock();
            if let Some(by_user) = &index.by_user {
                return Ok(by_user.clone());
            }
            index.generation
        };
        let mut by_user: HashMap<String, Vec<Shift>> = HashMap::new();
        for shift in self.store.load_all::<Shift>(Records::Shifts).await? {
            let key = crate::auth::principal_key(Some(&shift.org), &shift.user);
            by_user.entry(key).or_default().push(shift);
        }
        let by_user = Arc::new(by_user);
        let mut index = self.shifts.lock();
        if index.generation == generation {
            index.by_user = Some(by_user.clone());
        }
        Ok(by_user)
    }

    fn shifts_changed(&self) {
        let mut index = self.shifts.lock();
        index.by_user = None;
        index.generation += 1;
    }

    async fn check_fences(
        &self,
        user: &str,
        org: &str,
        location: &Location,
    ) -> Result<(), FieldError> {
        let index = self.fence_index(org).await?;
        if index.is_empty() {
            return Ok(());
        }
        let now = now_millis();
        for (fence, inside) in index.classify(location.lon, location.lat) {
            if fence
                .guards
                .as_ref()
                .is_some_and(|g| !g.iter().any(|u| u == user))
            {
                continue;
            }
            let applies = match (fence.kind, &fence.site) {
                (FenceKind::Required, Some(site)) => self.on_shift(org, user, site, now).await?,
                _ => true,
            };
            let violating = applies
                && match fence.kind {
                    FenceKind::Required => !inside,
                    FenceKind::Forbidden => inside,
                };
            self.fence_transition(user, org, fence, violating, location)
                .await?;
        }
        Ok(())
    }

    async fn fence_transition(
        &self,
        user: &str,
        org: &str,
        fence: &Fence,
        violating: bool,
        location: &Location,
    ) -> Result<(), FieldError> {
        let principal = crate::auth::principal_key(Some(org), user);
        let key = Record::FenceState {
            user: &principal,
            fence: &fence.id,
        };
        let before: FenceState = self.store.load(key).await?.unwrap_or_default();
        if before.violating == violating {
            return Ok(());
        }
        if violating {
            let verb = match fence.kind {
                FenceKind::Required => "left required",
                FenceKind::Forbidden => "entered forbidden",
            };
            // The state is written in the alert's own atomic write; if a crash intervenes,
            // both or neither are there, so a restart neither repeats nor loses the violation.
            let alert_id = uuid::Uuid::new_v4().to_string();
            let state = FenceState {
                violating: true,
                alert: Some(alert_id.clone()),
            };
            let alert = self
                .alerts
                .create_with_id(
                    alert_id,
                    NewAlert {
                        org: org.to_string(),
                        user: user.to_string(),
                        kind: AlertType::Geofence,
                        priority: Priority::High,
                        message: Some(format!("{user} {verb} fence {}", fence.name)),
                        position: Some(location.position()),
                        fence: Some(fence.id.clone()),
                        by: "lookout".into(),
                    },
                    vec![Change::put(key, &state)?],
                )
                .await?;
            tracing::info!(alert = %alert.id, user, fence = %fence.id, "geofence violation");
        } else {
            let cleared = FenceState::default();
            let changes = vec![Change::put(key, &cleared)?];
            match &before.alert {
                Some(id) => {
                    let result = self
                        .alerts
                        .resolve(
                            None,
                            id,
                            "lookout",
                            Some("guard returned: fence respected again".into()),
                            changes,
                        )
                        .await;
                    match result {
                        // Already resolved by a supervisor: just record that the guard is back.
                        Err(AlertError::State(_)) => {
                            self.store.commit(&[Change::put(key, &cleared)?]).await?;
                        }
                        other => {
                            other?;
                        }
                    }
                }
                None => self.store.commit(&changes).await?,
            }
        }
        Ok(())
    }

    /// The last known location of `user` of `org`.
    pub async fn last_location(
        &self,
        org: &str,
        user: &str,
    ) -> Result<Option<LastLocation>, FieldError> {
        let principal = crate::auth::principal_key(Some(org), user);
        Ok(self
            .store
            .load(Record::Location { user: &principal })
            .await?)
    }

    /// The last known location of every user of the caller's org that the caller may watch.
    pub async fn locations(&self, who: &Identity) -> Result<Vec<LastLocation>, FieldError> {
        let all: Vec<LastLocation> = self.store.load_all(Records::Locations).await?;
        Ok(all
            .into_iter()
            .filter(|l| {
                who.is(Role::Admin)
                    || (who.in_org(&l.org) && (who.is(Role::Supervisor) || who.is(Role::Service)))
                    || (who.in_org(&l.org) && *who.user == *l.user)
            })
            .collect())
    }

    fn org_for(&self, who: &Identity, requested: Option<&str>) -> Result<String, FieldError> {
        match (requested, &who.org) {
            (Some(org), _) if who.is(Role::Admin) => Ok(org.to_string()),
            (Some(org), Some(own)) if org == &**own => Ok(org.to_string()),
            (Some(_), _) => Err(FieldError::Forbidden("another organization")),
            (None, Some(own)) => Ok(own.to_string()),
            (None, None) => bad("an admin must name the `org`"),
        }
    }

    fn may_manage(who: &Identity, org: &str) -> bool {
        who.is(Role::Admin) || (who.is(Role::Supervisor) && who.in_org(org))
    }

    /// Fences of the caller's org (admins: of `org`).
    pub async fn fences(
        &self,
        who: &Identity,
        org: Option<&str>,
    ) -> Result<Vec<Fence>, FieldError> {
        let org = self.org_for(who, org)?;
        if !(Self::may_manage(who, &org) || who.in_org(&org)) {
            return Err(FieldError::Forbidden("not a member of this organization"));
        }
        Ok(self.store.load_all(Records::Fences { org: &org }).await?)
    }

    /// Creates (`id` none) or replaces a fence.
    pub async fn put_fence(
        &self,
        who: &Identity,
        id: Option<&str>,
        spec: FenceSpec,
    ) -> Result<Fence, FieldError> {
        let org = self.org_for(who, spec.org.as_deref())?;
        if !Self::may_manage(who, &org) {
            return Err(FieldError::Forbidden(
                "only supervisors and admins manage geofences",
            ));
        }
        if spec.name.trim().is_empty() || spec.name.len() > 200 {
            return bad("name must be 1 to 200 characters");
        }
        spec.shape
            .compile(self.config.max_fence_vertices)
            .map_err(|e| FieldError::BadRequest(e.to_string()))?;
        let (id, created_at) = match id {
            Some(id) => {
                let existing: Fence = self
                    .store
                    .load(Record::Fence { org: &org, id })
                    .await?
                    .ok_or_else(|| FieldError::NotFound(format!("no fence {id}")))?;
                (existing.id, existing.created_at)
            }
            None => (uuid::Uuid::new_v4().to_string(), now_millis()),
        };
        let fence = Fence {
            id,
            org: org.clone(),
            name: spec.name,
            kind: spec.kind,
            shape: spec.shape,
            guards: spec.guards,
            site: spec.site,
            created_at,
        };
        let key = Record::Fence {
            org: &org,
            id: &fence.id,
        };
        self.store.commit(&[Change::put(key, &fence)?]).await?;
        self.fences.lock().remove(&org);
        Ok(fence)
    }

    /// Deletes a fence.
    pub async fn delete_fence(
        &self,
        who: &Identity,
        id: &str,
        org: Option<&str>,
    ) -> Result<(), FieldError> {
        let org = self.org_for(who, org)?;
        if !Self::may_manage(who, &org) {
            return Err(FieldError::Forbidden(
                "only supervisors and admins manage geofences",
            ));
        }
        let key = Record::Fence { org: &org, id };
        if self.store.load::<Fence>(key).await?.is_none() {
            return Err(FieldError::NotFound(format!("no fence {id}")));
        }
        self.store.commit(&[Change::Delete(key)]).await?;
        self.fences.lock().remove(&org);
        Ok(())
    }

    /// `user`'s locations with `from <= ts <= to` (client time, ms), at most `limit`, in seq
    /// order with their seqs; read from where the log can first hold such a fix.
    pub async fn location_history(
        &self,
        who: &Identity,
        user: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Location)>, FieldError> {
        let channel = format!("/topic/location/{user}");
        let start = self
            .hub
            .seq_before(
                who,
                &channel,
                earliest_receipt(from, self.config.max_clock_skew),
            )
            .await?;
        let mut points = Vec::new();
        self.hub
            .walk_history(who, &channel, start, HISTORY_PAGE, |m| {
                if let Ok(l) = Location::parse(&m.data, Duration::MAX) {
                    if l.ts >= from && l.ts <= to {
                        points.push((m.seq, l));
                    }
                }
                points.len() < limit
            })
            .await?;
        Ok(points)
    }

    /// Tracking statistics for `user` (or every guard of the caller's org with a known
    /// location) between `from` and `to` (client time, ms).
    pub async fn tracking_stats(
        &self,
        who: &Identity,
        user: Option<&str>,
        from: u64,
        to: u64,
    ) -> Result<Vec<TrackingStats>, FieldError> {
        // Each user with the identity that reads its history: an admin acts in the user's org.
        let users: Vec<(Identity, String)> = match user {
            Some(u) => vec![(who.clone(), u.to_string())],
            None => self
                .locations(who)
                .await?
                .into_iter()
                .map(|l| (who.acting_in(&l.org), l.user))
                .collect(),
        };
        let mut out = Vec::with_capacity(users.len());
        for (who, user) in users {
            let who = &who;
            let points: Vec<Location> = self
                .location_history(who, &user, from, to, MAX_TRACKED_POINTS)
                .await?
                .into_iter()
                .map(|(_, l)| l)
                .collect();
            let last = match &who.org {
                Some(org) => self.last_location(org, &user).await?,
                None => None,
            };
            let org = last.as_ref().map(|l| l.org.clone());
            let index = match &org {
                Some(org) => Some(self.fence_index(org).await?),
                None => None,
            };
            let mut stats = TrackingStats {
                user: user.clone(),
                points: points.len(),
                distance_m: 0.0,
                inside_ms: 0,
                outside_ms: 0,
                last_seen: last.as_ref().map(|l| l.received_at),
                battery: last.as_ref().and_then(|l| l.location.battery),
            };
            for pair in points.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                stats.distance_m += crate::geofence::distance_m([a.lon, a.lat], [b.lon, b.lat]);
                let span = b.ts.saturating_sub(a.ts);
                let inside = index.as_ref().is_some_and(|index| {
                    index
                        .classify(a.lon, a.lat)
                        .into_iter()
                        .any(|(fence, inside)| {
                            inside && fence.guards.as_ref().is_none_or(|g| g.contains(&user))
                        })
                });
                if inside {
                    stats.inside_ms += span;
                } else {
                    stats.outside_ms += span;
                }
            }
            out.push(stats);
        }
        Ok(out)
    }

    /// Shifts of the caller's org.
    pub async fn shifts(&self, who: &Identity) -> Result<Vec<Shift>, FieldError> {
        let all: Vec<Shift> = self.store.load_all(Records::Shifts).await?;
        Ok(all
            .into_iter()
            .filter(|s| who.is(Role::Admin) || who.in_org(&s.org))
            .filter(|s| !who.is(Role::Guard) || who.is(Role::Supervisor) || *who.user == *s.user)
            .collect())
    }

    /// Puts a guard on shift at a site.
    pub async fn add_shift(&self, who: &Identity, spec: ShiftSpec) -> Result<Shift, FieldError> {
        // A guard of the caller's org (an admin names the org).
        let org = self.org_for(who, spec.org.as_deref())?;
        if !Self::may_manage(who, &org) {
            return Err(FieldError::Forbidden(
                "only the org's supervisors and admins plan shifts",
            ));
        }
        if spec.end <= spec.start {
            return bad("a shift must end after it starts");
        }
        let shift = Shift {
            id: uuid::Uuid::new_v4().to_string(),
            org: org.to_string(),
            user: spec.user,
            site: spec.site,
            start: spec.start,
            end: spec.end,
        };
        let committed = self
            .store
            .commit(&[Change::put(Record::Shift { id: &shift.id }, &shift)?])
            .await;
        // Also after a failed commit: what the store holds is no longer known.
        self.shifts_changed();
        committed?;
        Ok(shift)
    }

    /// Ends a shift early / removes it.
    pub async fn delete_shift(&self, who: &Identity, id: &str) -> Result<(), FieldError> {
        let shift: Shift = self
            .store
            .load(Record::Shift { id })
            .await?
            .ok_or_else(|| FieldError::NotFound(format!("no shift {id}")))?;
        if !Self::may_manage(who, &shift.org) {
            return Err(FieldError::Forbidden(
                "only the org's supervisors and admins plan shifts",
            ));
        }
        let committed = self
            .store
            .commit(&[Change::Delete(Record::Shift { id })])
            .await;
        self.shifts_changed();
        committed?;
        Ok(())
    }
}

/// The id of the alert an emergency with idempotency key `key` raises: the same for every
/// retry by `user` on `channel`, and shaped like the random ids of other alerts.
fn alert_id_for(user: &str, channel: &str, key: &str) -> String {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for part in ["lookout-alert", user, channel, key] {
        digest.update(&(part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.finish().as_ref()[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}
