//! Teaching smoltcp's neighbour cache the peers that open connections.
//!
//! smoltcp adds neighbours only from ARP (it extends existing entries from any unicast IPv4 packet,
//! but never creates one), and sends at most one ARP request per second for the whole interface.
//! A peer that sends us a SYN without having ARPed for us first (one of a load generator's many
//! source addresses, a client whose ARP cache already had us) would wait, behind every other such
//! peer, for its own resolution: one per second. The engine knows the peer's MAC from the SYN.
//! When a peer has not been taught for [`REFRESH`], the engine hands smoltcp a synthetic ARP reply
//! (`peer is-at mac`) through [`OneFrame`], a device that yields that one frame; smoltcp fills its
//! cache from any ARP packet aimed at it. An off-link peer teaches the gateway's entry instead (its
//! frames carry the router's MAC). Only SYNs are looked at, so established traffic pays nothing.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr};

/// How long a refresh lasts (smoltcp keeps an entry 60 s).
pub const REFRESH: Duration = Duration::from_secs(20);
/// Peers remembered at most; past this the memory starts over (peers get refreshed again).
const MAX_PEERS: usize = 65536;
/// Length of an Ethernet ARP frame.
pub const ARP_FRAME_LEN: usize = 14 + 28;

/// When each peer was last given to smoltcp, and with which MAC.
#[derive(Default)]
pub struct Neighbors {
    seen: HashMap<Ipv4Addr, ([u8; 6], Instant), foldhash::fast::RandomState>,
    /// Synthetic replies handed to smoltcp.
    pub refreshed: u64,
}

impl Neighbors {
    /// Whether `ip` at `mac` needs refreshing now (and records that it gets it).
    pub fn due(&mut self, ip: Ipv4Addr, mac: [u8; 6], now: Instant) -> bool {
        if let Some(&(m, at)) = self.seen.get(&ip) {
            if m == mac && now < at + REFRESH {
                return false;
            }
        }
        if self.seen.len() >= MAX_PEERS {
            self.seen.clear();
        }
        self.seen.insert(ip, (mac, now));
        self.refreshed += 1;
        true
    }
}

/// Writes an ARP reply "`peer` is-at `peer_mac`" addressed to us.
pub fn write_reply(buf: &mut [u8], peer: Ipv4Addr, peer_mac: [u8; 6], us: Ipv4Addr, our_mac: [u8; 6]) {
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..ARP_FRAME_LEN]);
    EthernetRepr {
        src_addr: EthernetAddress(peer_mac),
        dst_addr: EthernetAddress(our_mac),
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut frame);
    ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(peer_mac),
        source_protocol_addr: peer,
        target_hardware_addr: EthernetAddress(our_mac),
        target_protocol_addr: us,
    }
    .emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
}

/// A device that yields one frame and transmits nothing (an ARP reply needs no answer).
pub struct OneFrame {
    pub frame: Option<[u8; ARP_FRAME_LEN]>,
}

impl phy::Device for OneFrame {
    type RxToken<'a> = OneRx;
    type TxToken<'a> = NoTx;

    fn receive(&mut self, _now: Instant) -> Option<(OneRx, NoTx)> {
        self.frame.take().map(|f| (OneRx(f), NoTx))
    }

    fn transmit(&mut self, _now: Instant) -> Option<NoTx> {
        None
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = crate::phy::MAX_FRAME;
        caps
    }
}

pub struct OneRx([u8; ARP_FRAME_LEN]);

impl phy::RxToken for OneRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

pub struct NoTx;

impl phy::TxToken for NoTx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        f(&mut [0u8; crate::phy::MAX_FRAME][..len.min(crate::phy::MAX_FRAME)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_refreshed_once_per_period_or_when_its_mac_changes() {
        let mut n = Neighbors::default();
        let ip = Ipv4Addr::new(198, 18, 0, 1);
        let t0 = Instant::from_secs(100);
        assert!(n.due(ip, [2, 0, 0, 0, 0, 1], t0));
        assert!(!n.due(ip, [2, 0, 0, 0, 0, 1], t0 + Duration::from_secs(19)));
        assert!(n.due(ip, [2, 0, 0, 0, 0, 9], t0 + Duration::from_secs(19)), "a new MAC");
        assert!(n.due(ip, [2, 0, 0, 0, 0, 9], t0 + Duration::from_secs(40)));
        assert_eq!(n.refreshed, 3);
    }

    #[test]
    fn the_reply_parses_as_arp_aimed_at_us() {
        let mut buf = [0u8; ARP_FRAME_LEN];
        write_reply(
            &mut buf,
            Ipv4Addr::new(198, 18, 0, 1),
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(198, 18, 0, 2),
            [2, 0, 0, 0, 0, 2],
        );
        let eth = EthernetFrame::new_checked(&buf[..]).unwrap();
        let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
        let ArpRepr::EthernetIpv4 { operation, target_protocol_addr, source_protocol_addr, .. } = arp else { panic!() };
        assert_eq!(operation, ArpOperation::Reply);
        assert_eq!(
            (source_protocol_addr, target_protocol_addr),
            (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2))
        );
    }
}
