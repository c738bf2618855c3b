//! The way in: [`Field::publish`] gives a publish on a domain channel its meaning and hands
//! it to its concern (location, video, emergency); everything else goes to the hub unchanged.

use super::error::FieldError;
use super::location::Location;
use super::service::{Field, FieldPublished};
use crate::auth::Identity;
use crate::channel::names::{self, is_video};
use crate::hub::{Publish, Turn};

impl Field {
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
        if let Some(user) = names::location_user(req.channel).map(str::to_string) {
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
        if let Some(user) = names::emergency_user(req.channel).map(str::to_string) {
            return self.publish_emergency(who, req, turn, user).await;
        }
        let published = self.hub.publish_in_turn(who, req, turn).await?;
        Ok(FieldPublished {
            published,
            alert_id: None,
        })
    }
}
