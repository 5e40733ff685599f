//! The Landlock layer: after it, the process can read only the files the
//! configuration names (certificates, keys, client CA, ticket-key file,
//! config file), the directories that hold them, `/proc` (below), and for
//! the proxy service the files name resolution reads; it can write,
//! create, remove, rename or execute nothing.
//!
//! Directories, not only files: a reload reads files that were *replaced*
//! since the start (a new inode), and Landlock rules hold inodes. The
//! directory of each path as given is allowed, and the directory of the
//! file it resolves to: a Kubernetes Secret volume (`tls.crt` ->
//! `..data/tls.crt`, `..data` -> `..2026_12_07_…/`, swapped on update)
//! and a certbot `live/` link into `archive/` keep working.
//!
//! `/proc` as a whole (read only): the engine reads `/proc/self/statm`
//! (resident memory after a trim) and `/proc/sys/net/ipv4/tcp_migrate_req`
//! (at stop), and procfs makes new inodes for these when its cache is
//! pruned, so a rule on the files themselves would stop matching at
//! random.
//!
//! Best effort: on a kernel without Landlock, nothing is enforced and the
//! start-up line says so. Landlock restricts the calling thread and the
//! threads it starts later (the shards), so it is applied before the
//! shards start; the log writer thread, started earlier, is covered only
//! where the kernel can apply it to every thread (Landlock ABI 8).

use landlock::{
    Access, AccessFs, PathBeneath, PathFd, RestrictSelfAttr, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, ABI,
};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// The rights this layer handles (everything a file system offers up to
/// Landlock ABI 5, whatever the kernel's is: newer rights stay allowed).
const HANDLED: ABI = ABI::V5;

/// Files name resolution reads (proxy upstreams are resolved at reload).
pub const RESOLVER_FILES: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
];

/// Files the user-name lookup reads: with `--user`, a reload that cannot
/// read a file names the user it runs as (world-readable files anyway).
pub const USER_FILES: &[&str] = &["/etc/passwd", "/etc/group", "/etc/nsswitch.conf"];

/// Where the system's CA roots live (the ACME client verifies its server
/// with them, beside `--acme-ca`): read on each new HTTPS connection.
pub const CA_ROOT_DIRS: &[&str] = &[
    "/etc/ssl",
    "/etc/pki",
    "/usr/share/ca-certificates",
    "/usr/lib/ssl",
];

/// What Landlock did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Enforced with the kernel's ABI version.
    Enforced {
        /// Landlock ABI of the running kernel.
        abi: i32,
        /// Every handled right is enforced (else some, on an older ABI).
        fully: bool,
    },
    /// Nothing enforced: the kernel has no Landlock (or it is disabled),
    /// or a seccomp profile around the engine refuses its calls. Why.
    Unavailable(String),
}

/// Why Landlock could not be applied (the engine refuses to serve).
#[derive(Debug)]
pub struct LandlockError(landlock::RulesetError);

impl fmt::Display for LandlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot apply the Landlock file-system sandbox: {}; pass --sandbox false to run without it",
            self.0
        )
    }
}

impl std::error::Error for LandlockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The directories and files to allow for `paths` (the configured files):
/// each one's directory as given and the directory of the file it
/// resolves to. Files that do not exist are left out.
pub fn allowed_dirs(paths: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for p in paths {
        let abs = if p.is_absolute() {
            p.clone()
        } else {
            match std::env::current_dir() {
                Ok(d) => d.join(p),
                Err(_) => continue,
            }
        };
        if let Some(d) = abs.parent() {
            out.insert(d.to_path_buf());
        }
        if let Some(d) = std::fs::canonicalize(&abs)
            .ok()
            .and_then(|c| c.parent().map(Path::to_path_buf))
        {
            out.insert(d);
        }
    }
    out
}

/// Whether `path` lies in one of `dirs` (as given, or once resolved).
pub fn is_allowed(path: &Path, dirs: &BTreeSet<PathBuf>) -> bool {
    let inside = |p: &Path| dirs.iter().any(|d| p.starts_with(d));
    let abs = if path.is_relative() {
        std::env::current_dir().map_or_else(|_| path.to_path_buf(), |cwd| cwd.join(path))
    } else {
        path.to_path_buf()
    };
    inside(&abs) || std::fs::canonicalize(&abs).is_ok_and(|c| inside(&c))
}

