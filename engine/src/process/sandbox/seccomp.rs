//! The seccomp layer: an allow-list of the system calls the running
//! engine makes, installed on every thread (`SECCOMP_FILTER_FLAG_TSYNC`)
//! with `no_new_privs`, once listeners are bound, keys read and privileges
//! dropped.
//!
//! A call outside the list is not executed and fails with `EPERM`; it is
//! not fatal. The filter answers it with `SECCOMP_RET_TRAP`: the kernel
//! raises `SIGSYS` on the calling thread, whose handler (async-signal-safe:
//! atomics and one `write(2)`) sets the call's return value to `-EPERM`,
//! and, the first time this call number is denied, writes the number into
//! a pipe. A thread named `sandbox-log` reads the pipe and logs one warning
//! per call number ([`Denials`]), so a call missing from the list shows up
//! in the log once rather than as a crash or a flood. On architectures
//! other than x86_64 and aarch64 the filter answers `EPERM` itself
//! (`SECCOMP_RET_ERRNO`) and nothing is logged.
//!
//! Two filters are stacked: the allow-list, and one that answers `clone3`
//! with `ENOSYS` so that glibc falls back to `clone`, whose flags the
//! allow-list can see: only `CLONE_THREAD` clones (threads) pass; a fork
//! (and so any new process) is denied. `execve` is not on the list either.

// `c_long`/`c_ulong` are 64-bit here but not on every target: the casts stay.
#![allow(clippy::unnecessary_cast)]

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// Why the filter could not be installed (the engine then refuses to serve).
#[derive(Debug)]
#[non_exhaustive]
pub enum SeccompError {
    /// The filter could not be compiled (a bug: the list is fixed).
    Compile(seccompiler::BackendError),
    /// A system call failed while installing (`seccomp`, `prctl`,
    /// `sigaction`, `pipe2`, or the logging thread's spawn).
    Install(&'static str, io::Error),
}

impl fmt::Display for SeccompError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeccompError::Compile(e) => write!(f, "cannot build the seccomp filter: {e}"),
            SeccompError::Install(what, e) => write!(
                f,
                "cannot install the seccomp filter ({what}: {e}); pass --sandbox false to run without it"
            ),
        }
    }
}

impl std::error::Error for SeccompError {}

/// `(number, name)` of each listed call.
macro_rules! calls {
    ($($name:ident),* $(,)?) => { &[$((libc::$name, stringify!($name))),*] };
}

/// Calls allowed with any arguments, on every architecture.
const ALLOWED: &[(libc::c_long, &str)] = calls![
    // Reading files (reload, /proc), sockets and pipes; closing.
    SYS_read,
    SYS_readv,
    SYS_pread64,
    SYS_write,
    SYS_writev,
    SYS_close,
    SYS_openat,
    SYS_fstat,
    SYS_newfstatat,
    SYS_statx,
    SYS_lseek,
    SYS_fcntl,
    SYS_readlinkat,
    SYS_dup,
    SYS_dup3,
    SYS_getdents64,
    SYS_getcwd,
    // The ACME cache (Landlock confines writes to its directory): a lock
    // per name, files written whole, synced and renamed into place.
    SYS_flock,
    SYS_fsync,
    SYS_fdatasync,
    SYS_ftruncate,
    SYS_fchmod,
    SYS_renameat,
    SYS_renameat2,
    SYS_unlinkat,
    SYS_mkdirat,
    // Memory: malloc, thread stacks, malloc_trim, provided buffers.
    SYS_brk,
    SYS_mmap,
    SYS_munmap,
    SYS_mremap,
    SYS_mprotect,
    SYS_madvise,
    // Threads (clone is below, with its flags checked), locks, exit.
    SYS_clone3,
    SYS_futex,
    SYS_set_robust_list,
    SYS_rseq,
    SYS_set_tid_address,
    SYS_exit,
    SYS_exit_group,
    SYS_sched_getaffinity,
    SYS_sched_yield,
    SYS_gettid,
    SYS_getpid,
    SYS_tgkill,
    SYS_restart_syscall,
    SYS_prlimit64,
    SYS_getrusage,
    // Signals (SIGHUP/SIGTERM handling, this module's SIGSYS, stack guards).
    SYS_rt_sigprocmask,
    SYS_rt_sigaction,
    SYS_rt_sigreturn,
    SYS_sigaltstack,
    // Time, randomness.
    SYS_clock_gettime,
    SYS_clock_getres,
    SYS_clock_nanosleep,
    SYS_nanosleep,
    SYS_gettimeofday,
    SYS_getrandom,
    // Networking: proxy upstreams, /metrics, DNS on reload (UDP, netlink).
    SYS_connect,
    SYS_accept4,
    SYS_bind,
    SYS_getsockname,
    SYS_getpeername,
    SYS_setsockopt,
    SYS_getsockopt,
    SYS_shutdown,
    SYS_sendto,
    SYS_recvfrom,
    SYS_sendmsg,
    SYS_recvmsg,
    SYS_sendmmsg,
    SYS_recvmmsg,
    SYS_ppoll,
    SYS_pselect6,
    // The rings (the uring backend parks in io_uring_enter) and
    // tokio-uring's epoll.
    SYS_io_uring_enter,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    // The file watcher (inotify; its reading thread blocks in read(2)) and
    // the ACME thread's runtime, which may start after the filter: an
    // epoll set and its wake-up eventfd, nothing that reaches a file or
    // the network.
    SYS_epoll_create1,
    SYS_eventfd2,
    SYS_inotify_init1,
    SYS_inotify_add_watch,
    SYS_inotify_rm_watch,
    // Identity, read only (log lines, verification).
    SYS_getuid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getegid,
    SYS_getresuid,
    SYS_getresgid,
    SYS_uname,
];

