//! What `merge` checks about the runs it adds up: every worker of the
//! fleet present once, none starved of CPU, all started together and
//! measured for as long as the others. Each finding is one warning
//! sentence naming the input and the figures.

use super::merge::Input;
use crate::plan::fleet::WorkerTag;
use std::collections::BTreeMap;

/// Runs whose measuring started further apart than this (seconds) did not
/// run side by side all the time.
pub const START_TOLERANCE_S: f64 = 0.1;
/// A run measured for this much longer or shorter (share) than the median
/// of the runs did not overlap the others all the time.
pub const LENGTH_TOLERANCE: f64 = 0.02;

/// The fleet as the worker tags describe it.
#[derive(Debug, Default, PartialEq)]
pub struct Workers {
    /// N of `I/N` (the most common one), if any input is tagged.
    pub expected: Option<u32>,
    /// Tags present, in order, duplicates once.
    pub present: Vec<WorkerTag>,
    /// Tags of the fleet with no input (`2/3`).
    pub missing: Vec<String>,
    /// Missing, duplicate, untagged and disagreeing inputs.
    pub warnings: Vec<String>,
}

/// Checks the worker tags: each of 1..=N present exactly once.
pub fn workers(inputs: &[Input]) -> Workers {
    let mut by_tag: BTreeMap<WorkerTag, Vec<&str>> = BTreeMap::new();
    let mut sizes: BTreeMap<u32, usize> = BTreeMap::new();
    for i in inputs {
        if let Some(w) = i.worker {
            by_tag.entry(w).or_default().push(&i.name);
            *sizes.entry(w.of).or_insert(0) += 1;
        }
    }
    let Some((&n, _)) = sizes.iter().max_by_key(|(&n, &count)| (count, n)) else {
        return Workers::default();
    };
    let mut out = Workers {
        expected: Some(n),
        present: by_tag.keys().copied().collect(),
        ..Workers::default()
    };
    if sizes.len() > 1 {
        let all: Vec<String> = sizes.keys().map(|k| k.to_string()).collect();
        out.warnings.push(format!(
            "the logs disagree on the number of workers (I/N with N = {}): are they from the same run? checked against N = {n}",
            all.join(", ")
        ));
    }
    for index in 1..=n {
        let tag = WorkerTag { index, of: n };
        match by_tag.get(&tag).map(Vec::len).unwrap_or(0) {
            0 => out.missing.push(tag.to_string()),
            1 => {}
            _ => out.warnings.push(format!(
                "worker {tag} appears {} times ({}): its load is counted more than once",
                by_tag[&tag].len(),
                by_tag[&tag].join(", ")
            )),
        }
    }
    if !out.missing.is_empty() {
        let have = n as usize - out.missing.len();
        out.warnings.push(format!(
            "worker{} {} of {n} missing: no log tagged so among the inputs, so the merged figures cover {have} of {n} workers (did it fail, or is its file not given?)",
            if out.missing.len() == 1 { "" } else { "s" },
            out.missing.join(", ")
        ));
    }
    for i in inputs.iter().filter(|i| i.worker.is_none()) {
        out.warnings.push(format!(
            "{}: no worker tag while other logs have one (was it run without --worker?)",
            i.name
        ));
    }
    out
}

/// Inputs whose run saw its own CPU saturated.
pub fn starved(inputs: &[Input]) -> Vec<String> {
    inputs
        .iter()
        .filter(|i| i.saturated())
        .map(|i| {
            let busiest = i
                .busiest_cpu()
                .map(|(c, b)| format!(" ({c} {:.0}% busy)", b * 100.0))
                .unwrap_or_default();
            format!(
                "{}: starved: its own CPU was saturated{busiest}, so its rate and latencies measure the client, not the server (give it more CPUs or add a worker); merged anyway",
                i.label()
            )
        })
        .collect()
}

/// Inputs that started measuring more than [`START_TOLERANCE_S`] after the first.
pub fn starts(inputs: &[Input]) -> Vec<String> {
    let Some(first) = inputs.iter().filter_map(|i| i.start).min_by(f64::total_cmp) else {
        return Vec::new();
    };
    inputs
        .iter()
        .filter_map(|i| {
            let late = i.start? - first;
            (late > START_TOLERANCE_S).then(|| {
                format!(
                    "{}: started measuring {late:.3}s after the first input (tolerance {START_TOLERANCE_S:.3}s): the intervals do not line up, so the loads did not add up all the time (use one --start-at for every worker)",
                    i.label()
                )
            })
        })
        .collect()
}

/// Inputs whose measured time differs from the median by more than [`LENGTH_TOLERANCE`].
pub fn lengths(inputs: &[Input]) -> Vec<String> {
    let mut secs: Vec<f64> = inputs.iter().map(|i| i.seconds).collect();
    if secs.len() < 2 {
        return Vec::new();
    }
    secs.sort_by(f64::total_cmp);
    let median = secs[secs.len() / 2];
    if median <= 0.0 {
        return Vec::new();
    }
    inputs
        .iter()
        .filter_map(|i| {
            let off = (i.seconds - median) / median;
            (off.abs() > LENGTH_TOLERANCE).then(|| {
                format!(
                    "{}: measured {:.2}s where the median input measured {median:.2}s ({:+.1}%, tolerance {:.0}%): the runs did not overlap all the time (same --duration for every worker?)",
                    i.label(),
                    i.seconds,
                    off * 100.0,
                    LENGTH_TOLERANCE * 100.0
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, worker: Option<(u32, u32)>, start: Option<f64>, seconds: f64) -> Input {
        Input {
            name: name.into(),
            worker: worker.map(|(index, of)| WorkerTag { index, of }),
            count: 100,
            seconds,
            requested: None,
            start,
            p99_us: 100,
            result: None,
        }
    }

    #[test]
    fn each_worker_must_be_present_once() {
        let ins = [
            input("a", Some((1, 3)), None, 3.0),
            input("b", Some((1, 3)), None, 3.0),
            input("c", None, None, 3.0),
        ];
        let w = workers(&ins);
        assert_eq!(w.expected, Some(3));
        assert_eq!(w.missing, ["2/3", "3/3"]);
        assert_eq!(w.warnings.len(), 3, "{:?}", w.warnings);
        assert!(w.warnings[0].starts_with("worker 1/3 appears 2 times (a, b)"));
        assert!(w.warnings[1].starts_with("workers 2/3, 3/3 of 3 missing"));
        assert!(w.warnings[2].starts_with("c: no worker tag"));
        assert_eq!(workers(&[input("x", None, None, 1.0)]), Workers::default());
    }

    #[test]
    fn starts_more_than_100_ms_apart_are_reported() {
        let ins = [
            input("a", None, Some(1000.0), 3.0),
            input("b", None, Some(1000.099), 3.0),
            input("c", None, Some(1000.25), 3.0),
        ];
        let w = starts(&ins);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "c: started measuring 0.250s after the first input (tolerance 0.100s)"
            ),
            "{}",
            w[0]
        );
    }

    #[test]
    fn lengths_more_than_2_percent_off_the_median_are_reported() {
        let ins = [
            input("a", None, None, 3.0),
            input("b", None, None, 3.05),
            input("c", None, None, 2.9),
        ];
        let w = lengths(&ins);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "c: measured 2.90s where the median input measured 3.00s (-3.3%, tolerance 2%)"
            ),
            "{}",
            w[0]
        );
    }
}
