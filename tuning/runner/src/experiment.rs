//! The experiment file (TOML): the server command and the knobs to vary,
//! the sysctls to vary, the bench-client workloads, repetitions.
//!
//! ```toml
//! name = "ring-entries"
//! repetitions = 3
//! duration = "5s"
//! [server]
//! command = ["{engine}", "--listen", "127.0.0.1:0", "--shards", "1", "--cpus", "1"]
//! [[knob]]
//! name = "ring_entries"
//! flag = "--ring-entries"
//! values = ["64", "4096"]
//! [[sysctl]]
//! key = "net.core.somaxconn"
//! values = ["128", "4096"]
//! [[workload]]
//! name = "keepalive"
//! args = ["http", "--connections", "64"]
//! ```

use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// Runs per cell when the file does not say.
pub const DEFAULT_REPETITIONS: u32 = 3;
/// Measured time per run (bench-client `--duration`).
pub const DEFAULT_DURATION: &str = "5s";
/// Warm-up per run (bench-client `--warmup`), not measured.
pub const DEFAULT_WARMUP: &str = "1s";
/// CPU list the server is pinned to (the method in the brief: server on CPU 1).
pub const DEFAULT_SERVER_CPUS: &str = "1";
/// CPU list bench-client is pinned to.
pub const DEFAULT_CLIENT_CPUS: &str = "0";
/// Start of the line uringtls prints once it serves.
pub const DEFAULT_READY: &str = "uringtls: serving";
/// How long the server may take to print its ready line, seconds.
pub const DEFAULT_READY_TIMEOUT_S: u64 = 30;
/// Placeholder for the engine binary in `server.command`.
pub const ENGINE: &str = "{engine}";
/// Placeholder for the bench-client binary in `client.command`.
pub const BENCH_CLIENT: &str = "{bench_client}";
/// A profile axis value meaning "no profile".
pub const NO_PROFILE: &str = "none";

/// One experiment file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Short name; names the output folder.
    pub name: String,
    /// What the experiment asks, one line.
    #[serde(default)]
    pub description: String,
    /// Runs per cell [default: 3].
    #[serde(default = "default_repetitions")]
    pub repetitions: u32,
    /// Measured time per run, e.g. `5s` [default: 5s].
    #[serde(default = "default_duration")]
    pub duration: String,
    /// Warm-up per run, not measured [default: 1s].
    #[serde(default = "default_warmup")]
    pub warmup: String,
    /// CPU pinning through `taskset`.
    #[serde(default)]
    pub pin: Pin,
    /// The server under test.
    pub server: Server,
    /// How bench-client is invoked.
    #[serde(default)]
    pub client: Client,
    /// Command-line knobs to vary (server or client side).
    #[serde(default, rename = "knob")]
    pub knobs: Vec<Knob>,
    /// Kernel settings to vary, one axis per key.
    #[serde(default, rename = "sysctl")]
    pub sysctls: Vec<SysctlAxis>,
    /// Sysctl profile files to vary as one axis (`none` = no profile);
    /// paths relative to the experiment file.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// bench-client workloads (an axis too).
    #[serde(rename = "workload")]
    pub workloads: Vec<Workload>,
}

/// CPU pinning; `none` runs that side unpinned.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// CPU list for the server [default: 1].
    #[serde(default = "default_server_cpus")]
    pub server: String,
    /// CPU list for bench-client [default: 0].
    #[serde(default = "default_client_cpus")]
    pub client: String,
}

/// The server command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Program and arguments; `{engine}` is replaced by the engine binary.
    pub command: Vec<String>,
    /// Start of the stdout line that means "ready" [default: `uringtls: serving`].
    #[serde(default = "default_ready")]
    pub ready: String,
    /// URL for bench-client [default: the `https://ADDR/` found in the ready line].
    #[serde(default)]
    pub target: Option<String>,
    /// Seconds to wait for the ready line [default: 30].
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout_s: u64,
}

/// How bench-client is started.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    /// Program; `{bench_client}` is replaced by the bench-client binary.
    #[serde(default = "default_client_command")]
    pub command: Vec<String>,
    /// Appended to every workload [default: `--insecure --quiet`].
    #[serde(default = "default_client_args")]
    pub args: Vec<String>,
}

