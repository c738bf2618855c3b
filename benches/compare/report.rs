//! What a run writes: a Markdown table per scenario, the same figures as JSON, and the fan-out
//! latency distributions as an SVG plot, with the machine, versions and exact command.

use std::path::Path;

use plotters::prelude::*;
use serde_json::{json, Value};

/// One scenario's table.
pub struct Section {
    pub title: String,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    pub json: Vec<Value>,
    pub notes: Vec<String>,
}

impl Section {
    pub fn new(title: impl Into<String>, columns: &[&'static str]) -> Section {
        Section {
            title: title.into(),
            columns: columns.to_vec(),
            rows: Vec::new(),
            json: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A row of the table and its JSON record.
    pub fn row(&mut self, cells: Vec<String>, record: Value) {
        println!("  | {} |", cells.join(" | "));
        self.rows.push(cells);
        self.json.push(record);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        println!("  note: {note}");
        self.notes.push(note);
    }
}

/// A latency distribution for the plot: microsecond samples, sorted.
pub struct Curve {
    pub label: String,
    pub sorted_us: Vec<u64>,
}

pub struct Report {
    pub meta: Value,
    pub sections: Vec<Section>,
    pub curves: Vec<Curve>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let m = &self.meta;
        let mut out = format!(
            "Run of {} on {} ({} cores), commit {}.\n\n`{}`\n\nServers: {}.\n",
            m["date"].as_str().unwrap_or("?"),
            m["host"].as_str().unwrap_or("?"),
            m["cores"],
            m["commit"].as_str().unwrap_or("?"),
            m["command"].as_str().unwrap_or("?"),
            m["versions"]
                .as_object()
                .map(|v| v
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join("; "))
                .unwrap_or_default(),
        );
        for s in &self.sections {
            out.push_str(&format!("\n#### {}\n\n", s.title));
            out.push_str(&format!("| {} |\n", s.columns.join(" | ")));
            out.push_str(&format!(
                "|{}\n",
                s.columns.iter().map(|_| " --- |").collect::<String>()
            ));
            for row in &s.rows {
                out.push_str(&format!("| {} |\n", row.join(" | ")));
            }
            for note in &s.notes {
                out.push_str(&format!("\n{note}\n"));
            }
        }
        out
    }

    pub fn json(&self) -> Value {
        json!({
            "meta": self.meta,
            "scenarios": self.sections.iter().map(|s| json!({
                "title": s.title, "results": s.json, "notes": s.notes,
            })).collect::<Vec<_>>(),
        })
    }

    /// Writes `report.md`, `report.json` and `latency.svg` to `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(&self.json()).unwrap_or_default(),
        )?;
        self.plot(&dir.join("latency.svg"))
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Latency against the fraction of deliveries at or below it, on a "nines" axis (0 is the
    /// median's left end, 1 = p90, 2 = p99, 3 = p99.9), latency on a log scale.
    fn plot(&self, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let max_ms = self
            .curves
            .iter()
            .filter_map(|c| c.sorted_us.last())
            .max()
            .map_or(1.0, |us| *us as f64 / 1000.0)
            .max(1.0);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Fan-out latency, publish to receipt (ms, log) by quantile",
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..3.5f64, (0.1f64..max_ms * 1.5).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("quantile: 0 = p0, 1 = p90, 2 = p99, 3 = p99.9")
            .y_desc("latency (ms)")
            .x_label_formatter(&|x| {
                let p = 100.0 * (1.0 - 10f64.powf(-x));
                let text = format!("{p:.2}");
                format!("p{}", text.trim_end_matches('0').trim_end_matches('.'))
            })
            .draw()?;
        for (i, curve) in self.curves.iter().enumerate() {
            if curve.sorted_us.is_empty() {
                continue;
            }
            let color = Palette99::pick(i).to_rgba();
            let n = curve.sorted_us.len();
            let points = (0..=700).filter_map(|k| {
                let x = k as f64 * 0.005;
                let q = 1.0 - 10f64.powf(-x);
                let idx = ((n - 1) as f64 * q).round() as usize;
                (idx < n).then(|| (x, (curve.sorted_us[idx] as f64 / 1000.0).max(0.1)))
            });
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(curve.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        root.present()?;
        Ok(())
    }
}

/// Milliseconds from microseconds, for a table cell.
pub fn ms(us: u64) -> String {
    if us >= 100_000 {
        format!("{:.0} ms", us as f64 / 1000.0)
    } else {
        format!("{:.1} ms", us as f64 / 1000.0)
    }
}
