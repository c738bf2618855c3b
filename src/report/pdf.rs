//! The shift report as PDF (`pdf-writer`): page 1 the map (`map.rs`) under a title, then text
//! pages — the summary, then the events table (fixes are the track, not rows: the CSV has each)
//! — then the incidents' photos, four to a page.
//!
//! Text is set in the base-14 Helvetica every PDF reader has, so no font is embedded and
//! `pdftotext` reads it back; its WinAnsi encoding (Windows-1252) holds Western European
//! text, and a character outside it is printed as `?`.

use pdf_writer::types::Predictor;
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, TextStr};

use super::events::{IncidentPhoto, ShiftEvent, ShiftReport, What};
use super::map::{self, Backdrop, PageBox, PlanEncoding, PlanImage};

/// A4, points.
const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 40.0;
/// Text lines: body size and leading, points.
const BODY: f32 = 8.5;
const LEADING: f32 = 12.0;
/// A page heading's size, points.
const TITLE: f32 = 14.0;
/// The events table's columns (x, points) and the detail's width in characters (Helvetica's
/// average glyph is about half its size wide).
const COL_KIND: f32 = 135.0;
const COL_DETAIL: f32 = 225.0;
const DETAIL_CHARS: usize = 78;
const SUMMARY_CHARS: usize = 110;

const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");
const PLAN: Name<'static> = Name(b"Im1");
/// The photos' resource names on a photo page.
const PHOTO_NAMES: [Name<'static>; PHOTOS_PER_PAGE] =
    [Name(b"Ph1"), Name(b"Ph2"), Name(b"Ph3"), Name(b"Ph4")];
/// Photos on a page: two columns, two rows.
const PHOTOS_PER_PAGE: usize = 4;

/// What page 1 draws on and how many track points at most.
pub struct MapSettings {
    /// The plan or a grid.
    pub backdrop: Backdrop,
    /// Notes on the backdrop (e.g. why the plan is not shown).
    pub notes: Vec<String>,
    /// `patrol.max_report_track_points`.
    pub max_track_points: usize,
}

/// `text` in WinAnsiEncoding: Latin-1 and the few Windows-1252 extras, `?` for the rest;
/// control characters become spaces.
pub fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            ' '..='~' => c as u8,
            '\u{A0}'..='\u{FF}' => c as u32 as u8,
            '€' => 0x80,
            '‚' => 0x82,
            '„' => 0x84,
            '…' => 0x85,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            '™' => 0x99,
            c if c.is_control() => b' ',
            _ => b'?',
        })
        .collect()
}

/// One line of a text page.
struct Line {
    text: String,
    bold: bool,
    /// Extra columns (x, text) for table rows.
    columns: Vec<(f32, String)>,
}

impl Line {
    fn plain(text: impl Into<String>) -> Line {
        Line {
            text: text.into(),
            bold: false,
            columns: Vec::new(),
        }
    }
    fn heading(text: impl Into<String>) -> Line {
        Line {
            text: text.into(),
            bold: true,
            columns: Vec::new(),
        }
    }
}

