//! Connection exhaustion: real handshakes that then stay silent, and slow senders, against an
//! HTTP service with a short header timeout and an engine with a small `max_connections`.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::support::{median, Counters};
use crate::common::{require_environment, Appliance, NetNs, APPLIANCE};

/// The engine's bound, and how the test fills it.
const MAX_CONNECTIONS: u64 = 24;
const SILENT: usize = 16;
const SLOW: usize = 8;
/// Attempts while the bound is held.
const EXTRA: usize = 8;
/// The HTTP service's `header_timeout_secs` on port 8080.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How one held connection ended: after how long, and what it read.
struct Ended {
    after: Duration,
    read: String,
}

/// A client that connects to 8080 and then, if `slow`, sends a request head a byte every 250 ms
/// (it would take seconds to finish), else nothing; until the appliance closes the connection.
fn hold(slow: bool) -> Result<Ended, String> {
    let t = Instant::now();
    let s = TcpStream::connect_timeout(&SocketAddr::from((APPLIANCE, 8080)), Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(250))).unwrap();
    let head = b"GET /a-long-path-sent-slowly HTTP/1.1\r\nHost: 198.18.0.2\r\n\r\n";
    let mut read = Vec::new();
    let mut sent = 0;
    while t.elapsed() < Duration::from_secs(10) {
        if slow && sent < head.len() && read.is_empty() {
            // After the appliance closed, a write may fail: the read below says how it ended.
            if (&s).write_all(&head[sent..sent + 1]).is_ok() {
                sent += 1;
            }
        }
        let mut buf = [0u8; 512];
        match (&s).read(&mut buf) {
            Ok(0) => return Ok(Ended { after: t.elapsed(), read: String::from_utf8_lossy(&read).into() }),
            Ok(n) => read.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("after {:?} and {sent} bytes: {e}", t.elapsed())),
        }
    }
    Err(format!("still open after {:?}, {sent} bytes sent", t.elapsed()))
}

