//! Writes the seed corpora of the engine's fuzz targets (`seeds/frames`, `seeds/arp`,
//! `seeds/http`): frames of a real exchange between the engine and a smoltcp client, operation
//! sequences that drive the engine through its listeners, TIME_WAIT, ARP and its own connections,
//! and HTTP requests.
//!
//! `cargo run --manifest-path dataplane/fuzz/Cargo.toml --example seeds` (from the repository's
//! top); the files are committed, so this runs only when the input formats change.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use engine::neighbor::test_arp_frame;
use engine::phy::BurstDevice;
use engine::testing::{config, Pair, CLIENT, SERVER};
use smoltcp::time::Duration;
use switchyard_engine_fuzz::{
    arp_frame, Op, Seg, CLIENT_MAC, ENGINE_MAC, SETUP_GATEWAY, SETUP_HEADER_TIMEOUT, SETUP_OFFLOADED, SETUP_RECLAIM,
};

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

fn ops(setup: u8, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![setup];
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// The frames a client sends an engine: ARP, the handshake, data, the close.
fn real_frames() -> Vec<(String, Vec<u8>)> {
    let mut p = Pair::new(&config());
    let mut frames = Vec::new();
    let mut grab = |p: &mut Pair, what: &str| {
        p.now += Duration::from_millis(1);
        p.cdev.refill();
        p.client.poll(p.now, &mut p.cdev, &mut p.sockets);
        while let Some(f) = p.edev.peek_owned() {
            frames.push((format!("{what}-{}", frames.len()), f));
            p.edev.refill();
            p.engine.poll(p.now, &mut p.edev);
        }
    };
    let h = p.connect(7, 48000);
    for _ in 0..4 {
        grab(&mut p, "handshake");
    }
    p.sock(h).send_slice(b"hello, echo").unwrap();
    for _ in 0..4 {
        grab(&mut p, "data");
    }
    let h2 = p.connect(80, 48001);
    for _ in 0..3 {
        grab(&mut p, "http-handshake");
    }
    p.sock(h2).send_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    for _ in 0..4 {
        grab(&mut p, "http");
    }
    p.sock(h).close();
    for _ in 0..4 {
        grab(&mut p, "close");
    }
    frames
}

fn seg(peer: u8, port: u8, flags: u8, payload: &[u8]) -> Op {
    Op::Segment(Seg { peer, port, flags, seq: 0, ack: 0, window: 8192, options: Vec::new(), payload: payload.to_vec() })
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;
const FIN_ACK: u8 = 0x11;
const RST: u8 = 0x04;

fn step(ms: u8) -> Op {
    Op::Step { long: false, amount: ms }
}

fn frames_seeds(dir: &Path) {
    for (name, f) in real_frames() {
        write(dir, &format!("raw-{name}"), &ops(0, &[Op::Raw { fix: false, frame: f }]));
    }
    // A peer of its own (198.18.0.10:40000, peer byte 0x80) on each listener: it opens with a
    // SYN, then answers as the second 4-tuple the engine sent on (peer byte 1).
    let handshake = |port: u8| vec![seg(0x80, port, SYN, b""), step(1), seg(1, 0, ACK, b""), step(1)];
    let mut echo = handshake(0);
    echo.extend([seg(1, 0, PSH_ACK, b"spoofed echo"), step(20), seg(1, 0, FIN_ACK, b""), step(20)]);
    write(dir, "echo-spoofed-peer", &ops(0, &echo));
    let mut http = handshake(1);
    http.extend([seg(1, 0, PSH_ACK, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), step(20), seg(1, 0, FIN_ACK, b"")]);
    http.push(Op::Step { long: true, amount: 30 }); // TIME_WAIT (2 s) expires
    write(dir, "http-spoofed-peer-time-wait", &ops(SETUP_HEADER_TIMEOUT, &http));
    let mut slow = handshake(1);
    slow.extend([seg(1, 0, PSH_ACK, b"GET / HT"), Op::Step { long: true, amount: 25 }]);
    write(dir, "http-head-timeout", &ops(SETUP_HEADER_TIMEOUT, &slow));
    let mut hold = Vec::new();
    for peer in 0..6u8 {
        hold.extend([seg(0x80 | peer << 2, 2, SYN, b""), step(1)]);
    }
    for peer in 1..7u8 {
        hold.extend([seg(peer, 0, ACK, b""), step(1)]);
    }
    write(dir, "hold-backlog-full", &ops(0, &hold));
    let flood: Vec<Op> = (0..20u8).map(|i| seg(0x80 | i << 2 | i & 3, 0, SYN, b"")).collect();
    write(dir, "syn-flood-evicts", &ops(0, &flood));
    write(dir, "closed-port-rst", &ops(0, &[seg(0x80, 3, SYN, b""), step(1)]));
    let mut reset = handshake(0);
    reset.extend([seg(1, 0, RST, b""), step(1)]);
    write(dir, "peer-resets", &ops(0, &reset));
    let mut options = handshake(0);
    options[0] = Op::Segment(Seg {
        peer: 0x80,
        port: 0,
        flags: SYN,
        seq: 77,
        ack: 0,
        window: 65535,
        // MSS 1460, SACK permitted, window scale 7, timestamps.
        options: vec![2, 4, 5, 180, 4, 2, 3, 3, 7, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1],
        payload: Vec::new(),
    });
    write(dir, "syn-with-options", &ops(SETUP_OFFLOADED, &options));
    // The live connection: data, silence, close.
    write(
        dir,
        "live-echo",
        &ops(SETUP_RECLAIM, &[Op::Send { data: b"live data".to_vec() }, Op::Step { long: true, amount: 30 }]),
    );
    write(dir, "live-silent", &ops(0, &[Op::Send { data: b"x".to_vec() }, Op::Silent { long: true, amount: 40 }]));
    write(dir, "live-close", &ops(0, &[Op::Client { action: 0 }, step(50)]));
    write(
        dir,
        "client-http",
        &ops(0, &[Op::Client { action: 3 }, step(5), Op::Client { action: 5 }, step(5), Op::Client { action: 6 }]),
    );
    // ARP for the engine, and about another address; ICMP echo; a fragment.
    let arp = |op, flags| Op::Arp { op, sender_mac: 10, sender_ip: 10, target: 3, flags };
    write(dir, "arp", &ops(0, &[arp(1, 1), arp(2, 1), arp(1, 0), arp(1, 9), arp(1, 3), arp(2, 4)]));
    let mut ping = vec![8, 0, 0, 0, 0, 1, 0, 1];
    ping.extend_from_slice(b"ping");
    write(dir, "icmp-echo", &ops(0, &[Op::Ip { proto: 1, frag: 0, payload: ping }]));
    write(dir, "fragment", &ops(0, &[Op::Ip { proto: 6, frag: 3, payload: vec![0; 24] }]));
    // The engine's own connection to 198.18.0.10:8000: ARP, then the peer's SYN-ACK.
    let own = [
        Op::Client { action: 7 },
        Op::Arp { op: 2, sender_mac: 10, sender_ip: 10, target: 0, flags: 1 },
        step(1),
        seg(1, 0, 0x12, b""),
        step(1),
        seg(1, 0, PSH_ACK, b"echo me"),
        step(20),
    ];
    write(dir, "own-connection", &ops(SETUP_GATEWAY, &own));
}

fn arp_seeds(dir: &Path) {
    let peer = Ipv4Addr::new(198, 18, 0, 9);
    let frames = [
        ("request", test_arp_frame([2, 0, 0, 0, 0, 9], peer, SERVER, None)),
        ("reply", test_arp_frame([2, 0, 0, 0, 0, 9], peer, SERVER, Some(ENGINE_MAC))),
        ("gratuitous", test_arp_frame([2, 0, 0, 0, 0, 9], peer, peer, None)),
        ("other", test_arp_frame([2, 0, 0, 0, 0, 9], peer, Ipv4Addr::new(198, 18, 0, 3), None)),
        ("off-link", test_arp_frame([2, 0, 0, 0, 0, 9], Ipv4Addr::new(198, 19, 0, 9), SERVER, None)),
        ("client", arp_frame(ENGINE_MAC, 1, (CLIENT_MAC, CLIENT), ([0; 6], SERVER))),
        ("probe", arp_frame([0xff; 6], 1, ([2, 0, 0, 0, 0, 9], Ipv4Addr::UNSPECIFIED), ([0; 6], SERVER))),
    ];
    let mut all = Vec::new();
    for (name, f) in &frames {
        let mut one = vec![f.len() as u8];
        one.extend_from_slice(f);
        write(dir, name, &one);
        all.extend_from_slice(&one);
    }
    write(dir, "sequence", &all);
}

fn http_seeds(dir: &Path) {
    let requests: [(&str, u8, &[u8]); 12] = [
        ("get", 0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("pipelined", 1, b"GET / HTTP/1.1\r\n\r\nHEAD /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\n"),
        ("http10-keep-alive", 2, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n"),
        ("body", 3, b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n"),
        ("chunked", 4, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ("http2", 5, b"GET / HTTP/2.0\r\n\r\n"),
        ("bare-lf", 6, b"\r\n\nGET / HTTP/1.1\nHost: x\n\n"),
        ("bad-header", 7, b"GET / HTTP/1.1\r\nbad header\r\n\r\n"),
        ("conflicting-length", 8 | 1, b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        ("unfinished-at-fin", 8 | 2, b"GET / HTTP/1.1\r\nHost"),
        ("slow-head", 16 | 3, b"GET / HTTP/1.1\r\nHost: x\r\n"),
        ("connection-options", 4, b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n"),
    ];
    for (i, (name, flags, req)) in requests.iter().enumerate() {
        let mut data = vec![*flags, i as u8];
        data.extend_from_slice(req);
        write(dir, name, &data);
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    frames_seeds(&root.join("frames"));
    arp_seeds(&root.join("arp"));
    http_seeds(&root.join("http"));
    for t in ["frames", "arp", "http"] {
        println!("seeds/{t}: {} files", std::fs::read_dir(root.join(t)).unwrap().count());
    }
}
