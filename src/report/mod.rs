//! The shift report (issue 37): per guard and shift, a PDF and a CSV of what happened — the
//! track on the site plan, checkpoints scanned, late and missed, alerts with their audit
//! trail, check-ins — made on the appliance, no browser needed.
//!
//! # Layout
//! `events.rs` gathers one time-ordered list of a shift's events from `field`, `patrol` and
//! `alerts`, through their own access rules; `csv.rs` writes it as CSV; `pdf.rs` as PDF with
//! page 1's map drawn by `map.rs` (pure drawing). This file loads the site plan (the one file
//! read) and joins them; `format.rs` (times for people) and `error.rs` at the bottom. It sits above the services it reads and below
//! `api`, which serves it.

mod csv;
mod error;
mod events;
mod format;
mod map;
mod pdf;

use std::path::Path;

pub use self::error::ReportError;
pub use self::events::{
    gather, CheckpointMark, IncidentPhoto, Mark, ScanFlags, ShiftEvent, ShiftReport, Sources,
    Summary, What,
};
pub use self::map::TRACK;
pub use self::pdf::MapSettings;

/// The report as CSV.
pub fn csv(report: &ShiftReport) -> String {
    csv::render(report)
}

/// What page 1 of the PDF is drawn on: the site plan when one is configured and the PDF can take
/// its pixels as they are — a JPEG, or a PNG without transparency or interlacing (the rest, and
/// SVG, would need a decoder the appliance does not carry: the track is then drawn on a grid
/// over the plan's bounds, and page 1 says so) — else a grid fitted to the shift.
pub async fn map_settings(
    report: &ShiftReport,
    plan: Option<(&Path, [f64; 4])>,
    max_track_points: usize,
) -> MapSettings {
    let mut notes = Vec::new();
    let backdrop = match plan {
        Some((path, bounds)) => match tokio::fs::read(path).await {
            Ok(bytes) => match map::PlanImage::parse(bytes) {
                Some(image) => map::Backdrop::Plan { image, bounds },
                None => {
                    notes.push(
                        "The site plan is not a JPEG or a PNG without transparency: the track is drawn on a grid over the plan's bounds."
                            .to_string(),
                    );
                    map::Backdrop::Grid { bounds }
                }
            },
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the site plan for a shift report");
                notes.push(
                    "The site plan could not be read: the track is drawn on a grid over its bounds."
                        .to_string(),
                );
                map::Backdrop::Grid { bounds }
            }
        },
        None => {
            let points: Vec<(f64, f64)> = report
                .events
                .iter()
                .filter_map(|e| e.position)
                .chain(report.checkpoints.iter().map(|c| (c.lat, c.lon)))
                .collect();
            map::Backdrop::Grid {
                bounds: map::bounds_around(&points),
            }
        }
    };
    MapSettings {
        backdrop,
        notes,
        max_track_points,
    }
}

/// The report as PDF. CPU work in proportion to the events: 20 000 events took 270 ms for the
/// PDF (6 MB) and 160 ms for the CSV in a debug build, so callers on the runtime run it on the
/// blocking pool.
pub fn pdf(report: &ShiftReport, settings: &MapSettings) -> Vec<u8> {
    pdf::render(report, settings)
}

/// A file name for the report: `shift-<guard>-<date>.<ext>`, the guard's id reduced to
/// characters safe in a header and a file system.
pub fn file_name(report: &ShiftReport, ext: &str) -> String {
    let guard: String = report
        .shift
        .user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let date: String = format::utc(report.shift.start).chars().take(10).collect();
    format!("shift-{guard}-{date}.{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_and_file_names_are_safe() {
        assert_eq!(format::utc(1_796_655_845_000), "2026-12-07 15:04:05");
        let report = ShiftReport {
            shift: crate::field::Shift {
                id: "s".into(),
                org: "acme".into(),
                user: "g/1 \"x\"".into(),
                site: "hq".into(),
                start: 1_796_655_845_000,
                end: 1_796_659_445_000,
            },
            generated_at: 0,
            events: Vec::new(),
            checkpoints: Vec::new(),
            notes: Vec::new(),
            photos: Vec::new(),
        };
        assert_eq!(file_name(&report, "pdf"), "shift-g_1__x_-2026-12-07.pdf");
    }
}
