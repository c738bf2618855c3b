//! The shift report as CSV: one row per event (RFC 4180: CRLF line ends, fields quoted when
//! they hold a comma, a quote or a line break, quotes doubled), then one `note` row per note.
//!
//! A text cell starting with `=`, `+`, `-` or `@` gets a leading `'` (OWASP's advice against
//! CSV formula injection: a spreadsheet would run it as a formula). The numbers this file
//! writes itself (coordinates, which may be negative) are left as numbers.

use super::events::{ShiftEvent, ShiftReport, What};

/// The header row.
pub const HEADER: &str =
    "time,kind,guard,site,detail,lat,lon,checkpoint,tour,alert,flags,accuracy_m";

/// The report as CSV text.
pub fn render(report: &ShiftReport) -> String {
    let mut out = String::with_capacity(64 + 120 * report.events.len());
    out.push_str(HEADER);
    out.push_str("\r\n");
    for event in &report.events {
        row(&mut out, report, event);
    }
    for note in &report.notes {
        let cells = [
            text(&super::format::utc(report.generated_at)),
            "note".into(),
            text(&report.shift.user),
            text(&report.shift.site),
            text(note),
        ];
        out.push_str(&cells.join(","));
        out.push_str(",,,,,,,\r\n");
    }
    out
}

fn row(out: &mut String, report: &ShiftReport, event: &ShiftEvent) {
    let (lat, lon) = event
        .position
        .map_or((String::new(), String::new()), |(lat, lon)| {
            (format!("{lat:.6}"), format!("{lon:.6}"))
        });
    let (checkpoint, tour, alert, flags, accuracy) = match &event.what {
        What::Fix { accuracy } => ("", "", "", String::new(), format!("{accuracy:.1}")),
        What::Scan {
            checkpoint,
            tour,
            flags,
            ..
        } => (
            checkpoint.as_str(),
            tour.as_deref().unwrap_or(""),
            "",
            flags.words().join(" "),
            String::new(),
        ),
        What::Round { tour, alert, .. } => (
            "",
            tour.as_str(),
            alert.as_deref().unwrap_or(""),
            String::new(),
            String::new(),
        ),
        What::Alert { id, .. } | What::AlertStep { id, .. } => {
            ("", "", id.as_str(), String::new(), String::new())
        }
        What::CheckIn | What::Incident { .. } => ("", "", "", String::new(), String::new()),
    };
    let cells = [
        text(&super::format::utc(event.at)),
        text(&event.kind()),
        text(&report.shift.user),
        text(&report.shift.site),
        text(&event.detail()),
        lat,
        lon,
        text(checkpoint),
        text(tour),
        text(alert),
        text(&flags),
        accuracy,
    ];
    out.push_str(&cells.join(","));
    out.push_str("\r\n");
}

/// One text cell: defused when a spreadsheet would read a formula, quoted when it must be.
pub fn text(value: &str) -> String {
    let defused = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

#[cfg(test)]
mod tests {
    use super::text;

    #[test]
    fn cells_with_commas_quotes_or_line_breaks_are_quoted_and_formulas_defused() {
        assert_eq!(text("Gate"), "Gate");
        assert_eq!(text("Gate, north"), "\"Gate, north\"");
        assert_eq!(text("the \"back\" door"), "\"the \"\"back\"\" door\"");
        assert_eq!(text("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(text("cr\rhere"), "\"cr\rhere\"");
        assert_eq!(text("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(text("+1"), "'+1");
        assert_eq!(text("-2"), "'-2");
        assert_eq!(text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(text(""), "");
    }
}
