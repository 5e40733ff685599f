//! What machine the experiment ran on, written next to the results
//! (`machine.txt`): kernel, CPU, load average before and after (the
//! machine may be shared: a load well above 0 means noisy figures).

use std::fmt::Write;

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The CPU model from /proc/cpuinfo.
pub fn cpu_model() -> String {
    read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// Kernel, CPU model and count, load average, as `key: value` lines.
pub fn describe() -> String {
    let mut s = String::new();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(s, "kernel: {}", read("/proc/sys/kernel/osrelease"));
    let _ = writeln!(s, "cpu: {} x {}", cpus, cpu_model());
    let _ = writeln!(s, "loadavg: {}", load());
    let _ = writeln!(s, "commit: {}", commit());
    s
}

/// `git describe --always --dirty` of the working directory, if any.
pub fn commit() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// The 1/5/15-minute load averages.
pub fn load() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
