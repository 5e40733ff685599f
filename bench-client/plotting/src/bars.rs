//! Grouped bars: categories along x (e.g. connect, handshake, first byte,
//! total), one bar per series in each (e.g. p50, p90, p99, p99.9), values
//! in µs drawn in µs or ms.

use super::{err, latency_unit, render, y_label, Root, FONT, MARGIN, X_LABEL_PX, Y_LABEL_AREA};
use plotters::prelude::*;

/// Width of one category in x units (integer coordinates, so that the
/// axis can take fixed key points and a label formatter).
const CATEGORY: i32 = 1000;
/// Width of a category taken by its bars, x units.
const GROUP_FILL: i32 = 800;

/// Draws one group of bars per category; `series[j].1[i]` is series `j`'s
/// latency (µs) in category `i` (missing or NaN: no bar).
pub fn grouped_bars_svg(
    title: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
) -> Result<String, String> {
    render(|root| draw(root, title, categories, series))
}

fn draw(
    root: &Root<'_>,
    title: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
) -> Result<(), String> {
    let n = categories.len().max(1);
    let y_max_us = series
        .iter()
        .flat_map(|s| s.1.iter().copied().filter(|v| v.is_finite()))
        .fold(1.0f64, f64::max)
        * 1.15;
    let (div, unit) = latency_unit(y_max_us);
    let y_max = y_max_us / div;
    let centres: Vec<i32> = (0..n as i32).map(|i| i * CATEGORY + CATEGORY / 2).collect();
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 22))
        .margin(MARGIN)
        .x_label_area_size(40)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(
            (0..n as i32 * CATEGORY).with_key_points(centres),
            0.0..y_max,
        )
        .map_err(err)?;
    let name_of = |x: &i32| {
        categories
            .get((x / CATEGORY).max(0) as usize)
            .cloned()
            .unwrap_or_default()
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_style((FONT, X_LABEL_PX))
        .x_label_formatter(&name_of)
        .y_desc(format!("latency ({unit})"))
        .y_label_formatter(&|v| y_label(*v, y_max))
        .draw()
        .map_err(err)?;
    let width = GROUP_FILL / series.len().max(1) as i32;
    for (j, (name, values)) in series.iter().enumerate() {
        let color = Palette99::pick(j).to_rgba();
        let left = |i: usize| i as i32 * CATEGORY + (CATEGORY - GROUP_FILL) / 2 + j as i32 * width;
        chart
            .draw_series(
                values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(i, v)| {
                        Rectangle::new(
                            [(left(i), 0.0), (left(i) + width * 9 / 10, v / div)],
                            color.filled(),
                        )
                    }),
            )
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::assert_inside;

    #[test]
    fn every_category_is_named_and_every_series_drawn() {
        let cats: Vec<String> = ["connect", "handshake", "first byte", "total"]
            .map(String::from)
            .to_vec();
        let series = vec![
            ("p50".to_string(), vec![20.0, 150.0, 40.0, 230.0]),
            ("p99".to_string(), vec![60.0, 400.0, f64::NAN, 700.0]),
        ];
        let svg = grouped_bars_svg("phases", &cats, &series).expect("plot");
        for c in &cats {
            assert_inside(&svg, c);
        }
        assert!(svg.contains("p99") && svg.contains("latency (µs)"));
        // 7 bars + 2 legend swatches + the background and legend boxes.
        assert!(svg.matches("<rect").count() >= 9);
    }
}
