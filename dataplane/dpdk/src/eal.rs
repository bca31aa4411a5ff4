//! The Environment Abstraction Layer: initialised once per process, cleaned up when the last
//! owner (the `Eal` handle and every port and mempool holding a clone of it) is dropped.

use std::ffi::CString;
use std::os::raw::c_char;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::error::{DpdkError, Errno};
use super::PortId;

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// A handle on the initialised EAL. Cheap to clone; `rte_eal_cleanup` runs when the last clone
/// is dropped. DPDK cannot be initialised again in the same process after that.
#[derive(Clone)]
pub struct Eal {
    _inner: Arc<EalInner>,
}

struct EalInner;

impl Drop for EalInner {
    fn drop(&mut self) {
        // SAFETY: every port and mempool holds a clone of the Eal handle, so none is left when the
        // last clone goes; no DPDK call can follow on this process's handles.
        let ret = unsafe { dpdk_sys::rte_eal_cleanup() };
        if ret != 0 {
            tracing::warn!(errno = %Errno(-ret), "rte_eal_cleanup failed");
        } else {
            tracing::debug!("EAL cleaned up");
        }
    }
}

impl Eal {
    /// Initialises the EAL from an argument list, as `rte_eal_init` takes it (the first
    /// argument is the program name). Fails if the EAL was already initialised in this process.
    pub fn init<I, S>(args: I) -> Result<Eal, DpdkError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let args: Vec<String> = args.into_iter().map(|s| s.as_ref().to_owned()).collect();
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::EalAlreadyInitialized);
        }
        let mut cargs = Vec::with_capacity(args.len());
        for a in &args {
            cargs.push(CString::new(a.as_str()).map_err(|_| DpdkError::NulInArgument(a.clone()))?);
        }
        // EAL may keep pointers into argv for the life of the process: the strings are leaked on
        // purpose (a few hundred bytes, once per process).
        let mut argv: Vec<*mut c_char> = cargs.into_iter().map(CString::into_raw).collect();
        let argc = i32::try_from(argv.len()).expect("EAL argument count fits in i32");
        // SAFETY: argv holds argc valid NUL-terminated strings that are never freed; EAL may permute
        // the pointer array, which is ours and leaked with them.
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        std::mem::forget(argv);
        if ret < 0 {
            return Err(DpdkError::EalInit { errno: Errno::last(), args: args.join(" ") });
        }
        tracing::info!(version = %version(), args = %args.join(" "), "EAL initialised");
        Ok(Eal { _inner: Arc::new(EalInner) })
    }

    /// The ethdev ports EAL probed, in id order.
    pub fn ports(&self) -> Vec<PortId> {
        let mut ports = Vec::new();
        // SAFETY: rte_eth_find_next takes any port id and returns the next valid one, or
        // RTE_MAX_ETHPORTS when there is none.
        let mut id = unsafe { dpdk_sys::rte_eth_find_next(0) };
        while u32::from(id) < dpdk_sys::RTE_MAX_ETHPORTS {
            ports.push(PortId(id));
            // SAFETY: as above.
            id = unsafe { dpdk_sys::rte_eth_find_next(id + 1) };
        }
        ports
    }

    /// The probed ports, or an error that says why there are none (or fewer than `expected`).
    pub fn require_ports(&self, expected: usize) -> Result<Vec<PortId>, DpdkError> {
        let ports = self.ports();
        if ports.len() >= expected && !ports.is_empty() {
            return Ok(ports);
        }
        Err(DpdkError::NoPorts { why: diagnose_missing_ports(ports.len(), expected) })
    }
}

/// DPDK's version string, e.g. "DPDK 22.11.11".
pub fn version() -> String {
    // SAFETY: rte_version returns a pointer to a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(dpdk_sys::rte_version()) }.to_string_lossy().into_owned()
}

/// EAL succeeds without root but the vdev probes then fail silently (DESIGN fact 2): name the
/// likely cause.
fn diagnose_missing_ports(found: usize, expected: usize) -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let head = format!("{found} of {expected} port(s) probed");
    if euid != 0 {
        format!("{head}: net_tap and most PMDs need root (running as uid {euid}); run as root, e.g. with sudo")
    } else if !Path::new("/dev/net/tun").exists() {
        format!("{head}: /dev/net/tun is missing, which net_tap needs; load the tun module (modprobe tun) or create the device node")
    } else {
        format!("{head}: check the port's profile and devargs (the --vdev string) and the EAL log above for the PMD's own error")
    }
}
