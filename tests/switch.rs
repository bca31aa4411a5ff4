//! The socket switch with both providers: the appliance runs in this process (EAL once, on a
//! thread inside a namespace this test creates, so its net_tap is born there), the switch's
//! applications run on threads in the same namespace, and real Linux sockets are the peers.
//!
//! The appliance runs two engines (two lcores; `SWITCH_TEST_CORES=1` for one): software
//! steering hands frames to the core that owns their flow, the engines share each bridged
//! listener's accept queue, and a connect from a bound port goes to the core that will receive
//! its replies.
//!
//! One appliance serves every scenario, so the binary has its own `main` (`harness = false`) built
//! on `libtest-mimic`: it reads the command line as libtest does (a name filter, `--exact`,
//! `--skip`, `--list`, ...), sets the stage once when any scenario is to run, runs each scenario
//! (named after the rule it proves) as a `Trial`, one at a time, and prints libtest's lines
//! ending with `test result:`; then it stops the appliance and deletes the namespace whatever
//! happened. A stage that could not be set fails every scenario with the reason; an appliance
//! that stops with an error adds a failure, with a `test result:` line of its own.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::{require_environment, NetNs, HOST};
use control::config::{Config, Resolved};
use control::switch::{
    errno, AutoPost, BacklogPolicy, ConnectOptions, ConnectTime, FastOpen, ListenOptions, Listener, OnFull, Provider,
    Socket, Switch,
};
use libtest_mimic::{Arguments, Failed, Trial};
use sha2::{Digest, Sha256};

const TAP: &str = "sysw0";
/// The appliance's (fast-path) address.
const FAST: &str = "198.18.0.2";

/// Prints a line; a closed stdout (a pipe into `head`) must not abort the run before its
/// clean-up.
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

fn errno_of<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    let e = r.expect_err("an error");
    errno(&e).unwrap_or_else(|| panic!("no errno in {e}"))
}

/// Accepts one connection, waiting up to 5 s.
fn accept(l: &Listener) -> Socket {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(s) = l.accept() {
            return s;
        }
        assert!(Instant::now() < deadline, "no connection within 5 s");
        l.wait(Some(Duration::from_millis(100))).unwrap();
    }
}

fn connect_linux(to: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap_or_else(|e| panic!("connect {to}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Echoes on `s` until end of stream.
fn echo_on(mut s: Socket) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match s.read_blocking(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => s.write_all_blocking(&buf[..n]).expect("echo write"),
        }
    }
    let _ = s.shutdown_write();
    std::thread::sleep(Duration::from_millis(50));
}

/// Sends `data` through a Linux client to `to`, half-closes, returns what came back.
fn linux_roundtrip(to: SocketAddr, data: Vec<u8>) -> Vec<u8> {
    let s = connect_linux(to);
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    (&s).read_to_end(&mut back).expect("reading the echo");
    writer.join().unwrap();
    back
}

fn l3_one_wildcard_listener_accepts_from_both_providers(sw: &Switch) {
    let l = sw.listen(addr("0.0.0.0", 7100), ListenOptions::default()).unwrap();
    assert_eq!(l.providers(), [Provider::Kernel, Provider::Fast]);
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 + i / 251) as u8).collect();
    let want = Sha256::digest(&data);
    for (to, provider) in [(addr(FAST, 7100), Provider::Fast), (addr("127.0.0.1", 7100), Provider::Kernel)] {
        let d = data.clone();
        let client = std::thread::spawn(move || linux_roundtrip(to, d));
        let s = accept(&l);
        assert_eq!(s.provider(), Some(provider), "a connection to {to}");
        echo_on(s);
        let back = client.join().unwrap();
        assert_eq!(Sha256::digest(&back), want, "1 MiB through the {provider}");
    }
    let c = l.counters();
    assert_eq!((c.accepted_fast, c.accepted_kernel), (1, 1));
}

fn l2_specific_addresses(sw: &Switch) {
    let k = sw.listen(addr("127.0.0.1", 7101), ListenOptions::default()).unwrap();
    assert_eq!(k.providers(), [Provider::Kernel], "an address no fast-path port owns is kernel-only");
    let f = sw.listen(addr(FAST, 7102), ListenOptions::default()).unwrap();
    assert_eq!(f.providers(), [Provider::Kernel, Provider::Fast], "the fast-path port's address: both");
    let c = std::thread::spawn(|| linux_roundtrip(addr(FAST, 7102), b"to the port's address".to_vec()));
    let s = accept(&f);
    assert_eq!(s.provider(), Some(Provider::Fast));
    echo_on(s);
    assert_eq!(c.join().unwrap(), b"to the port's address");
}