/// The report as a PDF file.
pub fn render(report: &ShiftReport, settings: &MapSettings) -> Vec<u8> {
    let mut lines = summary(report, &settings.notes);
    lines.push(Line::plain(""));
    lines.extend(table(&report.events));
    let text_pages = paginate(lines);

    let mut pdf = Pdf::new();
    let mut next = 1;
    let mut alloc = || {
        next += 1;
        Ref::new(next - 1)
    };
    let (catalog, tree, regular, bold, image, info) =
        (alloc(), alloc(), alloc(), alloc(), alloc(), alloc());
    // The photos the PDF can take as they are (JPEG; the server only keeps JPEGs).
    let photos: Vec<(&IncidentPhoto, PlanImage)> = report
        .photos
        .iter()
        .filter_map(|p| PlanImage::parse(p.jpeg.clone()).map(|image| (p, image)))
        .collect();
    let photo_refs: Vec<Ref> = photos.iter().map(|_| alloc()).collect();
    let photo_pages = photos.len().div_ceil(PHOTOS_PER_PAGE);
    let page_ids: Vec<(Ref, Ref)> = (0..=text_pages.len() + photo_pages)
        .map(|_| (alloc(), alloc()))
        .collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().map(|(page, _)| *page))
        .count(i32::try_from(page_ids.len()).unwrap_or(i32::MAX));
    let title = format!("Shift report: {}", report.shift.user);
    pdf.document_info(info)
        .title(TextStr(&title))
        .producer(TextStr("Lookout"));
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    if let Backdrop::Plan { image: plan, .. } = &settings.backdrop {
        plan_image(&mut pdf, image, plan);
    }
    for ((_, plan), id) in photos.iter().zip(&photo_refs) {
        plan_image(&mut pdf, *id, plan);
    }
    let first = first_page(report, settings);
    let photo_contents = photos
        .chunks(PHOTOS_PER_PAGE)
        .zip(photo_refs.chunks(PHOTOS_PER_PAGE))
        .map(|(on_page, refs)| (photo_page(on_page), refs.to_vec()));
    let contents = std::iter::once((first, Vec::new()))
        .chain(text_pages.into_iter().map(|c| (c, Vec::new())))
        .chain(photo_contents);
    for ((page_id, content_id), (content, images)) in page_ids.iter().zip(contents) {
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        page.parent(tree);
        page.contents(*content_id);
        let mut resources = page.resources();
        resources.fonts().pair(REGULAR, regular).pair(BOLD, bold);
        let mut x_objects = resources.x_objects();
        if matches!(settings.backdrop, Backdrop::Plan { .. }) {
            x_objects.pair(PLAN, image);
        }
        for (name, id) in PHOTO_NAMES.iter().zip(&images) {
            x_objects.pair(*name, *id);
        }
        x_objects.finish();
        resources.finish();
        page.finish();
        pdf.stream(*content_id, &content.finish());
    }
    pdf.finish()
}

/// A page of up to four incident photos, each scaled into its cell (keeping its shape) above
/// its caption.
fn photo_page(photos: &[(&IncidentPhoto, PlanImage)]) -> Content {
    let mut c = Content::new();
    write(
        &mut c,
        BOLD,
        TITLE,
        (MARGIN, PAGE_H - MARGIN - TITLE),
        "Incident photos",
    );
    let gap = 16.0;
    let caption = 2.0 * LEADING;
    let top = PAGE_H - MARGIN - TITLE - gap;
    let cell_w = (PAGE_W - 2.0 * MARGIN - gap) / 2.0;
    let cell_h = (top - MARGIN - gap) / 2.0 - caption;
    for (i, ((photo, image), name)) in photos.iter().zip(PHOTO_NAMES).enumerate() {
        let (col, row) = ((i % 2) as f32, (i / 2) as f32);
        let x = MARGIN + col * (cell_w + gap);
        let cell_top = top - row * (cell_h + caption + gap);
        let aspect = image.width as f32 / image.height.max(1) as f32;
        let (w, h) = if aspect >= cell_w / cell_h {
            (cell_w, cell_w / aspect)
        } else {
            (cell_h * aspect, cell_h)
        };
        c.save_state();
        c.transform([w, 0.0, 0.0, h, x, cell_top - h]);
        c.x_object(name);
        c.restore_state();
        let text = format!("{} {}: photo {}", photo.category, photo.incident, photo.n);
        write(&mut c, REGULAR, BODY, (x, cell_top - h - LEADING), &text);
    }
    c
}

/// The plan as an image XObject, its pixels as the file has them (DCT, or Flate with the PNG
/// predictors).
fn plan_image(pdf: &mut Pdf, id: Ref, plan: &PlanImage) {
    let mut x = pdf.image_xobject(id, &plan.data);
    x.width(i32::try_from(plan.width).unwrap_or(i32::MAX));
    x.height(i32::try_from(plan.height).unwrap_or(i32::MAX));
    match &plan.encoding {
        PlanEncoding::Dct { components } => {
            x.filter(Filter::DctDecode);
            match components {
                1 => x.color_space().device_gray(),
                4 => x.color_space().device_cmyk(),
                _ => x.color_space().device_rgb(),
            };
            x.bits_per_component(8);
        }
        PlanEncoding::Png {
            colors,
            bits,
            palette,
        } => {
            x.filter(Filter::FlateDecode);
            x.decode_parms()
                .predictor(Predictor::PngOptimum)
                .colors(i32::from(*colors))
                .bits_per_component(i32::from(*bits))
                .columns(i32::try_from(plan.width).unwrap_or(i32::MAX));
            match palette {
                Some(rgb) => {
                    let hival = i32::try_from(rgb.len() / 3).unwrap_or(256) - 1;
                    x.color_space().indexed(Name(b"DeviceRGB"), hival, rgb);
                }
                None if *colors == 1 => x.color_space().device_gray(),
                None => x.color_space().device_rgb(),
            }
            x.bits_per_component(i32::from(*bits));
        }
    }
    x.finish();
}