impl Default for Client {
    fn default() -> Self {
        Client {
            command: default_client_command(),
            args: default_client_args(),
        }
    }
}

impl Default for Pin {
    fn default() -> Self {
        Pin {
            server: default_server_cpus(),
            client: default_client_cpus(),
        }
    }
}

/// Which command a knob's flag goes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The server command (the default).
    #[default]
    Server,
    /// The bench-client command.
    Client,
}

/// A command-line knob: `flag value` appended for each value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Knob {
    /// Axis name (a CSV column).
    pub name: String,
    /// The flag, e.g. `--ring-entries`.
    pub flag: String,
    /// Values to try.
    pub values: Vec<String>,
    /// The value meaning "leave the flag out" (e.g. `off`).
    #[serde(default)]
    pub omit: Option<String>,
    /// Server or client [default: server].
    #[serde(default)]
    pub side: Side,
}

/// One sysctl key and the values to try.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysctlAxis {
    /// Dotted key, e.g. `net.core.somaxconn`.
    pub key: String,
    /// Values to try, as written to /proc/sys.
    pub values: Vec<String>,
    /// Axis name [default: the last component of the key].
    #[serde(default)]
    pub name: Option<String>,
}

impl SysctlAxis {
    /// The axis name.
    pub fn axis_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.key.rsplit('.').next().unwrap_or(&self.key).to_string())
    }
}

/// A bench-client workload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Name (the `workload` column).
    pub name: String,
    /// Subcommand and its flags, e.g. `["http", "--connections", "64"]`;
    /// the runner adds the target, duration, warm-up and output flags.
    pub args: Vec<String>,
}

fn default_repetitions() -> u32 {
    DEFAULT_REPETITIONS
}
fn default_duration() -> String {
    DEFAULT_DURATION.into()
}
fn default_warmup() -> String {
    DEFAULT_WARMUP.into()
}
fn default_server_cpus() -> String {
    DEFAULT_SERVER_CPUS.into()
}
fn default_client_cpus() -> String {
    DEFAULT_CLIENT_CPUS.into()
}
fn default_ready() -> String {
    DEFAULT_READY.into()
}
fn default_ready_timeout() -> u64 {
    DEFAULT_READY_TIMEOUT_S
}
fn default_client_command() -> Vec<String> {
    vec![BENCH_CLIENT.into()]
}
fn default_client_args() -> Vec<String> {
    vec!["--insecure".into(), "--quiet".into()]
}

impl Experiment {
    /// Parses and validates an experiment file's text.
    pub fn parse(text: &str) -> Result<Experiment, String> {
        let e: Experiment = toml::from_str(text).map_err(|e| e.to_string())?;
        e.validate()?;
        Ok(e)
    }

    /// Reads, parses and validates `path`; errors name the file.
    pub fn load(path: &Path) -> Result<Experiment, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Experiment::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Rejects files that cannot run, saying which field to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.contains(['/', ' ']) {
            return Err("`name` must be non-empty, without spaces or `/`".into());
        }
        if self.repetitions == 0 {
            return Err("`repetitions` must be at least 1".into());
        }
        parse_duration(&self.duration).map_err(|e| format!("`duration`: {e}"))?;
        parse_duration(&self.warmup).map_err(|e| format!("`warmup`: {e}"))?;
        if self.server.command.is_empty() {
            return Err("`server.command` is empty".into());
        }
        if self.client.command.is_empty() {
            return Err("`client.command` is empty".into());
        }
        if self.workloads.is_empty() {
            return Err("add at least one [[workload]]".into());
        }
        for w in &self.workloads {
            if w.args.is_empty() {
                return Err(format!(
                    "workload `{}`: `args` needs at least the subcommand",
                    w.name
                ));
            }
            check_client_args(&w.args[1..])
                .map_err(|e| format!("[[workload]] `{}`: `args` {e}", w.name))?;
        }
        check_client_args(&self.client.args).map_err(|e| format!("[client] `args` {e}"))?;
        for k in &self.knobs {
            if k.values.is_empty() {
                return Err(format!("knob `{}`: `values` is empty", k.name));
            }
            if k.side == Side::Client {
                check_client_args(std::slice::from_ref(&k.flag))
                    .map_err(|e| format!("[[knob]] `{}`: `flag` {e}", k.name))?;
            }
        }
        for s in &self.sysctls {
            check_key(&s.key)?;
            if s.values.is_empty() {
                return Err(format!("sysctl `{}`: `values` is empty", s.key));
            }
        }
        self.check_axis_names()
    }

    fn check_axis_names(&self) -> Result<(), String> {
        let mut names: Vec<String> = self.knobs.iter().map(|k| k.name.clone()).collect();
        names.extend(self.sysctls.iter().map(SysctlAxis::axis_name));
        names.push("workload".into());
        if !self.profiles.is_empty() {
            names.push("profile".into());
        }
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() || n.contains([',', '"', '\n']) {
                return Err(format!("axis name `{n}`: use letters, digits, `_`"));
            }
            if names[..i].contains(n) {
                return Err(format!("two axes are named `{n}`; set a distinct `name`"));
            }
        }
        Ok(())
    }

    /// Measured time plus warm-up of one run.
    pub fn run_time(&self) -> Duration {
        parse_duration(&self.duration).unwrap_or_default()
            + parse_duration(&self.warmup).unwrap_or_default()
    }
}

