//! Page 1's map: the site plan (a JPEG or PNG, embedded as it is) or a plain grid, the track as one
//! stroked path, checkpoints as circles coloured by how they fared, alerts as triangles, and a
//! legend. Positions are WGS84 mapped linearly through the plan's bounds
//! (`dashboard.site_plan_bounds`), as the dashboard draws them.
//!
//! Pure drawing into a `pdf_writer::Content`; no I/O. Every shape is its own small function.

use pdf_writer::types::{LineCapStyle, LineJoinStyle, TextRenderingMode};
use pdf_writer::{Content, Name, Str};

use super::events::{CheckpointMark, Mark, ShiftEvent, What};

/// The track's colour (RGB, 0–1): a strong blue, unlike any plan's paper.
pub const TRACK: [f32; 3] = [0.0, 0.35, 0.9];
const SCANNED: [f32; 3] = [0.1, 0.6, 0.2];
const FLAGGED: [f32; 3] = [1.0, 0.55, 0.0];
const MISSED: [f32; 3] = [0.85, 0.1, 0.1];
const ALERT: [f32; 3] = [0.55, 0.1, 0.7];
const GRID: [f32; 3] = [0.85, 0.85, 0.85];
/// Grid lines across the map when there is no plan.
const GRID_LINES: usize = 10;
/// Bézier handle length of a quarter circle, as a fraction of the radius.
const KAPPA: f32 = 0.552_284_8;

/// How a plan's pixels are encoded, as the PDF takes them without decoding them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanEncoding {
    /// A JPEG file, as DCT-encoded data: 1 (grey), 3 (RGB) or 4 (CMYK) components.
    Dct {
        /// Colour components.
        components: u8,
    },
    /// A PNG's image data (its IDAT chunks joined): a zlib stream with PNG row filters, which
    /// PDF's FlateDecode undoes with predictor 15. Grey or RGB at 8 bits, or a palette.
    Png {
        /// Samples per pixel: 1 (grey, palette index) or 3 (RGB).
        colors: u8,
        /// Bits per sample.
        bits: u8,
        /// The palette (RGB triples), for an indexed PNG.
        palette: Option<Vec<u8>>,
    },
}

/// The site plan as the report embeds it: its encoded pixels and what its header says.
#[derive(Debug, Clone)]
pub struct PlanImage {
    /// The encoded pixels.
    pub data: Vec<u8>,
    /// Width, px.
    pub width: u32,
    /// Height, px.
    pub height: u32,
    /// Their encoding.
    pub encoding: PlanEncoding,
}

impl PlanImage {
    /// The plan in `bytes` when the PDF can take it as it is: a JPEG, or a PNG that is not
    /// interlaced and has no transparency (both would need decoding, and no decoder is in the
    /// tree).
    pub fn parse(bytes: Vec<u8>) -> Option<PlanImage> {
        if let Some((width, height, components)) = frame_header(&bytes) {
            return (width > 0 && height > 0 && matches!(components, 1 | 3 | 4)).then(|| {
                PlanImage {
                    data: bytes,
                    width: u32::from(width),
                    height: u32::from(height),
                    encoding: PlanEncoding::Dct { components },
                }
            });
        }
        png(&bytes)
    }
}

/// A JPEG's size and components, from its first start-of-frame marker.
fn frame_header(b: &[u8]) -> Option<(u16, u16, u8)> {
    if b.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    loop {
        if *b.get(i)? != 0xFF {
            return None;
        }
        let marker = *b.get(i + 1)?;
        match marker {
            // Fill bytes, then standalone markers without a length.
            0xFF => i += 1,
            0x01 | 0xD0..=0xD7 => i += 2,
            // SOF0–SOF15 but DHT (C4), JPG (C8) and DAC (CC): height, width, components.
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let at = |k: usize| b.get(i + k).copied();
                let height = u16::from_be_bytes([at(5)?, at(6)?]);
                let width = u16::from_be_bytes([at(7)?, at(8)?]);
                return Some((width, height, at(9)?));
            }
            // Start of scan or end of image before any frame: not an image we can place.
            0xDA | 0xD9 => return None,
            _ => {
                let len = u16::from_be_bytes([*b.get(i + 2)?, *b.get(i + 3)?]);
                i += 2 + usize::from(len);
            }
        }
    }
}

