//! A smoltcp device over mbufs its owner hands in and takes out: the device a gateway that runs
//! its own DPDK loop gives the engine (see the crate's embedding guide), and the one the
//! appliance's [`super::PortDevice`] wraps around a port queue.
//!
//! RX: [`MbufDevice::handle`] queues a received mbuf; the engine reads it in place and frees it.
//! TX: TX tokens write into mbufs from the pool and queue them; [`MbufDevice::take_tx`] hands
//! them to the owner for its own `tx_burst`. A TX token that smoltcp drops without consuming frees
//! its mbuf (the `Mbuf` owner does; smoltcp issues #1147/#1053).
//!
//! Checksums: smoltcp computes and verifies every IPv4 and TCP checksum, unless the device is
//! made with the [`ChecksumOffload`] its port granted ([`MbufDevice::with_offloads`]). Then
//! smoltcp leaves that work to the port: on receive, the device drops (and counts) frames the
//! port found bad and verifies itself the ones the port did not check; on transmit, it marks each
//! IPv4 frame for the port to fill in the checksums, and [`Port::tx_burst`] prepares it
//! (`rte_eth_tx_prepare`). A device made with [`MbufDevice::unchecked`] neither computes nor
//! checks them, for a wire of memory shared with a trusted process, as Linux's loopback does.
//!
//! [`Port::tx_burst`]: dpdk::Port::tx_burst

use std::collections::VecDeque;

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use dpdk::{Burst, Mbuf, Mempool, PortGrant, RxChecksum};
use engine::phy::{checksums_ok, BurstDevice, MAX_FRAME};

/// Received frames an [`MbufDevice`] holds before [`MbufDevice::handle`] says no.
pub const RX_QUEUE: usize = 1024;
/// Frames to send an [`MbufDevice`] holds before it drops (and counts) more.
pub const TX_QUEUE: usize = 8192;

/// What an [`MbufDevice`] moved and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MbufDeviceStats {
    /// Frames handed in.
    pub handled: u64,
    /// Frames handed in while the receive queue was full (given back to the caller).
    pub rx_queue_full: u64,
    /// Received frames dropped because they spanned several mbufs.
    pub rx_multiseg_dropped: u64,
    /// Frames built for sending.
    pub built: u64,
    /// Frames smoltcp built that could not get an mbuf (pool exhausted).
    pub tx_nombuf: u64,
    /// Frames dropped because the send queue was full (the owner did not take them).
    pub tx_queue_full: u64,
    /// Received frames dropped because a checksum was wrong (with receive offloads: smoltcp then
    /// does not look).
    pub rx_bad_checksum: u64,
}

/// The IPv4 and TCP checksum work a port does itself, in each direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChecksumOffload {
    pub rx_ipv4: bool,
    pub rx_tcp: bool,
    pub tx_ipv4: bool,
    pub tx_tcp: bool,
}

impl ChecksumOffload {
    /// What the port granted of `IPV4_CKSUM` and `TCP_CKSUM`, each way.
    pub fn from_grant(g: &PortGrant) -> ChecksumOffload {
        let has = |v: &[String], name: &str| v.iter().any(|o| o.eq_ignore_ascii_case(name));
        ChecksumOffload {
            rx_ipv4: has(&g.rx_offloads, "IPV4_CKSUM"),
            rx_tcp: has(&g.rx_offloads, "TCP_CKSUM"),
            tx_ipv4: has(&g.tx_offloads, "IPV4_CKSUM"),
            tx_tcp: has(&g.tx_offloads, "TCP_CKSUM"),
        }
    }

    fn rx(self) -> bool {
        self.rx_ipv4 || self.rx_tcp
    }

    fn tx(self) -> bool {
        self.tx_ipv4 || self.tx_tcp
    }

    /// What smoltcp still does: `Both`, or only the direction the port does not.
    fn smoltcp(rx_offloaded: bool, tx_offloaded: bool) -> Checksum {
        match (rx_offloaded, tx_offloaded) {
            (false, false) => Checksum::Both,
            (true, false) => Checksum::Tx,
            (false, true) => Checksum::Rx,
            (true, true) => Checksum::None,
        }
    }
}

/// Who computes and checks a device's IPv4 and TCP checksums (`switchyard ctl status` shows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumMode {
    /// Nobody: a trusted memory wire ([`MbufDevice::unchecked`]).
    None,
    /// smoltcp, both ways: the port offloads none of them.
    Software,
    /// The port does what it granted; smoltcp does the rest.
    Port(ChecksumOffload),
}

