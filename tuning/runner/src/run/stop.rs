//! Ctrl-C (and SIGTERM, SIGHUP): stop the children, let the runner unwind
//! so the saved sysctls are restored, and still write what was measured.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The stop request and the child processes it must end.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    pids: Arc<Mutex<Vec<u32>>>,
}

impl Stop {
    /// A stop nobody signals (tests, `--dry-run`).
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Handles SIGINT, SIGTERM and SIGHUP from now on: the first one asks
    /// the runner to stop and sends SIGTERM to its children.
    pub fn install() -> std::io::Result<Stop> {
        let stop = Stop::new();
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let s = stop.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    eprintln!(
                        "\nuringtls-tune: signal {sig}: stopping, restoring sysctls, writing what was measured"
                    );
                    s.request();
                }
            })?;
        Ok(stop)
    }

    /// Asks the runner to stop and ends the running children.
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Ok(pids) = self.pids.lock() {
            for &pid in pids.iter() {
                terminate(pid);
            }
        }
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Remembers a child to end on stop; ends it at once if a stop came
    /// while it was being started.
    pub fn track(&self, pid: u32) {
        if let Ok(mut pids) = self.pids.lock() {
            pids.push(pid);
        }
        if self.requested() {
            terminate(pid);
        }
    }

    /// Forgets a child that has been reaped.
    pub fn untrack(&self, pid: u32) {
        if let Ok(mut pids) = self.pids.lock() {
            pids.retain(|&p| p != pid);
        }
    }
}

/// SIGTERM to `pid`.
pub fn terminate(pid: u32) {
    signal(pid, libc::SIGTERM);
}

/// Sends `sig` to `pid` (a child we started and have not reaped yet, so
/// the pid cannot have been reused).
pub fn signal(pid: u32, sig: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}