/// Page 1: title, the map with its legend, and the notes on it.
fn first_page(report: &ShiftReport, settings: &MapSettings) -> Content {
    let mut c = Content::new();
    let s = &report.shift;
    let top = PAGE_H - MARGIN;
    write(
        &mut c,
        BOLD,
        16.0,
        (MARGIN, top - 12.0),
        &format!("Shift report: {}", s.user),
    );
    let when = format!(
        "Site {}, {} to {} (UTC)",
        s.site,
        super::format::utc(s.start),
        super::format::utc(s.end)
    );
    write(&mut c, REGULAR, 10.0, (MARGIN, top - 30.0), &when);
    let made = format!(
        "Made {} (UTC), shift {}",
        super::format::utc(report.generated_at),
        s.id
    );
    write(&mut c, REGULAR, 8.0, (MARGIN, top - 43.0), &made);

    let area = PageBox {
        x: MARGIN,
        y: 150.0,
        w: PAGE_W - 2.0 * MARGIN,
        h: top - 60.0 - 150.0,
    };
    let frame = area.fit(map::aspect(&settings.backdrop));
    let bounds = match &settings.backdrop {
        Backdrop::Plan { bounds, .. } | Backdrop::Grid { bounds } => *bounds,
    };
    map::backdrop(&mut c, &settings.backdrop, frame, PLAN);
    let at = |p: (f64, f64)| map::project(bounds, frame, p);
    // Nothing is drawn outside the map, whatever a fix far off the plan says.
    c.save_state();
    c.rect(frame.x, frame.y, frame.w, frame.h);
    c.clip_nonzero();
    c.end_path();
    let fixes: Vec<(f64, f64)> = report
        .events
        .iter()
        .filter(|e| matches!(e.what, What::Fix { .. }))
        .filter_map(|e| e.position)
        .collect();
    let track: Vec<(f32, f32)> = map::thin(&fixes, settings.max_track_points)
        .into_iter()
        .map(at)
        .collect();
    map::track(&mut c, &track);
    map::checkpoints(&mut c, &report.checkpoints, at, REGULAR, win_ansi);
    map::alerts(&mut c, &report.events, at);
    c.restore_state();

    let below = frame.y - 22.0;
    map::legend(&mut c, (MARGIN, below), REGULAR);
    let mut y = below - 18.0;
    let drawn = format!(
        "{} of {} fixes drawn; the events, the checkpoints and every alert follow on the next pages.",
        track.len(),
        fixes.len()
    );
    for note in std::iter::once(&drawn).chain(&settings.notes) {
        for part in wrap(note, SUMMARY_CHARS) {
            write(&mut c, REGULAR, 8.0, (MARGIN, y), &part);
            y -= 11.0;
        }
    }
    c
}

/// Text at (x, y) in `font`.
fn write(c: &mut Content, font: Name, size: f32, at: (f32, f32), text: &str) {
    map::label(c, font, size, at, &win_ansi(text));
}

