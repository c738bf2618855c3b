//! Fuzz the location payload check: any MessagePack value is a valid location or a clear error;
//! a valid one holds only finite numbers within their ranges.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use lookout::field::Location;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = rmpv::decode::read_value(&mut &data[..]) else { return };
    if let Ok(loc) = Location::parse(&value, Duration::from_secs(60)) {
        assert!(loc.lat.is_finite() && (-90.0..=90.0).contains(&loc.lat));
        assert!(loc.lon.is_finite() && (-180.0..=180.0).contains(&loc.lon));
        assert!(loc.accuracy.is_finite() && loc.accuracy >= 0.0);
        for v in [loc.heading, loc.speed, loc.altitude, loc.battery].into_iter().flatten() {
            assert!(v.is_finite());
        }
    }
});
