//! PNG charts of a run: learning curves, the confusion matrix and compare's bar chart, drawn with
//! plotters and encoded with `png`. Text is anti-aliased by plotters' `ab_glyph` renderer from a
//! font compiled into the binary (DejaVu Sans, prepared by `assets/fonts/make_font.py`), so no
//! system font library (fontconfig, freetype) is needed.

use super::metrics::Metrics;
use super::state::EpochRecord;
use crate::error::FileError;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::error::Error;
use std::path::Path;

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn Error>>;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-charts.ttf");
/// Charts are drawn this many times larger and averaged down: lines come out smooth, and text is
/// placed to a third of a pixel (plotters puts each glyph on a whole pixel of what it draws).
const S: i32 = 3;
const GREY: RGBColor = RGBColor(210, 210, 210);
const PALETTE: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// Text in the embedded font, `size` output pixels high, black.
fn text(size: i32) -> TextStyle<'static> {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        let ok = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok();
        assert!(ok, "the embedded font parses");
    });
    TextStyle::from((FontFamily::SansSerif, (size * S) as f64).into_font())
}

/// Width in output pixels of `s` written in `style`.
fn width(style: &TextStyle, s: &str) -> i32 {
    style.font.box_size(s).map_or(0, |(w, _)| w as i32 / S)
}

/// The anchor for text of `size` pixels centred on (x, y): plotters' `VPos::Center` puts the
/// ink about a fifth of the size too high with `ab_glyph`.
fn centre(x: i32, y: i32, size: i32) -> (i32, i32) {
    at(x, y + size / 5)
}

/// Output pixel coordinates to drawing coordinates.
fn at(x: i32, y: i32) -> (i32, i32) {
    (x * S, y * S)
}

/// Draws a `w`×`h` chart with `draw` (in coordinates S times larger) and writes it to `path`.
fn render<F>(path: &Path, (w, h): (i32, i32), draw: F) -> Result<(), FileError>
where
    F: for<'a> FnOnce(&Area<'a>) -> DrawResult,
{
    let failed = |e: &dyn std::fmt::Display| FileError::new(path, e.to_string());
    let (w, h, s) = (w as usize, h as usize, S as usize);
    let mut big = vec![255u8; w * s * h * s * 3];
    {
        let size = ((w * s) as u32, (h * s) as u32);
        let root = BitMapBackend::with_buffer(&mut big, size).into_drawing_area();
        draw(&root).map_err(|e| failed(&e))?;
        root.present().map_err(|e| failed(&e))?;
    }
    // Each output pixel is the mean of its S×S block.
    let mut px = vec![0u8; w * h * 3];
    for (i, out) in px.chunks_exact_mut(3).enumerate() {
        let (x, y) = (i % w * s, i / w * s);
        for (c, v) in out.iter_mut().enumerate() {
            let sum: usize = (0..s * s)
                .map(|k| big[((y + k / s) * w * s + x + k % s) * 3 + c] as usize)
                .sum();
            *v = ((sum + s * s / 2) / (s * s)) as u8;
        }
    }
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w as u32, h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| failed(&e))?;
        writer.write_image_data(&px).map_err(|e| failed(&e))?;
    }
    crate::fsutil::write_atomic(path, &bytes)
}

