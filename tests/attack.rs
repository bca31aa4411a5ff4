//! Hostile traffic against the appliance over net_tap, with real Linux clients beside the
//! attacker. The attacker is this test's own raw-socket generator; its spoofed sources are all in
//! 198.19.0.0/16 (inside 198.18.0.0/15, off the appliance's link), so the appliance's SYN-ACKs go
//! to the namespace's side of the tap as their gateway and die there.
//!
//! Here: the spoofed SYN flood. In `attack/`: floods of ACKs, RSTs and FINs on random and live
//! 4-tuples (`floods`), silent and slow clients against `max_connections` and the HTTP header
//! timeout (`exhaustion`), and a TIME_WAIT flood against `max_time_wait` (`time_wait`).

mod common;
#[path = "attack/exhaustion.rs"]
mod exhaustion;
#[path = "attack/floods.rs"]
mod floods;
#[path = "attack/support.rs"]
mod support;
#[path = "attack/time_wait.rs"]
mod time_wait;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ctl_json, require_environment, Appliance, NetNs, APPLIANCE};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use support::rss_kib;

/// A SYN from `src` to the appliance's HTTP port as a whole IPv4 packet (its header included,
/// checksums right), for a raw socket with IP_HDRINCL.
fn spoofed_syn(src: Ipv4Addr, sport: u16, seq: u32) -> Vec<u8> {
    use engine::flow::{plain_tcp, tcp_frame_len, write_tcp_frame};
    let tcp = plain_tcp((sport, 80), smoltcp::wire::TcpControl::Syn, seq, None, 64240, &[]);
    let mut frame = vec![0u8; tcp_frame_len(&tcp)];
    write_tcp_frame(&mut frame, ([0; 6], src), ([0; 6], Ipv4Addr::from(APPLIANCE)), &tcp);
    frame.split_off(14)
}

/// Sends spoofed SYNs at about `rate` per second from random sources in 198.19.0.0/16 until
/// `stop`; returns how many left.
fn flood(rate: u64, stop: &AtomicBool, sent: &AtomicU64) {
    let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW))).expect("a raw socket");
    raw.set_header_included_v4(true).expect("IP_HDRINCL");
    let to = SockAddr::from(SocketAddrV4::new(Ipv4Addr::from(APPLIANCE), 80));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let start = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // Pace in bursts of 100.
        let due = start.elapsed().as_secs_f64() * rate as f64;
        if (n as f64) > due {
            std::thread::sleep(Duration::from_micros(500));
            continue;
        }
        for _ in 0..100 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let src = Ipv4Addr::new(198, 19, (x >> 8) as u8, x as u8);
            let _ = raw.send_to(&spoofed_syn(src, 1024 + (x >> 16) as u16 % 60000, (x >> 32) as u32), &to);
            n += 1;
        }
        sent.store(n, Ordering::Relaxed);
    }
}

/// One HTTP request on a new connection: the connect time, or why it failed.
fn one_client() -> Result<Duration, String> {
    let t = Instant::now();
    let addr = std::net::SocketAddr::from((APPLIANCE, 80));
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| format!("connect: {e}"))?;
    let connected = t.elapsed();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut w = s.try_clone().unwrap();
    w.write_all(b"GET / HTTP/1.1\r\nHost: 198.18.0.2\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut status = String::new();
    BufReader::new(s).read_line(&mut status).map_err(|e| format!("read: {e}"))?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("status {status:?}"));
    }
    Ok(connected)
}

/// A spoofed SYN flood (20,000 SYNs a second from random sources) while a Linux client makes 200
/// connections one after another: at least 99 % are served, none is refused, the median connect
/// takes under 10 ms, and the appliance's memory stays flat. Past the half-open budget
/// (`engine.syn_backlog`, 4096 by default) every SYN gets a SYN cookie (`syn_cookies = "auto"`,
/// RFC 4987 §3.6), the real clients' too: they are admitted by their cookies, as with Linux.
#[test]
fn b1_a_spoofed_syn_flood_does_not_keep_real_clients_out() {
    require_environment();
    let ns = NetNs::new("synflood");
    let app = Appliance::start(&ns, "sysynfl");
    let pid = app.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let attacker = {
        let (stop, sent) = (stop.clone(), sent.clone());
        ns.spawn(move || flood(20_000, &stop, &sent))
    };
    std::thread::sleep(Duration::from_secs(1)); // the flood fills the half-open budget first
    let rss_before = rss_kib(pid);
    let results: Vec<Result<Duration, String>> = ns.run(|| (0..200).map(|_| one_client()).collect());
    let rss_after = rss_kib(pid);
    let socket = std::path::PathBuf::from(format!("/run/switchyard/{}.sock", ns.name));
    let listeners = ctl_json(&socket, "listeners");
    let http = listeners
        .as_array()
        .and_then(|v| v.iter().find(|l| l["address"].as_str().is_some_and(|a| a.ends_with(":80"))))
        .cloned()
        .unwrap_or_else(|| panic!("no listener on port 80: {listeners}"));
    stop.store(true, Ordering::Relaxed);
    attacker.join().expect("the attacker thread");
    let sent = sent.load(Ordering::Relaxed);
    let served: Vec<Duration> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    let refused = results.iter().filter(|r| r.as_ref().is_err_and(|e| e.contains("refused"))).count();
    let mut times = served.clone();
    times.sort();
    let median = times.get(times.len() / 2).copied().unwrap_or(Duration::MAX);
    let p99 = times.get(times.len() * 99 / 100).copied().unwrap_or(Duration::MAX);
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).take(5).collect();
    eprintln!(
        "{sent} spoofed SYNs; {} of 200 served, {refused} refused, connect median {median:?} p99 {p99:?}; \
         RSS {rss_before} -> {rss_after} KiB; first failures {failures:?}",
        served.len()
    );
    assert!(sent > 20_000, "the flood ran: {sent} SYNs");
    assert!(served.len() >= 198, "{} of 200 served: {failures:?}", served.len());
    assert_eq!(refused, 0, "{failures:?}");
    assert!(median < Duration::from_millis(10), "median connect {median:?}");
    assert!(rss_after < rss_before + 16 * 1024, "RSS grew from {rss_before} to {rss_after} KiB");
    eprintln!("the HTTP listener: {http}");
    let (cookies, by_cookie) =
        (http["cookies_sent"].as_u64().unwrap_or(0), http["cookies_accepted"].as_u64().unwrap_or(0));
    assert!(cookies > 10_000, "SYN cookies sent: {cookies}");
    assert!(by_cookie >= 150, "clients admitted by their cookie: {by_cookie}");
    let (status, log) = app.stop();
    assert!(status.success(), "exit status {status}; log:\n{log}");
}
