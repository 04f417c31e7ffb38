//! Batched reads and writes through io_uring: a burst of frames for one
//! syscall instead of one each.
//!
//! On a virtual machine with the CPU vulnerability mitigations (page-table
//! isolation, IBRS, buffer clearing) a syscall's entry and exit cost about
//! as much as the TAP's own work, so one `io_uring_enter` for a burst of
//! reads or writes is what a forwarder built on TAPs can still win, since
//! it cannot avoid the copies (`benches/netns` measures it).
//!
//! The ring is used synchronously: every call submits its operations, waits
//! for all of them and only then returns, so the buffers it was lent outlive
//! the kernel's use of them (the one property io_uring's safety rests on).
//! Reads carry `RWF_NOWAIT`: on an empty queue they fail with `EAGAIN` at
//! once instead of waiting for a frame, and the TAP's writes never wait, so
//! a call returns as soon as the kernel has done the work it was given.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, types, IoUring};

/// Bytes of a header written in front of a frame (a virtio-net header is
/// 10 or 12).
const HEADER_MAX: usize = 16;

/// One worker's ring.
pub struct Ring {
    ring: IoUring,
    /// Per slot of a submission: the header written in front of the frame
    /// and the two iovecs that point at it and at the frame.
    headers: Vec<[u8; HEADER_MAX]>,
    iovecs: Vec<[libc::iovec; 2]>,
    /// Per slot: the operation's result (bytes, or a negative errno).
    results: Vec<i32>,
}

impl Ring {
    /// A ring for up to `depth` operations per submission. Fails where the
    /// kernel has no io_uring or it is forbidden (`kernel.io_uring_disabled`,
    /// a container's seccomp profile).
    pub fn new(depth: usize) -> io::Result<Ring> {
        let depth = depth.clamp(1, 4096).next_power_of_two();
        let ring = IoUring::new(depth as u32)?;
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        Ok(Ring {
            ring,
            headers: vec![[0; HEADER_MAX]; depth],
            iovecs: vec![[empty; 2]; depth],
            results: vec![0; depth],
        })
    }

    /// Operations one submission holds.
    pub fn depth(&self) -> usize {
        self.results.len()
    }

    /// Reads one frame into each of `bufs` from `fd`, in order, without
    /// waiting for frames that have not come: `space` gives the bytes a
    /// buffer reads into, `done` gets each buffer with what its read
    /// returned (`WouldBlock` once the queue was empty). One syscall per
    /// [`Ring::depth`] buffers.
    pub fn read_each<B>(
        &mut self,
        fd: RawFd,
        bufs: &mut [B],
        mut space: impl FnMut(&mut B) -> &mut [u8],
        mut done: impl FnMut(&mut B, io::Result<usize>),
    ) {
        let depth = self.depth();
        for chunk in bufs.chunks_mut(depth) {
            let mut pushed = 0;
            for (i, b) in chunk.iter_mut().enumerate() {
                let s = space(b);
                let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
                let read = opcode::Read::new(types::Fd(fd), s.as_mut_ptr(), len)
                    .rw_flags(libc::RWF_NOWAIT)
                    .build()
                    .user_data(i as u64);
                // SAFETY: the read writes at most `len` bytes into `s`, a
                // buffer of `bufs`, which this call borrows mutably and so
                // cannot be moved or freed before it returns; `submit_all`
                // returns only once every pushed operation has completed.
                let ok = unsafe { self.ring.submission().push(&read) }.is_ok();
                self.results[i] = if ok { 0 } else { -libc::EBUSY };
                pushed += usize::from(ok);
            }
            self.submit_all(pushed);
            for (i, b) in chunk.iter_mut().enumerate() {
                done(b, outcome(self.results[i]));
            }
        }
    }

    /// Writes `n` frames to `fd`, in order, one operation each: `frame(i,
    /// header)` fills the `header_len` bytes written in front of frame `i`
    /// (none when zero) and returns the frame; `done` gets each frame's
    /// index and what its write returned. One syscall per [`Ring::depth`]
    /// frames.
    pub fn write_each<'a>(
        &mut self,
        fd: RawFd,
        n: usize,
        header_len: usize,
        mut frame: impl FnMut(usize, &mut [u8]) -> &'a [u8],
        mut done: impl FnMut(usize, io::Result<usize>),
    ) {
        let depth = self.depth();
        let header_len = header_len.min(HEADER_MAX);
        let mut first = 0;
        while first < n {
            let count = (n - first).min(depth);
            let mut pushed = 0;
            for slot in 0..count {
                let header = &mut self.headers[slot][..header_len];
                let f = frame(first + slot, header);
                self.iovecs[slot] = [
                    libc::iovec {
                        iov_base: header.as_mut_ptr().cast(),
                        iov_len: header_len,
                    },
                    libc::iovec {
                        iov_base: f.as_ptr().cast_mut().cast(),
                        iov_len: f.len(),
                    },
                ];
                let iov = &self.iovecs[slot][usize::from(header_len == 0)..];
                let write = opcode::Writev::new(types::Fd(fd), iov.as_ptr(), iov.len() as u32)
                    .build()
                    .user_data(slot as u64);
                // SAFETY: the write reads the iovecs and the header (owned
                // by this ring, not touched again before `submit_all`
                // returns) and the frame, borrowed for `'a`, which outlives
                // this call; `submit_all` returns only once every pushed
                // operation has completed.
                let ok = unsafe { self.ring.submission().push(&write) }.is_ok();
                self.results[slot] = if ok { 0 } else { -libc::EBUSY };
                pushed += usize::from(ok);
            }
            self.submit_all(pushed);
            for slot in 0..count {
                done(first + slot, outcome(self.results[slot]));
            }
            first += count;
        }
    }

    /// Submits what was pushed (`n` operations) and waits until all of them
    /// have completed, their results in `self.results` by slot.
    ///
    /// Never returns while one is in flight: on a ring that works the
    /// kernel only stops early for a signal or a full completion queue, and
    /// both are waited out. A ring that fails otherwise would leave the
    /// kernel with buffers we were only lent, so the process stops instead
    /// of handing them back.
    fn submit_all(&mut self, n: usize) {
        let mut left = n;
        let mut failures = 0u32;
        while left > 0 {
            match self.ring.submit_and_wait(left) {
                Ok(_) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN)) =>
                {
                    failures += 1;
                    if failures > 1_000_000 {
                        abort_in_flight(&e);
                    }
                }
                Err(e) => abort_in_flight(&e),
            }
            for c in self.ring.completion() {
                if let Some(r) = self.results.get_mut(c.user_data() as usize) {
                    *r = c.result();
                    left = left.saturating_sub(1);
                }
            }
        }
    }
}