/// A line panel: series of (epoch, value) points sharing axes, with a title and a legend.
fn panel(
    area: &Area,
    title: &str,
    series: &[(&str, Vec<(i64, f64)>)],
    legend: SeriesLabelPosition,
) -> DrawResult {
    let points = || series.iter().flat_map(|s| s.1.iter().copied());
    let (x0, x1) = points().fold((i64::MAX, i64::MIN), |(a, b), (x, _)| (a.min(x), b.max(x)));
    let (x0, x1) = if x0 > x1 {
        (0, 1)
    } else {
        (x0, x1.max(x0 + 1))
    };
    let (y0, y1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, y)| {
        (a.min(y), b.max(y))
    });
    let (y0, y1) = if y0 > y1 {
        (0.0, 1.0)
    } else if y1 - y0 < 1e-9 {
        (y0 - 0.5, y0 + 0.5)
    } else {
        let pad = 0.05 * (y1 - y0);
        (y0 - pad, y1 + pad)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, text(20))
        .margin(10 * S)
        .x_label_area_size(40 * S)
        .y_label_area_size(60 * S)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    // At most 8 labels: the tick step (1, 2 or 5 times a power of ten) exceeds a ninth of the
    // range, so that many decimals suffice.
    let places = (-((y1 - y0) / 9.0).log10().floor()).clamp(0.0, 6.0) as usize;
    chart
        .configure_mesh()
        .bold_line_style(GREY.stroke_width(S as u32))
        .light_line_style(TRANSPARENT)
        .axis_style(BLACK.stroke_width(S as u32))
        .set_all_tick_mark_size(4 * S)
        .x_labels(10)
        .y_labels(8)
        .y_label_formatter(&|v| format!("{v:.places$}"))
        .x_desc("epoch")
        .label_style(text(13))
        .axis_desc_style(text(14))
        .draw()?;
    // Colours follow the series' position, so a series keeps its colour when another is empty.
    let mut drawn = false;
    for (k, (name, pts)) in series.iter().enumerate() {
        if pts.is_empty() {
            continue;
        }
        let pen = PALETTE[k % PALETTE.len()].stroke_width(2 * S as u32);
        chart
            .draw_series(std::iter::once(PathElement::new(pts.clone(), pen)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20 * S, y)], pen));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3 * S, pen.filled())))?;
        drawn = true;
    }
    if drawn {
        chart
            .configure_series_labels()
            .position(legend)
            .margin(10 * S)
            .legend_area_size(26 * S)
            .background_style(WHITE.mix(0.85))
            .border_style(GREY.stroke_width(S as u32))
            .label_font(text(13))
            .draw()?;
    }
    Ok(())
}

/// Learning curves: loss and accuracy per epoch, train and validation.
pub fn curves(path: &Path, history: &[EpochRecord]) -> Result<(), FileError> {
    // A series with no value in any epoch (no validation split, test not watched) is empty.
    let pts = |f: &dyn Fn(&EpochRecord) -> Option<f64>| {
        history
            .iter()
            .filter_map(|r| f(r).filter(|v| v.is_finite()).map(|v| (r.epoch as i64, v)))
            .collect::<Vec<_>>()
    };
    let loss = [
        ("train", pts(&|r| Some(r.train_loss))),
        ("validation", pts(&|r| r.val_loss)),
        ("test", pts(&|r| r.test_loss)),
    ];
    let accuracy = [
        ("train", pts(&|r| Some(r.train_accuracy))),
        ("validation", pts(&|r| r.val_accuracy)),
        ("validation macro", pts(&|r| r.val_macro_accuracy)),
        ("test macro", pts(&|r| r.test_macro_accuracy)),
    ];
    render(path, (1000, 420), |root| {
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(500 * S);
        panel(&left, "loss", &loss, SeriesLabelPosition::UpperRight)?;
        panel(
            &right,
            "accuracy",
            &accuracy,
            SeriesLabelPosition::LowerRight,
        )
    })
}