fn l2_port_conflict_is_eaddrinuse_from_the_fast_path(sw: &Switch) {
    // Port 7 is the built-in echo service's on the fast path; the kernel has nothing on it.
    let e = sw.listen(addr("0.0.0.0", 7), ListenOptions::default()).unwrap_err();
    assert_eq!(errno(&e), Some(libc::EADDRINUSE));
    assert!(e.to_string().contains("fast path"), "names the provider: {e}");
    // The kernel listener was undone: the port can be listened on kernel-only.
    sw.listen(addr("127.0.0.1", 7), ListenOptions::default()).expect("kernel port 7 free again");
}

/// L4 and L5: a full backlog refuses at once, the client sees ECONNREFUSED promptly, and the
/// accept event fires for the queued connection only.
fn l4_full_backlog_refuses_at_once_and_never_signals_the_event(sw: &Switch) {
    let opts =
        ListenOptions { backlog: 1, policy: BacklogPolicy::Exact, on_full: OnFull::Refuse, ..Default::default() };
    let l = sw.listen(addr("0.0.0.0", 7110), opts).unwrap();
    assert!(!l.wait(Some(Duration::ZERO)).unwrap(), "quiet before any connection");
    let first = connect_linux(addr(FAST, 7110));
    assert!(l.wait(Some(Duration::from_secs(2))).unwrap(), "a queued connection signals");
    // The queue (limit 1) is full: the next ones are refused with an RST at once.
    let mut latencies = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let e = TcpStream::connect_timeout(&addr(FAST, 7110), Duration::from_secs(3)).expect_err("refused");
        latencies.push(t.elapsed());
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    }
    latencies.sort();
    say!(
        "    L4 refusal seen by a Linux client: min {:?} median {:?} max {:?} (20 tries)",
        latencies[0],
        latencies[10],
        latencies[19]
    );
    assert!(latencies[19] < Duration::from_millis(500), "well under a SYN retransmission (1 s)");
    let s = accept(&l);
    assert_eq!(s.provider(), Some(Provider::Fast));
    assert!(l.accept().is_err(), "refused connections never reach accept");
    assert!(!l.wait(Some(Duration::from_millis(100))).unwrap(), "nor the event");
    let c = l.counters();
    assert_eq!(c.refused, 20, "{c:?}");
    assert_eq!(c.accepted_fast, 1);
    drop(first);
}

fn b3_drop_policy_is_seen_as_a_retry(sw: &Switch) {
    let opts = ListenOptions { backlog: 0, policy: BacklogPolicy::Exact, on_full: OnFull::Drop, ..Default::default() };
    let l = sw.listen(addr("0.0.0.0", 7111), opts).unwrap();
    let t = Instant::now();
    let e = TcpStream::connect_timeout(&addr(FAST, 7111), Duration::from_millis(2500)).expect_err("no answer");
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "dropped, not refused: {e}");
    assert!(t.elapsed() >= Duration::from_millis(2400));
    let c = l.counters();
    assert!(c.dropped >= 2, "the first SYN and a retransmission were dropped: {c:?}");
    assert_eq!(c.refused, 0);
    assert!(!l.wait(Some(Duration::ZERO)).unwrap());
}

fn a2_fast_path_completion_only_after_first_data(sw: &Switch) {
    let l = sw.listen(addr("0.0.0.0", 7120), ListenOptions::default()).unwrap();
    let id = l.post_accept(64);
    let mut c = connect_linux(addr(FAST, 7120));
    std::thread::sleep(Duration::from_millis(200));
    assert!(l.completion().is_err(), "connected, no data: not complete");
    assert_eq!(l.counters().matched, 1);
    c.write_all(b"first data").unwrap();
    assert!(l.wait(Some(Duration::from_secs(2))).unwrap());
    let done = l.completion().unwrap();
    assert_eq!((done.id, done.data.as_slice()), (id, &b"first data"[..]));
    assert_eq!(done.socket.provider(), Some(Provider::Fast));
}