impl std::fmt::Display for ChecksumMode {
    /// `none`, `software`, `port`, or per direction, as `rx port, tx software`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = |ip: bool, tcp: bool| match (ip, tcp) {
            (true, true) => "port",
            (false, false) => "software",
            (true, false) => "port ipv4 + software tcp",
            (false, true) => "software ipv4 + port tcp",
        };
        match *self {
            ChecksumMode::None => f.write_str("none"),
            ChecksumMode::Software => f.write_str("software"),
            ChecksumMode::Port(o) if o.rx_ipv4 && o.rx_tcp && o.tx_ipv4 && o.tx_tcp => f.write_str("port"),
            ChecksumMode::Port(o) => write!(f, "rx {}, tx {}", side(o.rx_ipv4, o.rx_tcp), side(o.tx_ipv4, o.tx_tcp)),
        }
    }
}

/// With transmit offloads on: what the port is to fill in of this frame's checksums, as
/// (IPv4 header, TCP, IPv4 header length), if anything. The IPv4 header checksum field is zeroed
/// for the port (smoltcp leaves it zero; frames the engine writes itself carry one).
fn tx_offload(frame: &mut [u8], offload: ChecksumOffload) -> Option<(bool, bool, u16)> {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return None; // not IPv4 (ARP)
    }
    let l3_len = u16::from(frame[14] & 0x0f) * 4;
    let unfragmented = u16::from_be_bytes([frame[20], frame[21]]) & 0x3fff == 0;
    let tcp = offload.tx_tcp && frame[23] == 6 && unfragmented;
    if offload.tx_ipv4 {
        frame[24..26].fill(0);
    }
    (offload.tx_ipv4 || tcp).then_some((offload.tx_ipv4, tcp, l3_len))
}

/// A smoltcp device over handed-in and taken-out mbufs. See the module documentation.
pub struct MbufDevice<'p> {
    pool: &'p Mempool,
    rx: VecDeque<Mbuf>,
    tx: VecDeque<Mbuf>,
    stats: MbufDeviceStats,
    checksums: ChecksumCapabilities,
    offload: ChecksumOffload,
}

impl<'p> MbufDevice<'p> {
    /// A device whose frames to send come from `pool`; smoltcp does every checksum.
    pub fn new(pool: &'p Mempool) -> Self {
        MbufDevice::with_offloads(pool, ChecksumOffload::default())
    }

    /// A device whose port does the checksum work `offload` says (what the port granted: see
    /// [`ChecksumOffload::from_grant`]); the owner sends with [`dpdk::Port::tx_burst`],
    /// which prepares the frames for the port.
    pub fn with_offloads(pool: &'p Mempool, offload: ChecksumOffload) -> Self {
        let mut checksums = ChecksumCapabilities::default();
        checksums.ipv4 = ChecksumOffload::smoltcp(offload.rx_ipv4, offload.tx_ipv4);
        checksums.tcp = ChecksumOffload::smoltcp(offload.rx_tcp, offload.tx_tcp);
        MbufDevice {
            offload,
            pool,
            rx: VecDeque::with_capacity(RX_QUEUE),
            tx: VecDeque::with_capacity(dpdk::BURST * 4),
            stats: MbufDeviceStats::default(),
            checksums,
        }
    }

    /// A device whose frames carry no IPv4 or TCP checksum and whose received frames are not
    /// checked: for a wire that is memory shared with a trusted process on this host (net_memif,
    /// net_ring), where nothing can corrupt a frame on the way, as Linux's loopback skips them.
    /// Both ends must be made so: a peer that checks drops these frames.
    pub fn unchecked(pool: &'p Mempool) -> Self {
        let mut dev = MbufDevice::new(pool);
        dev.checksums.ipv4 = Checksum::None;
        dev.checksums.tcp = Checksum::None;
        dev
    }

    /// Queues a received frame for the engine's next poll. Gives it back when [`RX_QUEUE`]
    /// frames wait already (poll the engine, or drop it). A frame that spans several mbufs is
    /// dropped here and counted (`rx_multiseg_dropped`), and so is, with receive offloads, a frame
    /// whose checksum is wrong (`rx_bad_checksum`).
    #[inline]
    pub fn handle(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.rx.len() >= RX_QUEUE {
            self.stats.rx_queue_full += 1;
            return Err(m);
        }
        self.stats.handled += 1;
        if !m.is_contiguous() {
            self.stats.rx_multiseg_dropped += 1;
            return Ok(()); // freed here
        }
        if self.offload.rx() && !self.rx_checksums_ok(&m) {
            self.stats.rx_bad_checksum += 1;
            return Ok(()); // freed here
        }
        self.rx.push_back(m);
        Ok(())
    }