/// x86_64's older calls that glibc or std still use there.
#[cfg(target_arch = "x86_64")]
const ALLOWED_ARCH: &[(libc::c_long, &str)] = calls![
    SYS_open,
    SYS_rename,
    SYS_unlink,
    SYS_stat,
    SYS_lstat,
    SYS_readlink,
    SYS_access,
    SYS_poll,
    SYS_epoll_wait,
    SYS_getrlimit,
    SYS_arch_prctl,
];
#[cfg(not(target_arch = "x86_64"))]
const ALLOWED_ARCH: &[(libc::c_long, &str)] = &[];

/// `socket` domains allowed: IPv4/IPv6 (upstreams, DNS), Unix (nscd),
/// netlink (glibc's getaddrinfo sorting).
const SOCKET_DOMAINS: &[libc::c_int] = &[
    libc::AF_INET,
    libc::AF_INET6,
    libc::AF_UNIX,
    libc::AF_NETLINK,
];

/// `ioctl` requests allowed: non-blocking/close-on-exec switches, bytes
/// queued (FIONREAD), terminal check (isatty).
const IOCTLS: &[libc::c_ulong] = &[
    libc::FIONBIO,
    libc::FIOCLEX,
    libc::FIONCLEX,
    libc::FIONREAD,
    libc::TCGETS,
];

/// `prctl` options allowed: thread names.
const PRCTLS: &[libc::c_int] = &[libc::PR_SET_NAME, libc::PR_GET_NAME];

/// Every call the allow-list lets through, by name (`clone`, `socket`,
/// `ioctl` and `prctl` with their argument checks). For the docs and the
/// container profile's test.
pub fn allowed_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = ALLOWED
        .iter()
        .chain(ALLOWED_ARCH)
        .map(|(_, n)| n.trim_start_matches("SYS_"))
        .collect();
    v.extend(["clone", "socket", "ioctl", "prctl"]);
    v
}

fn arg_eq(arg: u8, v: u64) -> Result<SeccompRule, seccompiler::BackendError> {
    SeccompRule::new(vec![SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        v,
    )?])
}

fn rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::BackendError> {
    let mut m: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
        .iter()
        .chain(ALLOWED_ARCH)
        .map(|&(nr, _)| (nr as i64, vec![]))
        .collect();
    let thread = libc::CLONE_THREAD as u64;
    m.insert(
        libc::SYS_clone as i64,
        vec![SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(thread),
            thread,
        )?])?],
    );
    let domains = SOCKET_DOMAINS.iter().map(|&d| arg_eq(0, d as u64));
    m.insert(libc::SYS_socket as i64, domains.collect::<Result<_, _>>()?);
    let ioctls = IOCTLS.iter().map(|&r| arg_eq(1, r as u64));
    m.insert(libc::SYS_ioctl as i64, ioctls.collect::<Result<_, _>>()?);
    let prctls = PRCTLS.iter().map(|&o| arg_eq(0, o as u64));
    m.insert(libc::SYS_prctl as i64, prctls.collect::<Result<_, _>>()?);
    Ok(m)
}

/// What the allow-list does with an unlisted call.
fn denied_action() -> SeccompAction {
    if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        SeccompAction::Trap
    } else {
        SeccompAction::Errno(libc::EPERM as u32)
    }
}

