//! Fuzz the native protocol's MessagePack envelope (`lookout.msgpack` binary frames, the
//! encoding guards' phones use for locations and video): never a panic, and the application
//! data a request carries comes back byte for byte.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use lookout::protocol::{ClientMsg, Encoding};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Encoding::MsgPack.decode::<ClientMsg>(data) {
        common::follow(&msg);
    }
});
