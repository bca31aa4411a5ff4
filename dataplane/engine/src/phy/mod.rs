//! The device interface the engine runs over, and an in-memory device for tests and benchmarks.
//!
//! A driver (the runtime's per-core loop, or a gateway's own loop) calls [`BurstDevice::refill`]
//! before the engine polls and [`BurstDevice::flush`] after, so frames move in bursts of up to
//! [`BURST`] and the engine's `poll` never blocks or reads more than one burst. The devices over
//! DPDK mbufs and ports live in the runtime; the engine knows only this trait.

pub mod faulty;
mod memory;

pub use memory::{MemoryDevice, MemoryLink};

use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, TcpPacket};

/// Frames moved per burst (DPDK's customary 32).
pub const BURST: usize = 32;

/// A smoltcp device whose frames move in bursts.
pub trait BurstDevice: smoltcp::phy::Device {
    /// Pulls the next burst of received frames into the device; returns how many arrived.
    fn refill(&mut self) -> usize;
    /// Sends the frames staged by TX tokens; returns how many left.
    fn flush(&mut self) -> usize;
    /// The next received frame, without taking it: [`smoltcp::phy::Device::receive`] returns this
    /// same frame next. Lets the engine demultiplex before smoltcp sees the frame.
    fn peek(&mut self) -> Option<&[u8]>;
    /// Drops the next received frame.
    fn skip(&mut self);
}

/// Ethernet frame size for a 1500-byte MTU (header included, no FCS).
pub const MAX_FRAME: usize = 1514;

/// Whether an Ethernet frame's IPv4 header checksum (when `ip`) and TCP checksum (when `tcp`) are
/// right. Frames that are not IPv4, not TCP, fragments or too short to tell pass: smoltcp judges
/// those. A device that leaves receive checksums to software asks this for frames its port did
/// not check; the engine asks it before answering a TIME_WAIT segment itself.
pub fn checksums_ok(frame: &[u8], ip: bool, tcp: bool) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else { return true };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return true;
    }
    let Ok(p) = Ipv4Packet::new_checked(eth.payload()) else { return true };
    if ip && !p.verify_checksum() {
        return false;
    }
    if !tcp || p.next_header() != IpProtocol::Tcp || p.more_frags() || p.frag_offset() != 0 {
        return true;
    }
    let Ok(seg) = TcpPacket::new_checked(p.payload()) else { return true };
    seg.verify_checksum(&IpAddress::Ipv4(p.src_addr()), &IpAddress::Ipv4(p.dst_addr()))
}
