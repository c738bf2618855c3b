//! The reply a publish gets, from what the field made of it: shared by the native reader and
//! the position pipeline.

use crate::failure::Report;
use crate::hub::HubError;
use crate::protocol::{Encoding, ErrorFrame, Reply, ReplyFields, RequestId};

/// A publish's reply, or `None` when the connection is gone anyway.
pub fn publish_reply(
    encoding: Encoding,
    id: Option<&RequestId>,
    result: Result<crate::field::FieldPublished, crate::field::FieldError>,
) -> Option<bytes::Bytes> {
    let encoded = match result {
        Ok(p) => {
            let fields = ReplyFields {
                channel: Some(&p.published.channel),
                seq: Some(p.published.seq),
                epoch: Some(&p.published.epoch),
                alert_id: p.alert_id.as_deref(),
                ..Default::default()
            };
            encoding.encode(&Reply::new(id, fields))
        }
        Err(crate::field::FieldError::Hub(HubError::Gone)) => return None,
        Err(e) => {
            let report = Report::of(&e);
            encoding.encode(&ErrorFrame::new(id, report.code, &report.message))
        }
    };
    match encoded {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a reply");
            None
        }
    }
}