    /// Moves frames to send into `out`, as many as it has room for; returns how many.
    #[inline]
    pub fn take_tx(&mut self, out: &mut Burst) -> usize {
        let mut n = 0;
        while !out.is_full() {
            let Some(m) = self.tx.pop_front() else { break };
            let _ = out.push(m); // room checked
            n += 1;
        }
        n
    }

    /// Takes the next frame to send.
    #[inline]
    pub fn pop_tx(&mut self) -> Option<Mbuf> {
        self.tx.pop_front()
    }

    /// Who computes and checks the IPv4 and TCP checksums of its frames.
    pub fn checksum_mode(&self) -> ChecksumMode {
        let o = self.offload;
        if o.rx() || o.tx() {
            ChecksumMode::Port(o)
        } else if matches!(self.checksums.ipv4, Checksum::None) {
            ChecksumMode::None // `unchecked`
        } else {
            ChecksumMode::Software
        }
    }

    /// Frames waiting to be received by the engine, and to be sent by the owner.
    pub fn pending(&self) -> (usize, usize) {
        (self.rx.len(), self.tx.len())
    }

    pub fn stats(&self) -> MbufDeviceStats {
        self.stats
    }

    /// With receive offloads on (smoltcp does not verify): what the port found, and for what it
    /// did not check, our own verification. `m` is a single segment ([`MbufDevice::handle`]).
    fn rx_checksums_ok(&self, m: &Mbuf) -> bool {
        let (ip, l4) = m.rx_checksums();
        if ip == RxChecksum::Bad || l4 == RxChecksum::Bad {
            return false;
        }
        let check_ip = self.offload.rx_ipv4 && ip == RxChecksum::Unknown;
        let check_tcp = self.offload.rx_tcp && l4 == RxChecksum::Unknown;
        !(check_ip || check_tcp) || checksums_ok(m.data(), check_ip, check_tcp)
    }

    fn queue_tx(&mut self, m: Mbuf) {
        if self.tx.len() >= TX_QUEUE {
            self.stats.tx_queue_full += 1; // the dropped mbuf is freed
            return;
        }
        self.stats.built += 1;
        self.tx.push_back(m);
    }
}

impl BurstDevice for MbufDevice<'_> {
    /// Frames arrive through [`MbufDevice::handle`]: nothing to pull.
    #[inline]
    fn refill(&mut self) -> usize {
        0
    }

    /// Frames leave through [`MbufDevice::take_tx`]: nothing to push.
    #[inline]
    fn flush(&mut self) -> usize {
        0
    }

    /// Frames are single segments: [`MbufDevice::handle`] dropped the others.
    #[inline]
    fn peek(&mut self) -> Option<&[u8]> {
        self.rx.front().map(Mbuf::data)
    }

    #[inline]
    fn skip(&mut self) {
        drop(self.rx.pop_front());
    }
}

impl<'p> phy::Device for MbufDevice<'p> {
    type RxToken<'a>
        = RxToken
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, 'p>
    where
        Self: 'a;

    #[inline]
    fn receive(&mut self, _now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let mbuf = self.rx.pop_front()?; // a single segment (`handle`)
        Some((RxToken { mbuf }, TxToken { dev: self, mbuf: None }))
    }

    #[inline]
    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        let mbuf = match self.pool.alloc() {
            Some(m) => m,
            None => {
                self.stats.tx_nombuf += 1;
                return None;
            }
        };
        Some(TxToken { dev: self, mbuf: Some(mbuf) })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = None; // DESIGN fact 8: a burst limit shrank the advertised window
        caps.checksum = self.checksums.clone();
        caps
    }
}

/// A received frame, read in place.
pub struct RxToken {
    mbuf: Mbuf,
}

impl phy::RxToken for RxToken {
    #[inline]
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.mbuf.data())
        // the mbuf is freed here
    }
}

/// A frame to send. Holds its mbuf when it came from `transmit`; one that came with a received
/// frame allocates only if smoltcp actually replies.
pub struct TxToken<'a, 'p> {
    dev: &'a mut MbufDevice<'p>,
    mbuf: Option<Mbuf>,
}

