//! Full percentile distributions in the text format of wrk2 and
//! HdrHistogram's `outputPercentileDistribution` (`.hgrm`, which the
//! HdrHistogram plotter reads). Recorded in microseconds, printed in
//! milliseconds, like wrk2.

use hdrhistogram::Histogram;
use std::fmt::Write;

/// Percentile steps per halving of the distance to 100% (HdrHistogram's default).
pub const TICKS_PER_HALF: u32 = 5;
const SCALE: f64 = 1000.0;

/// wrk2's `--latency` block: the headline percentiles, then the detailed spectrum.
pub fn wrk2_text(title: &str, h: &Histogram<u64>) -> String {
    let mut s = format!("  Latency Distribution (HdrHistogram - {title})\n");
    for q in [0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 0.99999, 1.0] {
        let v = h.value_at_quantile(q) as f64 / SCALE;
        let _ = writeln!(s, "{:7.3}%  {:>8}", q * 100.0, ms(v));
    }
    s.push_str("\n  Detailed Percentile spectrum:\n");
    s.push_str(&hgrm(h));
    s
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v:.2}ms")
    } else {
        format!("{:.2}us", v * 1000.0)
    }
}

/// The `.hgrm` table: `Value Percentile TotalCount 1/(1-Percentile)`, values in ms.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    s,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(s, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / SCALE,
        h.stdev() / SCALE
    );
    let _ = writeln!(
        s,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / SCALE,
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        h.distinct_values()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_hist;

    fn sample() -> Histogram<u64> {
        let mut h = new_hist();
        for v in 1..=10_000u64 {
            h.record(v).expect("in range");
        }
        h
    }

    #[test]
    fn hgrm_has_the_four_columns_and_ends_at_100_percent() {
        let text = hgrm(&sample());
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
        assert_eq!(
            header,
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(2)
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                l.split_whitespace()
                    .map(|x| x.parse::<f64>().expect("number"))
                    .collect()
            })
            .collect();
        assert!(rows.len() > 20);
        assert!(rows[..rows.len() - 1].iter().all(|r| r.len() == 4));
        let last = rows.last().expect("rows");
        assert_eq!((last[1], last[2]), (1.0, 10_000.0));
        assert!((last[0] - 10.0).abs() < 0.02, "max {} ms", last[0]);
        // Percentiles and counts never go down.
        assert!(rows
            .windows(2)
            .all(|w| w[1][1] >= w[0][1] && w[1][2] >= w[0][2]));
        assert!(text.contains("Total count    =        10000]"), "{text}");
    }

    #[test]
    fn wrk2_text_lists_the_headline_percentiles_in_ms() {
        let text = wrk2_text("Recorded Latency", &sample());
        assert!(
            text.starts_with(
                "  Latency Distribution (HdrHistogram - Recorded Latency)\n 50.000%    5.00ms\n"
            ),
            "{text}"
        );
        assert!(text.contains("100.000%   10.01ms"), "{text}");
        assert!(text.contains("Detailed Percentile spectrum"));
    }
}