/// bench-client flags the runner sets itself on every run, with what to
/// do instead: (long flag, short flag, advice).
const RUNNER_FLAGS: &[(&str, Option<char>, &str)] = &[
    (
        "--duration",
        Some('d'),
        "set the top-level `duration` (or `uringtls-tune run --duration`)",
    ),
    (
        "--warmup",
        Some('w'),
        "set the top-level `warmup` (or `uringtls-tune run --warmup`)",
    ),
    ("--json", None, "the runner writes each run's JSON to raw/"),
    ("--hgrm", None, "the runner writes each run's .hgrm to raw/"),
    (
        "--server-metrics",
        None,
        "the runner measures the server it started",
    ),
    (
        "--quick",
        None,
        "it replaces the duration and warmup; set `duration` and `warmup` instead",
    ),
];

/// bench-client's short flags that take no value (may precede another in a
/// cluster such as `-qd 5s`).
const SHORT_SWITCHES: &[char] = &['q', 'k'];

/// Rejects bench-client arguments the runner adds itself (the README's
/// rule): `--duration`/`-d`, `--warmup`/`-w`, `--json`, `--hgrm`,
/// `--server-metrics`, `--quick`, and a target URL or `HOST:PORT`.
pub fn check_client_args(args: &[String]) -> Result<(), String> {
    for (i, a) in args.iter().enumerate() {
        if let Some(long) = a.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or(long);
            if let Some((flag, _, advice)) = RUNNER_FLAGS.iter().find(|f| &f.0[2..] == name) {
                return Err(format!(
                    "has `{a}`: the runner adds {flag} to every run; remove it: {advice}"
                ));
            }
        } else if let Some(shorts) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            for c in shorts.chars() {
                if let Some((flag, _, advice)) = RUNNER_FLAGS.iter().find(|f| f.1 == Some(c)) {
                    return Err(format!(
                        "has `{a}` (-{c} is {flag}): the runner adds {flag} to every run; remove it: {advice}"
                    ));
                }
                if !SHORT_SWITCHES.contains(&c) {
                    break;
                }
            }
        } else {
            let after_header = i > 0 && matches!(args[i - 1].as_str(), "-H" | "--header");
            if !after_header && looks_like_target(a) {
                return Err(format!(
                    "has `{a}`, which looks like a target: the runner passes the server's address (set `server.target` for a fixed one)"
                ));
            }
        }
    }
    Ok(())
}

/// `https://...`, or `HOST:PORT` with a numeric port.
fn looks_like_target(a: &str) -> bool {
    if a.contains("://") {
        return true;
    }
    match a.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && !port.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// A sysctl key must stay inside the sysctl root: dotted (or slashed)
/// names of `[A-Za-z0-9_-]` parts.
pub fn check_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.split(['.', '/']).all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "sysctl key `{key}`: expected a dotted name like net.core.somaxconn"
        ))
    }
}

