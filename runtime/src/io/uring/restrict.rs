//! io_uring restrictions: a ring that can do only what the engine asks of
//! it.
//!
//! With restrictions on, the driver's rings are created
//! disabled (`IORING_SETUP_R_DISABLED`), get their provided-buffer ring
//! registered, are restricted (`IORING_REGISTER_RESTRICTIONS`) to the
//! opcodes in `OPS`, the SQE flags in `SQE_FLAGS` and no register
//! operation at all, and only then enabled (`IORING_REGISTER_ENABLE_RINGS`).
//! From then on the kernel answers any other submission with `-EACCES`
//! (an `IORING_OP_OPENAT` cannot open a file, an `IORING_OP_SOCKET` cannot
//! make one), and refuses every `io_uring_register` on the ring (no new
//! buffers, files or personalities), whoever asks. Restrictions can be
//! registered only once, before the ring is enabled, so they cannot be
//! lifted later.
//!
//! Every `opcode::` the backend submits must be listed in `OPS`; a test
//! reads this folder's sources and fails on one that is not.
//!
//! Process-wide switch ([`set_wanted`]): the `uringtls` binary turns it on
//! with `--sandbox true` (the default); library users and bench-client get
//! unrestricted rings unless they ask. The tokio-uring backend builds its
//! ring itself and is never restricted.

use io_uring::register::Restriction;
use io_uring::{opcode, squeue, IoUring};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// The opcodes the backend submits (name as in `io_uring::opcode`, code).
pub(crate) const OPS: &[(&str, u8)] = &[
    ("Nop", opcode::Nop::CODE),
    ("Read", opcode::Read::CODE),
    ("AsyncCancel", opcode::AsyncCancel::CODE),
    ("Accept", opcode::Accept::CODE),
    ("Connect", opcode::Connect::CODE),
    ("Recv", opcode::Recv::CODE),
    ("RecvMulti", opcode::RecvMulti::CODE),
    ("Send", opcode::Send::CODE),
];

/// The SQE flags the backend sets (receives pick a provided buffer).
pub(crate) const SQE_FLAGS: squeue::Flags = squeue::Flags::BUFFER_SELECT;

static WANTED: AtomicBool = AtomicBool::new(false);

/// Whether rings built from now on are restricted.
pub fn wanted() -> bool {
    WANTED.load(Ordering::Relaxed)
}

/// Restricts (or not) the uring-backend rings built from now on.
pub fn set_wanted(on: bool) {
    WANTED.store(on, Ordering::Relaxed);
}

/// Before `build`: a ring to be restricted starts disabled.
pub(crate) fn start_disabled(b: &mut io_uring::Builder, on: bool) {
    if on {
        b.setup_r_disabled();
    }
}