/// One GET on port `port` (Connection: close): the status line.
fn get(port: u16) -> Result<String, String> {
    let s = TcpStream::connect_timeout(&SocketAddr::from((APPLIANCE, port)), Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    (&s).write_all(b"GET / HTTP/1.1\r\nHost: 198.18.0.2\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    (&s).read_to_string(&mut text).map_err(|e| format!("read: {e}"))?;
    Ok(text.lines().next().unwrap_or("").to_owned())
}

/// Silent clients and slow senders hold every connection the engine allows
/// (`engine.max_connections`): further SYNs are refused at once (L4: ECONNREFUSED, not a
/// timeout) and counted (`over_max_connections`, the listener's `refused`), an ordinary client
/// among them; the HTTP service answers each held connection 408 and closes it once its request
/// head has not come whole within `header_timeout_secs` (the slow sender's trickle does not
/// extend it); then an ordinary client is served again.
#[test]
fn l4_silent_and_slow_clients_are_reaped_and_max_connections_holds() {
    require_environment();
    let ns = NetNs::new("exhaust");
    let engine = format!("max_connections = {MAX_CONNECTIONS}\n");
    let extra =
        format!("\n[[service]]\nkind = \"http\"\nport = 8080\nheader_timeout_secs = {}\n", HEADER_TIMEOUT.as_secs());
    let app = Appliance::start_tuned(&ns, "syexhst", 1, 0, &engine, &extra, &[]);
    let wait_open = |n: u64| {
        let start = Instant::now();
        loop {
            let open = Counters::read(&ns).lane("open");
            if open == n || start.elapsed() > Duration::from_secs(5) {
                return open;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert_eq!(wait_open(0), 0, "the harness's probe connection ended");
    let before = Counters::read(&ns);
    let t0 = Instant::now();
    let held: Vec<_> = (0..SILENT + SLOW).map(|i| ns.spawn(move || hold(i >= SILENT))).collect();
    let full = wait_open(MAX_CONNECTIONS);
    let filled_in = t0.elapsed();
    // While the bound holds: more clients, and an ordinary GET and echo among them.
    let (refusals, ordinary) = ns.run(|| {
        let refusals: Vec<(Duration, Result<TcpStream, std::io::Error>)> = (0..EXTRA)
            .map(|_| {
                let t = Instant::now();
                let r = TcpStream::connect_timeout(&SocketAddr::from((APPLIANCE, 8080)), Duration::from_secs(3));
                (t.elapsed(), r)
            })
            .collect();
        (refusals, (get(80), TcpStream::connect_timeout(&SocketAddr::from((APPLIANCE, 7)), Duration::from_secs(3))))
    });
    let during = Counters::read(&ns);
    let ended: Vec<Result<Ended, String>> = held.into_iter().map(|h| h.join().expect("a holder")).collect();
    let reaped_in = t0.elapsed();
    assert_eq!(wait_open(0), 0, "every held connection ended");
    let served = ns.run(|| (get(8080), get(80), crate::common::echo(b"still here".to_vec())));
    let after = Counters::read(&ns);

    let refused = refusals.iter().filter(|(_, r)| r.as_ref().is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused));
    let refused = refused.count();
    let mut refuse_times: Vec<Duration> = refusals.iter().map(|(t, _)| *t).collect();
    let mut silent_ends: Vec<Duration> =
        ended[..SILENT].iter().filter_map(|e| e.as_ref().ok().map(|e| e.after)).collect();
    let mut slow_ends: Vec<Duration> =
        ended[SILENT..].iter().filter_map(|e| e.as_ref().ok().map(|e| e.after)).collect();
    let over = during.lane("over_max_connections") - before.lane("over_max_connections");
    let listener_refused = during.listener(8080, "refused") - before.listener(8080, "refused");
    eprintln!(
        "{} held (filled in {filled_in:.2?}, open {full}); {refused} of {EXTRA} extra refused (median {:.2?}), \
         ordinary GET {:?}, echo {:?}; over_max_connections +{over}, 8080 refused +{listener_refused}; \
         silent closed after median {:.2?}, slow after {:.2?} (all by {reaped_in:.2?}); \
         afterwards GET 8080 {:?}, GET 80 {:?}, echo {:?}",
        SILENT + SLOW,
        median(&mut refuse_times),
        ordinary.0,
        ordinary.1.as_ref().map(|_| "connected").map_err(|e| e.kind()),
        median(&mut silent_ends),
        median(&mut slow_ends),
        served.0,
        served.1,
        String::from_utf8_lossy(&served.2),
    );
    assert_eq!(full, MAX_CONNECTIONS, "the held connections fill the bound");
    assert_eq!(refused, EXTRA, "every extra client refused: {refusals:?}");
    assert!(refuse_times.iter().all(|t| *t < Duration::from_millis(500)), "refused at once: {refuse_times:?}");
    assert!(ordinary.0.as_ref().is_err_and(|e| e.contains("refused")), "GET while full: {:?}", ordinary.0);
    assert!(ordinary.1.as_ref().is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused), "echo while full");
    // EXTRA on 8080, the GET on 80 and the echo on 7.
    assert_eq!(over, EXTRA as u64 + 2, "counted");
    assert_eq!(listener_refused, EXTRA as u64, "counted by the listener");
    for (i, e) in ended.iter().enumerate() {
        let e = e.as_ref().unwrap_or_else(|err| panic!("held connection {i}: {err}"));
        assert!(e.read.starts_with("HTTP/1.1 408"), "held connection {i} read {:?}", e.read);
        let late = HEADER_TIMEOUT + Duration::from_millis(1500);
        assert!(e.after >= HEADER_TIMEOUT - Duration::from_millis(100) && e.after < late, "closed after {:?}", e.after);
    }
    assert_eq!(served.0.as_deref(), Ok("HTTP/1.1 200 OK"), "an ordinary client on 8080 afterwards");
    assert_eq!(served.1.as_deref(), Ok("HTTP/1.1 200 OK"), "an ordinary client on 80 afterwards");
    assert_eq!(served.2, b"still here");
    assert_eq!(after.lane("open"), 0);
    let (status, log) = app.stop();
    assert!(status.success(), "exit status {status}; log:\n{log}");
}
