//! The experiment matrix: every combination of knob values, sysctl values,
//! profiles and workloads is a *cell*; runs go over the cells repetition by
//! repetition (A B C A B C ...), so slow drift on a shared machine spreads
//! over every cell instead of biasing the ones that ran last.

use crate::experiment::{Experiment, Side, Workload, NO_PROFILE};
use std::collections::BTreeMap;

/// One configuration of the experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Position in the matrix, from 0.
    pub index: usize,
    /// (axis, value) for every axis, in axis order.
    pub settings: Vec<(String, String)>,
    /// Flags appended to the server command.
    pub server_args: Vec<String>,
    /// Flags appended to the bench-client command.
    pub client_args: Vec<String>,
    /// Sysctls this cell wants (keys of other cells not named here go back
    /// to their original values).
    pub sysctls: BTreeMap<String, String>,
    /// The workload.
    pub workload: Workload,
}

impl Cell {
    /// `axis=value` pairs, space separated.
    pub fn label(&self) -> String {
        let parts: Vec<String> = self
            .settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        parts.join(" ")
    }

    /// The values of the axes that vary, `/` separated (plot labels).
    pub fn short_label(&self, varying: &[String]) -> String {
        let parts: Vec<&str> = self
            .settings
            .iter()
            .filter(|(k, _)| varying.contains(k))
            .map(|(_, v)| v.as_str())
            .collect();
        if parts.is_empty() {
            "all".into()
        } else {
            parts.join("/")
        }
    }
}

/// Loads a profile file named on the `profiles` axis into key/value pairs.
pub type ProfileLoader = dyn Fn(&str) -> Result<Vec<(String, String)>, String>;

/// One run: a cell in a repetition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// 0-based position in the schedule.
    pub seq: usize,
    /// 0-based repetition.
    pub rep: u32,
    /// Index of the cell.
    pub cell: usize,
}

/// An axis value and what it does to a cell.
#[derive(Debug, Clone)]
struct Choice {
    label: String,
    server_args: Vec<String>,
    client_args: Vec<String>,
    sysctls: Vec<(String, String)>,
    workload: Option<Workload>,
}

impl Choice {
    fn named(label: &str) -> Choice {
        Choice {
            label: label.into(),
            server_args: vec![],
            client_args: vec![],
            sysctls: vec![],
            workload: None,
        }
    }
}

/// Expands the experiment into its cells; `profile` loads a profile file
/// named on the `profiles` axis into its key/value pairs.
pub fn expand(exp: &Experiment, profile: &ProfileLoader) -> Result<Vec<Cell>, String> {
    let axes = axes(exp, profile)?;
    let mut cells = vec![];
    let total: usize = axes.iter().map(|(_, c)| c.len()).product();
    for index in 0..total {
        // Mixed-radix digits, last axis fastest.
        let mut rest = index;
        let mut picks = vec![0; axes.len()];
        for (i, (_, choices)) in axes.iter().enumerate().rev() {
            picks[i] = rest % choices.len();
            rest /= choices.len();
        }
        cells.push(cell(index, &axes, &picks));
    }
    Ok(cells)
}

fn cell(index: usize, axes: &[(String, Vec<Choice>)], picks: &[usize]) -> Cell {
    let mut c = Cell {
        index,
        settings: vec![],
        server_args: vec![],
        client_args: vec![],
        sysctls: BTreeMap::new(),
        workload: Workload {
            name: String::new(),
            args: vec![],
        },
    };
    for ((name, choices), &p) in axes.iter().zip(picks) {
        let ch = &choices[p];
        c.settings.push((name.clone(), ch.label.clone()));
        c.server_args.extend(ch.server_args.iter().cloned());
        c.client_args.extend(ch.client_args.iter().cloned());
        // Later axes (explicit sysctls) override earlier ones (profiles).
        c.sysctls.extend(ch.sysctls.iter().cloned());
        if let Some(w) = &ch.workload {
            c.workload = w.clone();
        }
    }
    c
}

/// Axis order: knobs, profiles, sysctls, workloads.
fn axes(exp: &Experiment, profile: &ProfileLoader) -> Result<Vec<(String, Vec<Choice>)>, String> {
    let mut axes = vec![];
    for k in &exp.knobs {
        let choices = k
            .values
            .iter()
            .map(|v| {
                let mut ch = Choice::named(v);
                if k.omit.as_deref() != Some(v.as_str()) {
                    let args = vec![k.flag.clone(), v.clone()];
                    match k.side {
                        Side::Server => ch.server_args = args,
                        Side::Client => ch.client_args = args,
                    }
                }
                ch
            })
            .collect();
        axes.push((k.name.clone(), choices));
    }
    if !exp.profiles.is_empty() {
        let mut choices = vec![];
        for p in &exp.profiles {
            let mut ch = Choice::named(&profile_label(p));
            if p != NO_PROFILE {
                ch.sysctls = profile(p).map_err(|e| format!("profile `{p}`: {e}"))?;
            }
            choices.push(ch);
        }
        axes.push(("profile".into(), choices));
    }
    for s in &exp.sysctls {
        let choices = s
            .values
            .iter()
            .map(|v| {
                let mut ch = Choice::named(v);
                ch.sysctls = vec![(s.key.clone(), v.clone())];
                ch
            })
            .collect();
        axes.push((s.axis_name(), choices));
    }
    let choices = exp
        .workloads
        .iter()
        .map(|w| {
            let mut ch = Choice::named(&w.name);
            ch.workload = Some(w.clone());
            ch
        })
        .collect();
    axes.push(("workload".into(), choices));
    Ok(axes)
}

