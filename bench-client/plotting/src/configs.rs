//! One value per configuration: a dot per median, a whisker from min to
//! max, a small cross per run (the tuning runner's throughput, p99 and CPU
//! plots).

use super::{err, render, text_width, write, y_label, Root, EDGE_GAP, FONT, MARGIN, SIZE};
use super::{X_LABEL_PX, Y_LABEL_AREA};
use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::{RangedCoordf64, RangedCoordi32};
use plotters::prelude::*;
use std::path::Path;

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

/// Draws `series` against configurations into `path` (see [`per_config_svg`]).
pub fn per_config(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<(), String> {
    write(path, &per_config_svg(title, x_desc, y_desc, series)?)
}

/// Draws `series` against configurations: a dot per median, a whisker
/// from min to max, a small cross per run.
pub fn per_config_svg(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<String, String> {
    render(|root| draw(root, title, x_desc, y_desc, series))
}

fn draw(
    root: &Root<'_>,
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
    let mut chart = ChartBuilder::on(root)
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
        .map_err(err)
}

/// Left and right margins that keep the first and last upright labels of
/// `n` equal segments inside the SVG: each is centred in its segment, so a
/// label wider than its segment reaches past the plot's edge.
pub(crate) fn segment_margins(n: usize, first: f64, last: f64) -> (u32, u32) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::assert_inside;

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
        let dir = tempfile::tempdir().expect("tempdir");
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
        per_config(&p, "p99 per configuration", "ring", "µs", &series).expect("plot");
        let svg = std::fs::read_to_string(&p).expect("read");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        for needle in ["p99.9", "ring64", "ring4096", "p99 per configuration"] {
            assert!(svg.contains(needle), "missing {needle}");
        }
    }

    #[test]
    fn the_last_configuration_label_fits_inside_the_svg() {
        let long = "4096/keepalive/../sysctl/short-connections.conf";
        // Six configurations (the most drawn upright): narrow segments.
        let mut points: Vec<Point> = (0..5).map(|i| point(&format!("{i}/ka"), 9.0)).collect();
        points.push(point(long, 7.0));
        let series = vec![Series {
            name: "ops/s".into(),
            points,
        }];
        let svg =
            per_config_svg("throughput", "ring/workload/profile", "ops/s", &series).expect("plot");
        assert_inside(&svg, long);
    }
}
