//! Dropping root: look the user and group up, then `setgroups`, `setgid`,
//! `setuid` in that order (each later step would forbid the earlier ones),
//! and verify the result, including that root cannot be regained.
//!
//! glibc applies these calls to every thread of the process, so shard
//! threads started before the drop end up with the same credentials (the
//! integration test checks every task in `/proc/PID/task`).

use std::ffi::{CStr, CString};
use std::fmt;

/// Who to become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// User id.
    pub uid: libc::uid_t,
    /// Group id.
    pub gid: libc::gid_t,
}

/// Why the drop failed (the engine refuses to serve).
#[derive(Debug)]
#[non_exhaustive]
pub enum PrivilegeError {
    /// No such user.
    UnknownUser(String),
    /// No such group.
    UnknownGroup(String),
    /// A system call failed.
    Call {
        /// Which one.
        call: &'static str,
        /// errno.
        source: std::io::Error,
    },
    /// The calls returned success but the credentials are not what was asked.
    NotVerified(String),
}

impl fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivilegeError::UnknownUser(u) => write!(
                f,
                "user `{u}` does not exist (create it, or name another with --user)"
            ),
            PrivilegeError::UnknownGroup(g) => write!(
                f,
                "group `{g}` does not exist (create it, or name another with --group)"
            ),
            PrivilegeError::Call { call, source } => {
                let hint = if source.raw_os_error() == Some(libc::EPERM) {
                    " (--user/--group need the engine to start as root; otherwise start it as the target user with CAP_NET_BIND_SERVICE)"
                } else {
                    ""
                };
                write!(f, "{call} failed: {source}{hint}")
            }
            PrivilegeError::NotVerified(what) => {
                write!(f, "privilege drop not effective: {what}; refusing to serve")
            }
        }
    }
}

impl std::error::Error for PrivilegeError {}

/// Resolves `user` (name or number) and `group` (name or number; default:
/// the user's primary group).
pub fn resolve(user: &str, group: Option<&str>) -> Result<Target, PrivilegeError> {
    let (uid, primary) = lookup_user(user)?;
    let gid = match group {
        Some(g) => lookup_group(g)?,
        None => primary,
    };
    Ok(Target { uid, gid })
}

fn lookup_user(user: &str) -> Result<(libc::uid_t, libc::gid_t), PrivilegeError> {
    let name = CString::new(user).map_err(|_| PrivilegeError::UnknownUser(user.into()))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids).
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives `pw`'s
    // string fields, which we do not read.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    if rc == 0 && !out.is_null() {
        return Ok((pw.pw_uid, pw.pw_gid));
    }
    match user.parse::<libc::uid_t>() {
        Ok(uid) => Ok((uid, uid)),
        Err(_) => Err(PrivilegeError::UnknownUser(user.into())),
    }
}

fn lookup_group(group: &str) -> Result<libc::gid_t, PrivilegeError> {
    let name = CString::new(group).map_err(|_| PrivilegeError::UnknownGroup(group.into()))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: all-zero is a valid `group`.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `lookup_user`.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut gr,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    if rc == 0 && !out.is_null() {
        return Ok(gr.gr_gid);
    }
    group
        .parse()
        .map_err(|_| PrivilegeError::UnknownGroup(group.into()))
}

fn check(call: &'static str, rc: libc::c_int) -> Result<(), PrivilegeError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(PrivilegeError::Call {
            call,
            source: std::io::Error::last_os_error(),
        })
    }
}

/// Drops to `t`: supplementary groups cleared, then gid, then uid; then
/// verifies real/effective/saved ids, the group list, and that `setuid(0)`
/// fails.
pub fn drop_to(t: Target) -> Result<(), PrivilegeError> {
    // SAFETY: plain syscalls with valid arguments (an empty group list).
    unsafe {
        check("setgroups", libc::setgroups(0, std::ptr::null()))?;
        check("setgid", libc::setgid(t.gid))?;
        check("setuid", libc::setuid(t.uid))?;
    }
    verify(t)
}

/// Checks that the process runs as `t` with no way back.
pub fn verify(t: Target) -> Result<(), PrivilegeError> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: valid out-pointers.
    check("getresuid", unsafe {
        libc::getresuid(&mut r, &mut e, &mut s)
    })?;
    if [r, e, s] != [t.uid; 3] {
        return Err(PrivilegeError::NotVerified(format!(
            "uids are {r}/{e}/{s}, expected {}",
            t.uid
        )));
    }
    // SAFETY: valid out-pointers.
    check("getresgid", unsafe {
        libc::getresgid(&mut r, &mut e, &mut s)
    })?;
    if [r, e, s] != [t.gid; 3] {
        return Err(PrivilegeError::NotVerified(format!(
            "gids are {r}/{e}/{s}, expected {}",
            t.gid
        )));
    }
    // SAFETY: a zero-length query only returns the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n > 1 {
        return Err(PrivilegeError::NotVerified(format!(
            "{n} supplementary groups left"
        )));
    }
    // SAFETY: a plain syscall; it must fail once root is gone.
    if t.uid != 0 && unsafe { libc::setuid(0) } == 0 {
        return Err(PrivilegeError::NotVerified(
            "setuid(0) still succeeds".into(),
        ));
    }
    Ok(())
}

/// The user name of `uid`, for log lines.
pub fn user_name(uid: libc::uid_t) -> String {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: all-zero is a valid `passwd`.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: valid pointers; the name is copied out before `buf` drops.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc == 0 && !out.is_null() && !pw.pw_name.is_null() {
        // SAFETY: getpwuid_r set `pw_name` to a NUL-terminated string in `buf`.
        return unsafe { CStr::from_ptr(pw.pw_name) }
            .to_string_lossy()
            .into_owned();
    }
    uid.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_resolve() {
        let t = resolve("root", None).expect("root exists");
        assert_eq!(t, Target { uid: 0, gid: 0 });
        assert_eq!(
            resolve("4242", Some("4343")).expect("numeric"),
            Target {
                uid: 4242,
                gid: 4343
            }
        );
        let e = resolve("no-such-user-x", None).unwrap_err().to_string();
        assert!(e.contains("`no-such-user-x` does not exist"), "{e}");
        assert!(resolve("root", Some("no-such-group-x")).is_err());
        assert_eq!(user_name(0), "root");
    }
}