/// The two filters: `clone3` answered `ENOSYS`, then the allow-list.
fn programs() -> Result<[BpfProgram; 2], SeccompError> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(SeccompError::Compile)?;
    let no_clone3 = SeccompFilter::new(
        [(libc::SYS_clone3 as i64, vec![])].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(SeccompError::Compile)?;
    let allow = SeccompFilter::new(
        rules().map_err(SeccompError::Compile)?,
        denied_action(),
        SeccompAction::Allow,
        arch,
    )
    .map_err(SeccompError::Compile)?;
    Ok([
        no_clone3.try_into().map_err(SeccompError::Compile)?,
        allow.try_into().map_err(SeccompError::Compile)?,
    ])
}

/// Calls denied so far (each time, not only the first).
static DENIED: AtomicU64 = AtomicU64::new(0);
/// One bit per call number below 512 already reported; numbers above
/// share the last bit.
static SEEN: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
/// Write end of the report pipe (non-blocking), -1 before `install`.
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);

/// Calls the filter has denied since it was installed.
pub fn denied_total() -> u64 {
    DENIED.load(Ordering::Relaxed)
}

/// Denied calls, each number once, as the `SIGSYS` handler reports them.
pub struct Denials(File);

impl Denials {
    /// Waits for the next call number denied for the first time.
    pub fn next_denied(&mut self) -> io::Result<i32> {
        let mut b = [0u8; 4];
        self.0.read_exact(&mut b)?;
        Ok(i32::from_ne_bytes(b))
    }

    /// Logs each one from a thread of its own (`sandbox-log`).
    pub fn log_from_a_thread(mut self) -> io::Result<()> {
        std::thread::Builder::new()
            .name("sandbox-log".into())
            .spawn(move || {
                while let Ok(nr) = self.next_denied() {
                    tracing::warn!(
                        syscall = nr,
                        arch = std::env::consts::ARCH,
                        "sandbox: seccomp denied a system call the engine does not normally make \
                         (it failed with EPERM; reported once per call number). If the engine \
                         misbehaves, run with --sandbox false and report the call number \
                         (`ausyscall {nr}` names it)"
                    );
                }
            })
            .map(drop)
    }
}

/// Installs both filters on every thread of the process, with
/// `no_new_privs`. Returns the denied calls, to log.
pub fn install() -> Result<Denials, SeccompError> {
    let [no_clone3, allow] = programs()?;
    let denials = report_pipe()?;
    install_sigsys_handler()?;
    for p in [&no_clone3, &allow] {
        seccompiler::apply_filter_all_threads(p).map_err(|e| {
            SeccompError::Install("seccomp(SECCOMP_SET_MODE_FILTER, TSYNC)", io_error(e))
        })?;
    }
    Ok(denials)
}

