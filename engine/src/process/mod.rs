//! The process around the shards: privileges, key-file hygiene, core
//! dumps, file-descriptor limit, service-manager notifications.
//!
//! Start-up order (see `cli`): check the key file's mode, disable core
//! dumps, raise `RLIMIT_NOFILE`, bind and read keys (as root if started as
//! root), drop to `--user/--group` once every shard is ready but before any
//! serves, then tell systemd `READY=1`.
//!
//! - [`privileges`]: user/group lookup, the drop and its verification.
//! - [`notify`]: `sd_notify` without libsystemd.
//! - [`sandbox`]: io_uring restrictions, Landlock and seccomp after start-up.

pub mod notify;
pub mod privileges;
pub mod sandbox;

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The private key file is readable by group or others.
#[derive(Debug)]
pub struct KeyPermissionError {
    /// The file.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
}

impl fmt::Display for KeyPermissionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: private key is readable by group or others (mode {:04o}); run `chmod 600 {}` \
             (or pass --insecure-key-permissions true to start anyway)",
            self.path.display(),
            self.mode & 0o7777,
            self.path.display()
        )
    }
}

impl std::error::Error for KeyPermissionError {}

/// Refuses a key file that group or others may read (or write). A file
/// that cannot be inspected is left for the key loader to report.
pub fn check_key_permissions(path: &Path) -> Result<(), KeyPermissionError> {
    match std::fs::metadata(path) {
        Ok(m) if m.mode() & 0o077 != 0 => Err(KeyPermissionError {
            path: path.to_owned(),
            mode: m.mode(),
        }),
        _ => Ok(()),
    }
}

/// Disables core dumps (`RLIMIT_CORE` 0 and `PR_SET_DUMPABLE` 0), so a
/// crash never writes the private key to disk. Also makes `/proc/PID/*`
/// root-owned and forbids ptrace by the same user.
pub fn disable_core_dumps() -> std::io::Result<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to an rlimit; lowering a limit needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: PR_SET_DUMPABLE takes one integer argument.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (every connection is a
/// descriptor; the soft default of 1024 is far too low for a server).
/// Returns the new soft limit.
pub fn raise_nofile() -> std::io::Result<u64> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if l.rlim_cur < l.rlim_max {
        l.rlim_cur = l.rlim_max;
        // SAFETY: valid pointer; raising soft up to hard needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(l.rlim_cur)
}

/// Whether a socket already listens on `addr` (so our `SO_REUSEPORT`
/// listeners will join its group and share its connections). Probed by
/// binding, without listening, a socket with `SO_REUSEADDR` and without
/// `SO_REUSEPORT`: on Linux that bind fails only while a socket listens on
/// the address (not for connections in TIME_WAIT). Port 0 never is.
pub fn listener_exists(addr: std::net::SocketAddr) -> bool {
    if addr.port() == 0 {
        return false;
    }
    let probe = || -> std::io::Result<()> {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        s.set_reuse_address(true)?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?; // as the shard listeners
        }
        s.bind(&addr.into())
    };
    matches!(probe(), Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
}

/// The warning for [`listener_exists`], naming the command that shows who.
pub fn shared_port_warning(addr: std::net::SocketAddr) -> String {
    format!(
        "another socket already listens on {addr}: this instance joined its SO_REUSEPORT group \
         and the kernel now spreads new connections over both (expected during an upgrade; \
         otherwise stop the other one). See who: ss -ltnp 'sport = :{}'",
        addr.port()
    )
}

/// Why the process could not be readied for serving (see [`prepare`] and
/// [`before_serve`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// A private key file is open to group or others.
    #[error(transparent)]
    KeyPermissions(#[from] KeyPermissionError),
    /// Core dumps could not be disabled.
    #[error("cannot disable core dumps: {0}")]
    CoreDumps(std::io::Error),
    /// The `--user`/`--group` lookup or the drop failed.
    #[error(transparent)]
    Privileges(#[from] privileges::PrivilegeError),
    /// The ACME cache directory is unusable.
    #[error(transparent)]
    AcmeCache(#[from] crate::acme::cache::CacheError),
    /// The metrics port could not be bound.
    #[error("cannot listen for metrics on {addr}: {source}")]
    MetricsListen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// A sandbox layer could not be applied.
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
}

/// What start-up prepared before the engine binds its TLS port.
#[derive(Debug)]
pub struct Prepared {
    /// The bound `/metrics` listener, if asked for.
    pub metrics: Option<std::net::TcpListener>,
    /// Who to become before serving, if asked for.
    pub target: Option<privileges::Target>,
}

/// Everything done before keys are read and ports bound: refuse a
/// group/world-readable key, disable core dumps, raise the fd limit, look
/// the target user up and bind the metrics port (while still privileged).
pub fn prepare(s: &crate::config::Settings) -> Result<Prepared, StartupError> {
    if !s.ops.insecure_key_permissions {
        let keys = s
            .tls
            .key
            .iter()
            .chain(s.tls.extra_certs.iter().map(|p| &p.key))
            .chain(s.proxy.tls.iter().filter_map(|u| u.settings.key.as_ref()));
        // Each `[[listener]]`'s own keys too (its upstream key included).
        let listeners = s.listeners.iter().flat_map(|l| {
            let t = &l.settings.tls;
            let up = &l.settings.proxy.tls;
            t.key
                .iter()
                .chain(t.extra_certs.iter().map(|p| &p.key))
                .chain(up.iter().filter_map(|u| u.settings.key.as_ref()))
        });
        for k in keys.chain(listeners) {
            check_key_permissions(k)?;
        }
    }
    disable_core_dumps().map_err(StartupError::CoreDumps)?;
    match raise_nofile() {
        Ok(n) => tracing::debug!(nofile = n, "file descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the file descriptor limit"),
    }
    let target = match &s.ops.user {
        Some(u) => Some(privileges::resolve(u, s.ops.group.as_deref())?),
        None => None,
    };
    match (&s.acme, &target) {
        (Some(a), Some(t)) => crate::acme::cache::Cache::prepare_for_user(&a.cache, t.uid, t.gid)?,
        // Created (and checked) now, before the sandbox's Landlock rules,
        // which can only name a directory that exists.
        (Some(a), None) => {
            crate::acme::cache::Cache::open(&a.cache, s.ops.insecure_key_permissions)?;
        }
        (None, _) => {}
    }
    let metrics = match s.ops.metrics_listen {
        Some(a) => Some(
            crate::metrics::server::bind(a)
                .map_err(|source| StartupError::MetricsListen { addr: a, source })?,
        ),
        None => None,
    };
    Ok(Prepared { metrics, target })
}

/// Run once every shard is ready, before any serves: drops to `target`
/// (verified) and makes sure the process stays non-dumpable. `name` is
/// the target's user name for the log line (looked up before the sandbox
/// closes `/etc/passwd`).
pub fn before_serve(
    target: Option<privileges::Target>,
    name: Option<&str>,
) -> Result<(), StartupError> {
    if let Some(t) = target {
        privileges::drop_to(t)?;
        // A credential change resets the dumpable flag; set it again.
        disable_core_dumps().map_err(StartupError::CoreDumps)?;
        let user = name.map_or_else(|| privileges::user_name(t.uid), str::to_owned);
        tracing::info!(uid = t.uid, gid = t.gid, user = %user, "dropped privileges");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn group_or_world_readable_keys_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "x").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = check_key_permissions(&key).unwrap_err().to_string();
        assert!(
            e.contains("key.pem") && e.contains("mode 0644") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(check_key_permissions(&key).is_ok());
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        assert!(check_key_permissions(&key).is_ok());
    }
}
