//! Kernel settings under a sysctl root (`/proc/sys`, or a fake folder in
//! tests): read, write, profile files, and [`Saved`], which records the
//! original values before anything changes and puts them back on drop,
//! on error and on Ctrl-C (the runner drops it on every path out).

use crate::experiment::{check_key, Experiment};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The real sysctl root.
pub const PROC_SYS: &str = "/proc/sys";

/// Sysctl files under a root folder.
#[derive(Debug, Clone)]
pub struct Sysctls {
    root: PathBuf,
}

impl Sysctls {
    /// Sysctls under `root` (normally [`PROC_SYS`]).
    pub fn new(root: impl Into<PathBuf>) -> Sysctls {
        Sysctls { root: root.into() }
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `net.core.somaxconn` -> `ROOT/net/core/somaxconn`.
    pub fn path(&self, key: &str) -> PathBuf {
        self.root.join(key.replace('.', "/"))
    }

    /// Whether this kernel (root) has `key`.
    pub fn exists(&self, key: &str) -> bool {
        check_key(key).is_ok() && self.path(key).exists()
    }

    /// The current value, trimmed.
    pub fn read(&self, key: &str) -> io::Result<String> {
        Ok(std::fs::read_to_string(self.path(key))?.trim().to_string())
    }

    /// Writes `value` (never creates a file: a key the kernel does not
    /// have is an error, not a new file in a fake root).
    pub fn write(&self, key: &str, value: &str) -> io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.path(key))?;
        f.write_all(format!("{value}\n").as_bytes())
    }
}

/// Values compare equal when only their whitespace differs
/// (`tcp_rmem` reads back tab-separated).
pub fn same_value(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

/// Why a setting could not be applied; the cell is skipped and this is
/// reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The key.
    pub key: String,
    /// The value we tried.
    pub value: String,
    /// What the machine said.
    pub reason: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.key, self.value, self.reason)
    }
}

fn refusal(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "not on this kernel (no such sysctl)".into(),
        io::ErrorKind::PermissionDenied => {
            "not allowed here (needs root, or not writable in this namespace)".into()
        }
        io::ErrorKind::InvalidInput => "value rejected by the kernel (EINVAL)".into(),
        _ => e.to_string(),
    }
}

/// The original values of every key an experiment touches; restores them
/// when dropped (or on [`Saved::restore`]).
#[derive(Debug)]
pub struct Saved {
    sysctls: Sysctls,
    original: BTreeMap<String, String>,
    missing: Vec<String>,
    dirty: bool,
}

impl Saved {
    /// Reads the current value of each key; keys that cannot be read are
    /// remembered as missing (cells needing them are skipped).
    pub fn capture<'a>(sysctls: Sysctls, keys: impl IntoIterator<Item = &'a String>) -> Saved {
        let mut original = BTreeMap::new();
        let mut missing = vec![];
        for k in keys {
            match sysctls.read(k) {
                Ok(v) => {
                    original.insert(k.clone(), v);
                }
                Err(_) => missing.push(k.clone()),
            }
        }
        Saved {
            sysctls,
            original,
            missing,
            dirty: false,
        }
    }

    /// Original values, by key.
    pub fn original(&self) -> &BTreeMap<String, String> {
        &self.original
    }

    /// Keys that could not be read.
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    /// Sets every saved key to `want`'s value, or back to its original
    /// when `want` does not name it. Writes only what differs, then reads
    /// back: a value the kernel clamps or ignores is refused too.
    pub fn apply(&mut self, want: &BTreeMap<String, String>) -> Result<(), Refused> {
        for (k, v) in want {
            if let Err(e) = check_key(k) {
                return Err(self.refused(k, v, e));
            }
            if self.missing.contains(k) {
                return Err(self.refused(k, v, "not on this kernel (no such sysctl)".into()));
            }
            if !self.original.contains_key(k) {
                return Err(self.refused(k, v, "not saved before the experiment".into()));
            }
        }
        let targets: Vec<(String, String)> = self
            .original
            .iter()
            .map(|(k, orig)| (k.clone(), want.get(k).unwrap_or(orig).clone()))
            .collect();
        for (k, v) in targets {
            let current = self.sysctls.read(&k).unwrap_or_default();
            if same_value(&current, &v) {
                continue;
            }
            self.dirty = true;
            if let Err(e) = self.sysctls.write(&k, &v) {
                return Err(self.refused(&k, &v, refusal(&e)));
            }
            let now = self.sysctls.read(&k).unwrap_or_default();
            if !same_value(&now, &v) {
                return Err(self.refused(&k, &v, format!("the kernel kept `{now}`")));
            }
        }
        Ok(())
    }

    fn refused(&self, key: &str, value: &str, reason: String) -> Refused {
        Refused {
            key: key.into(),
            value: value.into(),
            reason,
        }
    }

    /// Writes every original value back (each key attempted even if one
    /// fails); returns what could not be restored.
    pub fn restore(&mut self) -> Vec<Refused> {
        let mut failed = vec![];
        for (k, v) in &self.original {
            let current = self.sysctls.read(k).unwrap_or_default();
            if same_value(&current, v) {
                continue;
            }
            if let Err(e) = self.sysctls.write(k, v) {
                failed.push(self.refused(k, v, refusal(&e)));
            }
        }
        self.dirty = !failed.is_empty();
        failed
    }

    /// The originals as a sysctl.conf (kept next to the results, and what
    /// `uringtls-tune restore` reads if the runner was killed -9).
    pub fn to_conf(&self) -> String {
        let mut s = String::from("# Original values, saved before the experiment changed them.\n");
        for (k, v) in &self.original {
            s.push_str(&format!("{k} = {v}\n"));
        }
        s
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        if self.dirty {
            for f in self.restore() {
                eprintln!("uringtls-tune: could not restore {f}");
            }
        }
    }
}