fn io_error(e: seccompiler::Error) -> io::Error {
    match e {
        seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

fn report_pipe() -> Result<Denials, SeccompError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(SeccompError::Install("pipe2", io::Error::last_os_error()));
    }
    // SAFETY: fds[1] is the pipe's write end, just created and ours.
    if unsafe { libc::fcntl(fds[1], libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
        return Err(SeccompError::Install("fcntl", io::Error::last_os_error()));
    }
    let old = REPORT_FD.swap(fds[1], Ordering::AcqRel);
    if old >= 0 {
        // SAFETY: a previous install's write end, no longer published.
        unsafe { libc::close(old) };
    }
    // SAFETY: fds[0] is the pipe's read end, owned by nobody else.
    Ok(Denials(unsafe { File::from_raw_fd(fds[0]) }))
}

fn install_sigsys_handler() -> Result<(), SeccompError> {
    // SAFETY: an all-zero sigaction is valid (empty mask, no flags).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_sigsys as *const () as usize;
    sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
    // SAFETY: a valid sigaction whose handler is async-signal-safe.
    if unsafe { libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) } != 0 {
        return Err(SeccompError::Install(
            "sigaction(SIGSYS)",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Byte offset of `si_syscall` in a `SIGSYS` siginfo (`_sigsys` after
/// `si_signo`, `si_errno`, `si_code` and padding; then `_call_addr`).
const SI_SYSCALL_OFFSET: usize = 16 + std::mem::size_of::<usize>();

/// The `SIGSYS` handler: makes the denied call return `-EPERM` and
/// reports its number once. Only atomics and `write(2)`.
extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    if info.is_null() || ctx.is_null() {
        return;
    }
    // SAFETY: the kernel passes a full siginfo for SIGSYS; `si_syscall` is
    // an int at this offset (include/uapi/asm-generic/siginfo.h).
    let nr = unsafe {
        info.cast::<u8>()
            .add(SI_SYSCALL_OFFSET)
            .cast::<i32>()
            .read()
    };
    set_return(ctx, -(libc::EPERM as i64));
    DENIED.fetch_add(1, Ordering::Relaxed);
    let bit = nr.clamp(0, 511) as usize;
    let mask = 1u64 << (bit % 64);
    if SEEN[bit / 64].fetch_or(mask, Ordering::AcqRel) & mask == 0 {
        let fd = REPORT_FD.load(Ordering::Acquire);
        if fd >= 0 {
            // SAFETY: errno is thread-local; saved and restored around the
            // write so the interrupted code sees its own.
            let errno = unsafe { *libc::__errno_location() };
            // SAFETY: writes 4 bytes from a live local to the pipe.
            unsafe { libc::write(fd, (&nr as *const i32).cast(), 4) };
            // SAFETY: as above.
            unsafe { *libc::__errno_location() = errno };
        }
    }
}

/// Sets the value the interrupted system call returns.
fn set_return(ctx: *mut libc::c_void, v: i64) {
    let uc = ctx.cast::<libc::ucontext_t>();
    // SAFETY: for a SA_SIGINFO handler the third argument is the
    // interrupted thread's ucontext; the return register is restored from
    // it by rt_sigreturn.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        (*uc).uc_mcontext.gregs[libc::REG_RAX as usize] = v;
    }
    // SAFETY: as above (x0 holds the return value).
    #[cfg(target_arch = "aarch64")]
    unsafe {
        (*uc).uc_mcontext.regs[0] = v as u64;
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = (uc, v);
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "URINGTLS_SECCOMP_TEST_CHILD";

    /// Runs this test again in a child process (the filter cannot be
    /// removed once installed), where `CHILD` is set; returns its output.
    fn in_child(test: &str) -> String {
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .expect("run the child");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "child failed: {text}");
        text
    }

    #[test]
    fn a_denied_call_fails_with_eperm_is_reported_once_and_threads_still_start() {
        if std::env::var_os(CHILD).is_none() {
            let out = in_child(
                "process::sandbox::seccomp::tests::a_denied_call_fails_with_eperm_is_reported_once_and_threads_still_start",
            );
            assert!(out.contains("CHILD DONE"), "{out}");
            return;
        }
        let mut denials = install().expect("install");
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        assert!(status.contains("Seccomp:\t2"), "{status}");
        assert!(status.contains("NoNewPrivs:\t1"), "{status}");
        // An unlisted call, twice: EPERM each time, one report.
        for _ in 0..2 {
            // SAFETY: acct(NULL) would only switch accounting off.
            let rc = unsafe { libc::syscall(libc::SYS_acct, std::ptr::null::<libc::c_char>()) };
            assert_eq!(rc, -1);
            assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EPERM));
        }
        // A fork is a clone without CLONE_THREAD: denied.
        // SAFETY: fork has no preconditions; in the (failing) child we exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: only if the filter failed: leave at once.
            unsafe { libc::_exit(0) };
        }
        assert_eq!(pid, -1, "fork must be denied");
        assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EPERM));
        // Threads still start (clone3 -> ENOSYS -> clone with CLONE_THREAD).
        let t = std::thread::spawn(|| 7).join().expect("thread");
        assert_eq!(t, 7);
        assert_eq!(
            denials.next_denied().expect("report"),
            libc::SYS_acct as i32
        );
        assert_eq!(
            denials.next_denied().expect("report"),
            libc::SYS_clone as i32
        );
        assert_eq!(denied_total(), 3);
        // Nothing else was reported: the pipe is empty now.
        // SAFETY: F_SETFL on the read end we own.
        unsafe {
            libc::fcntl(
                std::os::fd::AsRawFd::as_raw_fd(&denials.0),
                libc::F_SETFL,
                libc::O_NONBLOCK,
            )
        };
        let e = denials.next_denied().expect_err("no more reports");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        // Files can still be read (the engine reads certificates on reload).
        assert!(std::fs::read("/proc/self/statm").is_ok());
        println!("CHILD DONE");
    }

    #[test]
    fn the_allow_list_has_neither_exec_nor_new_rings_nor_privilege_calls() {
        let names = allowed_names();
        for bad in [
            "execve",
            "execveat",
            "fork",
            "vfork",
            "ptrace",
            "io_uring_setup",
            "io_uring_register",
            "setuid",
            "setgid",
            "setgroups",
            "mount",
            "chroot",
            "seccomp",
            "bpf",
            "kill",
            "listen",
        ] {
            assert!(!names.contains(&bad), "{bad} must not be allowed");
        }
        programs().expect("filters compile");
    }
}
