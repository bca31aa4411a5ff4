//! ARP and the neighbour table: peers on the link, gateways, several addresses.

use super::*;

/// The engine owns its neighbours (see [`neighbor`]): 2000 clients on its link (more than the
/// 1024 smoltcp's neighbour cache held), each from its own address and MAC, none of them ever
/// ARPing, all complete a handshake and then get their echo, each at its own MAC, and the engine
/// sends no ARP at all. With smoltcp's cache, the echoes to the first ~1000 waited for ARP.
#[test]
fn two_thousand_peers_on_the_link_are_answered_at_their_own_mac() {
    use smoltcp::wire::{EthernetFrame, Ipv4Packet, TcpControl, TcpPacket};
    let mut cfg = config();
    cfg.prefix_len = 16;
    cfg.listeners[0].backlog = 4096;
    cfg.max_backlog = 4096;
    (cfg.tcp_rx_buffer, cfg.tcp_tx_buffer) = (1024, 1024);
    let mut p = Pair::new(&cfg);
    let peer = |i: u32| {
        (Ipv4Addr::new(198, 18, 10 + (i / 250) as u8, 1 + (i % 250) as u8), [2, 1, 0, 0, (i >> 8) as u8, i as u8])
    };
    let server_mac = [0x02, 0, 0, 0, 0, 2];
    let frame = |i: u32, control: TcpControl, seq: u32, ack: Option<u32>, payload: &[u8]| {
        let tcp = flow::plain_tcp((40000, 7), control, seq, ack, 65535, payload);
        flow::test_tcp_frame((peer(i).1, peer(i).0), (server_mac, SERVER), &tcp)
    };
    // What came back to each peer: (dst MAC right, SYN-ACK's sequence number, echoed bytes).
    let check = |frames: Vec<Vec<u8>>, synacks: &mut HashMap<u32, u32>, echoed: &mut usize| {
        for f in frames {
            let eth = EthernetFrame::new_checked(&f[..]).unwrap();
            assert_eq!(eth.ethertype(), smoltcp::wire::EthernetProtocol::Ipv4, "no ARP");
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            let o = ip.dst_addr().octets();
            let i = u32::from(o[2] - 10) * 250 + u32::from(o[3] - 1);
            assert_eq!(eth.dst_addr().0, peer(i).1, "peer {i} answered at its own MAC");
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            if tcp.syn() {
                synacks.insert(i, tcp.seq_number().0 as u32);
            }
            *echoed += tcp.payload().len();
        }
    };
    let (mut synacks, mut echoed) = (HashMap::new(), 0);
    for i in 0..2000 {
        p.edev.inject(frame(i, TcpControl::Syn, 1, None, &[]));
        if i % 16 == 15 {
            p.step();
            check(sent_frames(&mut p), &mut synacks, &mut echoed);
        }
    }
    assert_eq!(synacks.len(), 2000, "every SYN answered");
    for i in 0..2000 {
        p.edev.inject(frame(i, TcpControl::Psh, 2, Some(synacks[&i] + 1), &[0x5a; 64]));
        if i % 16 == 15 {
            p.step();
            check(sent_frames(&mut p), &mut synacks, &mut echoed);
        }
    }
    for _ in 0..5 {
        p.step();
        check(sent_frames(&mut p), &mut synacks, &mut echoed);
    }
    assert_eq!(echoed, 2000 * 64, "every peer got its echo");
    assert_eq!(p.engine.stats().established, 2000);
    assert_eq!(p.engine.stats().arp_requests, 0);
}

