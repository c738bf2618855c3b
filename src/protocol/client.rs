//! What clients send: the requests of the native protocol (both encodings), and the id a
//! reply echoes.

use serde::Deserialize;

/// Opaque request id echoed in replies.
pub type RequestId = rmpv::Value;

/// A client request (both encodings).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Subscribe to a channel, optionally resuming after `since`.
    Subscribe {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// Channel name.
        channel: String,
        /// Resume after this seq.
        #[serde(default)]
        since: Option<u64>,
        /// The epoch `since` belongs to.
        #[serde(default)]
        epoch: Option<String>,
    },
    /// Stop receiving a channel.
    Unsubscribe {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// Channel name.
        channel: String,
    },
    /// Publish `data` to a channel.
    Publish {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// Channel name.
        channel: String,
        /// Application payload.
        #[serde(default = "nil")]
        data: rmpv::Value,
        /// Recipients must acknowledge the message.
        #[serde(default)]
        ack: bool,
        /// Recipient user, for `/user/queue/*`.
        #[serde(default)]
        to: Option<String>,
        /// Owner of a job, on its first publish.
        #[serde(default)]
        owner: Option<String>,
        /// A retry with the same key gets the first reply; stored and delivered once.
        #[serde(default)]
        idempotency_key: Option<String>,
    },
    /// Acknowledge an `ack_required` message.
    Ack {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// Channel name.
        channel: String,
        /// Seq acknowledged.
        seq: u64,
    },
    /// Application-level ping.
    Ping {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
    },
    /// Replace the connection's token before it expires.
    Refresh {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// The new JWT.
        token: String,
    },
    /// Job-status dialect: follow one job.
    SubscribeJob {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// Job id.
        #[serde(rename = "jobId")]
        job_id: String,
    },
    /// Job-status dialect: stop following one job.
    UnsubscribeJob {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// Job id.
        #[serde(rename = "jobId")]
        job_id: String,
    },
    /// Acknowledge an alert (supervisors of its org, admins): it stops escalating.
    AlertAck {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// The alert.
        #[serde(rename = "alertId")]
        alert_id: String,
        /// A note for the audit trail.
        #[serde(default)]
        note: Option<String>,
    },
    /// Resolve an alert.
    AlertResolve {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// The alert.
        #[serde(rename = "alertId")]
        alert_id: String,
        /// A note for the audit trail.
        #[serde(default)]
        note: Option<String>,
    },
    /// A typing indicator, relayed on the org's presence channel.
    Typing {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// Where: a room, or a user for a private conversation.
        #[serde(default)]
        room: Option<String>,
        /// Typing or stopped.
        #[serde(default = "yes")]
        active: bool,
    },
    /// Job-status dialect: follow any channel, with dialect frames.
    SubscribeChannel {
        /// Echoed id.
        #[serde(default)]
        id: Option<RequestId>,
        /// Channel name.
        channel: String,
    },
}

fn yes() -> bool {
    true
}

/// The payload of a publish without `data`.
pub fn nil() -> rmpv::Value {
    rmpv::Value::Nil
}

/// Enough of a malformed request to echo its id in the error.
#[derive(Debug, Default, Deserialize)]
pub struct IdOnly {
    /// The id, if it could be read.
    #[serde(default)]
    pub id: Option<RequestId>,
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;
    use crate::protocol::encoding::Encoding;

    #[test]
    fn a_publish_decodes_from_json_and_msgpack_alike() {
        let json =
            br#"{"type":"publish","id":7,"channel":"/topic/system","data":{"a":1},"ack":true}"#;
        let m: ClientMsg = Encoding::Json.decode(json).expect("json");
        let value: serde_json::Value = serde_json::from_slice(json).expect("value");
        let packed = rmp_serde::to_vec_named(&value).expect("pack");
        let n: ClientMsg = Encoding::MsgPack.decode(&packed).expect("msgpack");
        for msg in [m, n] {
            match msg {
                ClientMsg::Publish {
                    channel, ack, data, ..
                } => {
                    assert_eq!(channel, "/topic/system");
                    assert!(ack);
                    assert_eq!(data["a"], rmpv::Value::from(1));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn msgpack_binary_data_stays_bytes() {
        #[derive(Serialize)]
        struct P<'a> {
            r#type: &'a str,
            channel: &'a str,
            #[serde(with = "serde_bytes_shim")]
            data: &'a [u8],
        }
        mod serde_bytes_shim {
            pub fn serialize<S: serde::Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(b)
            }
        }
        let packed = rmp_serde::to_vec_named(&P {
            r#type: "publish",
            channel: "/topic/video/g1",
            data: &[0xff, 0xd8, 0x00],
        })
        .expect("pack");
        match Encoding::MsgPack
            .decode::<ClientMsg>(&packed)
            .expect("decode")
        {
            ClientMsg::Publish { data, .. } => {
                assert_eq!(data, rmpv::Value::Binary(vec![0xff, 0xd8, 0x00]))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
