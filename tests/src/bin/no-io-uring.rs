//! `no-io-uring PROGRAM [ARGS...]`: execs PROGRAM under a seccomp filter
//! that makes `io_uring_setup`, `io_uring_enter` and `io_uring_register`
//! fail with `EPERM`, as Docker's and containerd's default seccomp profiles
//! do (moby #46762, containerd #9320), with `no_new_privs` set as a
//! container runtime sets it. Every other system call is allowed.
//!
//! The three syscall numbers (425, 426, 427) are the same on every Linux
//! architecture (they were added to the common syscall table).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

const IO_URING_SETUP: u32 = 425;
const IO_URING_ENTER: u32 = 426;
const IO_URING_REGISTER: u32 = 427;

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jeq(k: u32, jt: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: BPF_JEQ_K,
        jt,
        jf: 0,
        k,
    }
}

fn main() {
    let args: Vec<CString> = std::env::args_os()
        .skip(1)
        .map(|a| CString::new(a.as_bytes()).expect("argument without NUL"))
        .collect();
    if args.is_empty() {
        eprintln!("usage: no-io-uring PROGRAM [ARGS...]");
        std::process::exit(2);
    }
    // offsetof(struct seccomp_data, nr) == 0.
    let mut filter = [
        stmt(BPF_LD_W_ABS, 0),
        jeq(IO_URING_SETUP, 3),
        jeq(IO_URING_ENTER, 2),
        jeq(IO_URING_REGISTER, 1),
        stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW),
        stmt(
            BPF_RET_K,
            libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA),
        ),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS and integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        eprintln!(
            "no-io-uring: PR_SET_NO_NEW_PRIVS: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(1);
    }
    // SAFETY: `prog` points at `filter`, both alive for the call; the
    // kernel copies the program.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        eprintln!(
            "no-io-uring: PR_SET_SECCOMP: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(1);
    }
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: `argv` is a NULL-terminated array of pointers to NUL-terminated
    // strings that live until exec replaces this process (or it fails).
    unsafe { libc::execvp(argv[0], argv.as_ptr()) };
    eprintln!(
        "no-io-uring: cannot run {:?}: {}",
        args[0],
        std::io::Error::last_os_error()
    );
    std::process::exit(127);
}
