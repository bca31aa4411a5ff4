//! Writes the seed corpora of the engine's fuzz targets (`seeds/frames`, `seeds/arp`,
//! `seeds/http`, `seeds/tcp`): frames of a real exchange between the engine and a smoltcp client,
//! operation sequences that drive the engine through its listeners, TIME_WAIT, ARP and its own
//! connections, HTTP requests, and operation sequences on one control block of the engine's TCP.
//!
//! `cargo run --manifest-path dataplane/fuzz/Cargo.toml --example seeds` (from the repository's
//! top); the files are committed, so this runs only when the input formats change.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use engine::neighbor::test_arp_frame;
use engine::phy::BurstDevice;
use engine::testing::{config, Pair, CLIENT, SERVER};
use smoltcp::time::Duration;
use switchyard_engine_fuzz::tcp::{self as tcp_input, SegOp, Setup, TcpOp};
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

/// Operations of a `tcp` input, each with whether its output is held back.
type TcpOps = Vec<(TcpOp, bool)>;

/// A `tcp` input: the setup, then each operation (`true`: its output held back).
fn tcp_ops(setup: &Setup, ops: &[(TcpOp, bool)]) -> Vec<u8> {
    let mut out = Vec::new();
    setup.encode(&mut out);
    for (op, hold) in ops {
        op.encode(*hold, &mut out);
    }
    out
}

