//! # plotting
//!
//! The SVG charts of bench-client (`bench-client plot`) and of the tuning
//! runner (`uringtls-tune`), drawn with `plotters`, so both draw a latency
//! curve the same way:
//!
//! - [`percentiles`]: latency by percentile in the HdrHistogram style,
//!   x = 1/(1-percentile) on a log axis from 50% to 99.999%.
//! - [`configs`]: one dot per configuration with a min..max whisker.
//! - [`series`]: values over time, one panel per quantity.
//! - [`bars`]: grouped bars (e.g. connect / handshake / first byte / total).
//!
//! Every chart renders to a `String` (`*_svg`), so a caller can inline it
//! in HTML; the path-taking forms write that string to a file. Labels are
//! kept inside the picture: [`text_width`] estimates how wide a label is and
//! margins grow to fit it.

#![forbid(unsafe_code)]

pub mod bars;
pub mod configs;
pub mod percentiles;
pub mod series;

pub use bars::grouped_bars_svg;
pub use configs::{per_config, per_config_svg, Point, Series};
pub use percentiles::{
    parse_hgrm, percentile_curves, percentile_curves_svg, percentile_label, Curve, PERCENTILE_TICKS,
};
pub use series::{time_series_svg, Line, Panel};

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Size of every chart, pixels.
pub const SIZE: (u32, u32) = (960, 540);
const FONT: &str = "sans-serif";
/// Chart margin on every side, pixels (more where a label needs it).
const MARGIN: u32 = 16;
/// Width of the y-axis label area, pixels.
const Y_LABEL_AREA: u32 = 70;
/// Font size of the x-axis labels, pixels.
const X_LABEL_PX: u32 = 12;
/// Space kept between a label and the SVG's edge, pixels.
const EDGE_GAP: f64 = 4.0;

/// The root drawing area of an SVG held in a string.
type Root<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn err(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

/// Renders one chart of [`SIZE`] into an SVG string.
fn render(draw: impl FnOnce(&Root<'_>) -> Result<(), String>) -> Result<String, String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// Writes an SVG string to `path`.
fn write(path: &Path, svg: &str) -> Result<(), String> {
    std::fs::write(path, svg).map_err(|e| format!("plot: {}: {e}", path.display()))
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

/// A latency axis in readable units: values in µs, shown in ms from 10 ms
/// up. Returns the divisor and the unit.
fn latency_unit(max_us: f64) -> (f64, &'static str) {
    if max_us >= 10_000.0 {
        (1000.0, "ms")
    } else {
        (1.0, "µs")
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::{text_width, SIZE};

    /// Every horizontal text of an SVG as (left, right, text), from its
    /// `x`, `text-anchor`, `font-size` and the [`text_width`] estimate.
    /// Rotated texts (a `transform`) are left out.
    pub fn text_extents(svg: &str) -> Vec<(f64, f64, String)> {
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

    /// `needle` is drawn, and no horizontal text reaches past the SVG's sides.
    pub fn assert_inside(svg: &str, needle: &str) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_width_is_estimated_from_character_classes() {
        assert!((text_width("99.9%", 10.0) - 10.0 * (3.0 * 0.6 + 0.3 + 0.9)).abs() < 1e-9);
        assert!(text_width("WWW", 10.0) > text_width("iii", 10.0) * 2.0);
    }

    #[test]
    fn latency_axes_switch_to_milliseconds_from_10_ms() {
        assert_eq!(latency_unit(9_999.0), (1.0, "µs"));
        assert_eq!(latency_unit(10_000.0), (1000.0, "ms"));
    }
}
