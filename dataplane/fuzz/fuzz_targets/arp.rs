//! ARP: the parser (`engine::neighbor::parse_arp`) and what an engine does with ARP frames.
//!
//! Input: frames, each a length byte and its bytes. Every frame is parsed; a parsed frame must be
//! an Ethernet ARP frame that writes back the same (`write_arp`) and that the classifier hands to
//! the engine. Then the frames go into an engine one by one, checked against a model of its
//! neighbour table: it learns the sender of a frame aimed at one of its addresses from a unicast
//! MAC on its link, and answers (once, correctly) when that frame is a request; a frame about
//! another address only moves a neighbour it knows.

#![no_main]

use std::collections::HashMap;
use std::net::Ipv4Addr;

use engine::flow::{self, Frame};
use engine::neighbor::{self, parse_arp, Arp};
use engine::phy::MemoryLink;
use engine::testing::SERVER;
use engine::{Engine, EngineConfig};
use libfuzzer_sys::fuzz_target;
use smoltcp::time::Instant;
use switchyard_engine_fuzz::{Input, ENGINE_MAC};

/// The parser's answer agrees with the frame's bytes and with the classifier.
fn check_parse(frame: &[u8]) -> Option<Arp> {
    let a = parse_arp(frame)?;
    assert!(frame.len() >= neighbor::ARP_FRAME_LEN, "parsed a runt");
    assert_eq!(frame[12..14], [0x08, 0x06], "parsed another ethertype");
    assert_eq!(flow::classify(frame, &[SERVER]), Frame::Arp);
    // What it read, written back, reads the same.
    let mut buf = vec![0u8; neighbor::ARP_FRAME_LEN];
    let reply_to = (!a.request).then_some([2, 0, 0, 0, 0, 9]);
    neighbor::write_arp(&mut buf, a.sender_mac, a.sender_ip, a.target_ip, reply_to);
    let b = parse_arp(&buf).expect("a frame write_arp wrote parses");
    assert_eq!(
        (b.request, b.sender_mac, b.sender_ip, b.target_ip),
        (a.request, a.sender_mac, a.sender_ip, a.target_ip)
    );
    Some(a)
}

fn on_link(ip: Ipv4Addr) -> bool {
    u32::from(ip) >> 8 == u32::from(SERVER) >> 8
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let mut frames = Vec::new();
    while !inp.is_empty() && frames.len() < 16 {
        let len = usize::from(inp.byte());
        frames.push(inp.bytes(len));
    }
    let parsed: Vec<Option<Arp>> = frames.iter().map(|f| check_parse(f)).collect();

    let mut cfg: EngineConfig = EngineConfig::new(ENGINE_MAC, SERVER, 24);
    cfg.max_connections = 16;
    cfg.max_time_wait = 16;
    cfg.buffer_idle = None;
    let MemoryLink { a: mut peer, b: mut dev } = MemoryLink::new();
    let now = Instant::from_secs(1);
    let mut e: Engine = Engine::new(&cfg, &mut dev, now).unwrap();
    // The model: the neighbour table, and the replies sent.
    let mut table: HashMap<Ipv4Addr, [u8; 6]> = HashMap::new();
    let mut replies = 0;
    for (f, a) in frames.into_iter().zip(parsed) {
        let verdict = e.classify(&f);
        let addressed = neighbor::addressed_to(&f, ENGINE_MAC);
        dev.inject(f);
        use engine::phy::BurstDevice;
        dev.refill();
        e.poll(now, &mut dev);
        // The ARP frames it sent (IPv4 goes to smoltcp, which may answer with ICMP).
        let out: Vec<Vec<u8>> =
            std::iter::from_fn(|| peer.take_inbound()).filter(|f| f.len() >= 14 && f[12..14] == [8, 6]).collect();
        let Some(a) = a.filter(|a| addressed && a.sender_mac[0] & 1 == 0 && on_link(a.sender_ip)) else {
            assert!(out.is_empty(), "ARP for a frame it should ignore");
            continue;
        };
        if a.target_ip == SERVER {
            assert!(verdict.is_ours(), "the classifier passes over an ARP frame the engine learns from");
            table.insert(a.sender_ip, a.sender_mac);
            if a.request {
                replies += 1;
                assert_eq!(out.len(), 1, "one reply to a request for the engine's address");
                let r = parse_arp(&out[0]).expect("the reply parses");
                assert_eq!(out[0][..6], a.sender_mac, "the reply goes to the asker");
                assert!(!r.request);
                assert_eq!((r.sender_mac, r.sender_ip, r.target_ip), (ENGINE_MAC, SERVER, a.sender_ip));
                continue;
            }
        } else if let Some(m) = table.get_mut(&a.sender_ip) {
            *m = a.sender_mac;
        }
        assert!(out.is_empty(), "answered a frame that is no request for the engine's address");
    }
    let s = e.stats();
    assert_eq!(s.neighbors, table.len(), "neighbours known");
    assert_eq!(s.arp_replies, replies, "ARP replies sent");
});
