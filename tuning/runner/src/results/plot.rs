//! SVG plots (plotters): a figure per configuration (median, min..max
//! whisker, every run as a dot), and latency percentile curves in the
//! HdrHistogram style: x = 1/(1-percentile) on a log axis, labelled
//! 90%, 99%, 99.9%...

use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::{RangedCoordf64, RangedCoordi32};
use plotters::prelude::*;
use std::path::Path;

const SIZE: (u32, u32) = (960, 540);
const FONT: &str = "sans-serif";
/// Chart margin on every side, pixels (more where a label needs it).
const MARGIN: u32 = 16;
/// Width of the y-axis label area, pixels.
const Y_LABEL_AREA: u32 = 70;
/// Font size of the x-axis labels, pixels.
const X_LABEL_PX: u32 = 12;
/// Space kept between a label and the SVG's edge, pixels.
const EDGE_GAP: f64 = 4.0;

/// One configuration's value in a per-configuration plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Configuration (x axis label).
    pub label: String,
    /// Median over the runs.
    pub median: f64,
    /// Smallest run.
    pub min: f64,
    /// Largest run.
    pub max: f64,
    /// Every run.
    pub runs: Vec<f64>,
}

/// A named series of per-configuration points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// One point per configuration, same order in every series.
    pub points: Vec<Point>,
}

/// A latency percentile curve: (percentile in 0..1, latency µs).
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Legend name (the configuration).
    pub name: String,
    /// Points in increasing percentile.
    pub points: Vec<(f64, f64)>,
}

fn err(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

/// Draws `series` against configurations: a dot per median, a whisker
/// from min to max, a small cross per run.
pub fn per_config(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<(), String> {
    let n = series.first().map(|s| s.points.len()).unwrap_or(0).max(1);
    let labels: Vec<String> = series
        .first()
        .map(|s| s.points.iter().map(|p| p.label.clone()).collect())
        .unwrap_or_default();
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.max))
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let upright = n <= 6;
    let (left, right) = if upright {
        let width = |i: usize| {
            text_width(
                &labels.get(i).cloned().unwrap_or_default(),
                X_LABEL_PX.into(),
            )
        };
        segment_margins(n, width(0), width(n - 1))
    } else {
        (MARGIN, MARGIN)
    };
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(MARGIN)
        .margin_left(left)
        .margin_right(right)
        .x_label_area_size(if upright { 40 } else { 90 })
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d((0..n as i32 - 1).into_segmented(), 0.0..y_max)
        .map_err(err)?;
    let label_of = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            labels.get(*i as usize).cloned().unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    };
    let mut mesh = chart.configure_mesh();
    let y_fmt = |v: &f64| y_label(*v, y_max);
    mesh.x_desc(x_desc)
        .y_desc(y_desc)
        .y_label_formatter(&y_fmt)
        .x_labels(n)
        .x_label_formatter(&label_of)
        .disable_x_mesh();
    if upright {
        mesh.x_label_style((FONT, X_LABEL_PX));
    } else {
        mesh.x_label_style(
            (FONT, 12)
                .into_font()
                .transform(FontTransform::Rotate90)
                .color(&BLACK),
        );
    }
    mesh.draw().map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        draw_series(&mut chart, s, Palette99::pick(i).to_rgba())?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Left and right margins that keep the first and last upright labels of
/// `n` equal segments inside the SVG: each is centred in its segment, so a
/// label wider than its segment reaches past the plot's edge.
fn segment_margins(n: usize, first: f64, last: f64) -> (u32, u32) {
    let w = f64::from(SIZE.0);
    let (mut left, mut right) = (f64::from(MARGIN), f64::from(MARGIN));
    // Each step removes at least half the overflow; a few suffice.
    for _ in 0..16 {
        let x0 = left + f64::from(Y_LABEL_AREA);
        let seg = (w - right - x0).max(1.0) / n as f64;
        let over_left = EDGE_GAP - (x0 + seg / 2.0 - first / 2.0);
        let over_right = (w - right - seg / 2.0 + last / 2.0) - (w - EDGE_GAP);
        if over_left <= 0.0 && over_right <= 0.0 {
            break;
        }
        left += over_left.max(0.0);
        right += over_right.max(0.0);
    }
    // Never more than a third of the width each: an absurdly long label is
    // clipped rather than squeezing the plot to nothing.
    let cap = w / 3.0;
    (left.min(cap).ceil() as u32, right.min(cap).ceil() as u32)
}