fn a4_fast_path_silent_client_closed_unconnected_accept_kept(sw: &Switch) {
    let opts = ListenOptions { silent_limit: Some(Duration::from_millis(500)), ..Default::default() };
    let l = sw.listen(addr("0.0.0.0", 7121), opts).unwrap();
    l.post_accept(64);
    l.post_accept(64);
    let mut silent = connect_linux(addr(FAST, 7121));
    let t = Instant::now();
    while l.counters().silent_closed == 0 {
        assert!(t.elapsed() < Duration::from_secs(3), "the silent client was not closed");
        l.wait(Some(Duration::from_millis(100))).unwrap();
        assert!(l.completion().is_err());
    }
    assert!(t.elapsed() >= Duration::from_millis(450), "not before the limit: {:?}", t.elapsed());
    assert_eq!(l.counters().posted, 2, "both accepts remain posted");
    let e = silent.read(&mut [0u8; 4]).expect_err("reset");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
}

fn a5_fast_path_connect_time(sw: &Switch) {
    let l = sw.listen(addr("0.0.0.0", 7122), ListenOptions::default()).unwrap();
    let _c = connect_linux(addr(FAST, 7122));
    let s = accept(&l);
    std::thread::sleep(Duration::from_millis(1100));
    match s.connect_time() {
        ConnectTime::Connected(d) => assert!(d >= Duration::from_secs(1), "{d:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.connect_time().as_seconds_or_max(), 1);
}

/// A Linux client's connect to `to`, with instants just before and just after it (between them
/// the client's side of the handshake completed; the engine's comes one ACK later).
fn connect_linux_timed(to: SocketAddr) -> (TcpStream, Instant, Instant) {
    let before = Instant::now();
    let c = connect_linux(to);
    (c, before, Instant::now())
}

/// Segments a Linux socket has received (TCP_INFO `tcpi_segs_in`): 1 for a client that has seen
/// only the SYN-ACK. More before any data means a handshake segment was sent again, so the
/// appliance completed its side of the handshake later than the client did.
fn segments_in(c: &TcpStream) -> u32 {
    // SAFETY: tcp_info is plain data; zeroed is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let fd = std::os::fd::AsRawFd::as_raw_fd(c);
    // SAFETY: info and len are live and len is info's size.
    let r = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &mut len) };
    if r == 0 {
        info.tcpi_segs_in
    } else {
        0
    }
}

/// A5 on the fast path: an accepted connection counts from the engine's handshake, not from
/// `accept`: 2.2 s in the queue reads 2 s. Reports the error against the client's clock.
fn a5_fast_path_accepted_connect_time_from_the_handshake(sw: &Switch) {
    let l = sw.listen(addr("0.0.0.0", 7123), ListenOptions::default()).unwrap();
    let (c, connecting, connected) = connect_linux_timed(addr(FAST, 7123));
    std::thread::sleep(Duration::from_millis(2200));
    let segs = segments_in(&c);
    let before = connected.elapsed();
    let s = accept(&l);
    let ConnectTime::Connected(d) = s.connect_time() else { panic!("not connected") };
    let after = connecting.elapsed();
    say!(
        "    A5 fast path, accepted: reads {d:?}, the client says {before:?} (error {:+.1} ms)",
        (d.as_secs_f64() - before.as_secs_f64()) * 1e3
    );
    // The engine stamps the handshake when it handles the client's ACK: after the client's
    // connect returned, within its idle sleep (1 ms at most) and a turn.
    assert!(
        d <= after && d + Duration::from_millis(50) >= before,
        "{d:?} outside {before:?}..{after:?}; the client received {segs} segment(s) in the handshake"
    );
    assert_eq!(s.connect_time().as_seconds_or_max(), 2);
}

/// A5 on the fast path: an outgoing connection reads its connect time from the engine's
/// handshake before the application polls the connect, and after.
fn a5_fast_path_outgoing_connect_time_before_the_poll(sw: &Switch) {
    let server = TcpListener::bind((HOST, 0)).unwrap();
    let to = server.local_addr().unwrap();
    let mut s = sw.socket();
    s.bind(addr("0.0.0.0", 0)).unwrap();
    let connecting = Instant::now();
    s.connect_ex(to, b"first", ConnectOptions::default()).unwrap();
    let (mut peer, _) = server.accept().unwrap(); // the handshake is complete
    let connected = Instant::now();
    std::thread::sleep(Duration::from_millis(2200));
    let before = connected.elapsed();
    let ConnectTime::Connected(d) = s.connect_time() else { panic!("connected, not yet polled") };
    let after = connecting.elapsed();
    say!(
        "    A5 fast path, outgoing: reads {d:?} before the poll, the server says {before:?} (error {:+.1} ms)",
        (d.as_secs_f64() - before.as_secs_f64()) * 1e3
    );
    assert!(d <= after && d + Duration::from_millis(50) >= before, "{d:?} outside {before:?}..{after:?}");
    assert_eq!(s.connect_time().as_seconds_or_max(), 2);
    assert_eq!(s.poll_connect().unwrap().bytes_sent, 5);
    assert_eq!(s.connect_time().as_seconds_or_max(), 2, "the poll does not reset the clock");
    let mut got = [0u8; 5];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"first");
}

