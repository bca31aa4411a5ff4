//! Packet capture to pcapng through DPDK's `rte_pcapng`, as `dpdk-dumpcap` does it, for
//! `switchyard ctl capture`.
//!
//! A [`CaptureHook`] sits on every core's device of a port: unarmed it costs one relaxed load per
//! burst. Armed with a [`Capture`], the cores copy the frames they receive and send
//! (`rte_pcapng_copy`, into the capture's own pool) onto its ring, until it has the number
//! asked for; a control thread takes them off and writes them with a [`PcapngFile`].

use std::fs::File;
use std::os::fd::IntoRawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_queue::ArrayQueue;

use super::{DpdkError, Eal, Errno, Mbuf, Mempool, MempoolConfig};

/// One capture in progress: the frames still wanted, and the copies waiting to be written.
pub struct Capture {
    port: u16,
    snaplen: u32,
    remaining: AtomicI64,
    /// Copies the ring or the pool had no room for.
    pub dropped: AtomicU64,
    ring: ArrayQueue<Mbuf>,
    pool: Arc<Mempool>,
}

impl Capture {
    /// A capture of `count` frames on `port`, each cut to `snaplen` bytes. Its pool is named
    /// `name` (unique per process).
    pub fn new(eal: &Eal, name: &str, port: u16, count: u64, snaplen: u32) -> Result<Arc<Capture>, DpdkError> {
        // SAFETY: a pure computation in the pcapng library.
        let room = unsafe { dpdk_sys::rte_pcapng_mbuf_size(snaplen) };
        let mbufs = (count.clamp(64, 8191) as u32 * 2 + 1).min(16383);
        let pool = Mempool::new(
            eal,
            name,
            &MempoolConfig { mbufs, cache: 0, data_room: u16::try_from(room).unwrap_or(u16::MAX) },
        )?;
        Ok(Arc::new(Capture {
            port,
            snaplen,
            remaining: AtomicI64::new(i64::try_from(count).unwrap_or(i64::MAX)),
            dropped: AtomicU64::new(0),
            ring: ArrayQueue::new(mbufs as usize),
            pool,
        }))
    }

    /// Copies `m`, seen on `queue` going in (`out = false`) or out, if more frames are wanted.
    #[inline]
    pub fn tap(&self, queue: u16, m: &Mbuf, out: bool) {
        if self.remaining.fetch_sub(1, Ordering::Relaxed) <= 0 {
            return;
        }
        let dir = if out {
            dpdk_sys::rte_pcapng_direction_RTE_PCAPNG_DIRECTION_OUT
        } else {
            dpdk_sys::rte_pcapng_direction_RTE_PCAPNG_DIRECTION_IN
        };
        // SAFETY: m is a valid mbuf we hold (read only); the pool is live; the copy is a new mbuf
        // we own, or NULL.
        let copy = unsafe {
            dpdk_sys::rte_pcapng_copy(
                self.port,
                u32::from(queue),
                m.as_raw(),
                self.pool.as_ptr(),
                self.snaplen,
                dpdk_sys::rte_rdtsc(),
                dir,
            )
        };
        match NonNull::new(copy) {
            Some(c) => {
                // SAFETY: a fresh mbuf from rte_pcapng_copy, owned by nobody else.
                let copy = unsafe { Mbuf::from_raw(c) };
                if self.ring.push(copy).is_err() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Moves the copies waiting into `out`.
    pub fn take(&self, out: &mut Vec<Mbuf>) {
        while let Some(m) = self.ring.pop() {
            out.push(m);
        }
    }
}

/// Where a core's device looks for a capture to feed.
#[derive(Default)]
pub struct CaptureHook {
    armed: AtomicBool,
    current: Mutex<Option<Arc<Capture>>>,
}

impl CaptureHook {
    pub fn arm(&self, c: Arc<Capture>) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
        self.armed.store(true, Ordering::Release);
    }

    pub fn disarm(&self) {
        self.armed.store(false, Ordering::Release);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Whether a capture is on (one relaxed load: the packet path asks this per burst).
    #[inline]
    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    /// Feeds frames to the capture, if one is armed (and not being swapped right now).
    pub fn tap_all<'a>(&self, queue: u16, frames: impl Iterator<Item = &'a Mbuf>, out: bool) {
        if let Ok(g) = self.current.try_lock() {
            if let Some(c) = g.as_ref() {
                for m in frames {
                    c.tap(queue, m, out);
                }
            }
        }
    }
}

/// A pcapng file being written (`rte_pcapng_fdopen`); closed when dropped.
pub struct PcapngFile {
    ptr: NonNull<dpdk_sys::rte_pcapng_t>,
    /// Frames written so far.
    pub written: u64,
}

// SAFETY: the handle is used by one thread at a time (it is not Sync); the library keeps no
// thread-local state for it.
unsafe impl Send for PcapngFile {}

impl PcapngFile {
    /// Creates `path` (truncating it) and writes the section and interface blocks (every port).
    pub fn create(_eal: &Eal, path: &Path, comment: &str) -> Result<PcapngFile, DpdkError> {
        let file = File::create(path).map_err(|e| DpdkError::Capture {
            path: path.display().to_string(),
            errno: Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        let app = std::ffi::CString::new(format!("switchyard {}", env!("CARGO_PKG_VERSION"))).expect("no NUL");
        let comment = std::ffi::CString::new(comment.replace('\0', " ")).expect("no NUL");
        let fd = file.into_raw_fd();
        // SAFETY: fd is an open file we hand over (rte_pcapng_close closes it); the strings are
        // NUL-terminated and copied; NULL os and hardware names pick the library's defaults.
        let p = unsafe {
            dpdk_sys::rte_pcapng_fdopen(fd, std::ptr::null(), std::ptr::null(), app.as_ptr(), comment.as_ptr())
        };
        match NonNull::new(p) {
            Some(ptr) => Ok(PcapngFile { ptr, written: 0 }),
            None => {
                // SAFETY: fdopen failed and did not take the fd: close it.
                unsafe { libc::close(fd) };
                Err(DpdkError::Capture { path: path.display().to_string(), errno: Errno::last() })
            }
        }
    }

    /// Writes copies made by [`Capture::tap`], then frees them.
    pub fn write(&mut self, pkts: Vec<Mbuf>) -> Result<(), DpdkError> {
        for chunk in pkts.chunks(256) {
            let mut raw: Vec<*mut dpdk_sys::rte_mbuf> = chunk.iter().map(Mbuf::as_raw).collect();
            // SAFETY: raw holds valid mbufs we own (they stay owned by `pkts`, freed on return);
            // the library only reads them.
            let r =
                unsafe { dpdk_sys::rte_pcapng_write_packets(self.ptr.as_ptr(), raw.as_mut_ptr(), raw.len() as u16) };
            if r < 0 {
                return Err(DpdkError::Capture { path: "capture file".into(), errno: Errno::last() });
            }
            self.written += chunk.len() as u64;
        }
        Ok(())
    }
}

impl Drop for PcapngFile {
    fn drop(&mut self) {
        // SAFETY: a handle from rte_pcapng_fdopen, closed once (this closes the fd too).
        unsafe { dpdk_sys::rte_pcapng_close(self.ptr.as_ptr()) };
    }
}
