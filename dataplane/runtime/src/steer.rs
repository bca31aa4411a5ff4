//! Software flow steering: which core's engine owns a received frame.
//!
//! With several cores, each engine owns its connections outright, so every frame of a flow must
//! reach the same core. A NIC with RSS under a key we control would do this itself. Where it cannot
//! (net_tap here has no rte_flow, DESIGN fact 3; the kernel picks the tap queue), each core hashes
//! what it receives and hands frames that belong elsewhere to their owner over a bounded ring.
//!
//! The hash is the one a NIC computes: Toeplitz ([`dpdk::thash`]) over the IPv4 4-tuple for
//! TCP and UDP, and over the address pair for other IPv4. It indexes a 128-entry redirection table
//! (as a NIC's RETA), so software and hardware steering agree when they share the key. The default
//! key is symmetric. ARP goes to every core: each engine keeps its own neighbour cache.

use std::net::SocketAddrV4;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet};

use dpdk::thash::{softrss_v4, softrss_v4_addrs, RSS_KEY_LEN, SYMMETRIC_RSS_KEY};
use dpdk::Mbuf;

/// Entries in the redirection table.
pub const RETA_SIZE: usize = 128;

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Core(u16),
    /// Every core (ARP).
    All,
}

/// The steering function shared by all cores of a port.
#[derive(Clone, Debug)]
pub struct Steering {
    key: [u8; RSS_KEY_LEN],
    reta: [u16; RETA_SIZE],
    cores: u16,
}

impl Steering {
    /// Spreads flows over `cores` cores (at least 1) with the symmetric key.
    pub fn new(cores: u16) -> Self {
        Self::with_key(cores, SYMMETRIC_RSS_KEY)
    }

    pub fn with_key(cores: u16, key: [u8; RSS_KEY_LEN]) -> Self {
        let cores = cores.max(1);
        let mut reta = [0u16; RETA_SIZE];
        for (i, r) in reta.iter_mut().enumerate() {
            *r = (i % usize::from(cores)) as u16;
        }
        Steering { key, reta, cores }
    }

    pub fn cores(&self) -> u16 {
        self.cores
    }

    /// The core that receives the replies of an outgoing TCP connection: the owner of frames from
    /// `remote` to `local`. A core opening a connection picks a source port for which this is
    /// itself (flow affinity, as F-Stack and Seastar do with RSS).
    pub fn owner_of_reply(&self, remote: SocketAddrV4, local: SocketAddrV4) -> u16 {
        if self.cores == 1 {
            return 0;
        }
        let hash = softrss_v4(*remote.ip(), *local.ip(), remote.port(), local.port(), &self.key);
        self.reta[hash as usize % RETA_SIZE]
    }

    /// The owner of a frame. Frames that cannot be parsed go to core 0, whose engine drops them.
    pub fn target(&self, frame: &[u8]) -> Target {
        if self.cores == 1 {
            return Target::Core(0);
        }
        let Ok(eth) = EthernetFrame::new_checked(frame) else { return Target::Core(0) };
        match eth.ethertype() {
            EthernetProtocol::Arp => return Target::All,
            EthernetProtocol::Ipv4 => {}
            _ => return Target::Core(0),
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { return Target::Core(0) };
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let l4 = matches!(ip.next_header(), IpProtocol::Tcp | IpProtocol::Udp)
            && !ip.more_frags()
            && ip.frag_offset() == 0
            && ip.payload().len() >= 4;
        let hash = if l4 {
            let p = ip.payload();
            let (sport, dport) = (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]));
            softrss_v4(src, dst, sport, dport, &self.key)
        } else {
            softrss_v4_addrs(src, dst, &self.key)
        };
        Target::Core(self.reta[hash as usize % RETA_SIZE])
    }
}

/// One core's view of the steering of a port: the function, its own index, and the rings into
/// every core of the port (frames for core `c` go into `inboxes[c]`).
#[derive(Clone)]
pub struct SteerCtx {
    pub me: u16,
    pub steering: Arc<Steering>,
    pub inboxes: Arc<[ArrayQueue<Mbuf>]>,
}

