//! Packet-buffer pools (`rte_pktmbuf_pool_create`).

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use super::error::{DpdkError, Errno};
use super::mbuf::Mbuf;
use super::Eal;

/// A pool of mbufs. Shared through `Arc` by the ports that receive into it and by everyone who
/// allocates from it.
pub struct Mempool {
    ptr: NonNull<dpdk_sys::rte_mempool>,
    name: String,
    size: u32,
    _eal: Eal,
}

// SAFETY: DPDK mempools created with default flags are multi-producer/multi-consumer and may be
// used from any thread; the pointer is only freed in Drop.
unsafe impl Send for Mempool {}
// SAFETY: as above; all methods go through DPDK's thread-safe mempool operations.
unsafe impl Sync for Mempool {}

/// Sizing of a packet mempool.
#[derive(Clone, Debug)]
pub struct MempoolConfig {
    /// Number of mbufs (DPDK works best with 2^n - 1).
    pub mbufs: u32,
    /// Per-lcore cache size.
    pub cache: u32,
    /// Data room per mbuf, headroom included.
    pub data_room: u16,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            mbufs: 8191,
            cache: 256,
            data_room: u16::try_from(dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE).expect("fits in u16"),
        }
    }
}

impl Mempool {
    /// Creates a pool on any NUMA socket.
    pub fn new(eal: &Eal, name: &str, cfg: &MempoolConfig) -> Result<Arc<Mempool>, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::NulInArgument(name.to_owned()))?;
        // SAFETY: cname is a valid C string for the duration of the call; EAL is initialised (we
        // hold an Eal handle). SOCKET_ID_ANY is -1.
        let ptr =
            unsafe { dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), cfg.mbufs, cfg.cache, 0, cfg.data_room, -1) };
        let ptr =
            NonNull::new(ptr).ok_or_else(|| DpdkError::Mempool { name: name.to_owned(), errno: Errno::last() })?;
        tracing::debug!(name, mbufs = cfg.mbufs, cache = cfg.cache, data_room = cfg.data_room, "mempool created");
        Ok(Arc::new(Mempool { ptr, name: name.to_owned(), size: cfg.mbufs, _eal: eal.clone() }))
    }

    /// Allocates one mbuf, or `None` when the pool is exhausted.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool pointer is valid for self's lifetime.
        let m = unsafe { dpdk_sys::rte_pktmbuf_alloc(self.ptr.as_ptr()) };
        // SAFETY: a non-null result is a freshly allocated mbuf that nobody else owns.
        NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m) })
    }

    /// A new mbuf holding a copy of `data`, or `None` when the pool is exhausted or `data` does not
    /// fit one mbuf.
    pub fn alloc_copy(&self, data: &[u8]) -> Option<Mbuf> {
        let mut m = self.alloc()?;
        m.append(data.len())?.copy_from_slice(data);
        Some(m)
    }

    /// Mbufs available (in the pool and in per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: valid pool pointer.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Mbufs handed out (in flight, in rx rings, or held by the engine).
    pub fn in_use(&self) -> u32 {
        // SAFETY: valid pool pointer.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.ptr.as_ptr()
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // Freeing a pool while mbufs from it are alive would leave them dangling: leak it instead.
        // Ports hold the pool until they are closed, which returns their ring mbufs.
        let in_use = self.in_use();
        if in_use != 0 {
            tracing::warn!(name = %self.name, in_use, "mempool still has mbufs in use at drop: leaking it rather than freeing live buffers");
            return;
        }
        // SAFETY: no mbuf of this pool is alive (checked above) and no port references it.
        unsafe { dpdk_sys::rte_mempool_free(self.ptr.as_ptr()) };
    }
}
