//! Video: the checks a frame on `/topic/video/{user}` must pass before the hub carries it
//! (codec, keyframe, ts, bytes within the limit).

use super::error::{bad, FieldError};
use super::service::{map_field, Field};

impl Field {
    pub(super) fn check_frame(&self, data: &rmpv::Value) -> Result<(), FieldError> {
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
            Some(rmpv::Value::Binary(bytes)) => {
                let max = self.hub.limits().max_video_frame;
                if bytes.len() <= max {
                    return Ok(());
                }
                Err(FieldError::TooLarge(format!(
                    "video frame of {} bytes over the {max} byte limit",
                    bytes.len()
                )))
            }
            _ => bad("a video frame needs `data` as bytes (use lookout.msgpack)"),
        }
    }
}
