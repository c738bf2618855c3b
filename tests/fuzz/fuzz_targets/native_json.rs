//! Fuzz the native protocol's JSON envelope (`lookout.json` text frames): any bytes decode to a
//! request or a decode error, never a panic, and what a request carries parses safely further.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use lookout::protocol::{ClientMsg, Encoding};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Encoding::Json.decode::<ClientMsg>(data) {
        common::follow(&msg);
    }
});