/// A4 on the fast path with the issue's figures: a client connects, the application posts an
/// accept with a receive buffer 3 s later and never calls in again; with a 4 s limit the listener's
/// worker resets the client 4 s after it connected (want 4 to 5.5 s).
fn a4_fast_path_silent_clock_from_the_connect_reaped_without_the_application(sw: &Switch) {
    let limit = Duration::from_secs(4);
    let l =
        sw.listen(addr("0.0.0.0", 7124), ListenOptions { silent_limit: Some(limit), ..Default::default() }).unwrap();
    let (mut silent, connecting, connected) = connect_linux_timed(addr(FAST, 7124));
    std::thread::sleep(Duration::from_secs(3));
    let segs = segments_in(&silent);
    l.post_accept(64); // the last call into the listener until the reset
    let e = silent.read(&mut [0u8; 4]).expect_err("reset");
    let (at, at_most) = (connected.elapsed(), connecting.elapsed());
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    say!(
        "    A4 fast path: reset {at:?} after connecting, {:?} past the 4 s limit (handshake segments in: {segs})",
        at.saturating_sub(limit)
    );
    assert!(
        at_most >= limit && at <= Duration::from_millis(5500),
        "reset {at:?} after connecting; want 4-5.5 s; the client received {segs} segment(s) in the handshake"
    );
    let c = l.counters();
    assert_eq!((c.silent_closed, c.posted, c.matched), (1, 1, 0), "{c:?}");
}

