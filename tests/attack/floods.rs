//! Floods that must create nothing: ACKs with random cookies, RSTs and FINs on random spoofed
//! 4-tuples, and RSTs, SYNs and data with wrong sequence numbers on live connections' 4-tuples,
//! while those connections carry on.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::wire::TcpControl;

use super::support::{conn_remotes, core_sum, cpu_ns, rss_kib, tap_tx, Counters, Raw, Rng};
use crate::common::{connect, require_environment, Appliance, NetNs, HOST};

/// Frames of each kind the flood sends.
const PER_KIND: u64 = 12_000;
/// Frames on the live connections' 4-tuples, of the three kinds together.
const LIVE: u64 = 6_000;
/// Frames a second, all kinds together: what a debug build of the appliance (about 25 µs a frame)
/// takes without the tap's queue overflowing much.
const RATE: f64 = 15_000.0;

/// What the flood sent, by kind.
#[derive(Debug, Default)]
struct Sent {
    acks: u64,
    rsts: u64,
    fins: u64,
    live: u64,
    /// Sends the kernel refused.
    failed: u64,
}

/// Sends the whole flood, paced at [`RATE`]: ACKs to the HTTP port (random sequence numbers and
/// acknowledgments, so random cookies), RSTs and FIN-ACKs to random ports, all from random
/// sources in 198.19.0.0/16; and every fourth frame or so, an RST, a SYN or data with random
/// numbers from one of the `live` clients' own addresses to the echo port.
fn flood(live: &[SocketAddrV4]) -> Sent {
    let mut raw = Raw::new();
    let mut rng = Rng(0x5eed_f100_d000_0027);
    let mut sent = Sent::default();
    let total = 3 * PER_KIND + LIVE;
    let start = Instant::now();
    for n in 0..total {
        if n % 64 == 0 {
            let due = Duration::from_secs_f64(n as f64 / RATE);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let (seq, ack) = (rng.next() as u32, rng.next() as u32);
        // Live-tuple frames spread evenly through the flood.
        if n % (total / LIVE) == 0 && sent.live < LIVE {
            let src = live[(rng.next() % live.len() as u64) as usize];
            match sent.live % 3 {
                0 => raw.send(src, 7, TcpControl::Rst, seq, None, &[]),
                1 => raw.send(src, 7, TcpControl::Syn, seq, None, &[]),
                _ => raw.send(src, 7, TcpControl::Psh, seq, Some(ack), b"out of window: must never be echoed"),
            }
            sent.live += 1;
            continue;
        }
        let src = rng.spoofed();
        let port = 1 + (rng.next() % 65535) as u16;
        match n % 3 {
            0 if sent.acks < PER_KIND => {
                raw.send(src, 80, TcpControl::None, seq, Some(ack), &[]);
                sent.acks += 1;
            }
            1 if sent.rsts < PER_KIND => {
                raw.send(src, port, TcpControl::Rst, seq, None, &[]);
                sent.rsts += 1;
            }
            _ if sent.fins < PER_KIND => {
                raw.send(src, port, TcpControl::Fin, seq, Some(ack), &[]);
                sent.fins += 1;
            }
            _ => {}
        }
    }
    sent.failed = raw.failed;
    sent
}

/// A live echo connection that keeps talking until `stop`: 8 KiB of a pattern unique to it, then
/// the same back, every 10 ms. Returns the bytes echoed, or the first error or mismatch.
fn talk(id: u8, stop: Arc<AtomicBool>, s: std::net::TcpStream) -> Result<u64, String> {
    let mut total = 0u64;
    let mut round = 0u32;
    loop {
        let chunk: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(31) ^ round ^ u32::from(id) << 5) as u8).collect();
        (&s).write_all(&chunk).map_err(|e| format!("connection {id}: write after {total} bytes: {e}"))?;
        let mut back = vec![0u8; chunk.len()];
        (&s).read_exact(&mut back).map_err(|e| format!("connection {id}: read after {total} bytes: {e}"))?;
        if back != chunk {
            return Err(format!("connection {id}: round {round} came back changed"));
        }
        total += chunk.len() as u64;
        round += 1;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // A clean end: our FIN, the echo's FIN, nothing extra in between.
    s.shutdown(Shutdown::Write).map_err(|e| format!("connection {id}: shutdown: {e}"))?;
    let mut rest = Vec::new();
    (&s).read_to_end(&mut rest).map_err(|e| format!("connection {id}: reading to the end: {e}"))?;
    if !rest.is_empty() {
        return Err(format!(
            "connection {id}: {} bytes after the echo: {:?}",
            rest.len(),
            String::from_utf8_lossy(&rest)
        ));
    }
    Ok(total)
}

