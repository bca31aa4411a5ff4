//! Ethernet ports: configured from a request (queues, descriptors, offloads), negotiated against
//! what `rte_eth_dev_info` grants, started, and stopped and closed on drop.

use std::ffi::CStr;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::error::{check_neg, DpdkError};
use super::mbuf::Burst;
use super::{Eal, Mempool};

/// An ethdev port id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An rx or tx queue index on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QueueId(pub u16);

/// What the caller asks of a port (from a NIC profile).
#[derive(Clone, Debug)]
pub struct PortRequest {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// DPDK offload names, as `rte_eth_dev_rx_offload_name` prints them (e.g. `IPV4_CKSUM`).
    pub rx_offloads: Vec<String>,
    pub tx_offloads: Vec<String>,
    pub promiscuous: bool,
    /// Receive-side scaling across the rx queues, when there are several.
    pub rss: Option<RssRequest>,
}

/// RSS as a profile asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RssRequest {
    /// The Toeplitz key; `None`: the symmetric key (0x6d5a repeated, so both directions of a
    /// flow hash alike) at the length the device wants.
    pub key: Option<Vec<u8>>,
    /// Hash types by name ([`RSS_TYPES`]).
    pub hash: Vec<String>,
}

/// RSS hash types by the names profiles use, and DPDK's flow type for each (`RTE_ETH_RSS_*` is
/// the flow type's bit).
pub const RSS_TYPES: &[(&str, u32)] = &[
    ("ipv4", dpdk_sys::RTE_ETH_FLOW_IPV4),
    ("ipv4-frag", dpdk_sys::RTE_ETH_FLOW_FRAG_IPV4),
    ("ipv4-tcp", dpdk_sys::RTE_ETH_FLOW_NONFRAG_IPV4_TCP),
    ("ipv4-udp", dpdk_sys::RTE_ETH_FLOW_NONFRAG_IPV4_UDP),
    ("ipv4-sctp", dpdk_sys::RTE_ETH_FLOW_NONFRAG_IPV4_SCTP),
    ("ipv4-other", dpdk_sys::RTE_ETH_FLOW_NONFRAG_IPV4_OTHER),
    ("ipv6", dpdk_sys::RTE_ETH_FLOW_IPV6),
    ("ipv6-frag", dpdk_sys::RTE_ETH_FLOW_FRAG_IPV6),
    ("ipv6-tcp", dpdk_sys::RTE_ETH_FLOW_NONFRAG_IPV6_TCP),
    ("ipv6-udp", dpdk_sys::RTE_ETH_FLOW_NONFRAG_IPV6_UDP),
];

/// The hash-type bits for names; the first unknown name is the error.
pub fn rss_mask(names: &[String]) -> Result<u64, String> {
    let mut m = 0;
    for n in names {
        match RSS_TYPES.iter().find(|(name, _)| name.eq_ignore_ascii_case(n)) {
            Some((_, flow)) => m |= 1u64 << flow,
            None => return Err(n.clone()),
        }
    }
    Ok(m)
}

fn rss_names(mask: u64) -> Vec<String> {
    RSS_TYPES.iter().filter(|(_, f)| mask & (1u64 << f) != 0).map(|(n, _)| (*n).to_owned()).collect()
}

/// The symmetric Toeplitz key (0x6d5a repeated) at `len` bytes.
pub fn symmetric_key(len: usize) -> Vec<u8> {
    (0..len).map(|i| if i % 2 == 0 { 0x6d } else { 0x5a }).collect()
}

impl Default for PortRequest {
    fn default() -> Self {
        PortRequest {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            rx_offloads: Vec::new(),
            tx_offloads: Vec::new(),
            promiscuous: false,
            rss: None,
        }
    }
}

/// What the device granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortGrant {
    pub driver: String,
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub rx_offloads: Vec<String>,
    pub tx_offloads: Vec<String>,
    /// RSS hash types in force (empty: no RSS, one queue or none the device can do).
    pub rss_hash: Vec<String>,
    /// The key programmed, when RSS is on.
    pub rss_key: Vec<u8>,
}

/// Port counters (`rte_eth_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Packets the hardware dropped for lack of rx descriptors or mbufs.
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_nombuf: u64,
}

/// A configured, started port. Stopped and closed on drop.
pub struct Port {
    id: PortId,
    name: String,
    mac: [u8; 6],
    grant: PortGrant,
    /// Transmit checksum offloads are on: frames go through `rte_eth_tx_prepare` first.
    tx_prepare: bool,
    /// Frames `rte_eth_tx_prepare` refused (dropped, counted as transmit errors).
    tx_rejected: AtomicU64,
    _pool: Arc<Mempool>,
    _eal: Eal,
}