/// A connection the engine opens to a neighbour that never answers ARP: the engine asks once a
/// second (no SYN leaves), and the connection ends unreachable at its deadline; one that answers
/// gets the SYN at once, at its MAC.
#[test]
fn a_connection_to_a_silent_neighbour_asks_once_a_second_then_ends_unreachable() {
    use crate::services::{LoadGen, LoadMode, Session};
    let mut p = Pair::new(&config());
    let (spec, stats) = load(64, LoadMode::Short);
    let silent = std::net::SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 77), 7);
    let timeout = Some(std::time::Duration::from_millis(3500));
    p.engine.connect_from(p.now, None, silent, timeout, Session::LoadGen(LoadGen::new(spec))).unwrap();
    let mut arps = 0;
    for _ in 0..4000 {
        p.step();
        for f in sent_frames(&mut p) {
            let a = neighbor::parse_arp(&f).expect("only ARP leaves");
            assert_eq!((a.request, a.target_ip), (true, *silent.ip()));
            arps += 1;
        }
    }
    assert_eq!(arps, 4, "asked at 0, 1, 2 and 3 s");
    assert_eq!((p.engine.stats().arp_requests, p.engine.stats().neighbors), (4, 0));
    assert_eq!((stats.get(&stats.ended), stats.get(&stats.failed)), (1, 1));
    assert_eq!(p.engine.stats().open, 0);

    // The smoltcp client answers ARP: the engine learns it and sends its SYN there.
    let (spec, _) = load(64, LoadMode::Short);
    let client = std::net::SocketAddrV4::new(CLIENT, 7);
    p.engine.connect_from(p.now, None, client, timeout, Session::LoadGen(LoadGen::new(spec))).unwrap();
    p.step_by(Duration::from_micros(10)); // the engine asks
    let asked = sent_frames(&mut p);
    assert_eq!(neighbor::parse_arp(&asked[0]).map(|a| a.target_ip), Some(CLIENT));
    for f in asked {
        p.cdev.inject(f);
    }
    p.step_by(Duration::from_micros(10)); // the client answers; the SYN leaves
    let syn = sent_frames(&mut p).into_iter().find(|f| f[12..14] == [0x08, 0x00]).expect("a SYN");
    assert_eq!(&syn[..6], &[0x02, 0, 0, 0, 0, 1], "at the client's MAC");
    assert_eq!((p.engine.stats().arp_requests, p.engine.stats().neighbors), (5, 1));
}

/// A neighbour that moves and says so with a gratuitous ARP (its own address, asked of everyone)
/// is followed: the engine's next connection to it goes to the new MAC, without asking. An ARP
/// frame about a station the engine does not know adds nothing.
#[test]
fn a_gratuitous_arp_moves_a_known_neighbour() {
    use crate::services::{LoadGen, LoadMode, Session};
    let mut p = Pair::new(&config());
    let h = p.connect(7, 48000); // the smoltcp client ARPs for the engine, which learns it
    assert!(p.run_until(100, |p| p.sock(h).state() == tcp::State::Established));
    assert_eq!(p.engine.stats().neighbors, 1);
    let moved = [0x02, 0, 0, 0, 0, 0x99];
    p.edev.inject(neighbor::test_arp_frame(moved, CLIENT, CLIENT, None));
    p.edev.inject(neighbor::test_arp_frame([0x02, 0, 0, 0, 0, 0x77], Ipv4Addr::new(198, 18, 0, 77), CLIENT, None));
    p.step_by(Duration::from_micros(10));
    assert_eq!(p.engine.stats().neighbors, 1, "the other station was not added");
    sent_frames(&mut p);
    let (spec, _) = load(64, LoadMode::Short);
    let remote = std::net::SocketAddrV4::new(CLIENT, 7);
    p.engine.connect_from(p.now, None, remote, None, Session::LoadGen(LoadGen::new(spec))).unwrap();
    p.step_by(Duration::from_micros(10));
    let out = sent_frames(&mut p);
    assert_eq!(out.len(), 1, "a SYN and no ARP");
    assert_eq!(&out[0][..6], &moved, "at the new MAC");
    assert_eq!(p.engine.stats().arp_requests, 0);
}

/// With several cores on a port every engine sees every ARP frame. One that was told not to answer
/// ([`Engine::set_arp_replies`]) stays silent on a request for its address, and still learns the
/// asker; the same request to an engine that answers gets one reply, at the asker's MAC.
#[test]
fn an_engine_told_not_to_answer_arp_learns_the_asker_and_stays_silent() {
    let asker = [0x02, 0, 0, 0, 0, 0x42];
    let request = || neighbor::test_arp_frame(asker, CLIENT, SERVER, None);
    let mut p = Pair::new(&config());
    p.engine.set_arp_replies(false);
    p.edev.inject(request());
    p.step_by(Duration::from_micros(10));
    assert!(sent_frames(&mut p).is_empty(), "no reply");
    assert_eq!((p.engine.stats().arp_replies, p.engine.stats().neighbors), (0, 1));

    p.engine.set_arp_replies(true);
    p.edev.inject(request());
    p.step_by(Duration::from_micros(10));
    let out = sent_frames(&mut p);
    assert_eq!(out.len(), 1, "one reply");
    let a = neighbor::parse_arp(&out[0]).expect("an ARP reply");
    assert_eq!((a.request, a.sender_ip, a.target_ip), (false, SERVER, CLIENT));
    assert_eq!(&out[0][..6], &asker, "at the asker's MAC");
    assert_eq!(p.engine.stats().arp_replies, 1);
}