impl phy::TxToken for TxToken<'_, '_> {
    #[inline]
    fn consume<R, F>(mut self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let dev = &mut *self.dev;
        let mbuf = self.mbuf.take().or_else(|| dev.pool.alloc());
        let Some(mut mbuf) = mbuf else {
            dev.stats.tx_nombuf += 1;
            return f(&mut [0u8; MAX_FRAME][..len.min(MAX_FRAME)]);
        };
        let Some(buf) = mbuf.append(len) else {
            // Longer than the data room: smoltcp never builds one above the MTU we advertise.
            dev.stats.tx_nombuf += 1;
            return f(&mut [0u8; MAX_FRAME][..len.min(MAX_FRAME)]);
        };
        let r = f(buf);
        let marks = if dev.offload.tx() { tx_offload(buf, dev.offload) } else { None };
        if let Some((ip, tcp, l3_len)) = marks {
            mbuf.offload_tx_checksums(ip, tcp, l3_len);
        }
        dev.queue_tx(mbuf);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::flow::test_syn_frame;
    use std::net::Ipv4Addr;

    fn frame() -> Vec<u8> {
        test_syn_frame(Ipv4Addr::new(198, 18, 0, 2), 7, Ipv4Addr::new(198, 18, 0, 1), 40000)
    }

    #[test]
    fn a_checksum_mode_reads_as_who_does_the_work_each_way() {
        let all = ChecksumOffload { rx_ipv4: true, rx_tcp: true, tx_ipv4: true, tx_tcp: true };
        assert_eq!(ChecksumMode::None.to_string(), "none");
        assert_eq!(ChecksumMode::Software.to_string(), "software");
        assert_eq!(ChecksumMode::Port(all).to_string(), "port");
        let rx_only = ChecksumOffload { tx_ipv4: false, tx_tcp: false, ..all };
        assert_eq!(ChecksumMode::Port(rx_only).to_string(), "rx port, tx software");
        let mixed = ChecksumOffload { rx_tcp: false, tx_ipv4: false, ..all };
        assert_eq!(ChecksumMode::Port(mixed).to_string(), "rx port ipv4 + software tcp, tx software ipv4 + port tcp");
    }

    #[test]
    fn smoltcp_keeps_the_checksum_work_the_port_does_not_take() {
        assert!(matches!(ChecksumOffload::smoltcp(false, false), Checksum::Both));
        assert!(matches!(ChecksumOffload::smoltcp(true, false), Checksum::Tx), "port verifies: smoltcp computes");
        assert!(matches!(ChecksumOffload::smoltcp(false, true), Checksum::Rx), "port computes: smoltcp verifies");
        assert!(matches!(ChecksumOffload::smoltcp(true, true), Checksum::None));
        let g = PortGrant {
            driver: "net_virtio".into(),
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 512,
            tx_desc: 512,
            rx_offloads: vec!["TCP_CKSUM".into(), "UDP_CKSUM".into()],
            tx_offloads: vec!["TCP_CKSUM".into(), "MULTI_SEGS".into()],
            rss_hash: vec![],
            rss_key: vec![],
        };
        let o = ChecksumOffload::from_grant(&g);
        assert_eq!(o, ChecksumOffload { rx_ipv4: false, rx_tcp: true, tx_ipv4: false, tx_tcp: true });
    }

    #[test]
    fn verification_finds_a_wrong_tcp_or_ipv4_checksum() {
        let f = frame();
        assert!(checksums_ok(&f, true, true));
        let mut bad_tcp = f.clone();
        *bad_tcp.last_mut().unwrap() ^= 1; // the urgent pointer's low byte
        assert!(!checksums_ok(&bad_tcp, false, true));
        assert!(checksums_ok(&bad_tcp, true, false), "only the IPv4 header asked for");
        let mut bad_ip = f.clone();
        bad_ip[22] ^= 1; // TTL
        assert!(!checksums_ok(&bad_ip, true, false));
        assert!(checksums_ok(&f[..10], true, true), "too short to tell: smoltcp rejects it");
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(checksums_ok(&arp, true, true), "not IPv4");
    }

    #[test]
    fn transmit_marks_ipv4_frames_and_zeroes_the_header_checksum_for_the_port() {
        let all = ChecksumOffload { rx_ipv4: true, rx_tcp: true, tx_ipv4: true, tx_tcp: true };
        let mut f = frame();
        assert_ne!(f[24..26], [0, 0]);
        assert_eq!(tx_offload(&mut f, all), Some((true, true, 20)));
        assert_eq!(f[24..26], [0, 0], "the port fills the IPv4 header checksum in");
        // TCP only (virtio): the IPv4 header checksum stays as smoltcp wrote it.
        let tcp_only = ChecksumOffload { tx_ipv4: false, ..all };
        let mut f = frame();
        let ip_sum = [f[24], f[25]];
        assert_eq!(tx_offload(&mut f, tcp_only), Some((false, true, 20)));
        assert_eq!([f[24], f[25]], ip_sum);
        // A fragment's TCP checksum spans fragments: not offloaded.
        let mut frag = frame();
        frag[20] |= 0x20; // more fragments
        assert_eq!(tx_offload(&mut frag, tcp_only), None);
        let mut arp = frame();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(tx_offload(&mut arp, all), None);
    }
}
