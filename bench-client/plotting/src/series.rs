//! Values over time: one panel per quantity (e.g. throughput above, p99
//! below), stacked, sharing the time axis; one labelled line per run in
//! each panel.

use super::{err, render, y_label, Root, FONT, MARGIN, Y_LABEL_AREA};
use plotters::prelude::*;

/// One line: (x, y) points in increasing x.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Legend name.
    pub name: String,
    /// Points.
    pub points: Vec<(f64, f64)>,
}

/// One panel: a quantity and its lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// The y axis description, with its unit (`requests / s`).
    pub y_desc: String,
    /// One line per run.
    pub lines: Vec<Line>,
}

/// Draws `panels` stacked top to bottom under one `title`, all against
/// the same x range (`x_desc`, from 0 to the largest x of any line).
pub fn time_series_svg(title: &str, x_desc: &str, panels: &[Panel]) -> Result<String, String> {
    render(|root| draw(root, title, x_desc, panels))
}

fn draw(root: &Root<'_>, title: &str, x_desc: &str, panels: &[Panel]) -> Result<(), String> {
    let x_max = panels
        .iter()
        .flat_map(|p| p.lines.iter().flat_map(|l| l.points.iter().map(|pt| pt.0)))
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let body = root
        .titled(title, (FONT, 22))
        .map_err(err)?
        .margin(0, 0, MARGIN, MARGIN);
    let areas = body.split_evenly((panels.len().max(1), 1));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let y_max = panel
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
            .max(1.0)
            * 1.15;
        let mut chart = ChartBuilder::on(area)
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(Y_LABEL_AREA)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(panel.y_desc.as_str())
            .y_label_formatter(&|v| y_label(*v, y_max))
            .draw()
            .map_err(err)?;
        for (i, line) in panel.lines.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(err)?
                .label(line.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::assert_inside;

    #[test]
    fn each_panel_gets_its_axis_and_every_line_its_label() {
        let line = |name: &str, k: f64| Line {
            name: name.into(),
            points: (0..10).map(|i| (f64::from(i), k * f64::from(i))).collect(),
        };
        let panels = [
            Panel {
                y_desc: "requests / s".into(),
                lines: vec![line("worker 1/2", 100.0), line("worker 2/2", 90.0)],
            },
            Panel {
                y_desc: "p99 (ms)".into(),
                lines: vec![line("worker 1/2", 1.0), line("worker 2/2", 2.0)],
            },
        ];
        let svg = time_series_svg("over time", "time (s)", &panels).expect("plot");
        for needle in ["requests / s", "p99 (ms)", "worker 2/2", "over time"] {
            assert!(svg.contains(needle), "missing {needle}");
        }
        assert_eq!(
            svg.matches(r#"stroke-width="2" points"#).count(),
            4,
            "one line per run per panel"
        );
        assert_inside(&svg, "over time");
    }
}
