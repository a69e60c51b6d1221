//! PNG charts of a run: learning curves and the confusion matrix. Drawn directly into an RGB
//! buffer with an 8×8 bitmap font (`font8x8`) and encoded with `png`: plotters' text needs
//! system font libraries (fontconfig) that a fresh machine lacks.

use super::metrics::Metrics;
use super::state::EpochRecord;
use crate::error::FileError;
use font8x8::UnicodeFonts;
use std::path::Path;

type Rgb = [u8; 3];
const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];
const GREY: Rgb = [210, 210, 210];
const PALETTE: [Rgb; 4] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40]];

/// An RGB image with the few drawing primitives the charts need.
struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Self {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        for y in y0.min(y1)..=y0.max(y1) {
            for x in x0.min(x1)..=x0.max(x1) {
                self.set(x, y, c);
            }
        }
    }

    /// A line `width` pixels thick (Bresenham with a square pen).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb, width: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            let r = width / 2;
            self.rect(x - r, y - r, x - r + width - 1, y - r + width - 1, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text at (x, y) (top left), 8×8 glyphs scaled by `scale`; returns the width drawn.
    fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Rgb) -> i64 {
        for (i, ch) in s.chars().enumerate() {
            let glyph = font8x8::BASIC_FONTS.get(ch).unwrap_or([0; 8]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        let gx = x + (i as i64 * 8 + col) * scale;
                        let gy = y + row as i64 * scale;
                        self.rect(gx, gy, gx + scale - 1, gy + scale - 1, c);
                    }
                }
            }
        }
        s.chars().count() as i64 * 8 * scale
    }

    /// A horizontal grid line at `y` from `x0` to `x1`, labelled left of `x0`.
    fn gridline(&mut self, y: i64, (x0, x1): (i64, i64), label: &str) {
        self.line((x0, y), (x1, y), GREY, 1);
        self.text(x0 - 8 - Self::text_width(label, 1), y - 4, label, 1, BLACK);
    }

    fn text_width(s: &str, scale: i64) -> i64 {
        s.chars().count() as i64 * 8 * scale
    }

    fn save(&self, path: &Path) -> Result<(), FileError> {
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, self.w as u32, self.h as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc
                .write_header()
                .map_err(|e| FileError::new(path, e.to_string()))?;
            writer
                .write_image_data(&self.px)
                .map_err(|e| FileError::new(path, e.to_string()))?;
        }
        crate::fsutil::write_atomic(path, &bytes)
    }
}

/// A line panel: series of (x, y) points sharing axes, with a title and a legend.
fn panel(
    c: &mut Canvas,
    origin: (i64, i64),
    size: (i64, i64),
    title: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) {
    let (ox, oy) = origin;
    let (w, h) = size;
    let (left, top, bottom) = (70, 30, 30);
    let (px0, py0, px1, py1) = (ox + left, oy + top, ox + w - 10, oy + h - bottom);
    c.text(ox + left, oy + 6, title, 2, BLACK);
    let points: Vec<(f64, f64)> = series.iter().flat_map(|s| s.1.iter().copied()).collect();
    if points.is_empty() {
        return;
    }
    let (mut xmin, mut xmax) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut ymin, mut ymax) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points.iter().filter(|p| p.1.is_finite()) {
        (xmin, xmax, ymin, ymax) = (xmin.min(x), xmax.max(x), ymin.min(y), ymax.max(y));
    }
    if xmax <= xmin {
        xmax = xmin + 1.0;
    }
    if ymax - ymin < 1e-9 {
        ymax = ymin + 1.0;
    }
    let pad = 0.05 * (ymax - ymin);
    let (ymin, ymax) = (ymin - pad, ymax + pad);
    let map = |x: f64, y: f64| {
        (
            px0 + ((x - xmin) / (xmax - xmin) * (px1 - px0) as f64).round() as i64,
            py1 - ((y - ymin) / (ymax - ymin) * (py1 - py0) as f64).round() as i64,
        )
    };
    for i in 0..=4 {
        let y = ymin + (ymax - ymin) * i as f64 / 4.0;
        let (_, sy) = map(xmin, y);
        c.gridline(sy, (px0, px1), &format!("{y:.3}"));
    }
    let ticks = ((xmax - xmin).round() as i64).clamp(1, 10);
    for i in 0..=ticks {
        let x = xmin + (xmax - xmin) * i as f64 / ticks as f64;
        let (sx, _) = map(x, ymin);
        c.line((sx, py1), (sx, py1 + 4), BLACK, 1);
        let label = format!("{}", x.round());
        c.text(
            sx - Canvas::text_width(&label, 1) / 2,
            py1 + 8,
            &label,
            1,
            BLACK,
        );
    }
    c.line((px0, py0), (px0, py1), BLACK, 1);
    c.line((px0, py1), (px1, py1), BLACK, 1);
    let mut legend_x = px0 + 10;
    // Colours follow the series' position, so a series keeps its colour when another is empty.
    for (k, (name, pts)) in series.iter().enumerate().filter(|(_, s)| !s.1.is_empty()) {
        let colour = PALETTE[k % PALETTE.len()];
        for pair in pts.windows(2) {
            c.line(
                map(pair[0].0, pair[0].1),
                map(pair[1].0, pair[1].1),
                colour,
                2,
            );
        }
        for &(x, y) in pts {
            let (sx, sy) = map(x, y);
            c.rect(sx - 2, sy - 2, sx + 2, sy + 2, colour);
        }
        c.rect(legend_x, py0 + 6, legend_x + 14, py0 + 10, colour);
        legend_x += 20 + c.text(legend_x + 18, py0 + 4, name, 1, BLACK) + 12;
    }
}