/// Stops the process: io_uring failed with operations in flight.
fn abort_in_flight(e: &io::Error) -> ! {
    eprintln!("edgefwd: io_uring failed with operations in flight, stopping: {e}");
    std::process::abort()
}

// SAFETY: the raw pointers a ring holds (in `iovecs`) are written just
// before a submission and used only until `submit_all` returns; between
// calls they are stale values nothing reads. The ring moves to its worker's
// thread before its first use and stays there.
unsafe impl Send for Ring {}

/// An operation's result as an `io::Result`.
fn outcome(result: i32) -> io::Result<usize> {
    if result < 0 {
        Err(io::Error::from_raw_os_error(-result))
    } else {
        Ok(result as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;

    /// A datagram socket pair keeps frame boundaries, as a TAP does.
    fn pair() -> (UnixDatagram, UnixDatagram) {
        let (a, b) = UnixDatagram::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    /// A ring, or `None` with a loud message where the kernel refuses
    /// io_uring (`kernel.io_uring_disabled`, a container's seccomp
    /// profile); under CI (`CI` set) that is a failure, as for every test
    /// that cannot run.
    fn ring_or_say_why(test: &str, depth: usize) -> Option<Ring> {
        match Ring::new(depth) {
            Ok(r) => Some(r),
            Err(e) => {
                let msg = format!("{test}: NOT RUN: the kernel refuses io_uring: {e}");
                let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
                assert!(!ci, "{msg} (CI must run every test)");
                eprintln!("\n!!!!!!!! {msg} !!!!!!!!\n");
                None
            }
        }
    }

    #[test]
    fn reads_take_the_frames_in_order_then_find_the_queue_empty() {
        let Some(mut ring) = ring_or_say_why("reads_take_the_frames_in_order", 4) else {
            return;
        };
        let (tx, rx) = pair();
        for f in [&b"one"[..], b"two", b"three", b"four", b"five"] {
            tx.send(f).unwrap();
        }
        // Seven buffers over a ring of four: two submissions.
        let mut bufs = vec![[0u8; 16]; 7];
        let mut got = Vec::new();
        ring.read_each(
            rx.as_raw_fd(),
            &mut bufs,
            |b| &mut b[..],
            |b, r| got.push(r.map(|n| b[..n].to_vec()).map_err(|e| e.kind())),
        );
        let frames: Vec<&[u8]> = [&b"one"[..], b"two", b"three", b"four", b"five"].to_vec();
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(got[i].as_deref(), Ok(*f), "frame {i}");
        }
        assert_eq!(got[5], Err(io::ErrorKind::WouldBlock));
        assert_eq!(got[6], Err(io::ErrorKind::WouldBlock));
    }

    #[test]
    fn writes_go_out_in_order_each_behind_its_header() {
        let Some(mut ring) = ring_or_say_why("writes_go_out_in_order", 2) else {
            return;
        };
        let (rx, tx) = pair();
        let frames: [&[u8]; 5] = [b"a", b"bb", b"ccc", b"dddd", b"eeeee"];
        let mut results = Vec::new();
        ring.write_each(
            tx.as_raw_fd(),
            frames.len(),
            2,
            |i, hdr| {
                hdr.copy_from_slice(&[b'H', b'0' + i as u8]);
                frames[i]
            },
            |i, r| results.push((i, r.ok())),
        );
        let expect: Vec<(usize, Option<usize>)> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| (i, Some(f.len() + 2)))
            .collect();
        assert_eq!(results, expect);
        let mut buf = [0u8; 16];
        for (i, f) in frames.iter().enumerate() {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..2], &[b'H', b'0' + i as u8]);
            assert_eq!(&buf[2..n], *f);
        }
        // Without a header, the frame alone.
        ring.write_each(
            tx.as_raw_fd(),
            1,
            0,
            |_, _| b"plain",
            |_, r| assert_eq!(r.ok(), Some(5)),
        );
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"plain");
    }

    #[test]
    fn a_failed_write_is_reported_for_its_frame_alone() {
        let Some(mut ring) = ring_or_say_why("a_failed_write_is_reported", 4) else {
            return;
        };
        let (rx, tx) = pair();
        drop(rx);
        let mut errors = 0;
        ring.write_each(
            tx.as_raw_fd(),
            3,
            0,
            |_, _| b"x",
            |_, r| errors += usize::from(r.is_err()),
        );
        assert_eq!(
            errors, 3,
            "the peer is gone: every write fails, none is lost track of"
        );
    }
}