/// A3 on the fast path: twelve queued connections that find one posted accept grow the automatic
/// mode's target by doubling; once arrivals stop, the unused accepts are given back by half every
/// period, down to the floor.
fn a3_fast_path_auto_mode_grows_and_shrinks(sw: &Switch) {
    let l = sw.listen(addr("0.0.0.0", 7125), ListenOptions::default()).unwrap();
    let _clients: Vec<TcpStream> = (0..12).map(|_| connect_linux(addr(FAST, 7125))).collect();
    let t = Instant::now();
    while l.counters().queued_fast < 12 {
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", l.counters());
        std::thread::sleep(Duration::from_millis(10));
    }
    let period = Duration::from_millis(200);
    l.set_auto(Some(AutoPost { receive_len: 0, min: 1, max: 16, shrink_after: period }));
    let t0 = Instant::now();
    let mut done = 0;
    while done < 12 {
        assert!(t0.elapsed() < Duration::from_secs(3), "{done} of 12 completed");
        l.wait(Some(Duration::from_millis(50))).unwrap();
        while let Ok(c) = l.completion() {
            assert_eq!(c.socket.provider(), Some(Provider::Fast));
            done += 1;
        }
    }
    let grown = l.counters();
    assert!(grown.auto_target >= 8, "grew by doubling: {grown:?}");
    let shrunk = loop {
        let c = l.counters();
        if c.auto_target == 1 {
            break c;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "did not shrink: {c:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    say!(
        "    A3 fast path: grew to {}, back to 1 after {:?}, {} accepts given back",
        grown.auto_target,
        t0.elapsed(),
        shrunk.auto_released
    );
    assert_eq!(shrunk.auto_posted, shrunk.completed + shrunk.auto_released + shrunk.posted as u64, "{shrunk:?}");
}

/// A Linux server in the namespace (on the tap's kernel side) that echoes each connection.
fn linux_echo_server() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let server = TcpListener::bind((HOST, 0)).unwrap();
    let at = server.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        if let Ok((mut s, _)) = server.accept() {
            let mut buf = [0u8; 8192];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    (at, h)
}

fn c1_c3_fast_path_connect_with_data(sw: &Switch) {
    let (to, server) = linux_echo_server();
    assert_eq!(sw.route(to), Provider::Fast);
    let mut s = sw.socket();
    s.bind(addr("0.0.0.0", 0)).unwrap();
    s.connect_ex(to, b"hello through the fast path", ConnectOptions { fast_open: true, ..Default::default() }).unwrap();
    let done = s.wait_connect(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(done.provider, Provider::Fast);
    assert_eq!(done.bytes_sent, 27);
    assert_eq!(done.fast_open, FastOpen::NotAvailable, "C3: said plainly, never a silent no-op");
    assert_eq!(done.local.ip().to_string(), FAST);
    let mut back = vec![0u8; 27];
    let mut got = 0;
    while got < 27 {
        got += s.read_blocking(&mut back[got..]).unwrap();
    }
    assert_eq!(&back, b"hello through the fast path");
    drop(s);
    server.join().unwrap();
}

/// C3 on the kernel path: TCP_FASTOPEN_CONNECT. The namespace allows Fast Open both ways
/// (`net.ipv4.tcp_fastopen = 3`); the first connection fetches a cookie, the next carries its
/// first data in the SYN.
fn c3_kernel_path_fast_open_carries_first_data_in_the_syn(sw: &Switch) {
    let l = sw.listen(addr("127.0.0.1", 7140), ListenOptions { fast_open: true, ..Default::default() }).unwrap();
    let mut seen = Vec::new();
    for round in 0..2 {
        let msg = format!("fast open round {round}");
        let mut s = sw.socket();
        s.bind(addr("127.0.0.1", 0)).unwrap();
        s.connect_ex(addr("127.0.0.1", 7140), msg.as_bytes(), ConnectOptions { fast_open: true, ..Default::default() })
            .unwrap();
        let done = s.wait_connect(Some(Duration::from_secs(5))).unwrap();
        assert_eq!((done.provider, done.bytes_sent), (Provider::Kernel, msg.len()));
        seen.push(done.fast_open);
        let mut a = accept(&l);
        let mut got = vec![0u8; msg.len()];
        let mut n = 0;
        while n < got.len() {
            n += a.read_blocking(&mut got[n..]).unwrap();
        }
        assert_eq!(got, msg.as_bytes());
    }
    assert_eq!(seen, [FastOpen::NotUsed, FastOpen::Used], "no cookie the first time, data in the SYN the second");
}

fn c4_errors_on_the_fast_path(sw: &Switch) {
    let bound = || {
        let mut s = sw.socket();
        s.bind(addr("0.0.0.0", 0)).unwrap();
        s
    };
    let quick = ConnectOptions { timeout: Some(Duration::from_secs(1)), ..Default::default() };
    let run = |s: &mut Socket, to: SocketAddr| {
        s.connect_ex(to, b"", quick.clone())?;
        s.wait_connect(Some(Duration::from_secs(5)))
    };
    // ECONNREFUSED: Linux answers a closed port with an RST. The socket may try again.
    let closed = TcpListener::bind((HOST, 0)).unwrap().local_addr().unwrap();
    let mut s = bound();
    assert_eq!(errno_of(run(&mut s, closed)), libc::ECONNREFUSED);
    let (to, server) = linux_echo_server();
    run(&mut s, to).expect("retry on the same socket after ECONNREFUSED (C4)");
    // EISCONN, EALREADY
    assert_eq!(errno_of(s.connect_ex(to, b"", quick.clone())), libc::EISCONN);
    drop(s);
    server.join().unwrap();
    let (to, server) = linux_echo_server();
    let mut s = bound();
    s.connect_ex(to, b"", quick.clone()).unwrap();
    assert_eq!(errno_of(s.connect_ex(to, b"", quick.clone())), libc::EALREADY);
    s.wait_connect(Some(Duration::from_secs(5))).unwrap();
    drop(s);
    server.join().unwrap();
    // EHOSTUNREACH: nobody answers ARP for this on-link address.
    let t = Instant::now();
    assert_eq!(errno_of(run(&mut bound(), addr("198.18.0.77", 80))), libc::EHOSTUNREACH);
    assert!(t.elapsed() < Duration::from_secs(3));
    // ETIMEDOUT: the host is there but drops the SYNs (a Linux listener whose accept queue is
    // full).
    let full = TcpListener::bind((HOST, 0)).unwrap();
    let full_at = full.local_addr().unwrap();
    // SAFETY: listen(2) on a socket this test owns, shrinking its backlog to 0 (a queue of one).
    unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&full), 0) };
    let _fill: Vec<TcpStream> =
        (0..2).filter_map(|_| TcpStream::connect_timeout(&full_at, Duration::from_millis(300)).ok()).collect();
    assert_eq!(errno_of(run(&mut bound(), full_at)), libc::ETIMEDOUT);
    // EADDRINUSE: bound to the port of a fast-path listener (the echo service).
    let mut s = sw.socket();
    s.bind(addr(FAST, 7)).unwrap();
    assert_eq!(errno_of(run(&mut s, addr(HOST, 9))), libc::EADDRINUSE);
    // EADDRNOTAVAIL, EAFNOSUPPORT, EINVAL, ENOBUFS: the call itself.
    assert_eq!(errno_of(bound().connect_ex(addr("0.0.0.0", 80), b"", quick.clone())), libc::EADDRNOTAVAIL);
    assert_eq!(errno_of(bound().connect_ex("[::1]:80".parse().unwrap(), b"", quick.clone())), libc::EAFNOSUPPORT);
    assert_eq!(errno_of(sw.socket().connect_ex(addr(HOST, 80), b"", quick.clone())), libc::EINVAL);
    let big = vec![0u8; 64 * 1024 + 1];
    assert_eq!(errno_of(bound().connect_ex(addr(HOST, 80), &big, quick.clone())), libc::ENOBUFS);
}