/// Every ARP frame the engine sends counts once it has left. With no room to send, a request for
/// the engine's address gets no reply and counts none (the asker is still learned), and neither
/// the ARP request for a connection's next hop nor one of [`Engine::announce_to`] counts. With room
/// again, the connection's next try asks, and each frame that leaves counts once.
#[test]
fn arp_frames_count_when_they_leave() {
    use crate::services::{LoadGen, LoadMode, Session};
    let asker = [0x02, 0, 0, 0, 0, 0x42];
    let request = neighbor::test_arp_frame(asker, CLIENT, SERVER, None);
    let silent = std::net::SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 77), 7);
    let mut p = Pair::new(&config());
    p.edev.set_full(true);
    p.edev.inject(request.clone());
    p.step_by(Duration::from_micros(10));
    assert!(sent_frames(&mut p).is_empty(), "no room for the reply");
    let (spec, _) = load(64, LoadMode::Short);
    p.engine.connect_from(p.now, None, silent, None, Session::LoadGen(LoadGen::new(spec))).unwrap();
    p.step_by(Duration::from_micros(10));
    assert!(sent_frames(&mut p).is_empty(), "no room for the next hop's ARP request");
    p.engine.announce_to(p.now, &mut p.edev, *silent.ip());
    assert!(sent_frames(&mut p).is_empty(), "no room for the announcement");
    let s = p.engine.stats();
    assert_eq!((s.arp_replies, s.arp_requests, s.neighbors), (0, 0, 1), "the asker learned, nothing counted");

    p.edev.set_full(false);
    p.step_by(Duration::from_millis(1002)); // the connection's next try, a second later
    let asked: Vec<_> = sent_frames(&mut p).iter().filter_map(|f| neighbor::parse_arp(f)).collect();
    assert_eq!(asked.iter().map(|a| (a.request, a.target_ip)).collect::<Vec<_>>(), [(true, *silent.ip())]);
    assert_eq!(p.engine.stats().arp_requests, 1);
    p.engine.announce_to(p.now, &mut p.edev, *silent.ip());
    let announced: Vec<_> = sent_frames(&mut p).iter().filter_map(|f| neighbor::parse_arp(f)).collect();
    assert_eq!(announced.iter().map(|a| (a.request, a.target_ip)).collect::<Vec<_>>(), [(true, *silent.ip())]);
    p.edev.inject(request);
    p.step_by(Duration::from_micros(10));
    let replied: Vec<_> = sent_frames(&mut p).iter().filter_map(|f| neighbor::parse_arp(f)).collect();
    assert_eq!(replied.iter().map(|a| (a.request, a.target_ip)).collect::<Vec<_>>(), [(false, CLIENT)]);
    let s = p.engine.stats();
    assert_eq!((s.arp_replies, s.arp_requests), (1, 2));
}

/// A sender that has a connection's 4-tuple but not its sequence numbers changes nothing. Its
/// segments (data, RST, FIN, SYN) from another MAC, outside the receive window, do not move the
/// connection's traffic there, do not mark it reset, do not set the FIN end TIME_WAIT would use,
/// and do not change the peer's initial sequence number; smoltcp's challenge ACKs to them go to
/// the peer, not to that sender (they carry the numbers it lacks). The peer's own segment from a
/// new MAC, in the window, moves the connection's traffic there.
#[test]
fn a_blind_sender_with_the_four_tuple_moves_nothing() {
    use smoltcp::wire::{TcpControl, TcpPacket};
    let mut p = Pair::new(&config());
    let peer_ip = Ipv4Addr::new(198, 18, 0, 50);
    let (peer, other) = ([0x02, 1, 0, 0, 0, 1], [0x02, 1, 0, 0, 0, 0x66]);
    let server_mac = [0x02, 0, 0, 0, 0, 2];
    let frame = |mac: [u8; 6], control: TcpControl, seq: u32, ack: Option<u32>, payload: &[u8]| {
        let tcp = flow::plain_tcp((40000, 7), control, seq, ack, 65535, payload);
        flow::test_tcp_frame((mac, peer_ip), (server_mac, SERVER), &tcp)
    };
    // (destination MAC, sequence number, payload length) of each segment the engine sent.
    let sent = |p: &mut Pair, f: Vec<u8>| {
        answers(p, f, |eth, ip| {
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            (eth.dst_addr().0, tcp.seq_number().0 as u32, tcp.payload().len())
        })
    };
    let synack = sent(&mut p, frame(peer, TcpControl::Syn, 1000, None, &[]));
    assert_eq!(synack.len(), 1);
    let iss = synack[0].1;
    assert!(sent(&mut p, frame(peer, TcpControl::None, 1001, Some(iss + 1), &[])).is_empty());

    let far = 1001 + 1_000_000;
    for control in [TcpControl::Psh, TcpControl::Rst, TcpControl::Fin, TcpControl::Syn] {
        let blind = sent(&mut p, frame(other, control, far, Some(iss + 1), &[0x5a; 8]));
        assert!(blind.iter().all(|s| s.0 == peer), "{control:?}: answered at the peer's MAC: {blind:?}");
    }
    let slot = p.engine.slots.iter().find(|s| s.tuple.is_some()).expect("the connection");
    assert_eq!((slot.rst_seen, slot.peer_fin_end, slot.irs), (false, None, 1000));
    assert_eq!(p.engine.stats().open, 1);
    let echo = sent(&mut p, frame(peer, TcpControl::Psh, 1001, Some(iss + 1), &[0x5a; 64]));
    assert_eq!(echo, [(peer, iss + 1, 64)], "the connection stayed with its peer");

    let moved = sent(&mut p, frame(other, TcpControl::Psh, 1065, Some(iss + 65), &[0x5a; 64]));
    assert_eq!(moved, [(other, iss + 65, 64)], "the peer's in-window segment from its new MAC moved it");
}

