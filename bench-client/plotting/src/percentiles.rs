//! Latency by percentile in the HdrHistogram plotter's layout: the x axis
//! is 1/(1-percentile) on a log scale, so each tick is one more nine (50%,
//! 90%, 99%, 99.9%, 99.99%, 99.999%) and the tail gets as much room as the
//! median; one labelled line per run.

use super::{err, latency_unit, render, text_width, write, y_label, Root};
use super::{EDGE_GAP, FONT, MARGIN, X_LABEL_PX, Y_LABEL_AREA};
use plotters::prelude::*;
use std::path::Path;

/// The x-axis ticks, as 1/(1-percentile): 50%, 90%, 99%, 99.9%, 99.99%, 99.999%.
pub const PERCENTILE_TICKS: [f64; 6] = [2.0, 10.0, 100.0, 1e3, 1e4, 1e5];

/// A latency percentile curve: (percentile in 0..1, latency µs).
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Legend name (the run, configuration or worker).
    pub name: String,
    /// Points in increasing percentile.
    pub points: Vec<(f64, f64)>,
}

/// `10` -> `90%`, `1000` -> `99.9%`.
pub fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let s = format!("{p:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// Writes [`percentile_curves_svg`] to `path`.
pub fn percentile_curves(path: &Path, title: &str, curves: &[Curve]) -> Result<(), String> {
    write(path, &percentile_curves_svg(title, curves)?)
}

/// Draws latency-by-percentile curves, one per run, from 50% to 99.999%.
/// Points outside that range are left out (100%, the maximum, has no place
/// on this axis).
pub fn percentile_curves_svg(title: &str, curves: &[Curve]) -> Result<String, String> {
    render(|root| draw(root, title, curves))
}

fn draw(root: &Root<'_>, title: &str, curves: &[Curve]) -> Result<(), String> {
    let (x_min, x_max) = (PERCENTILE_TICKS[0], PERCENTILE_TICKS[5]);
    let to_x = |q: f64| (1.0 / (1.0 - q)).min(x_max);
    let usable = |q: f64| q >= 0.5 && to_x(q) <= x_max && q < 1.0;
    let y_max_us = curves
        .iter()
        .flat_map(|c| c.points.iter().filter(|p| usable(p.0)).map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    let (div, unit) = latency_unit(y_max_us);
    let y_max = y_max_us / div;
    // The last label is centred on the plot's right edge: leave it room.
    let last = text_width(&percentile_label(x_max), X_LABEL_PX.into());
    let right = MARGIN.max((last / 2.0 + EDGE_GAP).ceil() as u32);
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 22))
        .margin(MARGIN)
        .margin_right(right)
        .x_label_area_size(40)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(
            (x_min..x_max)
                .log_scale()
                .with_key_points(PERCENTILE_TICKS.to_vec()),
            0.0..y_max,
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_label_style((FONT, X_LABEL_PX))
        .x_desc("percentile")
        .y_desc(format!("latency ({unit})"))
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
            .map(|&(q, v)| (to_x(q), v / div))
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
        .map_err(err)
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
    use crate::testutil::assert_inside;

    fn curve(name: &str, scale: f64, top: f64) -> Curve {
        Curve {
            name: name.into(),
            points: [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 1.0]
                .iter()
                .filter(|&&q| q <= top)
                .map(|&q: &f64| (q, scale / (1.0 - q).max(1e-6)))
                .collect(),
        }
    }

    #[test]
    fn percentile_curves_have_a_log_axis_labelled_in_nines_from_50_percent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("lat.svg");
        percentile_curves(
            &p,
            "latency",
            &[curve("sqpoll=off", 1.0, 1.0), curve("sqpoll=10", 2.0, 1.0)],
        )
        .expect("plot");
        let svg = std::fs::read_to_string(&p).expect("read");
        for needle in ["sqpoll=off", "sqpoll=10", "<polyline"] {
            assert!(svg.contains(needle), "missing {needle}");
        }
        for tick in ["50%", "90%", "99%", "99.9%", "99.99%", "99.999%"] {
            assert!(svg.contains(&format!("\n{tick}\n")), "missing tick {tick}");
        }
        assert!(!svg.contains("\n0%\n"), "the axis starts at 50%");
    }

    #[test]
    fn the_last_percentile_label_fits_inside_the_svg() {
        // Points up to 99.99%: the axis still ends at 99.999%, the widest
        // label, drawn centred on the plot's right edge.
        let svg = percentile_curves_svg("latency", &[curve("cell", 10.0, 0.9999)]).expect("plot");
        assert_inside(&svg, "99.999%");
    }

    #[test]
    fn long_latencies_are_drawn_in_milliseconds() {
        let svg = percentile_curves_svg("latency", &[curve("slow", 5000.0, 0.999)]).expect("plot");
        assert!(svg.contains("latency (ms)"), "y axis unit");
        let svg = percentile_curves_svg("latency", &[curve("fast", 1.0, 0.999)]).expect("plot");
        assert!(svg.contains("latency (µs)"), "y axis unit");
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