/// A PNG's header, palette and image data, when PDF can take them as they are.
fn png(b: &[u8]) -> Option<PlanImage> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    let mut rest = b.strip_prefix(SIGNATURE)?;
    let (mut header, mut palette, mut data) = (None, None, Vec::new());
    while rest.len() >= 12 {
        let len = usize::try_from(u32::from_be_bytes(rest[..4].try_into().ok()?)).ok()?;
        let kind = &rest[4..8];
        let body = rest.get(8..8usize.checked_add(len)?)?;
        match kind {
            b"IHDR" if body.len() == 13 => header = Some(body.to_vec()),
            b"PLTE" => palette = Some(body.to_vec()),
            b"IDAT" => data.extend_from_slice(body),
            b"IEND" => break,
            _ => {}
        }
        rest = rest.get(12 + len..)?;
    }
    let h = header?;
    let width = u32::from_be_bytes(h[0..4].try_into().ok()?);
    let height = u32::from_be_bytes(h[4..8].try_into().ok()?);
    let (bits, colour_type, interlace) = (h[8], h[9], h[12]);
    let (colors, palette) = match (colour_type, bits) {
        (0, 8) => (1, None),
        (2, 8) => (3, None),
        (3, 1 | 2 | 4 | 8) => (
            1,
            Some(palette.filter(|p| !p.is_empty() && p.len() % 3 == 0)?),
        ),
        _ => return None,
    };
    (width > 0 && height > 0 && interlace == 0 && !data.is_empty()).then_some(PlanImage {
        data,
        width,
        height,
        encoding: PlanEncoding::Png {
            colors,
            bits,
            palette,
        },
    })
}

/// What the map is drawn on.
#[derive(Debug, Clone)]
pub enum Backdrop {
    /// The site plan, covering `bounds` [west, south, east, north].
    Plan {
        /// The image.
        image: PlanImage,
        /// Its edges, degrees.
        bounds: [f64; 4],
    },
    /// A grid over `bounds` (no plan, or one that cannot be embedded).
    Grid {
        /// Its edges, degrees.
        bounds: [f64; 4],
    },
}

/// A rectangle on the page, points from the bottom left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageBox {
    /// Left.
    pub x: f32,
    /// Bottom.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
}

impl PageBox {
    /// The largest frame of aspect `aspect` (width / height) in `self`, at its top, centred.
    pub fn fit(self, aspect: f32) -> PageBox {
        if !(aspect.is_finite() && aspect > 0.0) {
            return self;
        }
        let (w, h) = if self.w / self.h > aspect {
            (self.h * aspect, self.h)
        } else {
            (self.w, self.w / aspect)
        };
        PageBox {
            x: self.x + (self.w - w) / 2.0,
            y: self.y + self.h - h,
            w,
            h,
        }
    }
}

/// Where a position falls in a frame covering `bounds`.
pub fn project(bounds: [f64; 4], frame: PageBox, (lat, lon): (f64, f64)) -> (f32, f32) {
    let [west, south, east, north] = bounds;
    let fx = (lon - west) / (east - west);
    let fy = (lat - south) / (north - south);
    (frame.x + frame.w * fx as f32, frame.y + frame.h * fy as f32)
}

/// Bounds around `points` with a margin, at least ~50 m across, for a map with no plan.
pub fn bounds_around(points: &[(f64, f64)]) -> [f64; 4] {
    const MIN_SPAN: f64 = 0.0005;
    let Some(&(lat0, lon0)) = points.first() else {
        return [-0.001, -0.001, 0.001, 0.001];
    };
    let (mut s, mut n, mut w, mut e) = (lat0, lat0, lon0, lon0);
    for &(lat, lon) in points {
        s = s.min(lat);
        n = n.max(lat);
        w = w.min(lon);
        e = e.max(lon);
    }
    let pad_lat = ((n - s) * 0.1).max(MIN_SPAN);
    let pad_lon = ((e - w) * 0.1).max(MIN_SPAN);
    [
        (w - pad_lon).max(-180.0),
        (s - pad_lat).max(-90.0),
        (e + pad_lon).min(180.0),
        (n + pad_lat).min(90.0),
    ]
}