impl SteerCtx {
    /// The contexts of all cores of a port, with rings of `ring_size` frames each.
    pub fn for_cores(cores: u16, ring_size: usize) -> Vec<SteerCtx> {
        Self::for_cores_keyed(cores, ring_size, SYMMETRIC_RSS_KEY)
    }

    /// As [`SteerCtx::for_cores`], hashing with `key` (the one the NIC's RSS was given).
    pub fn for_cores_keyed(cores: u16, ring_size: usize, key: [u8; RSS_KEY_LEN]) -> Vec<SteerCtx> {
        let steering = Arc::new(Steering::with_key(cores, key));
        let inboxes: Arc<[ArrayQueue<Mbuf>]> = (0..cores).map(|_| ArrayQueue::new(ring_size)).collect();
        (0..cores).map(|me| SteerCtx { me, steering: steering.clone(), inboxes: inboxes.clone() }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::flow::test_syn_frame as tcp_frame;
    use engine::neighbor::test_arp_frame;
    use std::net::Ipv4Addr;

    #[test]
    fn one_core_takes_everything() {
        let s = Steering::new(1);
        assert_eq!(s.target(&[0u8; 3]), Target::Core(0));
        let f = tcp_frame(Ipv4Addr::new(198, 18, 0, 1), 40000, Ipv4Addr::new(198, 18, 0, 2), 80);
        assert_eq!(s.target(&f), Target::Core(0));
    }

    #[test]
    fn a_flow_always_goes_to_one_core_and_flows_spread() {
        let s = Steering::new(2);
        let (c, srv) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
        let mut per_core = [0usize; 2];
        for port in 40000..41000u16 {
            let t = s.target(&tcp_frame(c, port, srv, 80));
            assert_eq!(t, s.target(&tcp_frame(c, port, srv, 80)), "stable per flow");
            let Target::Core(i) = t else { panic!("TCP goes to one core") };
            per_core[usize::from(i)] += 1;
            // symmetric key: the reply direction hashes to the same core
            assert_eq!(s.target(&tcp_frame(srv, 80, c, port)), t);
        }
        assert!(per_core.iter().all(|&n| n > 350), "spread: {per_core:?}");
    }

    /// Flow affinity: a source port chosen with `owner_of_reply` brings the replies to the
    /// choosing core, as the steering of the actual reply frames decides.
    #[test]
    fn replies_of_a_chosen_port_reach_the_choosing_core() {
        let s = Steering::new(2);
        let (remote, local) = (Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 1));
        for me in 0..2u16 {
            let mut found = 0;
            for port in 40000..40200u16 {
                let owner = s.owner_of_reply(SocketAddrV4::new(remote, 80), SocketAddrV4::new(local, port));
                assert_eq!(s.target(&tcp_frame(remote, 80, local, port)), Target::Core(owner));
                if owner == me {
                    found += 1;
                }
            }
            assert!(found > 50, "core {me} finds ports of its own: {found}");
        }
    }

    /// Any bytes at all get an owner without panicking (truncated headers, bogus IHL, fragments).
    #[test]
    fn random_and_truncated_frames_get_an_owner() {
        let s = Steering::new(2);
        let good = tcp_frame(Ipv4Addr::new(198, 18, 0, 1), 40000, Ipv4Addr::new(198, 18, 0, 2), 80);
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for i in 0..20_000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut f = good.clone();
            f.truncate(i % (good.len() + 1));
            if let Some(b) = f.get_mut((x as usize) % good.len()) {
                *b = (x >> 32) as u8;
            }
            assert!(matches!(s.target(&f), Target::Core(0 | 1) | Target::All));
        }
    }

    #[test]
    fn arp_goes_to_every_core() {
        let buf = test_arp_frame([2, 0, 0, 0, 0, 1], Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2), None);
        assert_eq!(Steering::new(2).target(&buf), Target::All);
    }
}