/// Learning curves: loss and accuracy per epoch, train and validation.
pub fn curves(path: &Path, history: &[EpochRecord]) -> Result<(), FileError> {
    let mut c = Canvas::new(1000, 420);
    // A series with no value in any epoch (no validation split, test not watched) is empty.
    let pts = |f: &dyn Fn(&EpochRecord) -> Option<f64>| {
        history
            .iter()
            .filter_map(|r| f(r).map(|v| (r.epoch as f64, v)))
            .collect::<Vec<_>>()
    };
    panel(
        &mut c,
        (0, 0),
        (500, 400),
        "loss",
        &[
            ("train", pts(&|r| Some(r.train_loss))),
            ("validation", pts(&|r| r.val_loss)),
            ("test", pts(&|r| r.test_loss)),
        ],
    );
    panel(
        &mut c,
        (500, 0),
        (500, 400),
        "accuracy",
        &[
            ("train", pts(&|r| Some(r.train_accuracy))),
            ("val", pts(&|r| r.val_accuracy)),
            ("val macro", pts(&|r| r.val_macro_accuracy)),
            ("test macro", pts(&|r| r.test_macro_accuracy)),
        ],
    );
    c.text(420, 402, "epoch", 2, BLACK);
    c.save(path)
}

/// The confusion matrix as a heat map (row-normalised colour, counts written in each cell).
pub fn confusion(path: &Path, m: &Metrics) -> Result<(), FileError> {
    let k = m.labels.len().max(1) as i64;
    let cell = (560 / k).clamp(24, 80);
    let label_w = m
        .labels
        .iter()
        .map(|l| Canvas::text_width(l, 1))
        .max()
        .unwrap_or(0)
        + 16;
    let (x0, y0) = (label_w, 60);
    let mut c = Canvas::new(
        (x0 + cell * k + 20) as usize,
        (y0 + cell * k + label_w + 30) as usize,
    );
    c.text(
        10,
        10,
        &format!(
            "confusion (rows: true, columns: predicted), accuracy {:.3}",
            m.accuracy
        ),
        1,
        BLACK,
    );
    for (i, row) in m.confusion.iter().enumerate() {
        let total: usize = row.iter().sum();
        for (j, &n) in row.iter().enumerate() {
            let share = if total > 0 {
                n as f64 / total as f64
            } else {
                0.0
            };
            let shade = (255.0 * (1.0 - share)) as u8;
            let colour = [shade, shade, 255];
            let (cx, cy) = (x0 + j as i64 * cell, y0 + i as i64 * cell);
            c.rect(cx, cy, cx + cell - 1, cy + cell - 1, colour);
            let text = n.to_string();
            let ink = if share > 0.5 { WHITE } else { BLACK };
            c.text(
                cx + (cell - Canvas::text_width(&text, 1)) / 2,
                cy + cell / 2 - 4,
                &text,
                1,
                ink,
            );
        }
        let label = &m.labels[i];
        c.text(
            x0 - 8 - Canvas::text_width(label, 1),
            y0 + i as i64 * cell + cell / 2 - 4,
            label,
            1,
            BLACK,
        );
    }
    // Column labels, written downwards one character per line to fit narrow cells.
    for (j, label) in m.labels.iter().enumerate() {
        let cx = x0 + j as i64 * cell + cell / 2 - 4;
        for (n, ch) in label.chars().enumerate() {
            c.text(
                cx,
                y0 + k * cell + 6 + n as i64 * 9,
                &ch.to_string(),
                1,
                BLACK,
            );
        }
    }
    c.save(path)
}

/// A bar chart of (name, mean, std): one bar per item with a ±std whisker, on a 0–1 axis.
pub fn bars(path: &Path, title: &str, items: &[(String, f64, f64)]) -> Result<(), FileError> {
    let n = items.len().max(1) as i64;
    let (left, top, bottom, slot) = (70i64, 40i64, 40i64, 80i64);
    let (w, h) = (left + n * slot + 20, 400i64);
    let mut c = Canvas::new(w as usize, h as usize);
    c.text(left, 10, title, 1, BLACK);
    let (y0, y1) = (h - bottom, top);
    let map = |v: f64| y0 - ((v.clamp(0.0, 1.0)) * (y0 - y1) as f64).round() as i64;
    for i in 0..=5 {
        let v = i as f64 / 5.0;
        c.gridline(map(v), (left, w - 10), &format!("{v:.1}"));
    }
    for (i, (name, mean, std)) in items.iter().enumerate() {
        let x = left + i as i64 * slot + slot / 2;
        let colour = PALETTE[i % PALETTE.len()];
        if mean.is_finite() {
            c.rect(x - slot / 3, map(*mean), x + slot / 3, y0, colour);
            let (lo, hi) = (map(mean - std), map(mean + std));
            c.line((x, lo), (x, hi), BLACK, 2);
            c.line((x - 8, lo), (x + 8, lo), BLACK, 2);
            c.line((x - 8, hi), (x + 8, hi), BLACK, 2);
            let label = format!("{mean:.3}");
            c.text(
                x - Canvas::text_width(&label, 1) / 2,
                map(*mean) - 12,
                &label,
                1,
                BLACK,
            );
        }
        c.text(x - Canvas::text_width(name, 1) / 2, y0 + 10, name, 1, BLACK);
    }
    c.line((left, y0), (w - 10, y0), BLACK, 1);
    c.line((left, y0), (left, y1), BLACK, 1);
    c.save(path)
}