/// Width / height of the backdrop: the image's, or the bounds' in metres (a degree of longitude
/// shrinks with the cosine of the latitude).
pub fn aspect(backdrop: &Backdrop) -> f32 {
    match backdrop {
        Backdrop::Plan { image, .. } => image.width as f32 / image.height as f32,
        Backdrop::Grid {
            bounds: [w, s, e, n],
        } => {
            let mid = ((s + n) / 2.0).to_radians().cos().max(0.01);
            (((e - w) * mid) / (n - s)) as f32
        }
    }
}

/// Draws the backdrop into `frame`: the plan image (resource `image`) or a grid.
pub fn backdrop(c: &mut Content, b: &Backdrop, frame: PageBox, image: Name) {
    match b {
        Backdrop::Plan { .. } => {
            c.save_state();
            c.transform([frame.w, 0.0, 0.0, frame.h, frame.x, frame.y]);
            c.x_object(image);
            c.restore_state();
        }
        Backdrop::Grid { .. } => grid(c, frame),
    }
    c.set_stroke_rgb(0.4, 0.4, 0.4).set_line_width(0.8);
    c.rect(frame.x, frame.y, frame.w, frame.h).stroke();
}

fn grid(c: &mut Content, frame: PageBox) {
    let [r, g, b] = GRID;
    c.set_stroke_rgb(r, g, b).set_line_width(0.5);
    for i in 1..GRID_LINES {
        let f = i as f32 / GRID_LINES as f32;
        c.move_to(frame.x + frame.w * f, frame.y);
        c.line_to(frame.x + frame.w * f, frame.y + frame.h);
        c.move_to(frame.x, frame.y + frame.h * f);
        c.line_to(frame.x + frame.w, frame.y + frame.h * f);
    }
    c.stroke();
}

/// Keeps at most `max` of `points`, evenly, the last always kept.
pub fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max.max(2) {
        return points.to_vec();
    }
    let step = points.len().div_ceil(max.max(2) - 1);
    let mut kept: Vec<(f64, f64)> = points.iter().step_by(step).copied().collect();
    if let Some(last) = points.last() {
        if kept.last() != Some(last) {
            kept.push(*last);
        }
    }
    kept
}

/// The track as one stroked path (a dot for a single fix).
pub fn track(c: &mut Content, points: &[(f32, f32)]) {
    let [r, g, b] = TRACK;
    c.set_stroke_rgb(r, g, b).set_line_width(2.5);
    c.set_line_cap(LineCapStyle::RoundCap);
    c.set_line_join(LineJoinStyle::RoundJoin);
    let Some(&(x0, y0)) = points.first() else {
        return;
    };
    c.move_to(x0, y0);
    if points.len() == 1 {
        c.line_to(x0 + 0.1, y0);
    }
    for &(x, y) in &points[1..] {
        c.line_to(x, y);
    }
    c.stroke();
}

/// A filled circle of radius `r` at (x, y), outlined.
fn circle(c: &mut Content, (x, y): (f32, f32), r: f32, fill: [f32; 3]) {
    let k = KAPPA * r;
    c.set_fill_rgb(fill[0], fill[1], fill[2]);
    c.set_stroke_rgb(0.1, 0.1, 0.1).set_line_width(0.6);
    c.move_to(x + r, y);
    c.cubic_to(x + r, y + k, x + k, y + r, x, y + r);
    c.cubic_to(x - k, y + r, x - r, y + k, x - r, y);
    c.cubic_to(x - r, y - k, x - k, y - r, x, y - r);
    c.cubic_to(x + k, y - r, x + r, y - k, x + r, y);
    c.close_fill_nonzero_and_stroke();
}

/// A filled triangle pointing down at (x, y), `r` high, outlined: a pin whose body stays clear
/// of a checkpoint's circle at the same place.
fn triangle(c: &mut Content, (x, y): (f32, f32), r: f32, fill: [f32; 3]) {
    c.set_fill_rgb(fill[0], fill[1], fill[2]);
    c.set_stroke_rgb(0.1, 0.1, 0.1).set_line_width(0.6);
    c.move_to(x, y);
    c.line_to(x - 0.6 * r, y + r);
    c.line_to(x + 0.6 * r, y + r);
    c.close_fill_nonzero_and_stroke();
}

