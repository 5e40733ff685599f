//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): one pool of receive
//! buffers per shard, from which the kernel picks a buffer only when data
//! arrives. An idle connection's pending receive therefore holds no memory
//! of its own.
//!
//! Layout: `entries` ring slots of 16 bytes (`struct io_uring_buf`) in one
//! page-aligned mapping shared with the kernel, and `entries` buffers of
//! `size` bytes in a second mapping (touched, hence resident, only once the
//! kernel first fills them). Buffer `bid` lives at `base + bid * size`.

use io_uring::types::BufRingEntry;
use io_uring::IoUring;
use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

/// The buffer group id of the pool (one group per ring).
pub(crate) const BGID: u16 = 0;

pub(crate) struct BufRing {
    ring: *mut BufRingEntry,
    ring_len: usize,
    bufs: *mut u8,
    bufs_len: usize,
    entries: u16,
    size: usize,
    /// Our copy of the tail (the kernel only reads it).
    tail: Cell<u16>,
}

fn map(len: usize) -> io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping with no address hint; the result
    // is checked against MAP_FAILED before use.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

impl BufRing {
    /// Maps and registers a pool of `entries` (a power of two, at most
    /// 32768) buffers of `size` bytes with `ring`, all of them handed to
    /// the kernel.
    pub(crate) fn new(uring: &IoUring, entries: u16, size: usize) -> io::Result<BufRing> {
        if !entries.is_power_of_two() || size == 0 || size > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring: entries must be a power of two and size in 1..4 GiB",
            ));
        }
        let ring_len = usize::from(entries) * std::mem::size_of::<BufRingEntry>();
        let bufs_len = usize::from(entries) * size;
        let ring = map(ring_len)?.cast::<BufRingEntry>();
        let bufs = match map(bufs_len) {
            Ok(b) => b,
            Err(e) => {
                // SAFETY: `ring` was mapped just above with this length.
                unsafe { libc::munmap(ring.cast(), ring_len) };
                return Err(e);
            }
        };
        let me = BufRing {
            ring,
            ring_len,
            bufs,
            bufs_len,
            entries,
            size,
            tail: Cell::new(0),
        };
        // SAFETY: the ring mapping is page-aligned, `entries` slots long and
        // lives until `Drop`, which runs after the io_uring instance using
        // it is gone (the driver drops its ring first).
        unsafe {
            uring
                .submitter()
                .register_buf_ring(ring as u64, entries, BGID)?
        };
        for bid in 0..entries {
            me.give_back(bid);
        }
        Ok(me)
    }

    /// The bytes of buffer `bid` the kernel filled.
    ///
    /// # Safety
    /// The caller owns `bid`: the kernel reported it in a completion and it
    /// has not been given back since; `len` is at most the completion's
    /// result.
    pub(crate) unsafe fn slice(&self, bid: u16, len: usize) -> &[u8] {
        debug_assert!(bid < self.entries && len <= self.size);
        // SAFETY: by the caller's contract the buffer is ours and `len`
        // bytes of it were written by the kernel; the mapping outlives self.
        unsafe { std::slice::from_raw_parts(self.bufs.add(usize::from(bid) * self.size), len) }
    }

    /// The bytes of buffer `bid` the kernel filled, writable.
    ///
    /// # Safety
    /// As for [`slice`](Self::slice), and no other reference to buffer
    /// `bid` exists while the returned one lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self, bid: u16, len: usize) -> &mut [u8] {
        debug_assert!(bid < self.entries && len <= self.size);
        // SAFETY: by the caller's contract the buffer is ours alone and
        // `len` bytes of it were written by the kernel (which no longer
        // touches it); the mapping outlives self.
        unsafe { std::slice::from_raw_parts_mut(self.bufs.add(usize::from(bid) * self.size), len) }
    }

    /// Hands buffer `bid` (back) to the kernel.
    pub(crate) fn give_back(&self, bid: u16) {
        let tail = self.tail.get();
        let idx = usize::from(tail & (self.entries - 1));
        // SAFETY: `idx` < entries, inside the ring mapping; the kernel does
        // not read slots at or past the published tail, so we may write
        // this one. Only addr/len/bid are written: slot 0's `resv` field
        // is the shared tail.
        unsafe {
            let slot = &mut *self.ring.add(idx);
            slot.set_addr(self.bufs.add(usize::from(bid) * self.size) as u64);
            slot.set_len(self.size as u32);
            slot.set_bid(bid);
        }
        let next = tail.wrapping_add(1);
        self.tail.set(next);
        // SAFETY: the tail field of the (page-aligned, initialised) ring;
        // the kernel reads it concurrently, so publish with a release store
        // after the slot writes above.
        unsafe {
            let t = BufRingEntry::tail(self.ring).cast_mut();
            AtomicU16::from_ptr(t).store(next, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both regions were mapped in `new` with these lengths and
        // nothing refers to them any more (the ring was closed first).
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_len);
            libc::munmap(self.bufs.cast(), self.bufs_len);
        }
    }
}