/// The confusion matrix as a heat map (row-normalised colour, counts written in each cell). Class
/// names are written horizontally: left of the rows, and under the columns on staggered lines
/// when a name is wider than a column.
pub fn confusion(path: &Path, m: &Metrics) -> Result<(), FileError> {
    let (label, count, title) = (text(14), text(13), text(15));
    let k = m.labels.len().max(1) as i32;
    let label_w = m.labels.iter().map(|l| width(&label, l)).max().unwrap_or(0);
    // Cells wide enough for the column names on two staggered lines, if the matrix stays
    // under 1000 pixels; more lines otherwise.
    let cell = ((label_w + 11) / 2)
        .max(560 / k)
        .min(1000 / k)
        .clamp(28, 80);
    let lines = (label_w + 10 + cell - 1) / cell;
    let line_h = 18;
    let heading = format!(
        "confusion matrix (rows: true class, columns: predicted), accuracy {:.3}",
        m.accuracy
    );
    let (x0, y0) = (label_w + 18, 44);
    let bottom = y0 + k * cell;
    let overhang = ((label_w - cell) / 2).max(0);
    let w = (x0 + k * cell + overhang + 14).max(width(&title, &heading) + 20);
    let h = bottom + 10 + lines.max(1) * line_h + 10;
    render(path, (w, h), |root| {
        root.fill(&WHITE)?;
        root.draw(&Text::new(heading.as_str(), at(10, 12), title.clone()))?;
        let centred = Pos::new(HPos::Center, VPos::Center);
        for (i, row) in m.confusion.iter().enumerate() {
            let total: usize = row.iter().sum();
            let y = y0 + i as i32 * cell;
            for (j, &n) in row.iter().enumerate() {
                let share = if total > 0 {
                    n as f64 / total as f64
                } else {
                    0.0
                };
                let shade = (255.0 * (1.0 - share)) as u8;
                let x = x0 + j as i32 * cell;
                root.draw(&Rectangle::new(
                    [at(x, y), at(x + cell, y + cell)],
                    RGBColor(shade, shade, 255).filled(),
                ))?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    n.to_string(),
                    centre(x + cell / 2, y + cell / 2, 13),
                    count.color(&ink).pos(centred),
                ))?;
            }
            let right = Pos::new(HPos::Right, VPos::Center);
            root.draw(&Text::new(
                m.labels[i].as_str(),
                centre(x0 - 8, y + cell / 2, 14),
                label.pos(right),
            ))?;
        }
        let frame = BLACK.stroke_width(S as u32);
        root.draw(&Rectangle::new(
            [at(x0, y0), at(x0 + k * cell, bottom)],
            frame,
        ))?;
        for (j, name) in m.labels.iter().enumerate() {
            let x = x0 + j as i32 * cell + cell / 2;
            let ty = bottom + 10 + j as i32 % lines * line_h;
            let tick = GREY.stroke_width(S as u32);
            root.draw(&PathElement::new(vec![at(x, bottom), at(x, ty)], tick))?;
            let top = Pos::new(HPos::Center, VPos::Top);
            root.draw(&Text::new(name.as_str(), at(x, ty), label.pos(top)))?;
        }
        Ok(())
    })
}