/// Parses a sysctl.conf: `key = value` lines, `#`/`;` comments (whole
/// line or trailing after whitespace), a leading `-` (ignore errors) dropped.
pub fn parse_conf(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        let line = strip_comment(line).trim();
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("line {}: expected `key = value`", n + 1));
        };
        let k = k.trim().trim_start_matches('-').trim();
        check_key(k).map_err(|e| format!("line {}: {e}", n + 1))?;
        out.push((k.to_string(), v.trim().to_string()));
    }
    Ok(out)
}

fn strip_comment(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with('#') || t.starts_with(';') {
        return "";
    }
    match line.find(" #").or_else(|| line.find("\t#")) {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Reads and parses a profile file.
pub fn load_conf(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse_conf(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Every `[[sysctl]]` key of `exp` must exist under `sysctls`' root: a
/// misspelt key is an error naming the field (with the nearest existing
/// name), not a cell skipped at run time.
pub fn check_axes(exp: &Experiment, sysctls: &Sysctls) -> Result<(), String> {
    for axis in &exp.sysctls {
        if sysctls.exists(&axis.key) {
            continue;
        }
        let hint = match nearest_key(sysctls, &axis.key) {
            Some(k) => format!("did you mean `{k}`?"),
            None => format!(
                "check the name with `sysctl -a | grep {}`",
                axis.key.rsplit(['.', '/']).next().unwrap_or(&axis.key)
            ),
        };
        return Err(format!(
            "[[sysctl]] key `{}`: no such sysctl on this kernel ({} does not exist); {hint}",
            axis.key,
            sysctls.path(&axis.key).display()
        ));
    }
    Ok(())
}

/// The existing key closest to `key` (same folder, at most 2 edits).
fn nearest_key(sysctls: &Sysctls, key: &str) -> Option<String> {
    let (dir, leaf) = key.rsplit_once('.')?;
    let entries = std::fs::read_dir(sysctls.path(dir)).ok()?;
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .map(|name| (edit_distance(&name, leaf), name))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, name)| format!("{dir}.{name}"))
}

/// Levenshtein distance (short names only).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake /proc/sys with two keys.
    fn fake_root() -> (tempfile::TempDir, Sysctls) {
        let dir = tempfile::tempdir().unwrap();
        let s = Sysctls::new(dir.path());
        std::fs::create_dir_all(dir.path().join("net/core")).unwrap();
        std::fs::create_dir_all(dir.path().join("net/ipv4")).unwrap();
        std::fs::write(s.path("net.core.somaxconn"), "4096\n").unwrap();
        std::fs::write(s.path("net.ipv4.tcp_rmem"), "4096\t131072\t6291456\n").unwrap();
        (dir, s)
    }

    fn keys() -> Vec<String> {
        vec!["net.core.somaxconn".into(), "net.ipv4.tcp_rmem".into()]
    }

    fn want(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn apply_then_drop_restores_the_original_values() {
        let (_d, s) = fake_root();
        {
            let mut saved = Saved::capture(s.clone(), &keys());
            saved
                .apply(&want(&[("net.core.somaxconn", "128")]))
                .unwrap();
            assert_eq!(s.read("net.core.somaxconn").unwrap(), "128");
            saved
                .apply(&want(&[("net.ipv4.tcp_rmem", "4096 87380 16777216")]))
                .unwrap();
            // A key the cell does not name is back at its original.
            assert_eq!(s.read("net.core.somaxconn").unwrap(), "4096");
            assert_eq!(s.read("net.ipv4.tcp_rmem").unwrap(), "4096 87380 16777216");
        }
        assert_eq!(s.read("net.core.somaxconn").unwrap(), "4096");
        assert_eq!(
            s.read("net.ipv4.tcp_rmem").unwrap(),
            "4096\t131072\t6291456"
        );
    }

    #[test]
    fn restore_happens_when_an_error_unwinds_through_the_guard() {
        let (_d, s) = fake_root();
        let result: Result<(), Refused> = (|| {
            let mut k = keys();
            k.push("net.core.nope".into());
            let mut saved = Saved::capture(s.clone(), &k);
            saved.apply(&want(&[("net.core.somaxconn", "16")]))?;
            // The second cell names a key the kernel does not have.
            saved.apply(&want(&[("net.core.nope", "1")]))?;
            Ok(())
        })();
        let err = result.unwrap_err();
        assert_eq!(err.key, "net.core.nope");
        assert_eq!(s.read("net.core.somaxconn").unwrap(), "4096");
    }

    #[test]
    fn restore_happens_on_panic() {
        let (_d, s) = fake_root();
        let s2 = s.clone();
        let r = std::panic::catch_unwind(move || {
            let mut saved = Saved::capture(s2.clone(), &keys());
            saved.apply(&want(&[("net.core.somaxconn", "16")])).unwrap();
            panic!("runner bug");
        });
        assert!(r.is_err());
        assert_eq!(s.read("net.core.somaxconn").unwrap(), "4096");
    }

    #[test]
    fn missing_keys_are_reported_and_their_cells_refused() {
        let (_d, s) = fake_root();
        let mut k = keys();
        k.push("net.core.busy_poll".into());
        let mut saved = Saved::capture(s, &k);
        assert_eq!(saved.missing(), ["net.core.busy_poll"]);
        let r = saved
            .apply(&want(&[("net.core.busy_poll", "50")]))
            .unwrap_err();
        assert!(r.reason.contains("not on this kernel"), "{r}");
    }

    #[test]
    fn whitespace_differences_do_not_count_as_changes() {
        assert!(same_value("4096\t131072\t6291456", "4096 131072  6291456"));
        assert!(!same_value("1", "2"));
    }

    #[test]
    fn conf_files_parse_with_comments_and_reject_bad_lines() {
        let conf = "# header\nnet.core.somaxconn = 65535   # queue\n; old style\n\
                    -net.ipv4.tcp_fastopen=3\nnet.ipv4.tcp_rmem = 4096 87380 6291456\n";
        let p = parse_conf(conf).unwrap();
        assert_eq!(
            p,
            [
                ("net.core.somaxconn".to_string(), "65535".to_string()),
                ("net.ipv4.tcp_fastopen".to_string(), "3".to_string()),
                (
                    "net.ipv4.tcp_rmem".to_string(),
                    "4096 87380 6291456".to_string()
                ),
            ]
        );
        assert!(parse_conf("net.core.somaxconn 1")
            .unwrap_err()
            .contains("line 1"));
    }

    #[test]
    fn saved_originals_round_trip_through_a_conf_file() {
        let (_d, s) = fake_root();
        let saved = Saved::capture(s, &keys());
        let back = parse_conf(&saved.to_conf()).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].1, "4096\t131072\t6291456");
    }

    #[test]
    fn a_sysctl_axis_this_kernel_lacks_is_an_error_naming_the_key_and_the_nearest_name() {
        let (_dir, s) = fake_root();
        let exp = |key: &str| {
            Experiment::parse(&format!(
                r#"
                name = "t"
                [server]
                command = ["x"]
                [[sysctl]]
                key = "{key}"
                values = ["1"]
                [[workload]]
                name = "w"
                args = ["http"]
                "#
            ))
            .unwrap()
        };
        assert_eq!(check_axes(&exp("net.core.somaxconn"), &s), Ok(()));
        let e = check_axes(&exp("net.core.somaxconnn"), &s).unwrap_err();
        assert!(
            e.starts_with("[[sysctl]] key `net.core.somaxconnn`: no such sysctl on this kernel"),
            "{e}"
        );
        assert!(e.contains("did you mean `net.core.somaxconn`?"), "{e}");
        let e = check_axes(&exp("net.nothing.here"), &s).unwrap_err();
        assert!(e.contains("sysctl -a | grep here"), "{e}");
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("somaxconn", "somaxconn"), 0);
        assert_eq!(edit_distance("somaxconn", "somaxcon"), 1);
        assert_eq!(edit_distance("tcp_rmem", "tcp_wmem"), 1);
        assert_eq!(edit_distance("abc", "xyz"), 3);
    }
}
