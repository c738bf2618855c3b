//! How a report writes times: UTC, to the second, for people (`2026-12-07 15:04:05`).

/// `ms` since the epoch as a UTC time for people.
pub(super) fn utc(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}
