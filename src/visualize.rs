//! Drawing detections for `mmcompat detect --out-dir`: boxes in a per-class palette colour and a
//! "class score" label above each box, in the spirit of mmdet's `DetLocalVisualizer`
//! (`mmdet/visualization/local_visualizer.py: _draw_instances`): instances with
//! `score > pred_score_thr` only, palette colour per label, `class {label}` when the name is unknown.
//!
//! Self-contained: the text uses an embedded 5x7 bitmap font drawn by us (no font files, no
//! system libraries). Never used for anything a test compares numerically against Python.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};

use crate::preprocess::BgrImage;

/// Box line width in pixels.
const LINE_WIDTH: i64 = 2;

/// Why a visualisation could not be written.
#[derive(Debug, thiserror::Error)]
pub enum VisualizeError {
    #[error("cannot write PNG {}: {message}", path.display())]
    Write { path: PathBuf, message: String },
}

/// Draws `dets` (`[x1, y1, x2, y2]` in pixels of `img`, score, label) with `score > score_thr`
/// onto an RGB copy of `img`. `palette` holds RGB colours indexed by label (the dataset's
/// `metainfo['palette']`); without it (or for labels past its end) a fixed, well-spread palette is
/// used.
pub fn draw_detections(
    img: &BgrImage,
    dets: &[([f32; 4], f32, usize)],
    class_names: &[String],
    score_thr: f32,
    palette: Option<&[[u8; 3]]>,
) -> RgbImage {
    let mut canvas = RgbImage::new(img.width as u32, img.height as u32);
    for (px, bgr) in canvas.pixels_mut().zip(img.data.chunks_exact(3)) {
        *px = Rgb([bgr[2], bgr[1], bgr[0]]);
    }
    let text_scale: i64 = if img.width.min(img.height) >= 300 {
        2
    } else {
        1
    };
    for &(bbox, score, label) in dets {
        // NaN scores fail the comparison and are skipped, like torch's boolean mask would.
        let above = score.partial_cmp(&score_thr) == Some(std::cmp::Ordering::Greater);
        if !above || bbox.iter().any(|v| !v.is_finite()) {
            continue;
        }
        let colour = palette
            .and_then(|p| p.get(label).copied())
            .unwrap_or_else(|| default_colour(label));
        let [x1, y1, x2, y2] = bbox.map(|v| v.round() as i64);
        draw_rect(&mut canvas, x1, y1, x2, y2, colour);
        let name = class_names
            .get(label)
            .cloned()
            .unwrap_or_else(|| format!("class {label}"));
        let text = format!("{name} {score:.2}");
        draw_label(&mut canvas, &text, x1, y1, colour, text_scale);
    }
    canvas
}

