//! `RLIMIT_NOFILE`: raised (soft up to hard) so that N connections fit.

/// Descriptors needed beyond the connections (stdio, rings, files).
pub const SPARE_FDS: u64 = 64;

/// Raises the soft fd limit to fit `connections`; returns the limit now in
/// force and, if it is still too low, a warning naming the fix.
pub fn raise_nofile(connections: usize) -> (u64, Option<String>) {
    let want = connections as u64 + SPARE_FDS;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return (0, Some("cannot read RLIMIT_NOFILE".into()));
    }
    if lim.rlim_cur >= want {
        return (lim.rlim_cur, None);
    }
    let new = libc::rlimit {
        rlim_cur: want.min(lim.rlim_max),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: `new` is a valid rlimit with cur <= max.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0;
    let now = if ok { new.rlim_cur } else { lim.rlim_cur };
    let warn = (now < want).then(|| {
        format!(
            "open-file limit is {now} (hard limit {}), but {connections} connections need about {want}: \
             some connections will fail; raise it with `ulimit -n {want}` (or LimitNOFILE=) as root",
            lim.rlim_max
        )
    });
    (now, warn)
}

#[cfg(test)]
mod tests {
    #[test]
    fn small_needs_fit_without_warning() {
        let (limit, warn) = super::raise_nofile(10);
        assert!(limit >= 74);
        assert!(warn.is_none());
    }
}