fn colour(mark: Mark) -> [f32; 3] {
    match mark {
        Mark::Scanned => SCANNED,
        Mark::Flagged => FLAGGED,
        Mark::Missed => MISSED,
    }
}

/// A small label in `font` at (x, y).
pub fn label(c: &mut Content, font: Name, size: f32, (x, y): (f32, f32), text: &[u8]) {
    c.set_fill_rgb(0.0, 0.0, 0.0);
    c.begin_text();
    c.set_font(font, size);
    c.next_line(x, y);
    c.show(Str(text));
    c.end_text();
}

/// Checkpoints as circles with their names (`encode` turns a name into the font's bytes).
pub fn checkpoints(
    c: &mut Content,
    marks: &[CheckpointMark],
    at: impl Fn((f64, f64)) -> (f32, f32),
    font: Name,
    encode: impl Fn(&str) -> Vec<u8>,
) {
    for mark in marks {
        let p = at((mark.lat, mark.lon));
        circle(c, p, 6.0, colour(mark.mark));
        halo_label(c, font, 7.0, (p.0 + 8.0, p.1 - 2.5), &encode(&mark.name));
    }
}

/// A label on the plan: black letters in a white outline, legible on light and dark plans.
fn halo_label(c: &mut Content, font: Name, size: f32, (x, y): (f32, f32), text: &[u8]) {
    c.save_state();
    c.set_stroke_rgb(1.0, 1.0, 1.0).set_line_width(1.6);
    c.set_line_join(LineJoinStyle::RoundJoin);
    c.begin_text();
    c.set_text_rendering_mode(TextRenderingMode::Stroke);
    c.set_font(font, size);
    c.next_line(x, y);
    c.show(Str(text));
    c.end_text();
    c.restore_state();
    label(c, font, size, (x, y), text);
}

/// Alerts as triangles: where the alert says the guard was, else the guard's fix nearest in
/// time (a `TOUR_MISSED` has no position of its own).
pub fn alerts(c: &mut Content, events: &[ShiftEvent], at: impl Fn((f64, f64)) -> (f32, f32)) {
    let fixes: Vec<(u64, (f64, f64))> = events
        .iter()
        .filter(|e| matches!(e.what, What::Fix { .. }))
        .filter_map(|e| e.position.map(|p| (e.at, p)))
        .collect();
    for event in events
        .iter()
        .filter(|e| matches!(e.what, What::Alert { .. }))
    {
        let nearest = || {
            fixes
                .iter()
                .min_by_key(|(t, _)| t.abs_diff(event.at))
                .map(|(_, p)| *p)
        };
        if let Some(p) = event.position.or_else(nearest) {
            triangle(c, at(p), 14.0, ALERT);
        }
    }
}