type SegChart<'a> =
    ChartContext<'a, SVGBackend<'a>, Cartesian2d<SegmentedCoord<RangedCoordi32>, RangedCoordf64>>;

fn draw_series(chart: &mut SegChart<'_>, s: &Series, color: RGBAColor) -> Result<(), String> {
    let at = |i: usize| SegmentValue::CenterOf(i as i32);
    chart
        .draw_series(
            s.points
                .iter()
                .enumerate()
                .map(|(i, p)| Circle::new((at(i), p.median), 5, color.filled())),
        )
        .map_err(err)?
        .label(s.name.as_str())
        .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
    chart
        .draw_series(s.points.iter().enumerate().map(|(i, p)| {
            PathElement::new(vec![(at(i), p.min), (at(i), p.max)], color.stroke_width(2))
        }))
        .map_err(err)?;
    chart
        .draw_series(s.points.iter().enumerate().flat_map(|(i, p)| {
            p.runs
                .iter()
                .map(move |&v| Cross::new((at(i), v), 3, color.stroke_width(1)))
        }))
        .map_err(err)?;
    Ok(())
}

/// Axis numbers without needless decimals: `12.5` on a 0..20 axis,
/// `25000` on a 0..100000 one.
pub fn y_label(v: f64, max: f64) -> String {
    if max >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Estimated width in pixels of `text` at `px` pixels (sans-serif; a
/// little wide on purpose: narrow punctuation 0.3 em, `%`, `m`, `w` and
/// capitals up to 0.9 em, everything else 0.6 em).
pub fn text_width(text: &str, px: f64) -> f64 {
    text.chars()
        .map(|c| match c {
            '.' | ',' | ':' | ';' | '\'' | '|' | '!' | 'i' | 'l' | 'j' | ' ' | '/' => 0.3,
            '%' | 'm' | 'w' | 'M' | 'W' | '@' => 0.9,
            c if c.is_ascii_uppercase() => 0.7,
            _ => 0.6,
        })
        .sum::<f64>()
        * px
}

/// `10` -> `90%`, `1000` -> `99.9%`.
pub fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let s = format!("{p:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// Draws latency-by-percentile curves, one per configuration, on a log
/// percentile axis (the HdrHistogram plotter's layout).
pub fn percentile_curves(path: &Path, title: &str, curves: &[Curve]) -> Result<(), String> {
    let to_x = |q: f64| 1.0 / (1.0 - q);
    let usable = |q: f64| (0.0..0.99999).contains(&q);
    let x_max = curves
        .iter()
        .flat_map(|c| c.points.iter().filter(|p| usable(p.0)).map(|p| to_x(p.0)))
        .fold(100.0f64, f64::max);
    // The next power of ten above the last point, so its label is drawn.
    let x_max = 10f64.powf(x_max.log10().floor() + 1.0);
    let y_max = curves
        .iter()
        .flat_map(|c| c.points.iter().filter(|p| usable(p.0)).map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    // The last label is centred on the plot's right edge: leave it room.
    let last = text_width(&percentile_label(x_max), X_LABEL_PX.into());
    let right = MARGIN.max((last / 2.0 + EDGE_GAP).ceil() as u32);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(MARGIN)
        .margin_right(right)
        .x_label_area_size(40)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d((1.0..x_max).log_scale(), 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_label_style((FONT, X_LABEL_PX))
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|v| y_label(*v, y_max))
        .draw()
        .map_err(err)?;
    for (i, c) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = c
            .points
            .iter()
            .filter(|p| usable(p.0))
            .map(|&(q, v)| (to_x(q), v))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(err)?
            .label(c.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Reads an `.hgrm` (HdrHistogram percentile distribution, values in ms)
/// into (percentile, µs) points.
pub fn parse_hgrm(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let v: f64 = cols.next()?.parse().ok()?;
            let q: f64 = cols.next()?.parse().ok()?;
            Some((q, v * 1000.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(label: &str, m: f64) -> Point {
        Point {
            label: label.into(),
            median: m,
            min: m * 0.9,
            max: m * 1.1,
            runs: vec![m * 0.9, m, m * 1.1],
        }
    }

    #[test]
    fn per_config_plot_is_an_svg_with_the_series_and_configurations_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.svg");
        let series = vec![
            Series {
                name: "p99".into(),
                points: vec![point("ring64", 900.0), point("ring4096", 700.0)],
            },
            Series {
                name: "p99.9".into(),
                points: vec![point("ring64", 1900.0), point("ring4096", 1700.0)],
            },
        ];
        per_config(&p, "p99 per configuration", "ring", "µs", &series).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        for needle in ["p99.9", "ring64", "ring4096", "p99 per configuration"] {
            assert!(svg.contains(needle), "missing {needle}");
        }
    }

    #[test]
    fn percentile_curves_have_a_log_axis_labelled_in_percent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lat.svg");
        let curve = |name: &str, scale: f64| Curve {
            name: name.into(),
            points: [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0]
                .iter()
                .map(|&q: &f64| (q, scale / (1.0 - q).max(1e-5)))
                .collect(),
        };
        percentile_curves(
            &p,
            "latency",
            &[curve("sqpoll=off", 1.0), curve("sqpoll=10", 2.0)],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        for needle in ["sqpoll=off", "sqpoll=10", "99.9%", "90%", "<polyline"] {
            assert!(svg.contains(needle), "missing {needle}");
        }
    }

    /// Every horizontal text of an SVG as (left, right, text), from its
    /// `x`, `text-anchor`, `font-size` and the [`text_width`] estimate.
    /// Rotated texts (a `transform`) are left out.
    fn text_extents(svg: &str) -> Vec<(f64, f64, String)> {
        let attr = |tag: &str, name: &str| -> Option<String> {
            let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
            Some(tag[at..].split('"').next()?.to_string())
        };
        svg.split("<text")
            .skip(1)
            .filter_map(|chunk| {
                let (tag, rest) = chunk.split_once('>')?;
                if tag.contains("transform") {
                    return None;
                }
                let text = rest.split("</text>").next()?.trim().to_string();
                let x: f64 = attr(tag, "x")?.parse().ok()?;
                let size: f64 = attr(tag, "font-size")?.parse().ok()?;
                let w = text_width(&text, size);
                let left = match attr(tag, "text-anchor").as_deref() {
                    Some("middle") => x - w / 2.0,
                    Some("end") => x - w,
                    _ => x,
                };
                Some((left, left + w, text))
            })
            .collect()
    }

    fn assert_inside(svg: &str, needle: &str) {
        let texts = text_extents(svg);
        assert!(
            texts.iter().any(|t| t.2 == needle),
            "no text {needle}: {texts:?}"
        );
        for (left, right, text) in texts {
            assert!(
                left >= 0.0 && right <= f64::from(SIZE.0),
                "`{text}` spans {left:.1}..{right:.1}, outside 0..{}",
                SIZE.0
            );
        }
    }

    #[test]
    fn the_last_percentile_label_fits_inside_the_svg() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lat.svg");
        // Points up to 99.99%: the axis ends at 99.999%, the widest label,
        // drawn centred on the plot's right edge.
        let curve = Curve {
            name: "cell".into(),
            points: [0.5, 0.9, 0.99, 0.999, 0.9999]
                .iter()
                .map(|&q: &f64| (q, 10.0 / (1.0 - q)))
                .collect(),
        };
        percentile_curves(&p, "latency", &[curve]).unwrap();
        assert_inside(&std::fs::read_to_string(&p).unwrap(), "99.999%");
    }

    #[test]
    fn the_last_configuration_label_fits_inside_the_svg() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.svg");
        let long = "4096/keepalive/../sysctl/short-connections.conf";
        // Six configurations (the most drawn upright): narrow segments.
        let mut points: Vec<Point> = (0..5).map(|i| point(&format!("{i}/ka"), 9.0)).collect();
        points.push(point(long, 7.0));
        let series = vec![Series {
            name: "ops/s".into(),
            points,
        }];
        per_config(&p, "throughput", "ring/workload/profile", "ops/s", &series).unwrap();
        assert_inside(&std::fs::read_to_string(&p).unwrap(), long);
    }

    #[test]
    fn text_width_is_estimated_from_character_classes() {
        assert!((text_width("99.9%", 10.0) - 10.0 * (3.0 * 0.6 + 0.3 + 0.9)).abs() < 1e-9);
        assert!(text_width("WWW", 10.0) > text_width("iii", 10.0) * 2.0);
    }

    #[test]
    fn percentile_labels_read_like_hdrhistogram() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(2.0), "50%");
    }

    #[test]
    fn hgrm_rows_become_microsecond_points() {
        let text = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n\
                    0.100 0.000000000000          1           1.00\n\
                    0.250 0.500000000000         50           2.00\n\
                    1.500 1.000000000000        100\n\
                    #[Mean    =        0.300, StdDeviation   =        0.100]\n";
        assert_eq!(
            parse_hgrm(text),
            [(0.0, 100.0), (0.5, 250.0), (1.0, 1500.0)]
        );
    }
}
