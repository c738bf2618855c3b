//! Fuzz geofence payloads (the JSON body of `POST /api/geofences`): a spec parses or is refused,
//! a shape compiles or is refused with a reason, and a compiled one answers point tests
//! without panicking, whatever its coordinates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout::field::FenceSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<FenceSpec>(data) else { return };
    let Ok(area) = spec.shape.compile(1000) else { return };
    for (lon, lat) in [(0.0, 0.0), (180.0, 90.0), (-180.0, -90.0), (13.4, 52.5), (f64::NAN, 1.0)] {
        let _ = area.contains(lon, lat);
    }
});