/// The legend, one row from (x, y).
pub fn legend(c: &mut Content, (x, y): (f32, f32), font: Name) {
    let [r, g, b] = TRACK;
    c.set_stroke_rgb(r, g, b).set_line_width(2.5);
    c.move_to(x, y + 3.0).line_to(x + 18.0, y + 3.0).stroke();
    label(c, font, 8.0, (x + 22.0, y), b"track");
    let items: [(&[u8], [f32; 3]); 3] = [
        (b"scanned", SCANNED),
        (b"late, far or out of order", FLAGGED),
        (b"missed", MISSED),
    ];
    let mut left = x + 60.0;
    for (text, fill) in items {
        circle(c, (left + 5.0, y + 3.0), 5.0, fill);
        label(c, font, 8.0, (left + 14.0, y), text);
        // About Helvetica's average glyph width at 8 pt.
        left += 22.0 + 3.8 * text.len() as f32;
    }
    triangle(c, (left + 5.0, y - 1.0), 9.0, ALERT);
    label(c, font, 8.0, (left + 14.0, y), b"alert");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jpeg_header_gives_its_size_and_other_files_none() {
        // SOI, an APP0 segment of 4 bytes, SOF0: length 11, 8 bits, 300 high, 400 wide, 3.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01,
            0x2C, 0x01, 0x90, 0x03,
        ];
        assert_eq!(frame_header(&jpeg), Some((400, 300, 3)));
        assert!(frame_header(b"\x89PNG\r\n\x1a\n").is_none());
        assert!(frame_header(&jpeg[..12]).is_none(), "cut short");
        assert!(PlanImage::parse(b"<svg/>".to_vec()).is_none());
    }

    /// A PNG of `chunks` (CRCs left zero: they are not checked).
    fn png_of(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, body) in chunks {
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            out.extend_from_slice(*kind);
            out.extend_from_slice(body);
            out.extend_from_slice(&[0; 4]);
        }
        out
    }

    fn ihdr(w: u32, h: u32, bits: u8, colour_type: u8, interlace: u8) -> Vec<u8> {
        let mut b = w.to_be_bytes().to_vec();
        b.extend_from_slice(&h.to_be_bytes());
        b.extend_from_slice(&[bits, colour_type, 0, 0, interlace]);
        b
    }

    #[test]
    fn an_rgb_or_palette_png_is_taken_as_it_is_and_transparency_is_not() {
        let rgb = png_of(&[
            (b"IHDR", ihdr(600, 400, 8, 2, 0)),
            (b"IDAT", vec![1, 2]),
            (b"IDAT", vec![3]),
            (b"IEND", vec![]),
        ]);
        let image = PlanImage::parse(rgb).expect("an RGB PNG");
        assert_eq!(
            (image.width, image.height, image.data),
            (600, 400, vec![1, 2, 3])
        );
        assert_eq!(
            image.encoding,
            PlanEncoding::Png {
                colors: 3,
                bits: 8,
                palette: None
            }
        );
        let indexed = png_of(&[
            (b"IHDR", ihdr(2, 2, 4, 3, 0)),
            (b"PLTE", vec![255, 0, 0, 0, 0, 255]),
            (b"IDAT", vec![9]),
        ]);
        assert!(matches!(
            PlanImage::parse(indexed).map(|i| i.encoding),
            Some(PlanEncoding::Png { colors: 1, bits: 4, palette: Some(p) }) if p.len() == 6
        ));
        for refused in [
            ihdr(2, 2, 8, 6, 0),  // RGBA
            ihdr(2, 2, 8, 4, 0),  // grey + alpha
            ihdr(2, 2, 16, 2, 0), // 16 bits
            ihdr(2, 2, 8, 2, 1),  // interlaced
        ] {
            let file = png_of(&[(b"IHDR", refused), (b"IDAT", vec![1])]);
            assert!(PlanImage::parse(file).is_none());
        }
        let cut = png_of(&[(b"IHDR", ihdr(2, 2, 8, 2, 0)), (b"IDAT", vec![1; 40])]);
        assert!(
            PlanImage::parse(cut[..cut.len() - 20].to_vec()).is_none(),
            "cut short"
        );
    }

    #[test]
    fn positions_map_through_the_bounds_north_up() {
        let frame = PageBox {
            x: 10.0,
            y: 20.0,
            w: 100.0,
            h: 50.0,
        };
        let bounds = [4.0, 52.0, 5.0, 53.0];
        assert_eq!(project(bounds, frame, (52.0, 4.0)), (10.0, 20.0));
        assert_eq!(project(bounds, frame, (53.0, 5.0)), (110.0, 70.0));
        assert_eq!(project(bounds, frame, (52.5, 4.5)), (60.0, 45.0));
        let fitted = PageBox {
            x: 0.0,
            y: 0.0,
            w: 100.0,
            h: 100.0,
        }
        .fit(2.0);
        assert_eq!((fitted.w, fitted.h, fitted.y), (100.0, 50.0, 50.0));
    }

    #[test]
    fn a_long_track_is_thinned_evenly_keeping_its_end() {
        let points: Vec<(f64, f64)> = (0..1000).map(|i| (f64::from(i), 0.0)).collect();
        let thinned = thin(&points, 100);
        assert!(thinned.len() <= 101, "{}", thinned.len());
        assert_eq!(thinned.first(), Some(&(0.0, 0.0)));
        assert_eq!(thinned.last(), Some(&(999.0, 0.0)));
        assert_eq!(thin(&points[..5], 100).len(), 5);
    }
}