/// Writes an RGB image as PNG.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<(), VisualizeError> {
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| VisualizeError::Write {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// Colour of label `i` when no dataset palette is given: hues spread by the golden angle, so
/// neighbouring labels differ clearly (mmdet would pick random colours with seed 42).
pub fn default_colour(i: usize) -> [u8; 3] {
    let hue = (i as f64 * 137.507_764) % 360.0;
    let (s, v) = (0.85, 0.95);
    let c = v * s;
    let hp = hue / 60.0;
    let x = c * (1.0 - (hp % 2.0 - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r, g, b].map(|t| ((t + m) * 255.0).round().clamp(0.0, 255.0) as u8)
}

fn put(canvas: &mut RgbImage, x: i64, y: i64, colour: [u8; 3]) {
    if x >= 0 && y >= 0 && x < i64::from(canvas.width()) && y < i64::from(canvas.height()) {
        canvas.put_pixel(x as u32, y as u32, Rgb(colour));
    }
}

fn fill_rect(canvas: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, colour: [u8; 3]) {
    let (w, h) = (i64::from(canvas.width()), i64::from(canvas.height()));
    for y in y0.max(0)..=y1.min(h - 1) {
        for x in x0.max(0)..=x1.min(w - 1) {
            canvas.put_pixel(x as u32, y as u32, Rgb(colour));
        }
    }
}

/// A `LINE_WIDTH`-pixel outline whose outer edge runs through the box corners.
fn draw_rect(canvas: &mut RgbImage, x1: i64, y1: i64, x2: i64, y2: i64, colour: [u8; 3]) {
    let (x1, x2) = (x1.min(x2), x1.max(x2));
    let (y1, y2) = (y1.min(y2), y1.max(y2));
    let t = LINE_WIDTH - 1;
    fill_rect(canvas, x1, y1, x2, y1 + t, colour);
    fill_rect(canvas, x1, y2 - t, x2, y2, colour);
    fill_rect(canvas, x1, y1, x1 + t, y2, colour);
    fill_rect(canvas, x2 - t, y1, x2, y2, colour);
}

/// Text on a filled background of the box colour, just above the box's top-left corner (inside
/// the box when there is no room above).
fn draw_label(canvas: &mut RgbImage, text: &str, x1: i64, y1: i64, colour: [u8; 3], scale: i64) {
    let pad = scale;
    let char_w = (GLYPH_W + 1) * scale;
    let text_w = char_w * text.chars().count() as i64 - scale + 2 * pad;
    let text_h = GLYPH_H * scale + 2 * pad;
    let top = if y1 - text_h >= 0 {
        y1 - text_h
    } else {
        y1.max(0)
    };
    let left = x1.max(0);
    fill_rect(
        canvas,
        left,
        top,
        left + text_w - 1,
        top + text_h - 1,
        colour,
    );
    // Dark text on light colours, white on dark ones (ITU-R BT.601 luma).
    let luma =
        0.299 * f64::from(colour[0]) + 0.587 * f64::from(colour[1]) + 0.114 * f64::from(colour[2]);
    let ink = if luma > 140.0 {
        [0, 0, 0]
    } else {
        [255, 255, 255]
    };
    for (i, ch) in text.chars().enumerate() {
        let rows = glyph(ch);
        let gx = left + pad + i as i64 * char_w;
        for (ry, bits) in rows.iter().enumerate() {
            for cx in 0..GLYPH_W {
                if bits >> (GLYPH_W - 1 - cx) & 1 == 1 {
                    for sy in 0..scale {
                        for sx in 0..scale {
                            put(
                                canvas,
                                gx + cx * scale + sx,
                                top + pad + ry as i64 * scale + sy,
                                ink,
                            );
                        }
                    }
                }
            }
        }
    }
}

const GLYPH_W: i64 = 5;
const GLYPH_H: i64 = 7;

/// Our 5x7 font: seven rows per glyph, bit 4 is the leftmost column. Characters without a glyph
/// are drawn as `?`.
fn glyph(c: char) -> [u8; 7] {
    match c {
        ' ' => [0; 7],
        '0' => [
            0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110,
        ],
        '1' => [
            0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110,
        ],
        '2' => [
            0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111,
        ],
        '3' => [
            0b11110, 0b00001, 0b00001, 0b01110, 0b00001, 0b00001, 0b11110,
        ],
        '4' => [
            0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010,
        ],
        '5' => [
            0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110,
        ],
        '6' => [
            0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110,
        ],
        '7' => [
            0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000,
        ],
        '8' => [
            0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110,
        ],
        '9' => [
            0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100,
        ],
        'A' => [
            0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001,
        ],
        'B' => [
            0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110,
        ],
        'C' => [
            0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110,
        ],
        'D' => [
            0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100,
        ],
        'E' => [
            0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111,
        ],
        'F' => [
            0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000,
        ],
        'G' => [
            0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111,
        ],
        'H' => [
            0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001,
        ],
        'I' => [
            0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110,
        ],
        'J' => [
            0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100,
        ],
        'K' => [
            0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001,
        ],
        'L' => [
            0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111,
        ],
        'M' => [
            0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001,
        ],
        'N' => [
            0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001,
        ],
        'O' => [
            0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110,
        ],
        'P' => [
            0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000,
        ],
        'Q' => [
            0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101,
        ],
        'R' => [
            0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001,
        ],
        'S' => [
            0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110,
        ],
        'T' => [
            0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100,
        ],
        'U' => [
            0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110,
        ],
        'V' => [
            0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100,
        ],
        'W' => [
            0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010,
        ],
        'X' => [
            0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001,
        ],
        'Y' => [
            0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100,
        ],
        'Z' => [
            0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111,
        ],
        'a' => [
            0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111,
        ],
        'b' => [
            0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110,
        ],
        'c' => [
            0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110,
        ],
        'd' => [
            0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111,
        ],
        'e' => [
            0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110,
        ],
        'f' => [
            0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000,
        ],
        'g' => [
            0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110,
        ],
        'h' => [
            0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001,
        ],
        'i' => [
            0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110,
        ],
        'j' => [
            0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b10010, 0b01100,
        ],
        'k' => [
            0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010,
        ],
        'l' => [
            0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110,
        ],
        'm' => [
            0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10001, 0b10001,
        ],
        'n' => [
            0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001,
        ],
        'o' => [
            0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110,
        ],
        'p' => [
            0b00000, 0b00000, 0b11110, 0b10001, 0b11110, 0b10000, 0b10000,
        ],
        'q' => [
            0b00000, 0b00000, 0b01101, 0b10011, 0b01111, 0b00001, 0b00001,
        ],
        'r' => [
            0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000,
        ],
        's' => [
            0b00000, 0b00000, 0b01110, 0b10000, 0b01110, 0b00001, 0b11110,
        ],
        't' => [
            0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110,
        ],
        'u' => [
            0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101,
        ],
        'v' => [
            0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100,
        ],
        'w' => [
            0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010,
        ],
        'x' => [
            0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001,
        ],
        'y' => [
            0b00000, 0b00000, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110,
        ],
        'z' => [
            0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111,
        ],
        '.' => [
            0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100,
        ],
        ',' => [
            0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000,
        ],
        ':' => [
            0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000,
        ],
        '-' => [
            0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000,
        ],
        '_' => [
            0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111,
        ],
        '+' => [
            0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000,
        ],
        '/' => [
            0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000,
        ],
        '%' => [
            0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011,
        ],
        '(' => [
            0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010,
        ],
        ')' => [
            0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000,
        ],
        '\'' => [
            0b00100, 0b00100, 0b01000, 0b00000, 0b00000, 0b00000, 0b00000,
        ],
        _ => [
            0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(h: usize, w: usize) -> BgrImage {
        BgrImage::filled(h, w, [90, 90, 90])
    }

    #[test]
    fn boxes_are_drawn_in_the_palette_colour_on_the_edges() {
        let img = grey(120, 200);
        let palette = [[255, 0, 0], [0, 200, 0]];
        let names = vec!["cat".to_string(), "dog".to_string()];
        let out = draw_detections(
            &img,
            &[([40.0, 50.0, 150.0, 100.0], 0.9, 1)],
            &names,
            0.3,
            Some(&palette),
        );
        assert_eq!(out.dimensions(), (200, 120));
        let green = Rgb([0, 200, 0]);
        for (x, y) in [
            (40, 75),
            (41, 75),
            (150, 75),
            (149, 75),
            (90, 100),
            (90, 99),
            (150, 100),
        ] {
            assert_eq!(*out.get_pixel(x, y), green, "edge pixel ({x}, {y})");
        }
        // Inside and outside the outline the image is untouched (BGR grey -> RGB grey).
        assert_eq!(*out.get_pixel(90, 75), Rgb([90, 90, 90]));
        assert_eq!(*out.get_pixel(160, 110), Rgb([90, 90, 90]));
        // The label sits above the box on a background of the box colour, with ink on it.
        let label_area: Vec<_> = (41..80)
            .flat_map(|x| (40..50).map(move |y| (x, y)))
            .collect();
        assert!(label_area
            .iter()
            .any(|&(x, y)| *out.get_pixel(x, y) == green));
        // Green is dark enough (luma 117) for white ink.
        assert!(label_area
            .iter()
            .any(|&(x, y)| *out.get_pixel(x, y) == Rgb([255, 255, 255])));
    }

    #[test]
    fn threshold_is_strict_and_default_palette_is_used() {
        let img = grey(50, 50);
        let out = draw_detections(&img, &[([5.0, 5.0, 40.0, 40.0], 0.3, 0)], &[], 0.3, None);
        assert_eq!(
            *out.get_pixel(5, 20),
            Rgb([90, 90, 90]),
            "score == thr is not drawn"
        );
        let out = draw_detections(&img, &[([5.0, 5.0, 40.0, 40.0], 0.31, 7)], &[], 0.3, None);
        assert_eq!(out.get_pixel(5, 20).0, default_colour(7));
        // Labels past the palette fall back to the default colours too.
        let out = draw_detections(
            &img,
            &[([5.0, 5.0, 40.0, 40.0], 0.5, 3)],
            &[],
            0.0,
            Some(&[[1, 2, 3]]),
        );
        assert_eq!(out.get_pixel(5, 20).0, default_colour(3));
    }

    #[test]
    fn boxes_outside_the_image_do_not_panic() {
        let img = grey(10, 10);
        let dets = [
            ([-50.0, -50.0, 500.0, 500.0], 0.9, 0),
            ([f32::NAN, 0.0, 1.0, 1.0], 0.9, 0),
        ];
        let out = draw_detections(&img, &dets, &["a".to_string()], 0.1, None);
        assert_eq!(out.dimensions(), (10, 10));
    }

    #[test]
    fn default_palette_is_distinct_and_save_png_reports_paths() {
        assert_ne!(default_colour(0), default_colour(1));
        assert_ne!(default_colour(1), default_colour(2));
        let err =
            save_png(&RgbImage::new(2, 2), Path::new("/nonexistent/dir/out.png")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/dir/out.png"),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("mmcompat-vis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.png");
        save_png(&RgbImage::new(3, 2), &path).unwrap();
        assert_eq!(image::open(&path).unwrap().width(), 3);
        std::fs::remove_dir_all(&dir).ok();
    }
}