/// Floods of ACKs (random cookies to the HTTP listener), RSTs and FINs on random spoofed 4-tuples,
/// and RSTs, SYNs and data with random sequence numbers on four live echo connections' own
/// 4-tuples (RFC 5961: only an RST exactly at RCV.NXT resets; an RST or SYN in the window draws a
/// challenge ACK; anything outside it is dropped with an ACK). Asserts: no connection, half-open
/// or queued connection, or TIME_WAIT entry is created; no SYN reaches a listener (B1); the live
/// connections carry on and every byte comes back intact, then close cleanly; the invalid-cookie,
/// no-listener and out-of-window counters moved by what was sent. Prints the appliance's CPU time
/// per received frame.
#[test]
fn b1_ack_rst_fin_floods_create_nothing_and_spare_live_connections() {
    require_environment();
    let ns = NetNs::new("ackflood");
    let app = Appliance::start(&ns, "syackfl");
    let pid = app.pid();
    let live: Vec<std::net::TcpStream> = ns.run(|| (0..4).map(|_| connect(7)).collect());
    let tuples: Vec<SocketAddrV4> = live
        .iter()
        .map(|s| match s.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            a => panic!("not IPv4: {a}"),
        })
        .collect();
    assert!(tuples.iter().all(|t| *t.ip() == HOST.parse::<Ipv4Addr>().unwrap()));
    let stop = Arc::new(AtomicBool::new(false));
    let talkers: Vec<_> = live
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let stop = stop.clone();
            ns.spawn(move || talk(i as u8, stop, s))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200)); // the talkers under way
    let before = Counters::read(&ns);
    let tap0 = tap_tx(&ns, &app.tap);
    let (cpu0, rss0, t0) = (cpu_ns(pid), rss_kib(pid), Instant::now());
    let sent = {
        let tuples = tuples.clone();
        ns.run(move || flood(&tuples))
    };
    let flood_time = t0.elapsed();
    std::thread::sleep(Duration::from_millis(300)); // the last frames taken
    let (cpu1, rss1) = (cpu_ns(pid), rss_kib(pid));
    let tap1 = tap_tx(&ns, &app.tap);
    let (took, dropped) = (tap1.0 - tap0.0, tap1.1 - tap0.1);
    let during = Counters::read(&ns);
    let remotes = conn_remotes(&ns);
    stop.store(true, Ordering::Relaxed);
    let talked: Vec<Result<u64, String>> = talkers.into_iter().map(|t| t.join().expect("a talker")).collect();
    // The live connections' counters reach the stats when they end.
    let start = Instant::now();
    while Counters::read(&ns).lane("open") > 0 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = Counters::read(&ns);

    let d = |c: &Counters, f: &str| c.lane(f) - before.lane(f);
    let frames = d(&during, "rx_frames");
    let total = sent.acks + sent.rsts + sent.fins + sent.live;
    let busy_ns = (core_sum(&during.stats, "busy_us") - core_sum(&before.stats, "busy_us")) * 1000;
    let cpu = cpu1 - cpu0;
    let cookies_invalid = during.listener(80, "cookies_invalid") - before.listener(80, "cookies_invalid");
    let no_listener = d(&during, "no_listener");
    let (oow, challenged) = (d(&after, "tcp.out_of_window"), d(&after, "tcp.challenge_acks"));
    let throttled = d(&after, "tcp.acks_throttled");
    eprintln!(
        "sent {sent:?} in {flood_time:.2?} ({:.0} frames/s); tap took {} and dropped {}; appliance received {frames} frames, \
         CPU {:.1} ms ({:.0} ns/frame), busy {:.1} ms ({:.0} ns/frame), {} build; RSS {rss0} -> {rss1} KiB",
        total as f64 / flood_time.as_secs_f64(),
        took,
        dropped,
        cpu as f64 / 1e6,
        cpu as f64 / frames.max(1) as f64,
        busy_ns as f64 / 1e6,
        busy_ns as f64 / frames.max(1) as f64,
        if cfg!(debug_assertions) { "debug" } else { "release" },
    );
    eprintln!(
        "counters: cookies_invalid +{cookies_invalid}, no_listener +{no_listener}, out_of_window +{oow}, \
         challenge_acks +{challenged}, acks_throttled +{throttled}, open {} -> {}, time_wait {} -> {}, HTTP half-open {}, syns +{}; \
         echoed {talked:?}",
        before.lane("open"),
        during.lane("open"),
        before.lane("time_wait"),
        during.lane("time_wait"),
        during.listener(80, "half_open"),
        during.listener(80, "syns") + during.listener(7, "syns")
            - before.listener(80, "syns")
            - before.listener(7, "syns"),
    );
    // Nothing created.
    assert_eq!(during.lane("open"), 4, "only the live connections are open: {remotes:?}");
    assert_eq!(remotes.len(), 4, "ctl conns: {remotes:?}");
    for t in &tuples {
        assert!(remotes.contains(&t.to_string()), "{t} missing from {remotes:?}");
    }
    assert_eq!(during.lane("time_wait"), before.lane("time_wait"), "no TIME_WAIT entry");
    for port in [7, 80] {
        assert_eq!(during.listener(port, "half_open"), 0, "half-open on {port}");
        assert_eq!(during.listener(port, "queued"), 0, "queued on {port}");
        assert_eq!(during.listener(port, "syns"), before.listener(port, "syns"), "a SYN reached listener {port}");
        assert_eq!(during.listener(port, "cookies_accepted"), before.listener(port, "cookies_accepted"));
    }
    assert!(rss1 < rss0 + 4 * 1024, "RSS grew from {rss0} to {rss1} KiB");
    // The live connections unharmed, their bytes intact, their ends clean.
    for r in &talked {
        let bytes = r.as_ref().unwrap_or_else(|e| panic!("a live connection was harmed: {e}"));
        assert!(*bytes >= 8192 * 20, "a live connection stalled: {bytes} bytes");
    }
    // The counters moved by what arrived: the kernel drops what the tap's queue cannot hold.
    assert!(total >= (3 * PER_KIND + LIVE) * 95 / 100, "the flood was sent: {sent:?}");
    let arrived = took as f64 / (took + dropped).max(1) as f64;
    assert!(arrived > 0.5, "the tap dropped {dropped} of {} frames", took + dropped);
    let least = |n: u64| (n as f64 * arrived * 0.9) as u64;
    assert!(frames >= least(total), "the flood arrived: {frames} frames");
    assert!(cookies_invalid >= least(sent.acks), "ACKs judged as bad cookies: {cookies_invalid}");
    assert!(no_listener >= least(sent.acks + sent.fins), "ACKs and FINs refused: {no_listener}");
    assert!(oow + challenged >= least(sent.live), "live-tuple frames dropped: {oow} + {challenged}");
    // RFC 5961 §7: the forged RSTs and SYNs on live tuples draw at most an ACK each half second.
    assert!(throttled > 0, "no ACK to a forged segment was throttled");
    let (status, log) = app.stop();
    assert!(status.success(), "exit status {status}; log:\n{log}");
}