/// Landlock ABI of the running kernel (0: none).
pub fn kernel_abi() -> i32 {
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) only returns a number.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    i32::try_from(v).unwrap_or(0).max(0)
}

/// Restricts this thread (and those it starts) to reading `dirs` and
/// `files` (and `/proc`).
pub fn apply(
    dirs: &BTreeSet<PathBuf>,
    files: &[&str],
    writable: &[PathBuf],
) -> Result<Outcome, LandlockError> {
    let abi = kernel_abi();
    let read_dir = AccessFs::from_read(HANDLED) & !AccessFs::Execute;
    let read_file = AccessFs::ReadFile;
    let created = Ruleset::default()
        .handle_access(AccessFs::from_all(HANDLED))
        .map_err(LandlockError)?
        .create();
    let mut rs = match created {
        Ok(rs) => rs,
        // E.g. EPERM from a container runtime's seccomp profile that
        // predates Landlock: best effort, reported.
        Err(e) => {
            return Ok(Outcome::Unavailable(format!(
                "cannot create a ruleset: {e}"
            )))
        }
    };
    let dir_list = dirs
        .iter()
        .map(PathBuf::as_path)
        .chain([Path::new("/proc")]);
    for d in dir_list {
        match PathFd::new(d) {
            Ok(fd) => {
                rs = rs
                    .add_rule(PathBeneath::new(fd, read_dir))
                    .map_err(LandlockError)?
            }
            Err(e) => {
                tracing::debug!(path = %d.display(), error = %e, "sandbox: not allowed (cannot open)")
            }
        }
    }
    // Read-write (the ACME cache: account, certificates, locks).
    let write_dir = AccessFs::from_all(HANDLED) & !AccessFs::Execute;
    for d in writable {
        match PathFd::new(d) {
            Ok(fd) => {
                rs = rs
                    .add_rule(PathBeneath::new(fd, write_dir))
                    .map_err(LandlockError)?
            }
            Err(e) => {
                tracing::warn!(path = %d.display(), error = %e, "sandbox: cannot allow writing (cannot open)")
            }
        }
    }
    for f in files.iter().filter(|f| Path::new(f).exists()) {
        if let Ok(fd) = PathFd::new(f) {
            rs = rs
                .add_rule(PathBeneath::new(fd, read_file))
                .map_err(LandlockError)?;
        }
    }
    let rs = rs.all_threads(true).map_err(LandlockError)?;
    let status = rs.restrict_self().map_err(LandlockError)?;
    Ok(match status.ruleset {
        RulesetStatus::NotEnforced => Outcome::Unavailable("not supported by this kernel".into()),
        RulesetStatus::PartiallyEnforced => Outcome::Enforced { abi, fully: false },
        RulesetStatus::FullyEnforced => Outcome::Enforced { abi, fully: true },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_volume_links_allow_the_mount_directory_and_what_they_point_into() {
        let root = tempfile::tempdir().expect("tmp");
        let data = root.path().join("..2026_12_07_00_00_00.1");
        std::fs::create_dir(&data).expect("mkdir");
        std::fs::write(data.join("tls.crt"), "x").expect("write");
        std::os::unix::fs::symlink("..2026_12_07_00_00_00.1", root.path().join("..data"))
            .expect("link");
        std::os::unix::fs::symlink("..data/tls.crt", root.path().join("tls.crt")).expect("link");
        let dirs = allowed_dirs(&[root.path().join("tls.crt")]);
        let canon_root = std::fs::canonicalize(root.path()).expect("canon");
        assert!(dirs.contains(root.path()), "{dirs:?}");
        assert!(
            dirs.contains(&canon_root.join("..2026_12_07_00_00_00.1")),
            "{dirs:?}"
        );
        // A swapped-in directory lies under the allowed mount directory.
        assert!(is_allowed(&root.path().join("..2027_01_01/tls.crt"), &dirs));
        assert!(!is_allowed(Path::new("/etc/shadow"), &dirs));
        let sibling = root.path().parent().expect("parent").join("other/tls.crt");
        assert!(!is_allowed(&sibling, &dirs));
    }
}
