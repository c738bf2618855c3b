//! Locations: a fix as guards send it and its checks, a user's last known location, and what
//! the service does with a fix once it is logged (last known, fan-in to the org, fences).
//!
//! The fence checks a fix triggers are in `fences.rs`; a user's location history is in
//! `history.rs`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{bad, FieldError};
use super::service::Field;
use crate::alerts::Position;
use crate::auth::{Identity, Role};
use crate::channel::{ChannelKind, Target};
use crate::clock::now_millis;
use crate::store::{Change, Record, Records};

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

    pub(super) fn position(&self) -> Position {
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

impl Field {
    /// After a location was logged: last known, fan-in, fences.
    pub(super) async fn located(
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
        self.check_fences(user, &org, &location).await?;
        // A fix is a sign of life where the guard's settings count activity as a check-in;
        // the fix itself is stored whatever this finds.
        if let Err(e) = self.activity(&org, user, last.received_at).await {
            tracing::warn!(org = %org, user, error = %e, "a fix counted as a check-in");
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
}