fn c4_network_errors_on_the_kernel_path(sw: &Switch) {
    let quick = ConnectOptions { timeout: Some(Duration::from_secs(1)), ..Default::default() };
    let run = |to: SocketAddr| {
        let mut s = sw.socket();
        s.bind(addr("0.0.0.0", 0)).unwrap();
        s.connect_ex(to, b"", quick.clone())?;
        s.wait_connect(Some(Duration::from_secs(5)))
    };
    // The namespace routes 198.19.6.0/24 as unreachable, 198.19.7.0/24 to the appliance (which
    // ignores it: SYNs go unanswered), and has no route for 198.19.8.0/24.
    assert_eq!(sw.route(addr("198.19.8.1", 80)), Provider::Kernel);
    assert_eq!(errno_of(run(addr("198.19.8.1", 80))), libc::ENETUNREACH);
    assert_eq!(errno_of(run(addr("198.19.6.1", 80))), libc::EHOSTUNREACH);
    assert_eq!(errno_of(run(addr("198.19.7.1", 80))), libc::ETIMEDOUT);
    assert_eq!(errno_of(run(addr("127.0.0.1", 1))), libc::ECONNREFUSED);
}

fn c6_fast_path_reconnect_waits_out_time_wait(sw: &Switch) {
    let server = TcpListener::bind((HOST, 0)).unwrap();
    let to = server.local_addr().unwrap();
    let srv = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = server.accept().unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink); // until the switch's FIN; then Linux closes too
        }
    });
    let mut s = sw.socket();
    s.bind(addr(FAST, 45000)).unwrap();
    s.connect_ex(to, b"one", ConnectOptions::default()).unwrap();
    s.wait_connect(Some(Duration::from_secs(5))).unwrap();
    s.disconnect().unwrap(); // the switch closes first: the 4-tuple enters TIME_WAIT here (2 s in this test)
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    s.connect_ex(to, b"two", ConnectOptions::default()).unwrap();
    let done = s.wait_connect(Some(Duration::from_secs(10))).unwrap();
    let waited = t.elapsed();
    assert_eq!(done.local, addr(FAST, 45000), "the same 4-tuple");
    say!("    C6 reconnect to the same remote from the same port waited {waited:?} (TIME_WAIT 2 s)");
    assert!(waited >= Duration::from_millis(1500), "waited out TIME_WAIT: {waited:?}");
    s.disconnect().unwrap();
    srv.join().unwrap();
}

fn c7_fast_path_failed_socket_refuses_reuse(sw: &Switch) {
    let server = TcpListener::bind((HOST, 0)).unwrap();
    let to = server.local_addr().unwrap();
    let mut s = sw.socket();
    s.bind(addr("0.0.0.0", 0)).unwrap();
    s.connect_ex(to, b"", ConnectOptions::default()).unwrap();
    s.wait_connect(Some(Duration::from_secs(5))).unwrap();
    let (peer, _) = server.accept().unwrap();
    socket2::SockRef::from(&peer).set_linger(Some(Duration::ZERO)).unwrap();
    drop(peer); // RST
    let mut buf = [0u8; 4];
    let e = s.read_blocking(&mut buf).expect_err("reset");
    assert_eq!(errno(&e), Some(libc::ECONNRESET));
    assert!(s.is_failed());
    assert_eq!(errno_of(s.connect_ex(to, b"", ConnectOptions::default())), libc::EBADFD);
    assert_eq!(errno_of(s.disconnect()), libc::EBADFD);
}

fn c6_accepted_fast_path_socket_cannot_connect(sw: &Switch) {
    let l = sw.listen(addr("0.0.0.0", 7130), ListenOptions::default()).unwrap();
    let _c = connect_linux(addr(FAST, 7130));
    let mut s = accept(&l);
    s.disconnect().unwrap();
    assert_eq!(errno_of(s.connect_ex(addr(HOST, 80), b"", ConnectOptions::default())), libc::EINVAL);
}