fn tcp_seeds(dir: &Path) {
    use tcp_input::{FIN_RECEIVED, KEEPALIVE, NO_PREDICTION, NO_RTT, RENO, SACK, TS, WSCALE};
    // 64 KiB rings (index 13), the MSS 1460, the peer's shift 7, 32 out-of-order ranges; the ISNs
    // a few kilobytes before the sequence space wraps.
    let base = Setup {
        flags: WSCALE | SACK | TS,
        rings: 0xdd,
        mss: 1460,
        peer_shift: 7,
        ooo: 6,
        iss: u32::MAX - 5000,
        irs: u32::MAX - 3000,
        ts: 1000,
        window: 512,
        received: 100,
        queued: 20_000,
    };
    let op = |op: TcpOp| (op, false);
    let ack = || op(TcpOp::Seg(SegOp::default()));
    let inorder = |len: u16| op(TcpOp::InOrder { len });
    let time = |amount: u8| op(TcpOp::Time { to_deadline: false, amount });
    let deadline = || op(TcpOp::Time { to_deadline: true, amount: 0 });
    let seg = |s: SegOp| op(TcpOp::Seg(s));
    // A duplicate ACK (SND.UNA) with SACK blocks counted in MSSs from SND.UNA.
    let dup = |sack: Vec<(u16, u16)>| seg(SegOp { ack_mode: 1 | 8, sack, ..SegOp::default() });
    let transfer = vec![
        inorder(1000),
        ack(),
        inorder(1460),
        inorder(1460),
        op(TcpOp::Read { n: 4000 }),
        ack(),
        time(10),
        op(TcpOp::Write { n: 30_000 }),
        ack(),
        ack(),
        op(TcpOp::App { action: 3, n: 500 }),
        ack(),
        op(TcpOp::App { action: 0, n: 0 }),
        ack(),
        seg(SegOp { flags: 0x01, ..SegOp::default() }),
        deadline(),
    ];
    let loss = vec![
        dup(vec![(1, 1)]),
        dup(vec![(1, 2)]),
        dup(vec![(1, 3)]),
        time(5),
        dup(vec![(5, 2), (1, 3)]),
        seg(SegOp { ack_mode: 6, ack: 1, ..SegOp::default() }),
        deadline(),
        deadline(),
        ack(),
    ];
    let ooo = vec![
        seg(SegOp { seq: 2000, len: 1000, ..SegOp::default() }),
        seg(SegOp { seq: 4000, len: 1000, ..SegOp::default() }),
        seg(SegOp { seq: 6000, len: 500, ..SegOp::default() }),
        seg(SegOp { seq: 0, len: 2500, ..SegOp::default() }),
        seg(SegOp { seq_mode: 4, len: 100, ..SegOp::default() }),
        op(TcpOp::Read { n: u16::MAX }),
        seg(SegOp { seq: 0, len: 7000, ..SegOp::default() }),
        op(TcpOp::App { action: 2, n: 3000 }),
    ];
    let zero = vec![
        seg(SegOp { flags: 0x40, window: 0, ..SegOp::default() }),
        deadline(),
        deadline(),
        deadline(),
        seg(SegOp { flags: 0x40, window: 3, ..SegOp::default() }),
        deadline(),
        seg(SegOp { flags: 0x40, window: 1000, ..SegOp::default() }),
        op(TcpOp::Output { budget: 1 }),
        op(TcpOp::Output { budget: 0 }),
    ];
    let hostile = vec![
        seg(SegOp { ts_mode: 3, len: 100, ..SegOp::default() }),
        seg(SegOp { flags: 0x04, seq: 10, ..SegOp::default() }),
        seg(SegOp { flags: 0x02, ..SegOp::default() }),
        seg(SegOp { ack_mode: 3, ack: 100, ..SegOp::default() }),
        seg(SegOp { ack_mode: 4, ack: 60_000, ..SegOp::default() }),
        seg(SegOp { seq: -20_000, len: 200, ..SegOp::default() }),
        seg(SegOp { flags: 0x10 | 0x20, len: 10, ..SegOp::default() }),
        seg(SegOp { flags: 0x80, len: 10, ..SegOp::default() }),
        seg(SegOp { flags: 0x04, ..SegOp::default() }),
    ];
    // A TCP header behind an IPv4 header: ACK, SACK-permitted, MSS, window scale, SACK, timestamps.
    let mut tcp_header = vec![0, 80, 0x9c, 0x40, 0, 0, 0, 1, 0, 0, 0, 1, 0xb0, 0x18, 0x10, 0];
    tcp_header.extend_from_slice(&[0, 0, 0, 0, 4, 2, 2, 4, 5, 0xb4, 3, 3, 7, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    tcp_header.extend_from_slice(&[8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 0, b'h', b'i']);
    let raw =
        vec![op(TcpOp::Raw { ip: true, bytes: tcp_header.clone() }), op(TcpOp::Raw { ip: false, bytes: tcp_header })];
    let held = vec![
        (TcpOp::InOrder { len: 100 }, true),
        (TcpOp::InOrder { len: 100 }, true),
        ack(),
        (TcpOp::Seg(SegOp::default()), true),
    ];
    let seeds: Vec<(&str, Setup, TcpOps)> = vec![
        ("transfer", base.clone(), transfer.clone()),
        ("transfer-no-options", Setup { flags: 0, ..base.clone() }, transfer.clone()),
        ("transfer-small-rings", Setup { rings: 0x43, mss: 64, ..base.clone() }, transfer.clone()),
        ("transfer-tiny-rings", Setup { rings: 0x10, queued: 5, ..base.clone() }, transfer),
        ("loss-sack", base.clone(), loss.clone()),
        ("loss-reno-no-sack", Setup { flags: WSCALE | TS | RENO, ..base.clone() }, loss.clone()),
        ("loss-no-rtt", Setup { flags: WSCALE | SACK | NO_RTT | NO_PREDICTION, ..base.clone() }, loss),
        ("out-of-order", base.clone(), ooo.clone()),
        ("out-of-order-one-range", Setup { ooo: 0, ..base.clone() }, ooo),
        ("zero-window", base.clone(), zero.clone()),
        ("zero-window-shift-14", Setup { peer_shift: 14, rings: 0xff, ..base.clone() }, zero),
        ("hostile", base.clone(), hostile),
        ("raw", base.clone(), raw),
        ("held-output", base.clone(), held),
        (
            "keepalive",
            Setup { flags: WSCALE | SACK | TS | KEEPALIVE, queued: 0, ..base.clone() },
            vec![time(200), deadline(), deadline(), deadline(), deadline()],
        ),
        (
            "close-wait",
            Setup { flags: WSCALE | SACK | TS | FIN_RECEIVED, ..base.clone() },
            vec![ack(), op(TcpOp::App { action: 0, n: 0 }), ack(), ack()],
        ),
        ("abort", base.clone(), vec![ack(), op(TcpOp::App { action: 1, n: 0 })]),
    ];
    for (name, setup, ops) in seeds {
        write(dir, name, &tcp_ops(&setup, &ops));
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    frames_seeds(&root.join("frames"));
    arp_seeds(&root.join("arp"));
    http_seeds(&root.join("http"));
    tcp_seeds(&root.join("tcp"));
    for t in ["frames", "arp", "http", "tcp"] {
        println!("seeds/{t}: {} files", std::fs::read_dir(root.join(t)).unwrap().count());
    }
}