/// Parses `500ms`, `5s`, `2m` (bench-client's syntax, the subset we need).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.');
    let (num, unit) = s.split_at(split.unwrap_or(s.len()));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected a number and a unit (500ms, 5s, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("`{s}`: unit must be ms, s or m")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        name = "t"
        [server]
        command = ["{engine}"]
        [[workload]]
        name = "w"
        args = ["http"]
    "#;

    #[test]
    fn minimal_file_gets_documented_defaults() {
        let e = Experiment::parse(MINIMAL).unwrap();
        assert_eq!(e.repetitions, DEFAULT_REPETITIONS);
        assert_eq!((e.pin.server.as_str(), e.pin.client.as_str()), ("1", "0"));
        assert_eq!(e.client.command, ["{bench_client}"]);
        assert_eq!(e.run_time(), Duration::from_secs(6));
    }

    #[test]
    fn unknown_fields_and_bad_keys_are_rejected_with_the_field_named() {
        let e = Experiment::parse(&format!("{MINIMAL}\nrepetitons = 2")).unwrap_err();
        assert!(e.contains("repetitons"), "{e}");
        let bad = format!("{MINIMAL}\n[[sysctl]]\nkey = \"../../etc/passwd\"\nvalues = [\"x\"]");
        assert!(Experiment::parse(&bad).unwrap_err().contains("sysctl key"));
    }

    #[test]
    fn duplicate_axis_names_are_rejected() {
        let dup = format!(
            "{MINIMAL}\n[[knob]]\nname = \"somaxconn\"\nflag = \"--backlog\"\nvalues = [\"1\"]\n\
             [[sysctl]]\nkey = \"net.core.somaxconn\"\nvalues = [\"128\"]"
        );
        assert!(Experiment::parse(&dup).unwrap_err().contains("two axes"));
    }

    fn with_workload_args(args: &str) -> Result<Experiment, String> {
        Experiment::parse(&format!(
            r#"
            name = "t"
            [server]
            command = ["{{engine}}"]
            [[workload]]
            name = "ka"
            args = {args}
            "#
        ))
    }

    #[test]
    fn workload_args_the_runner_adds_itself_are_rejected_naming_the_workload() {
        for (args, says) in [
            (r#"["http", "--duration", "5s"]"#, "--duration"),
            (r#"["http", "--duration=5s"]"#, "--duration"),
            (r#"["http", "-d", "5s"]"#, "-d is --duration"),
            (r#"["http", "-qd5s"]"#, "-d is --duration"),
            (r#"["http", "-w", "1s"]"#, "--warmup"),
            (r#"["http", "--json", "x.json"]"#, "--json"),
            (r#"["http", "--hgrm", "x"]"#, "--hgrm"),
            (r#"["http", "--server-metrics", "1"]"#, "--server-metrics"),
            (r#"["http", "--quick"]"#, "--quick"),
            (
                r#"["http", "https://127.0.0.1:8443/"]"#,
                "looks like a target",
            ),
            (r#"["http", "127.0.0.1:8443"]"#, "looks like a target"),
        ] {
            let e = with_workload_args(args).unwrap_err();
            assert!(
                e.starts_with("[[workload]] `ka`: `args` has"),
                "{args}: {e}"
            );
            assert!(e.contains(says), "{args}: {e}");
        }
    }

    #[test]
    fn ordinary_workload_args_are_accepted() {
        for args in [
            r#"["http", "--connections", "64", "-c", "8", "-qk"]"#,
            r#"["http", "-H", "Host: a:80", "--rate", "1000"]"#,
            r#"["handshake", "--request", "http", "-t", "2"]"#,
        ] {
            assert!(with_workload_args(args).is_ok(), "{args}");
        }
    }

    #[test]
    fn client_args_and_client_knobs_are_checked_too() {
        let e = Experiment::parse(&format!("{MINIMAL}\n[client]\nargs = [\"--json\", \"-\"]"))
            .unwrap_err();
        assert!(e.starts_with("[client] `args` has `--json`"), "{e}");
        let knob = r#"
            [[knob]]
            name = "len"
            flag = "--duration"
            side = "client"
            values = ["1s"]
        "#;
        let e = Experiment::parse(&format!("{MINIMAL}{knob}")).unwrap_err();
        assert!(
            e.starts_with("[[knob]] `len`: `flag` has `--duration`"),
            "{e}"
        );
    }

    #[test]
    fn durations_parse_in_bench_client_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5 parsecs").is_err());
    }
}