/// The summary's lines.
fn summary(report: &ShiftReport, map_notes: &[String]) -> Vec<Line> {
    let s = report.summary();
    let shift = &report.shift;
    let scanned_ok = s.scans - s.flagged;
    let check_in = report
        .events
        .iter()
        .find(|e| matches!(e.what, What::CheckIn))
        .map_or_else(
            || "none in the shift".to_string(),
            |e| format!("last at {}", super::format::utc(e.at)),
        );
    let mut lines = vec![
        Line::heading(format!("Summary: {} at {}", shift.user, shift.site)),
        Line::plain(format!(
            "Shift {} to {} (UTC), id {}",
            super::format::utc(shift.start),
            super::format::utc(shift.end),
            shift.id
        )),
        Line::plain(format!(
            "Scans: {} ({scanned_ok} on time and in place, {} late, far or out of order)",
            s.scans, s.flagged
        )),
        Line::plain(format!(
            "Rounds ended: {} ({} missing checkpoints; {} checkpoints missed in all)",
            s.rounds, s.rounds_missed, s.checkpoints_missed
        )),
        Line::plain(format!("Alerts: {}", s.alerts)),
        Line::plain(format!("Incidents: {}", s.incidents)),
        Line::plain(format!(
            "Check-ins: {check_in} (the server keeps only the last; a missed one is a CHECK_IN_MISSED alert)"
        )),
        Line::plain(format!("Fixes: {} (the track on page 1; each is a row of the CSV)", s.fixes)),
        Line::plain(""),
        Line::heading("Checkpoints"),
    ];
    if report.checkpoints.is_empty() {
        lines.push(Line::plain("none scanned or due in the shift"));
    }
    for c in &report.checkpoints {
        let how = match c.mark {
            super::events::Mark::Scanned => "scanned",
            super::events::Mark::Flagged => "scanned late, far or out of order",
            super::events::Mark::Missed => "missed",
        };
        lines.push(Line::plain(format!("{}: {how}", c.name)));
    }
    let notes: Vec<&String> = report.notes.iter().chain(map_notes).collect();
    if !notes.is_empty() {
        lines.push(Line::plain(""));
        lines.push(Line::heading("Notes"));
        for note in notes {
            lines.extend(wrap(note, SUMMARY_CHARS).into_iter().map(Line::plain));
        }
    }
    lines
}

/// The events table's lines (without fixes), the detail wrapped.
fn table(events: &[ShiftEvent]) -> Vec<Line> {
    let mut lines = vec![Line {
        text: "Time (UTC)".into(),
        bold: true,
        columns: vec![
            (COL_KIND, "ShiftEvent".into()),
            (COL_DETAIL, "Detail".into()),
        ],
    }];
    for event in events
        .iter()
        .filter(|e| !matches!(e.what, What::Fix { .. }))
    {
        let mut detail = event.detail();
        if let Some((lat, lon)) = event.position {
            detail.push_str(&format!(" @ {lat:.5}, {lon:.5}"));
        }
        for (i, part) in wrap(&detail, DETAIL_CHARS).into_iter().enumerate() {
            let (time, kind) = if i == 0 {
                (super::format::utc(event.at), event.kind())
            } else {
                (String::new(), String::new())
            };
            lines.push(Line {
                text: time,
                bold: false,
                columns: vec![(COL_KIND, kind), (COL_DETAIL, part)],
            });
        }
    }
    lines
}

/// `text` in lines of at most `width` characters, broken at spaces where it can be.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word.to_string();
        while word.chars().count() > width {
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            lines.push(head);
        }
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Lines laid out on as many pages as they need, each page's content stream.
fn paginate(lines: Vec<Line>) -> Vec<Content> {
    let top = PAGE_H - MARGIN - BODY;
    let per_page = (((top - MARGIN) / LEADING) as usize).max(1);
    lines
        .chunks(per_page)
        .map(|chunk| {
            let mut c = Content::new();
            let mut y = top;
            for line in chunk {
                let font = if line.bold { BOLD } else { REGULAR };
                write(&mut c, font, BODY, (MARGIN, y), &line.text);
                for (x, text) in &line.columns {
                    write(&mut c, font, BODY, (*x, y), text);
                }
                y -= LEADING;
            }
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_outside_win_ansi_becomes_a_question_mark() {
        assert_eq!(win_ansi("Gate A"), b"Gate A");
        assert_eq!(win_ansi("Café – 5 €"), b"Caf\xe9 \x96 5 \x80");
        assert_eq!(win_ansi("门 Ω"), b"? ?");
        assert_eq!(win_ansi("a\tb\nc"), b"a b c");
    }

    #[test]
    fn long_text_wraps_at_spaces_and_long_words_are_cut() {
        assert_eq!(wrap("one two three", 7), vec!["one two", "three"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 10), vec![""]);
    }
}