#[derive(Clone, Copy)]
enum Dir {
    Rx,
    Tx,
}

impl Dir {
    fn as_str(self) -> &'static str {
        match self {
            Dir::Rx => "rx",
            Dir::Tx => "tx",
        }
    }

    /// DPDK's name for one offload bit ("UNKNOWN" for unused bits).
    fn offload_name(self, bit: u64) -> String {
        // SAFETY: both functions take any value and return a static NUL-terminated string.
        let p = unsafe {
            match self {
                Dir::Rx => dpdk_sys::rte_eth_dev_rx_offload_name(bit),
                Dir::Tx => dpdk_sys::rte_eth_dev_tx_offload_name(bit),
            }
        };
        // SAFETY: non-null static string, see above.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Offload names to a bit mask, through DPDK's own name table.
fn offload_mask(port: u16, dir: Dir, names: &[String]) -> Result<u64, DpdkError> {
    let mut mask = 0u64;
    'names: for name in names {
        for bit in 0..64 {
            if Dir::offload_name(dir, 1u64 << bit).eq_ignore_ascii_case(name) {
                mask |= 1u64 << bit;
                continue 'names;
            }
        }
        return Err(DpdkError::UnknownOffload { port, dir: dir.as_str(), name: name.clone() });
    }
    Ok(mask)
}

/// The transmit offload bits for IPv4 and TCP checksums.
fn tx_checksum_mask() -> u64 {
    offload_mask(0, Dir::Tx, &["IPV4_CKSUM".into(), "TCP_CKSUM".into()]).expect("DPDK names both")
}

/// Whether DPDK knows `name` as an rx (`rx = true`) or tx offload (a table lookup in the ethdev
/// library; no EAL needed).
pub fn known_offload(rx: bool, name: &str) -> bool {
    let dir = if rx { Dir::Rx } else { Dir::Tx };
    (0..64).any(|bit| dir.offload_name(1u64 << bit).eq_ignore_ascii_case(name))
}

fn offload_names(dir: Dir, mask: u64) -> Vec<String> {
    (0..64).filter(|b| mask & (1u64 << b) != 0).map(|b| dir.offload_name(1u64 << b)).collect()
}

