//! Our own CPU use: per worker thread (to detect saturation) and for the
//! whole process.

use std::time::Duration;

/// A worker busier than this share of wall time is saturated: the result
/// then measures bench-client, not the server.
pub const SATURATION: f64 = 0.90;

/// CPU time consumed by the calling thread so far (user + system).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
    // always supported on Linux. On failure `ts` stays zero.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// User and system CPU time of this process so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessCpu {
    /// User time.
    pub user: Duration,
    /// System time.
    pub system: Duration,
}

impl ProcessCpu {
    /// Reads `getrusage(RUSAGE_SELF)`.
    pub fn now() -> ProcessCpu {
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable rusage; on failure it stays zero.
        unsafe {
            libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        }
        let tv = |t: libc::timeval| {
            Duration::new(
                t.tv_sec.max(0) as u64,
                (t.tv_usec.clamp(0, 999_999) * 1000) as u32,
            )
        };
        ProcessCpu {
            user: tv(ru.ru_utime),
            system: tv(ru.ru_stime),
        }
    }

    /// Time spent between `earlier` and `self`.
    pub fn since(&self, earlier: &ProcessCpu) -> ProcessCpu {
        ProcessCpu {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    /// User + system.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_advances_while_busy() {
        let a = thread_cpu();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(20) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(thread_cpu() > a);
        assert!(ProcessCpu::now().total() > Duration::ZERO);
    }
}