/// A bar chart of (name, mean, std): one bar per item with a ±std whisker, on a 0–1 axis.
pub fn bars(path: &Path, title: &str, items: &[(String, f64, f64)]) -> Result<(), FileError> {
    let (label, value) = (text(14), text(12));
    let n = items.len().max(1);
    let slot = items
        .iter()
        .map(|i| width(&label, &i.0) + 14)
        .max()
        .unwrap_or(0)
        .max(80);
    render(path, (80 + n as i32 * slot + 20, 400), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, text(16))
            .margin(10 * S)
            .x_label_area_size(30 * S)
            .y_label_area_size(50 * S)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..1.0)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .bold_line_style(GREY.stroke_width(S as u32))
            .light_line_style(TRANSPARENT)
            .axis_style(BLACK.stroke_width(S as u32))
            .set_all_tick_mark_size(4 * S)
            .y_labels(6)
            .y_label_formatter(&|v| format!("{v:.1}"))
            .label_style(text(13))
            .draw()?;
        let pen = BLACK.stroke_width(2 * S as u32);
        for (i, (name, mean, std)) in items.iter().enumerate() {
            let x = i as f64;
            let (px, py) = chart.backend_coord(&(x, 0.0));
            let top = Pos::new(HPos::Center, VPos::Top);
            root.draw(&Text::new(name.as_str(), (px, py + 8 * S), label.pos(top)))?;
            if !mean.is_finite() {
                continue;
            }
            let (lo, hi) = ((mean - std).clamp(0.0, 1.0), (mean + std).clamp(0.0, 1.0));
            let colour = PALETTE[i % PALETTE.len()].filled();
            let bar = Rectangle::new([(x - 0.33, 0.0), (x + 0.33, mean.clamp(0.0, 1.0))], colour);
            chart.draw_series(std::iter::once(bar))?;
            for seg in [
                [(x, lo), (x, hi)],
                [(x - 0.1, lo), (x + 0.1, lo)],
                [(x - 0.1, hi), (x + 0.1, hi)],
            ] {
                chart.draw_series(std::iter::once(PathElement::new(seg, pen)))?;
            }
            let (vx, vy) = chart.backend_coord(&(x, hi));
            let above = Pos::new(HPos::Center, VPos::Bottom);
            root.draw(&Text::new(
                format!("{mean:.3}"),
                (vx, vy - 4 * S),
                value.pos(above),
            ))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ab_glyph::{Font, FontRef};

    /// The DCASE 2020 Task 1a classes: long names, written horizontally.
    const CLASSES: [&str; 10] = [
        "airport",
        "bus",
        "metro",
        "metro_station",
        "park",
        "public_square",
        "shopping_mall",
        "street_pedestrian",
        "street_traffic",
        "tram",
    ];

    fn history(epochs: u64) -> Vec<EpochRecord> {
        (1..=epochs)
            .map(|epoch| {
                let t = epoch as f64;
                let (train, val) = (2.3 * (-t / 8.0).exp() + 0.35, 2.3 * (-t / 7.0).exp() + 0.75);
                EpochRecord {
                    epoch,
                    lr: 1e-3,
                    train_loss: train,
                    train_accuracy: 1.0 - train / 2.6,
                    val_loss: Some(val),
                    val_accuracy: Some(0.95 - val / 3.0),
                    val_macro_accuracy: Some(0.93 - val / 3.0),
                    test_loss: None,
                    test_accuracy: None,
                    test_macro_accuracy: Some(0.9 - val / 3.0 - 0.01 * (t * 1.7).sin()),
                    seconds: 1.0,
                    clips_per_second: 1.0,
                    build: None,
                }
            })
            .collect()
    }

    fn metrics() -> Metrics {
        let k = CLASSES.len();
        let confusion: Vec<Vec<usize>> = (0..k)
            .map(|i| {
                (0..k)
                    .map(|j| {
                        if i == j {
                            150 + 11 * i
                        } else {
                            (i * 7 + j * 3) % 25
                        }
                    })
                    .collect()
            })
            .collect();
        let total: usize = confusion.iter().flatten().sum();
        let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
        Metrics {
            accuracy: correct as f64 / total as f64,
            confusion,
            labels: CLASSES.iter().map(|s| s.to_string()).collect(),
            ..Metrics::default()
        }
    }

    /// Width, height and the number of distinct colours of a PNG.
    fn inspect(path: &Path) -> (u32, u32, usize) {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let colours: std::collections::HashSet<&[u8]> =
            buf[..info.buffer_size()].chunks_exact(3).collect();
        (info.width, info.height, colours.len())
    }

    #[test]
    fn glyphs_start_at_their_origin() {
        // plotters 0.3.7 draws a glyph's bounds, not its origin, at the pen: the font is prepared
        // so that the two coincide (assets/fonts/make_font.py).
        let font = FontRef::try_from_slice(FONT).unwrap();
        for id in 0..font.glyph_count() {
            if let Some(outline) = font.outline(ab_glyph::GlyphId(id as u16)) {
                assert!(
                    outline.bounds.min.x <= 0.0,
                    "glyph {id} starts right of its origin"
                );
            }
        }
        for c in "azAZ09_-+.,:;()%±×–≤éüßμσ".chars() {
            assert_ne!(font.glyph_id(c).0, 0, "{c} missing");
        }
    }

    #[test]
    fn charts_are_written_with_antialiased_text() {
        let dir = tempfile::tempdir().unwrap();
        let (curves_png, confusion_png, bars_png) = (
            dir.path().join("curves.png"),
            dir.path().join("confusion.png"),
            dir.path().join("bars.png"),
        );
        curves(&curves_png, &history(30)).unwrap();
        confusion(&confusion_png, &metrics()).unwrap();
        let items = [
            ("bn".to_string(), 0.6, 0.02),
            ("gn".to_string(), f64::NAN, 0.0),
        ];
        bars(&bars_png, "test macro accuracy", &items).unwrap();
        let (w, h, colours) = inspect(&curves_png);
        assert_eq!((w, h), (1000, 420));
        // Smoothed edges give hundreds of shades; a bitmap font and plain lines gave a dozen.
        assert!(colours > 200, "{colours} colours");
        let (w, h, colours) = inspect(&confusion_png);
        assert!(w > 600 && h > 600, "{w}×{h}");
        assert!(colours > 200, "{colours} colours");
        assert!(inspect(&bars_png).2 > 50);
    }

    #[test]
    fn empty_charts_are_written() {
        let dir = tempfile::tempdir().unwrap();
        curves(&dir.path().join("c.png"), &history(0)).unwrap();
        curves(&dir.path().join("c1.png"), &history(1)).unwrap();
        confusion(&dir.path().join("m.png"), &Metrics::default()).unwrap();
        bars(&dir.path().join("b.png"), "", &[]).unwrap();
    }
}
