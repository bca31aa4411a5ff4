//! The errno bridge: DPDK's three return conventions (NULL + `rte_errno`, -1 + `rte_errno`, and a
//! negative errno) become one typed error.

use std::ffi::CStr;
use std::fmt;

/// An errno value as DPDK reports it, printed with `rte_strerror`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// The calling thread's `rte_errno`.
    pub(crate) fn last() -> Self {
        // SAFETY: reads a thread-local integer; no preconditions.
        Errno(unsafe { dpdk_sys::rte_errno() })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string
        // for any input value.
        let msg = unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(self.0)) };
        write!(f, "{} (errno {})", msg.to_string_lossy(), self.0)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a DPDK operation failed. Each variant says what to do about it where that is known.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    #[error("the DPDK EAL is already initialised in this process (rte_eal_init runs once per process: start another process for a second instance)")]
    EalAlreadyInitialized,
    #[error("DPDK EAL init failed: {errno}; EAL arguments were: {args}")]
    EalInit { errno: Errno, args: String },
    #[error("no DPDK port came up after EAL init: {why}")]
    NoPorts { why: String },
    #[error("an EAL argument contains a NUL byte: {0:?}")]
    NulInArgument(String),
    #[error("mempool {name:?}: {errno}")]
    Mempool { name: String, errno: Errno },
    #[error("port {port}: {op} failed: {errno}")]
    Port { port: u16, op: &'static str, errno: Errno },
    #[error("port {port}: offload {name:?} is not an {dir} offload DPDK knows (DPDK's names are like IPV4_CKSUM, TCP_CKSUM, MULTI_SEGS)")]
    UnknownOffload { port: u16, dir: &'static str, name: String },
    #[error("port {port}: RSS hash type {name:?} is not one we know (ipv4, ipv4-tcp, ipv4-udp, ipv4-other, ipv6, ipv6-tcp, ...)")]
    UnknownRss { port: u16, name: String },
    #[error("port {port}: the RSS key has {given} bytes, the device wants {wanted}")]
    RssKeyLength { port: u16, given: usize, wanted: usize },
    #[error("telemetry command {cmd}: {errno}")]
    Telemetry { cmd: String, errno: Errno },
    #[error("capture to {path}: {errno}")]
    Capture { path: String, errno: Errno },
}

/// Convention "returns a negative errno": maps `ret < 0` to an error, otherwise the value.
pub(crate) fn check_neg(port: u16, op: &'static str, ret: i32) -> Result<i32, DpdkError> {
    if ret < 0 {
        Err(DpdkError::Port { port, op, errno: Errno(-ret) })
    } else {
        Ok(ret)
    }
}