/// `tuning/sysctl/low-latency.conf` -> `low-latency`.
pub fn profile_label(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.strip_suffix(".conf").unwrap_or(file).to_string()
}

/// Axis names whose value differs between cells (the others are constant
/// and left out of plot labels).
pub fn varying_axes(cells: &[Cell]) -> Vec<String> {
    let Some(first) = cells.first() else {
        return vec![];
    };
    first
        .settings
        .iter()
        .enumerate()
        .filter(|(i, (_, v))| cells.iter().any(|c| &c.settings[*i].1 != v))
        .map(|(_, (k, _))| k.clone())
        .collect()
}

/// The run order: every cell once per repetition, repetitions one after
/// another (interleaved, never all repetitions of a cell back to back).
pub fn schedule(cells: usize, repetitions: u32) -> Vec<Run> {
    let mut runs = vec![];
    for rep in 0..repetitions {
        for cell in 0..cells {
            runs.push(Run {
                seq: runs.len(),
                rep,
                cell,
            });
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(top: &str, extra: &str) -> Experiment {
        Experiment::parse(&format!(
            r#"
            name = "m"
            {top}
            [server]
            command = ["{{engine}}"]
            [[knob]]
            name = "ring"
            flag = "--ring-entries"
            values = ["64", "4096"]
            [[knob]]
            name = "sqpoll"
            flag = "--sqpoll-idle-ms"
            values = ["off", "10"]
            omit = "off"
            [[knob]]
            name = "conns"
            flag = "--connections"
            side = "client"
            values = ["16", "256"]
            [[workload]]
            name = "ka"
            args = ["http"]
            {extra}
            "#
        ))
        .unwrap()
    }

    fn no_profiles(_: &str) -> Result<Vec<(String, String)>, String> {
        Err("no profiles in this test".into())
    }

    #[test]
    fn expansion_is_the_cartesian_product_with_the_last_axis_fastest() {
        let cells = expand(&exp("", ""), &no_profiles).unwrap();
        assert_eq!(cells.len(), 8);
        assert_eq!(cells[0].label(), "ring=64 sqpoll=off conns=16 workload=ka");
        assert_eq!(cells[1].label(), "ring=64 sqpoll=off conns=256 workload=ka");
        assert_eq!(
            cells[7].label(),
            "ring=4096 sqpoll=10 conns=256 workload=ka"
        );
        assert!(cells.iter().enumerate().all(|(i, c)| c.index == i));
    }

    #[test]
    fn knob_values_become_flags_on_their_side_and_omit_leaves_the_flag_out() {
        let cells = expand(&exp("", ""), &no_profiles).unwrap();
        assert_eq!(cells[0].server_args, ["--ring-entries", "64"]);
        assert_eq!(cells[0].client_args, ["--connections", "16"]);
        assert_eq!(
            cells[3].server_args,
            ["--ring-entries", "64", "--sqpoll-idle-ms", "10"]
        );
        assert_eq!(cells[3].workload.args, ["http"]);
    }

    #[test]
    fn explicit_sysctls_override_profile_values_and_none_means_no_profile() {
        let e = exp(
            r#"profiles = ["none", "p/flood.conf"]"#,
            r#"
            [[sysctl]]
            key = "net.core.somaxconn"
            values = ["128"]
            "#,
        );
        let load = |p: &str| {
            assert_eq!(p, "p/flood.conf");
            Ok(vec![
                ("net.core.somaxconn".to_string(), "65535".to_string()),
                ("net.ipv4.tcp_syncookies".to_string(), "1".to_string()),
            ])
        };
        let cells = expand(&e, &load).unwrap();
        assert_eq!(cells.len(), 16);
        let with = cells
            .iter()
            .find(|c| c.label().contains("profile=flood"))
            .unwrap();
        assert_eq!(with.sysctls["net.core.somaxconn"], "128");
        assert_eq!(with.sysctls["net.ipv4.tcp_syncookies"], "1");
        let without = cells
            .iter()
            .find(|c| c.label().contains("profile=none"))
            .unwrap();
        assert_eq!(without.sysctls.len(), 1);
    }

    #[test]
    fn a_missing_profile_file_is_an_error_naming_it() {
        let e = exp(r#"profiles = ["gone.conf"]"#, "");
        let err = expand(&e, &no_profiles).unwrap_err();
        assert!(err.contains("gone.conf"), "{err}");
    }

    #[test]
    fn schedule_interleaves_cells_within_each_repetition() {
        let runs = schedule(3, 2);
        let order: Vec<(u32, usize)> = runs.iter().map(|r| (r.rep, r.cell)).collect();
        assert_eq!(order, [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
        assert!(runs.iter().enumerate().all(|(i, r)| r.seq == i));
    }

    #[test]
    fn only_varying_axes_appear_in_short_labels() {
        let cells = expand(&exp("", ""), &no_profiles).unwrap();
        let varying = varying_axes(&cells);
        assert_eq!(varying, ["ring", "sqpoll", "conns"]);
        assert_eq!(cells[5].short_label(&varying), "4096/off/256");
    }
}