/// After everything is registered: restricts and enables the ring (a
/// ring started disabled does nothing until this).
pub(crate) fn restrict_and_enable(ring: &IoUring, on: bool) -> io::Result<()> {
    if !on {
        return Ok(());
    }
    let mut list: Vec<Restriction> = OPS
        .iter()
        .map(|&(_, code)| Restriction::sqe_op(code))
        .collect();
    list.push(Restriction::sqe_flags_allowed(SQE_FLAGS.bits()));
    let s = ring.submitter();
    s.register_restrictions(&mut list)?;
    s.register_enable_rings()
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::types;

    /// A ring set up as the driver does with restrictions on.
    fn restricted_ring() -> IoUring {
        let mut b = IoUring::builder();
        start_disabled(&mut b, true);
        let ring = b.build(8).expect("ring");
        restrict_and_enable(&ring, true).expect("restrict");
        ring
    }

    fn run_one(ring: &mut IoUring, e: squeue::Entry) -> i32 {
        // SAFETY: the entries used here point at memory that outlives the
        // wait below (a static path, or nothing).
        unsafe { ring.submission().push(&e) }.expect("queue has room");
        ring.submit_and_wait(1).expect("submit");
        let cqe = ring.completion().next().expect("a completion");
        cqe.result()
    }

    #[test]
    fn an_op_outside_the_set_completes_with_eacces_and_listed_ones_run() {
        let mut ring = restricted_ring();
        let path = c"/etc/hostname";
        let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
            .flags(libc::O_RDONLY)
            .build();
        assert_eq!(run_one(&mut ring, open.clone()), -libc::EACCES);
        let socket = opcode::Socket::new(libc::AF_INET, libc::SOCK_STREAM, 0).build();
        assert_eq!(run_one(&mut ring, socket), -libc::EACCES);
        // A listed opcode with an unlisted flag is refused too.
        let linked = opcode::Nop::new().build().flags(squeue::Flags::IO_DRAIN);
        assert_eq!(run_one(&mut ring, linked), -libc::EACCES);
        assert_eq!(run_one(&mut ring, opcode::Nop::new().build()), 0);
        // The same OpenAt on an unrestricted ring is not refused for lack of
        // permission (the test's premise).
        let mut free = IoUring::new(8).expect("ring");
        let res = run_one(&mut free, open);
        assert_ne!(res, -libc::EACCES);
        if res >= 0 {
            // SAFETY: the kernel just opened this descriptor for us.
            unsafe { libc::close(res) };
        }
    }

    #[test]
    fn no_register_operation_is_allowed_once_enabled() {
        let ring = restricted_ring();
        let e = ring
            .submitter()
            .register_probe(&mut io_uring::Probe::new())
            .expect_err("refused");
        assert_eq!(e.raw_os_error(), Some(libc::EACCES));
        // Restrictions are registered once: a second set is refused.
        let again = ring
            .submitter()
            .register_restrictions(&mut [Restriction::sqe_op(opcode::OpenAt::CODE)]);
        assert!(again.is_err());
    }

    #[test]
    fn every_opcode_the_backend_submits_is_in_the_restriction_set() {
        let sources = [
            ("mod.rs", include_str!("mod.rs")),
            ("executor.rs", include_str!("executor.rs")),
            ("op.rs", include_str!("op.rs")),
            ("sys.rs", include_str!("sys.rs")),
            ("timer.rs", include_str!("timer.rs")),
            ("net.rs", include_str!("net.rs")),
            ("bufring.rs", include_str!("bufring.rs")),
        ];
        let mut seen = 0;
        for (file, text) in sources {
            for (i, _) in text.match_indices("opcode::") {
                let name: String = text[i + "opcode::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                if name.is_empty() || name == "CODE" {
                    continue;
                }
                seen += 1;
                assert!(
                    OPS.iter().any(|(n, _)| *n == name),
                    "{file} submits opcode::{name}, which restrict::OPS does not allow: add it"
                );
            }
        }
        assert!(
            seen >= 6,
            "found only {seen} opcode uses: did the sources move?"
        );
    }

    #[test]
    fn the_backend_serves_a_connection_on_restricted_rings() {
        use crate::io::{self, Conn, Listener};
        let rt = super::super::Runtime::new(&super::super::Setup {
            entries: 64,
            sqpoll_idle_ms: None,
            recv_multishot: true,
            restrict: true,
        })
        .expect("restricted runtime");
        rt.block_on(async {
            let std_l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = std_l.local_addr().expect("addr");
            let l = Listener::from_std(std_l).expect("listener");
            io::spawn(async move {
                let (c, _) = l.accept().await.expect("accept");
                // A pooled receive: multishot, BUFFER_SELECT.
                let got = c.recv(None, 64, 64).await.expect("recv");
                assert!(got.is_pooled(), "the provided-buffer ring is registered");
                let (w, _) = c.write_all(got.to_vec()).await;
                w.expect("write");
            });
            let c = Conn::connect(addr).await.expect("connect");
            let (w, _) = c.write_all(b"ping".to_vec()).await;
            w.expect("write");
            let (r, buf) = c.read(Vec::with_capacity(64)).await;
            let n = r.expect("read");
            assert_eq!(&buf[..n], b"ping");
        });
    }
}