impl Port {
    /// Configures port `id` as requested, within what the device grants, and starts it. Every
    /// rx queue receives into `pool`.
    pub fn open(eal: &Eal, id: PortId, req: &PortRequest, pool: Arc<Mempool>) -> Result<Port, DpdkError> {
        let p = id.0;
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: info is a valid, writable rte_eth_dev_info; p is a probed port id.
        check_neg(p, "rte_eth_dev_info_get", unsafe { dpdk_sys::rte_eth_dev_info_get(p, &mut info) })?;
        let driver = if info.driver_name.is_null() {
            String::from("?")
        } else {
            // SAFETY: driver_name is a static string owned by the PMD.
            unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
        };
        let name = port_name(p);

        let rx_queues = req.rx_queues.clamp(1, info.max_rx_queues.max(1));
        let tx_queues = req.tx_queues.clamp(1, info.max_tx_queues.max(1));
        let want_rx = offload_mask(p, Dir::Rx, &req.rx_offloads)?;
        let want_tx = offload_mask(p, Dir::Tx, &req.tx_offloads)?;
        let rx_off = want_rx & info.rx_offload_capa;
        let tx_off = want_tx & info.tx_offload_capa;

        let mut conf = dpdk_sys::rte_eth_conf::default();
        conf.rxmode.offloads = rx_off;
        conf.txmode.offloads = tx_off;
        // RSS across the rx queues, with the hash types the device can do and our key (so the
        // engine can compute where a flow lands: flow affinity).
        let (mut rss_hf, mut rss_key) = (0u64, Vec::new());
        if let (Some(rss), true) = (&req.rss, rx_queues > 1) {
            let want = rss_mask(&rss.hash).map_err(|name| DpdkError::UnknownRss { port: p, name })?;
            rss_hf = want & info.flow_type_rss_offloads;
            if rss_hf != 0 {
                let len = if info.hash_key_size == 0 { 40 } else { usize::from(info.hash_key_size) };
                rss_key = match &rss.key {
                    None => symmetric_key(len),
                    Some(k) if k.len() == len => k.clone(),
                    Some(k) => return Err(DpdkError::RssKeyLength { port: p, given: k.len(), wanted: len }),
                };
                conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_key = rss_key.as_mut_ptr();
                conf.rx_adv_conf.rss_conf.rss_key_len = len as u8;
                conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
            }
        }
        // SAFETY: conf is a valid rte_eth_conf; the port is probed and not started.
        check_neg(p, "rte_eth_dev_configure", unsafe {
            dpdk_sys::rte_eth_dev_configure(p, rx_queues, tx_queues, &conf)
        })?;

        let (mut rx_desc, mut tx_desc) = (req.rx_desc, req.tx_desc);
        // SAFETY: both pointers are valid u16s; the port is configured.
        check_neg(p, "rte_eth_dev_adjust_nb_rx_tx_desc", unsafe {
            dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(p, &mut rx_desc, &mut tx_desc)
        })?;

        // SAFETY: valid port id.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(p) };
        let socket = u32::try_from(socket).unwrap_or(u32::MAX); // SOCKET_ID_ANY
        for q in 0..rx_queues {
            // SAFETY: the port is configured with rx_queues queues; a NULL rxconf selects the
            // driver's defaults; the pool outlives the port (we hold an Arc to it).
            check_neg(p, "rte_eth_rx_queue_setup", unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(p, q, rx_desc, socket, std::ptr::null(), pool.as_ptr())
            })?;
        }
        for q in 0..tx_queues {
            // SAFETY: as above, for tx queues; a NULL txconf selects the driver's defaults.
            check_neg(p, "rte_eth_tx_queue_setup", unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(p, q, tx_desc, socket, std::ptr::null())
            })?;
        }

        let mut mac = dpdk_sys::rte_ether_addr::default();
        // SAFETY: mac is a valid, writable rte_ether_addr.
        check_neg(p, "rte_eth_macaddr_get", unsafe { dpdk_sys::rte_eth_macaddr_get(p, &mut mac) })?;
        if mac.addr_bytes == [0; 6] || mac.addr_bytes[0] & 1 != 0 {
            // Some PMDs (net_ring) have no address: make a locally administered one, unique to
            // this process and port, and give it to the device if it takes one.
            let pid = std::process::id().to_be_bytes();
            let made = [0x02, 0x53, pid[1], pid[2], pid[3], p as u8];
            tracing::warn!(port = p, mac = %format_mac(&made), "the device has no unicast MAC address: using a locally administered one");
            mac.addr_bytes = made;
            // SAFETY: mac is a valid rte_ether_addr; the port is configured, not started.
            let _ = unsafe { dpdk_sys::rte_eth_dev_default_mac_addr_set(p, &mut mac) };
        }

        // SAFETY: all queues are set up.
        check_neg(p, "rte_eth_dev_start", unsafe { dpdk_sys::rte_eth_dev_start(p) })?;
        let port = Port {
            id,
            name,
            mac: mac.addr_bytes,
            grant: PortGrant {
                driver,
                rx_queues,
                tx_queues,
                rx_desc,
                tx_desc,
                rx_offloads: offload_names(Dir::Rx, rx_off),
                tx_offloads: offload_names(Dir::Tx, tx_off),
                rss_hash: rss_names(rss_hf),
                rss_key: if rss_hf != 0 { rss_key } else { Vec::new() },
            },
            tx_prepare: tx_off & tx_checksum_mask() != 0,
            tx_rejected: AtomicU64::new(0),
            _pool: pool,
            _eal: eal.clone(),
        };
        if req.promiscuous {
            // SAFETY: valid, started port.
            let ret = unsafe { dpdk_sys::rte_eth_promiscuous_enable(p) };
            if ret < 0 {
                tracing::warn!(port = p, errno = %super::Errno(-ret), "promiscuous mode not enabled");
            }
        }
        let g = &port.grant;
        tracing::info!(
            port = p,
            name = %port.name,
            driver = %g.driver,
            mac = %format_mac(&port.mac),
            rx_queues = format!("{} requested, {} granted", req.rx_queues, g.rx_queues),
            tx_queues = format!("{} requested, {} granted", req.tx_queues, g.tx_queues),
            rx_desc = format!("{} requested, {} granted", req.rx_desc, g.rx_desc),
            tx_desc = format!("{} requested, {} granted", req.tx_desc, g.tx_desc),
            rx_offloads = format!("{:?} requested, {:?} granted", req.rx_offloads, g.rx_offloads),
            tx_offloads = format!("{:?} requested, {:?} granted", req.tx_offloads, g.tx_offloads),
            rss = format!(
                "{:?} requested, {:?} granted",
                req.rss.as_ref().map(|r| r.hash.clone()).unwrap_or_default(),
                g.rss_hash
            ),
            "port started"
        );
        Ok(port)
    }

    pub fn id(&self) -> PortId {
        self.id
    }

    /// The device name (e.g. `net_tap0`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    pub fn grant(&self) -> &PortGrant {
        &self.grant
    }

    /// Receives up to the burst's free room from queue `q`; returns how many arrived.
    #[inline]
    pub fn rx_burst(&self, q: QueueId, burst: &mut Burst) -> usize {
        let (ptr, room) = burst.spare_raw();
        if room == 0 {
            return 0;
        }
        debug_assert!(q.0 < self.grant.rx_queues);
        // SAFETY: ptr points at `room` writable slots; the port is started and q < rx_queues
        // (checked in debug builds); the received mbufs become owned by the burst.
        let n = unsafe { dpdk_sys::rte_eth_rx_burst(self.id.0, q.0, ptr, room) };
        burst.commit(n);
        usize::from(n)
    }

    /// Hands the burst's mbufs to queue `q`; returns how many the driver took (they leave the
    /// burst; the rest stay in it).
    #[inline]
    pub fn tx_burst(&self, q: QueueId, burst: &mut Burst) -> usize {
        let (ptr, len) = burst.filled_raw();
        if len == 0 {
            return 0;
        }
        debug_assert!(q.0 < self.grant.tx_queues);
        let (ptr, len) = if self.tx_prepare { self.tx_prepare(q, burst) } else { (ptr, len) };
        // SAFETY: ptr points at `len` owned mbufs; the driver takes ownership of the first n.
        let n = unsafe { dpdk_sys::rte_eth_tx_burst(self.id.0, q.0, ptr, len) };
        burst.consumed(n);
        usize::from(n)
    }

    /// Readies the burst's frames for the port's checksum offloads (`rte_eth_tx_prepare`: the
    /// pseudo-header sums some NICs want); a frame it refuses is dropped and counted as a
    /// transmit error. Returns the burst's mbufs as [`Burst::filled_raw`] does.
    fn tx_prepare(&self, q: QueueId, burst: &mut Burst) -> (*mut *mut dpdk_sys::rte_mbuf, u16) {
        let mut done = 0u16;
        loop {
            let (ptr, len) = burst.filled_raw();
            if done == len {
                return (ptr, len);
            }
            // SAFETY: ptr + done points at len - done owned mbufs of a started port's queue q;
            // prepare only rewrites their headers.
            let ok = unsafe { dpdk_sys::rte_eth_tx_prepare(self.id.0, q.0, ptr.add(usize::from(done)), len - done) };
            done += ok;
            if done < len {
                tracing::debug!(port = self.id.0, errno = %super::Errno::last(), "tx_prepare refused a frame");
                self.tx_rejected.fetch_add(1, Ordering::Relaxed);
                burst.drop_at(usize::from(done));
            }
        }
    }

    pub fn stats(&self) -> PortStats {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: s is a valid, writable rte_eth_stats.
        let ret = unsafe { dpdk_sys::rte_eth_stats_get(self.id.0, &mut s) };
        if ret != 0 {
            return PortStats::default();
        }
        PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors + self.tx_rejected.load(Ordering::Relaxed),
            rx_nombuf: s.rx_nombuf,
        }
    }

    /// Whether the link reads up (without waiting).
    pub fn link_up(&self) -> bool {
        let mut link = dpdk_sys::rte_eth_link::default();
        // SAFETY: link is a valid, writable rte_eth_link.
        let ret = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id.0, &mut link) };
        ret == 0 && u32::from(link.link_status()) == dpdk_sys::RTE_ETH_LINK_UP
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        let p = self.id.0;
        // SAFETY: the port was started by us; after close, no queue of it is used again (the
        // engine that polled it is gone: it borrowed the port).
        unsafe {
            let ret = dpdk_sys::rte_eth_dev_stop(p);
            if ret != 0 {
                tracing::warn!(port = p, errno = %super::Errno(-ret), "rte_eth_dev_stop failed");
            }
            let ret = dpdk_sys::rte_eth_dev_close(p);
            if ret != 0 {
                tracing::warn!(port = p, errno = %super::Errno(-ret), "rte_eth_dev_close failed");
            }
        }
        tracing::info!(port = p, name = %self.name, "port stopped and closed");
    }
}

fn port_name(p: u16) -> String {
    let mut buf = [0 as std::os::raw::c_char; 64];
    // SAFETY: buf is writable and at least RTE_ETH_NAME_MAX_LEN (64) bytes long.
    let ret = unsafe { dpdk_sys::rte_eth_dev_get_name_by_port(p, buf.as_mut_ptr()) };
    if ret != 0 {
        return format!("port{p}");
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