/// The `switch_client` example against an echo application on the switch, through the fast
/// path's address (the example itself has no DPDK port: its switch routes by the kernel).
fn examples_switch_client_against_a_switch_echo(sw: &Switch) {
    let l = sw.listen(addr("0.0.0.0", 7150), ListenOptions::default()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let client = exe.parent().and_then(|d| d.parent()).unwrap().join("examples/switch_client");
    if !client.exists() {
        // `cargo test` builds the examples; `cargo test --test switch` does not.
        let built = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", "switch_client", "-p", "switchyard-control"])
            .status();
        assert!(built.is_ok_and(|s| s.success()), "building the switch_client example");
    }
    let child = std::process::Command::new(&client)
        .args(["198.18.0.2:7150", "hello example"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    echo_on(accept(&l));
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("echoed: \"hello example\""), "{text}");
    assert!(text.contains("13 bytes sent with the connect"), "{text}");
}

type Scenario = (&'static str, fn(&Switch));

const SCENARIOS: &[Scenario] = &[
    ("l3_one_wildcard_listener_accepts_from_both_providers", l3_one_wildcard_listener_accepts_from_both_providers),
    ("l2_specific_addresses", l2_specific_addresses),
    ("l2_port_conflict_is_eaddrinuse_from_the_fast_path", l2_port_conflict_is_eaddrinuse_from_the_fast_path),
    (
        "l4_full_backlog_refuses_at_once_and_never_signals_the_event",
        l4_full_backlog_refuses_at_once_and_never_signals_the_event,
    ),
    ("b3_drop_policy_is_seen_as_a_retry", b3_drop_policy_is_seen_as_a_retry),
    ("a2_fast_path_completion_only_after_first_data", a2_fast_path_completion_only_after_first_data),
    (
        "a4_fast_path_silent_client_closed_unconnected_accept_kept",
        a4_fast_path_silent_client_closed_unconnected_accept_kept,
    ),
    ("a5_fast_path_connect_time", a5_fast_path_connect_time),
    ("a5_fast_path_accepted_connect_time_from_the_handshake", a5_fast_path_accepted_connect_time_from_the_handshake),
    ("a5_fast_path_outgoing_connect_time_before_the_poll", a5_fast_path_outgoing_connect_time_before_the_poll),
    (
        "a4_fast_path_silent_clock_from_the_connect_reaped_without_the_application",
        a4_fast_path_silent_clock_from_the_connect_reaped_without_the_application,
    ),
    ("a3_fast_path_auto_mode_grows_and_shrinks", a3_fast_path_auto_mode_grows_and_shrinks),
    ("c1_c3_fast_path_connect_with_data", c1_c3_fast_path_connect_with_data),
    ("c3_kernel_path_fast_open_carries_first_data_in_the_syn", c3_kernel_path_fast_open_carries_first_data_in_the_syn),
    ("c4_errors_on_the_fast_path", c4_errors_on_the_fast_path),
    ("c4_network_errors_on_the_kernel_path", c4_network_errors_on_the_kernel_path),
    ("c6_fast_path_reconnect_waits_out_time_wait", c6_fast_path_reconnect_waits_out_time_wait),
    ("c6_accepted_fast_path_socket_cannot_connect", c6_accepted_fast_path_socket_cannot_connect),
    ("c7_fast_path_failed_socket_refuses_reuse", c7_fast_path_failed_socket_refuses_reuse),
    ("examples_switch_client_against_a_switch_echo", examples_switch_client_against_a_switch_echo),
];

fn config(ns: &NetNs) -> Resolved {
    // SWITCH_TEST_CORES=1 runs the same scenarios on one engine.
    let cores: u16 = std::env::var("SWITCH_TEST_CORES").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let lcores: Vec<String> = (0..cores).map(|c| format!("{c}@(0-1)")).collect();
    let lcores = lcores.join(",");
    let text = format!(
        r#"[eal]
lcores = "{lcores}"
memory_mb = 128
file_prefix = "{prefix}"

[engine]
cores = {cores}
time_wait_secs = 2
drain_secs = 0

[[port]]
profile = "net_tap"
devargs = "iface={TAP}"
address = "{FAST}/24"

[[service]]
kind = "echo"
port = 7
"#,
        prefix = ns.name
    );
    Config::parse(&text, "switch test config", None).expect("valid test config")
}

/// What every scenario runs against: the appliance's switch, on a thread inside the namespace.
#[derive(Clone)]
struct Stage {
    ns: Arc<NetNs>,
    switch: Switch,
}

impl Stage {
    /// Runs a scenario on a thread inside the namespace; its panic is the trial's failure.
    fn run(self, scenario: fn(&Switch)) -> Result<(), Failed> {
        let sw = self.switch;
        let outcome = self.ns.spawn(move || scenario(&sw)).join();
        outcome.map_err(|panic| format!("test panicked: {}", panic_message(&*panic)).into())
    }
}

/// A panic's message, when it has one.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    let text = panic.downcast_ref::<String>().map(String::as_str).or_else(|| panic.downcast_ref::<&str>().copied());
    text.unwrap_or("(no message)")
}

/// One trial per scenario; each fails with `stage`'s error when there is no stage.
fn trials(stage: &Result<Stage, String>) -> Vec<Trial> {
    SCENARIOS
        .iter()
        .map(|&(name, scenario)| {
            let stage = stage.clone();
            Trial::test(name, move || match stage {
                Ok(stage) => stage.run(scenario),
                Err(why) => Err(why.into()),
            })
        })
        .collect()
}

/// Waits for the appliance's switch, then readies the namespace around it: the tap's kernel
/// side, the routes of the kernel-path scenarios, TCP Fast Open, and an answer on the echo port.
fn set_stage(ns: &NetNs, switch: mpsc::Receiver<Switch>) -> Result<Switch, String> {
    let sw = switch
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| "the appliance did not start (see its log above)".to_owned())?;
    ns.ip(&["addr", "add", &format!("{HOST}/24"), "dev", TAP]);
    ns.ip(&["link", "set", TAP, "up"]);
    ns.ip(&["route", "add", "unreachable", "198.19.6.0/24"]);
    ns.ip(&["route", "add", "198.19.7.0/24", "dev", TAP]);
    // net.ipv4.tcp_fastopen = 3 in the namespace (per-namespace; procps may be absent).
    let sysctl = ns.command("sh").args(["-c", "echo 3 > /proc/sys/net/ipv4/tcp_fastopen"]).status();
    if !sysctl.is_ok_and(|s| s.success()) {
        return Err("setting net.ipv4.tcp_fastopen=3 in the namespace failed".into());
    }
    let ready = ns.run(|| {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if TcpStream::connect_timeout(&addr(FAST, 7), Duration::from_millis(500)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    if !ready {
        return Err("the appliance's echo port never answered".into());
    }
    Ok(sw)
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // The scenarios share one appliance and measure its timing: one at a time, whatever
    // --test-threads says.
    args.test_threads = Some(1);
    let runs = |name: &str| {
        let probe = Trial::test(name, || Ok(()));
        !args.is_filtered_out(&probe) && !args.is_ignored(&probe)
    };
    if args.list || !SCENARIOS.iter().any(|&(name, _)| runs(name)) {
        // Nothing to run: no appliance either.
        return libtest_mimic::run(&args, trials(&Err("not set up".into()))).exit_code();
    }
    require_environment();
    let ns = Arc::new(NetNs::new("switch"));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let r = config(&ns);
    let app = {
        let stop = stop.clone();
        ns.spawn(move || {
            control::appliance::run_with_switch(&r, &stop, move |sw| {
                let _ = tx.send(sw);
            })
        })
    };
    let stage = catch_unwind(AssertUnwindSafe(|| set_stage(&ns, rx)))
        .unwrap_or_else(|panic| Err(format!("setting the stage failed: {}", panic_message(&*panic))))
        .map(|switch| Stage { ns: ns.clone(), switch });
    // A panic here is the printer's (stdout closed): the appliance is stopped all the same.
    let conclusion = catch_unwind(AssertUnwindSafe(|| libtest_mimic::run(&args, trials(&stage))));
    drop(stage);
    stop.store(true, Ordering::Relaxed);
    let outcome = app.join();
    // EAL unlinks its telemetry socket only at exit: take the whole runtime folder now.
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", ns.name));
    drop(ns); // the last reference (the trials are gone): deletes the namespace
    if let Ok(Err(e)) = &outcome {
        eprintln!("appliance: {e}");
        // Counted as a failure in the same format, so totals summed over `test result:` lines
        // (the Makefile's) include it.
        say!("\nfailures:\n    the appliance stopped with an error\n");
        say!("test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out");
        return ExitCode::from(101);
    }
    match conclusion {
        Ok(conclusion) => conclusion.exit_code(),
        Err(_) => ExitCode::from(101),
    }
}
