//! The two encodings of the native protocol (`lookout.json`, `lookout.msgpack`): encoding a
//! server frame, decoding a client frame, and whether data can reach subscribers of both.
//!
//! No message types live here: those are in `client.rs` and `frames.rs`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Which encoding a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `lookout.json`, text frames.
    Json,
    /// `lookout.msgpack`, binary frames.
    MsgPack,
}

impl Encoding {
    /// The WebSocket subprotocol name.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Json => "lookout.json",
            Encoding::MsgPack => "lookout.msgpack",
        }
    }

    /// Index into per-encoding caches.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Number of encodings, for per-encoding caches.
    pub const COUNT: usize = 2;

    /// Encodes one server frame.
    pub fn encode<T: Serialize>(self, value: &T) -> Result<Bytes, EncodeError> {
        match self {
            Encoding::Json => serde_json::to_vec(value)
                .map(Bytes::from)
                .map_err(|e| EncodeError(e.to_string())),
            Encoding::MsgPack => rmp_serde::to_vec_named(value)
                .map(Bytes::from)
                .map_err(|e| EncodeError(e.to_string())),
        }
    }

    /// Decodes one client frame.
    pub fn decode<'de, T: Deserialize<'de>>(self, bytes: &'de [u8]) -> Result<T, DecodeError> {
        match self {
            Encoding::Json => serde_json::from_slice(bytes).map_err(|e| DecodeError(e.to_string())),
            Encoding::MsgPack => {
                rmp_serde::from_slice(bytes).map_err(|e| DecodeError(e.to_string()))
            }
        }
    }
}

/// Whether `data` can reach every subscriber: each encoding a subscriber may speak must be able
/// to carry it. JSON cannot carry a map key that is not a string, a number or a bool (a
/// MessagePack client can send one), nor a NaN or infinite key; such data is refused when
/// published instead of silently missing for JSON subscribers. Names the first offending key.
pub fn check_portable(data: &rmpv::Value) -> Result<(), String> {
    use rmpv::Value;
    let mut stack = vec![data];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Map(entries) => {
                for (key, value) in entries {
                    let portable = match key {
                        Value::String(s) => s.as_str().is_some(),
                        Value::Integer(_) | Value::Boolean(_) => true,
                        Value::F32(f) => f.is_finite(),
                        Value::F64(f) => f.is_finite(),
                        _ => false,
                    };
                    if !portable {
                        return Err(format!(
                            "a map key ({key}) JSON clients cannot receive: keys must be strings, numbers or booleans"
                        ));
                    }
                    stack.push(value);
                }
            }
            Value::String(s) if s.as_str().is_none() => {
                return Err("a string that is not UTF-8".into());
            }
            _ => {}
        }
    }
    Ok(())
}

/// A server frame could not be encoded (e.g. a MessagePack map with non-string keys to JSON).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode frame: {0}")]
pub struct EncodeError(pub String);

/// A client frame could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode frame: {0}")]
pub struct DecodeError(pub String);