/// smoltcp holds only the port's address and takes any destination when the engine has extra
/// ones; the engine decides what is addressed to it. A ping and a SYN to an extra address are
/// answered from that address; a ping and a SYN to an address in the prefix that is not the
/// engine's get nothing.
#[test]
fn extra_addresses_are_answered_and_other_addresses_are_not() {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetFrame, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket,
    };
    let extra = Ipv4Addr::new(198, 18, 0, 3);
    let stranger = Ipv4Addr::new(198, 18, 0, 99);
    let mut cfg = config();
    cfg.extra_addresses = vec![extra];
    let mut p = Pair::new(&cfg);
    let (peer_mac, peer_ip, server_mac) = ([0x02, 1, 0, 0, 0, 1], Ipv4Addr::new(198, 18, 0, 50), [0x02, 0, 0, 0, 0, 2]);
    let ping = |dst: Ipv4Addr| {
        let icmp = Icmpv4Repr::EchoRequest { ident: 7, seq_no: 1, data: b"switchyard" };
        let ip = Ipv4Repr {
            src_addr: peer_ip,
            dst_addr: dst,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: 64,
        };
        let mut f = vec![0u8; 14 + ip.buffer_len() + icmp.buffer_len()];
        let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
        eth.set_src_addr(smoltcp::wire::EthernetAddress(peer_mac));
        eth.set_dst_addr(smoltcp::wire::EthernetAddress(server_mac));
        eth.set_ethertype(smoltcp::wire::EthernetProtocol::Ipv4);
        let caps = ChecksumCapabilities::default();
        let mut packet = Ipv4Packet::new_unchecked(eth.payload_mut());
        ip.emit(&mut packet, &caps);
        icmp.emit(&mut Icmpv4Packet::new_unchecked(packet.payload_mut()), &caps);
        f
    };
    let syn = |dst: Ipv4Addr| {
        let tcp = flow::plain_tcp((40000, 7), TcpControl::Syn, 1000, None, 65535, &[]);
        flow::test_tcp_frame((peer_mac, peer_ip), (server_mac, dst), &tcp)
    };
    // (source address, protocol, ICMP echo reply or TCP SYN-ACK) of each frame the engine sent.
    let sent = |p: &mut Pair, f: Vec<u8>| {
        answers(p, f, |_, ip| {
            let answer = match ip.next_header() {
                IpProtocol::Icmp => {
                    Icmpv4Packet::new_checked(ip.payload()).unwrap().msg_type()
                        == smoltcp::wire::Icmpv4Message::EchoReply
                }
                _ => TcpPacket::new_checked(ip.payload()).is_ok_and(|t| t.syn() && t.ack()),
            };
            (ip.src_addr(), ip.next_header(), answer)
        })
    };
    assert_eq!(sent(&mut p, ping(SERVER)), [(SERVER, IpProtocol::Icmp, true)]);
    assert_eq!(sent(&mut p, ping(extra)), [(extra, IpProtocol::Icmp, true)]);
    assert_eq!(sent(&mut p, syn(extra)), [(extra, IpProtocol::Tcp, true)]);
    assert!(sent(&mut p, ping(stranger)).is_empty(), "a ping to another address is not answered");
    assert!(sent(&mut p, syn(stranger)).is_empty(), "a SYN to another address is not answered");
}
