//! The switch on the kernel path over loopback, rule by rule. The same rules on the fast path
//! (and the kernel path's network errors, which need routes of their own) are proven in
//! `tests/switch.rs`, inside a namespace with the appliance on net_tap.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::*;

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn wouldblock<T: fmt::Debug>(r: io::Result<T>) -> bool {
    matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

fn errno_of<T: fmt::Debug>(r: io::Result<T>) -> i32 {
    let e = r.expect_err("an error");
    errno(&e).unwrap_or_else(|| panic!("no errno in {e}"))
}

fn listener(opts: ListenOptions) -> Listener {
    Switch::kernel_only().listen(any(), opts).expect("listen")
}

fn ready(l: &Listener) -> bool {
    l.wait(Some(Duration::ZERO)).unwrap()
}

/// Waits up to 2 s for the listener's event.
fn wait_ready(l: &Listener) -> bool {
    l.wait(Some(Duration::from_secs(2))).unwrap()
}

/// How far a kernel connect time may be off: the kernel's stamps are in jiffies (4 ms at
/// CONFIG_HZ=250, 10 ms at 100), and its report is in whole milliseconds.
const JIFFIES: Duration = Duration::from_millis(25);

/// Connects a plain client; returns it with instants taken just before and just after, between
/// which its handshake completed.
fn connect_timed(to: SocketAddr) -> (TcpStream, Instant, Instant) {
    let before = Instant::now();
    let c = TcpStream::connect(to).unwrap();
    (c, before, Instant::now())
}

/// `a - b` in milliseconds.
fn ms(a: Duration, b: Duration) -> f64 {
    (a.as_secs_f64() - b.as_secs_f64()) * 1e3
}

#[test]
fn l1_kernel_listener_first_and_l3_one_listener() {
    let l = listener(ListenOptions::default());
    assert_eq!(l.providers(), [Provider::Kernel], "no fast path: kernel only (L2)");
    let _c = TcpStream::connect(l.local_addr()).unwrap();
    assert!(wait_ready(&l));
    let s = l.accept().unwrap();
    assert_eq!(s.provider(), Some(Provider::Kernel));
}

#[test]
fn l5_accept_never_blocks_and_the_event_fires_exactly_when_a_connection_waits() {
    let l = listener(ListenOptions::default());
    assert!(wouldblock(l.accept()), "nothing waits: WouldBlock, never a block");
    assert!(!ready(&l), "no connection: the event is quiet");
    let _c1 = TcpStream::connect(l.local_addr()).unwrap();
    let _c2 = TcpStream::connect(l.local_addr()).unwrap();
    assert!(wait_ready(&l));
    l.accept().unwrap();
    assert!(ready(&l), "one more waits: still signalled");
    l.accept().unwrap();
    assert!(!ready(&l), "all taken: quiet again");
    assert!(wouldblock(l.accept()));
}

#[test]
fn l5_the_event_works_with_mio() {
    use mio::unix::SourceFd;
    use std::os::fd::AsRawFd;
    let l = listener(ListenOptions::default());
    let mut poll = mio::Poll::new().unwrap();
    let raw = l.as_fd().as_raw_fd();
    poll.registry().register(&mut SourceFd(&raw), mio::Token(7), mio::Interest::READABLE).unwrap();
    let mut events = mio::Events::with_capacity(4);
    poll.poll(&mut events, Some(Duration::from_millis(50))).unwrap();
    assert!(events.is_empty());
    let _c = TcpStream::connect(l.local_addr()).unwrap();
    poll.poll(&mut events, Some(Duration::from_secs(2))).unwrap();
    assert_eq!(events.iter().map(|e| e.token()).collect::<Vec<_>>(), [mio::Token(7)]);
    l.accept().unwrap();
}

/// L5 with tokio: the listener in an `AsyncFd`, awaited until readable, then accepted.
#[test]
#[allow(unsafe_code)] // tokio's AsyncFd::register is unsafe (I/O safety)
fn l5_the_event_works_with_tokio_asyncfd() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let listener = listener(ListenOptions::default());
        // SAFETY: the Listener owns its epoll fd, which stays open and the same for its whole life;
        // the AsyncFd owns the Listener.
        let l = unsafe { tokio::io::unix::AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE) }
            .map_err(|e| e.to_string())
            .unwrap();
        let at = l.get_ref().local_addr();
        let quiet = tokio::time::timeout(Duration::from_millis(50), l.readable()).await;
        assert!(quiet.is_err(), "no connection: not readable");
        let client = std::thread::spawn(move || TcpStream::connect(at).unwrap());
        let mut guard = tokio::time::timeout(Duration::from_secs(2), l.readable()).await.expect("woken").unwrap();
        let s = l.get_ref().accept().expect("a connection waits");
        assert_eq!(s.provider(), Some(Provider::Kernel));
        guard.clear_ready();
        drop(client.join().unwrap());
    });
}

#[test]
fn l5_accept_condition_rejects_with_rst_and_counts() {
    let l = listener(ListenOptions::default());
    let port = l.local_addr().port();
    l.set_accept_condition(move |p| p.remote.port() % 2 == 0 && p.local.port() == port);
    let mut accepted = 0;
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(TcpStream::connect(l.local_addr()).unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while l.counters().accepted_kernel < 6 && Instant::now() < deadline {
        while let Ok(s) = l.accept() {
            assert_eq!(s.peer_addr().unwrap().port() % 2, 0);
            accepted += 1;
        }
        l.wait(Some(Duration::from_millis(20))).unwrap();
    }
    let c = l.counters();
    assert_eq!(c.accepted_kernel, 6);
    assert_eq!(c.rejected + accepted, 6);
    // A rejected client sees a reset.
    for mut c in clients.into_iter().filter(|c| c.local_addr().unwrap().port() % 2 == 1) {
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let e = c.read(&mut [0u8; 8]).expect_err("reset");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    }
}

#[test]
fn a1_posted_accepts_complete_with_connections() {
    let l = listener(ListenOptions::default());
    let ids: Vec<u64> = (0..3).map(|_| l.post_accept(0)).collect();
    assert!(wouldblock(l.completion()));
    assert!(!ready(&l));
    let _c: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(l.local_addr()).unwrap()).collect();
    let mut got = Vec::new();
    while got.len() < 3 {
        assert!(wait_ready(&l), "completions signal the event");
        while let Ok(done) = l.completion() {
            assert!(done.data.is_empty());
            assert_eq!(done.socket.provider(), Some(Provider::Kernel));
            got.push(done.id);
        }
    }
    assert_eq!(got, ids, "in posting order");
    assert!(!ready(&l));
}

#[test]
fn a2_completion_only_after_first_data_delivered_with_it() {
    let l = listener(ListenOptions::default());
    let id = l.post_accept(100);
    let mut c = TcpStream::connect(l.local_addr()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(wouldblock(l.completion()), "connected but no data yet: not complete");
    assert_eq!(l.counters().matched, 1);
    assert!(!ready(&l), "and the event does not fire for it");
    c.write_all(b"first words").unwrap();
    assert!(wait_ready(&l), "first data fires the event");
    let done = l.completion().unwrap();
    assert_eq!((done.id, done.data.as_slice()), (id, &b"first words"[..]));
}

#[test]
fn a2_a_client_that_leaves_before_sending_does_not_use_up_the_accept() {
    let l = listener(ListenOptions::default());
    let id = l.post_accept(16);
    let c = TcpStream::connect(l.local_addr()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(wouldblock(l.completion()));
    drop(c);
    let mut c2 = TcpStream::connect(l.local_addr()).unwrap();
    c2.write_all(b"x").unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let done = loop {
        l.wait(Some(Duration::from_millis(50))).unwrap();
        if let Ok(d) = l.completion() {
            break d;
        }
        assert!(Instant::now() < deadline, "no completion");
    };
    assert_eq!((done.id, done.data.as_slice()), (id, &b"x"[..]));
    assert_eq!(l.counters().abandoned, 1);
}

#[test]
fn a3_event_fires_when_no_accept_is_posted_and_auto_mode_posts_more() {
    let l = listener(ListenOptions::default());
    let _c = TcpStream::connect(l.local_addr()).unwrap();
    assert!(wait_ready(&l), "a connection with no posted accept waiting fires the event");
    l.set_auto_post(0, 8);
    let done = l.completion().expect("auto mode posted an accept for it");
    assert!(done.data.is_empty());
    let c = l.counters();
    assert!(c.auto_posted >= 1 && c.auto_posted <= 8, "{c:?}");
    // A burst: the number outstanding grows, bounded by max.
    let _burst: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(l.local_addr()).unwrap()).collect();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while n < 20 && Instant::now() < deadline {
        l.wait(Some(Duration::from_millis(50))).unwrap();
        while l.completion().is_ok() {
            n += 1;
        }
    }
    assert_eq!(n, 20);
    let c = l.counters();
    assert!(c.posted <= 8, "bounded by max: {c:?}");
}

#[test]
fn a4_silent_client_closed_at_the_limit_while_an_unconnected_posted_accept_survives() {
    let l = listener(ListenOptions { silent_limit: Some(Duration::from_millis(300)), ..Default::default() });
    l.post_accept(64);
    l.post_accept(64); // never gets a client: not connected, never closed
    let t0 = Instant::now(); // the handshake completes after this
    let mut silent = TcpStream::connect(l.local_addr()).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The application does not call in: the listener's worker matches the client and resets it.
    assert_eq!(silent.read(&mut [0u8; 4]).unwrap_err().kind(), io::ErrorKind::ConnectionReset);
    let waited = t0.elapsed();
    assert!(waited + JIFFIES >= Duration::from_millis(300), "closed at the limit, not before: {waited:?}");
    assert!(!ready(&l), "a reset is the worker's business: nothing for the application");
    assert!(wouldblock(l.completion()));
    let c = l.counters();
    assert_eq!(c.silent_closed, 1, "{c:?}");
    assert_eq!(c.posted, 2, "both accepts still posted: the unconnected one untouched, the other re-posted");
}

/// A4 with the figures: a client connects, the application posts an accept with a
/// receive buffer 3 s later and then never calls in again; with a 4 s limit the client is reset
/// 4 s after it connected (want 4 to 5.5 s), not 4 s after the match.
#[test]
fn a4_silent_clock_starts_at_the_connect_not_the_match_and_needs_no_application() {
    let limit = Duration::from_secs(4);
    let l = listener(ListenOptions { silent_limit: Some(limit), ..Default::default() });
    let (mut silent, connecting, connected) = connect_timed(l.local_addr());
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    l.post_accept(64); // the last call into the listener until the reset
    let e = silent.read(&mut [0u8; 4]).unwrap_err();
    let (at, at_most) = (connected.elapsed(), connecting.elapsed());
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    println!("A4 kernel path: reset {at:?} after connecting, {:?} past the 4 s limit", at.saturating_sub(limit));
    assert!(
        at_most + JIFFIES >= limit && at <= Duration::from_millis(5500),
        "reset {at:?} after connecting; want 4-5.5 s"
    );
    let c = l.counters();
    assert_eq!((c.silent_closed, c.posted, c.matched), (1, 1, 0), "{c:?}");
}

/// A4: silent clients are reset on time by the listener's worker while the application sleeps;
/// each counts from its own handshake. Reports the largest delay past the limit.
#[test]
fn a4_silent_clients_are_reaped_on_time_without_the_application() {
    let limit = Duration::from_millis(1000);
    let l = listener(ListenOptions { silent_limit: Some(limit), ..Default::default() });
    for _ in 0..3 {
        l.post_accept(64);
    }
    let at = l.local_addr();
    let clients: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300 * i));
                let (mut c, connecting, connected) = connect_timed(at);
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let e = c.read(&mut [0u8; 4]).unwrap_err();
                (e.kind(), connected.elapsed(), connecting.elapsed())
            })
        })
        .collect();
    let mut late = Duration::ZERO;
    for c in clients {
        let (kind, after, at_most) = c.join().unwrap();
        assert_eq!(kind, io::ErrorKind::ConnectionReset);
        assert!(at_most + JIFFIES >= limit, "reset {after:?} after connecting: before the limit");
        assert!(after <= limit + Duration::from_millis(1500), "reset {after:?} after connecting: late");
        late = late.max(after.saturating_sub(limit));
    }
    println!("A4 kernel path: 3 silent clients reset at most {late:?} past the limit");
    let c = l.counters();
    assert_eq!((c.silent_closed, c.posted), (3, 3), "{c:?}");
}

/// A3 and L5: with accepts posted, an arriving connection goes to one of them without waking the
/// application; only a connection that finds none makes the event readable, and posting an accept
/// for it makes it quiet again.
#[test]
fn a3_event_fires_only_for_a_connection_that_finds_no_posted_accept() {
    let l = listener(ListenOptions::default());
    l.post_accept(64);
    let _c1 = TcpStream::connect(l.local_addr()).unwrap();
    assert!(!l.wait(Some(Duration::from_millis(300))).unwrap(), "a posted accept took it: quiet");
    assert_eq!(l.counters().matched, 1, "the worker matched it without the application");
    let _c2 = TcpStream::connect(l.local_addr()).unwrap();
    assert!(wait_ready(&l), "no posted accept for the second: the signal to post more");
    assert!(ready(&l), "level: stays readable until something changes");
    l.post_accept(64);
    assert!(!ready(&l), "the new accept took it: quiet again");
    assert_eq!(l.counters().matched, 2);
}

/// A3 both ways: twelve connections that find one posted accept grow the automatic mode's target
/// by doubling (1, 2, 4, 8); once arrivals stop, the unused posted accepts are given back by half
/// every period, down to the floor, by the worker.
#[test]
fn a3_auto_mode_grows_on_arrivals_and_shrinks_when_posted_accepts_sit_unused() {
    let l = listener(ListenOptions::default());
    let _clients: Vec<TcpStream> = (0..12).map(|_| TcpStream::connect(l.local_addr()).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100)); // all twelve queued in the kernel
    let period = Duration::from_millis(200);
    l.set_auto(Some(AutoPost { receive_len: 0, min: 1, max: 16, shrink_after: period }));
    let t0 = Instant::now();
    let mut done = 0;
    while done < 12 {
        assert!(t0.elapsed() < Duration::from_secs(3), "{done} of 12 completed");
        l.wait(Some(Duration::from_millis(50))).unwrap();
        while l.completion().is_ok() {
            done += 1;
        }
    }
    let grown = l.counters();
    assert!(grown.auto_target >= 8 && grown.auto_target <= 16, "grew by doubling: {grown:?}");
    // Arrivals stop: the target halves its unused margin every period.
    let shrunk = loop {
        let c = l.counters();
        if c.auto_target == 1 {
            break c;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "did not shrink: {c:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(t0.elapsed() >= period * 3, "one halving per period: {:?}", t0.elapsed());
    assert_eq!(shrunk.posted, 1, "{shrunk:?}");
    assert!(shrunk.auto_released >= 7, "{shrunk:?}");
    assert_eq!(
        shrunk.auto_posted,
        shrunk.completed + shrunk.auto_released + shrunk.posted as u64,
        "every auto-posted accept completed, was given back, or waits: {shrunk:?}"
    );
}

/// A5: an accepted connection's connect time counts from its handshake, not from `accept`: 2.2 s
/// in the queue reads 2 s. Data the client sent meanwhile does not move it.
#[test]
fn a5_accepted_connection_counts_from_the_handshake_not_the_accept() {
    let l = listener(ListenOptions::default());
    let (mut c, connecting, connected) = connect_timed(l.local_addr());
    std::thread::sleep(Duration::from_millis(1000));
    c.write_all(b"early").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let before = connected.elapsed();
    let s = l.accept().unwrap();
    let ConnectTime::Connected(d) = s.connect_time() else { panic!("not connected") };
    let after = connecting.elapsed();
    println!("A5 kernel path, accepted: reads {d:?}, the client says {before:?} (error {:+.1} ms)", ms(d, before));
    assert!(d + JIFFIES >= before && d <= after + JIFFIES, "{d:?} outside {before:?}..{after:?}");
    assert_eq!(s.connect_time().as_seconds_or_max(), 2);
}

/// A5: an outgoing connection is connected from its handshake on, whether or not the application
/// has polled its completion: 2.2 s after the handshake it reads 2 s before the poll and after.
#[test]
fn a5_outgoing_connection_counts_from_the_handshake_not_the_poll() {
    let server = TcpListener::bind(any()).unwrap();
    let mut s = Switch::kernel_only().socket();
    s.bind(any()).unwrap();
    let connecting = Instant::now();
    s.connect_ex(server.local_addr().unwrap(), b"first", ConnectOptions::default()).unwrap();
    let (mut peer, _) = server.accept().unwrap(); // the handshake is complete
    let connected = Instant::now();
    std::thread::sleep(Duration::from_millis(2200));
    let before = connected.elapsed();
    let ConnectTime::Connected(d) = s.connect_time() else { panic!("connected, not yet polled") };
    let after = connecting.elapsed();
    println!(
        "A5 kernel path, outgoing: reads {d:?} before the poll, the server says {before:?} (error {:+.1} ms)",
        ms(d, before)
    );
    assert!(d + JIFFIES >= before && d <= after + JIFFIES, "{d:?} outside {before:?}..{after:?}");
    assert_eq!(s.connect_time().as_seconds_or_max(), 2);
    assert_eq!(s.poll_connect().unwrap().bytes_sent, 5, "the first buffer goes at the poll");
    assert_eq!(s.connect_time().as_seconds_or_max(), 2, "and the poll does not reset the clock");
    let mut got = [0u8; 5];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"first");
}

/// A5: "not connected" while the handshake is in progress. The server's accept queue is full, so
/// Linux drops the SYN; once there is room the retransmitted SYN (1 s later) completes it, and
/// the connect time counts from then, not from `connect_ex`.
#[test]
fn a5_not_connected_until_the_handshake_completes() {
    let server = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    server.bind(&any().into()).unwrap();
    server.listen(0).unwrap(); // an accept queue of one
    let to = server.local_addr().unwrap().as_socket().unwrap();
    let filler = TcpStream::connect(to).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut s = Switch::kernel_only().socket();
    s.bind(any()).unwrap();
    let t0 = Instant::now();
    s.connect_ex(to, b"", ConnectOptions::default()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.connect_time(), ConnectTime::NotConnected, "the SYN was dropped: no handshake yet");
    assert_eq!(s.connect_time().as_seconds_or_max(), 0xFFFF_FFFF);
    drop(server.accept().unwrap()); // room for the retransmitted SYN
    drop(filler);
    let d = loop {
        if let ConnectTime::Connected(d) = s.connect_time() {
            break d;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "never connected");
        std::thread::sleep(Duration::from_millis(5));
    };
    let since_connect_ex = t0.elapsed();
    assert!(since_connect_ex >= Duration::from_millis(900), "the SYN was retransmitted: {since_connect_ex:?}");
    assert!(
        d + Duration::from_millis(700) <= since_connect_ex,
        "counted from the handshake, not from connect_ex: {d:?}"
    );
    s.poll_connect().unwrap();
}

#[test]
fn a5_connect_time_seconds_or_not_connected() {
    let l = listener(ListenOptions::default());
    let mut s = Switch::kernel_only().socket();
    assert_eq!(s.connect_time(), ConnectTime::NotConnected);
    assert_eq!(s.connect_time().as_seconds_or_max(), 0xFFFF_FFFF);
    s.bind(any()).unwrap();
    s.connect_ex(l.local_addr(), b"", ConnectOptions::default()).unwrap();
    s.wait_connect(Some(Duration::from_secs(2))).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    match s.connect_time() {
        ConnectTime::Connected(d) => assert!(d >= Duration::from_millis(20) && d < Duration::from_secs(5)),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.connect_time().as_seconds_or_max(), 0);
}

#[test]
fn c1_connect_with_data_completes_through_the_event_with_bytes_sent() {
    let server = TcpListener::bind(any()).unwrap();
    let mut s = Switch::kernel_only().socket();
    s.bind(any()).unwrap();
    let first = vec![7u8; 50_000];
    s.connect_ex(server.local_addr().unwrap(), &first, ConnectOptions::default()).unwrap();
    assert!(s.event_fd().is_some());
    let done = s.wait_connect(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(done.bytes_sent, first.len());
    assert_eq!(done.provider, Provider::Kernel);
    assert_eq!(done.fast_open, FastOpen::NotRequested);
    let (mut peer, _) = server.accept().unwrap();
    let mut got = vec![0u8; first.len()];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(got, first);
}

#[test]
fn c1_many_connects_driven_by_one_thread() {
    let server = TcpListener::bind(any()).unwrap();
    let switch = Switch::kernel_only();
    let mut socks: Vec<Socket> = (0..50)
        .map(|i| {
            let mut s = switch.socket();
            s.bind(any()).unwrap();
            s.connect_ex(server.local_addr().unwrap(), format!("hello {i}").as_bytes(), ConnectOptions::default())
                .unwrap();
            s
        })
        .collect();
    let mut done = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while done < socks.len() && Instant::now() < deadline {
        for s in socks.iter_mut() {
            if s.peer_addr().is_some() && s.poll_connect().is_ok() {
                done += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(done, 50);
}

#[test]
fn c2_unbound_socket_is_einval_and_implicit_bind_works() {
    let server = TcpListener::bind(any()).unwrap();
    let switch = Switch::kernel_only();
    let mut s = switch.socket();
    assert_eq!(errno_of(s.connect_ex(server.local_addr().unwrap(), b"", ConnectOptions::default())), libc::EINVAL);
    let mut s = switch.connect_ex(server.local_addr().unwrap(), b"hi", ConnectOptions::default()).unwrap();
    assert_eq!(s.wait_connect(Some(Duration::from_secs(2))).unwrap().bytes_sent, 2);
}

#[test]
fn c4_errors_on_the_kernel_path_over_loopback() {
    let switch = Switch::kernel_only();
    let bound = || {
        let mut s = switch.socket();
        s.bind(any()).unwrap();
        s
    };
    let opts = ConnectOptions::default;
    // ECONNREFUSED: nobody listens; the socket may connect again afterwards.
    // Port 1 (tcpmux) has no listener. A just-closed ephemeral port would not do: the kernel may
    // pick that same port as the source, and a socket connects to itself.
    let closed: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let mut s = bound();
    s.connect_ex(closed, b"", opts()).unwrap();
    assert_eq!(errno_of(s.wait_connect(Some(Duration::from_secs(2)))), libc::ECONNREFUSED);
    let server = TcpListener::bind(any()).unwrap();
    s.connect_ex(server.local_addr().unwrap(), b"", opts()).expect("retry on the same socket (C4)");
    s.wait_connect(Some(Duration::from_secs(2))).unwrap();
    // EISCONN
    assert_eq!(errno_of(s.connect_ex(server.local_addr().unwrap(), b"", opts())), libc::EISCONN);
    // EALREADY
    let mut s = bound();
    s.connect_ex(server.local_addr().unwrap(), b"", opts()).unwrap();
    assert_eq!(errno_of(s.connect_ex(server.local_addr().unwrap(), b"", opts())), libc::EALREADY);
    // EADDRNOTAVAIL: all-zero remote, port 0.
    assert_eq!(errno_of(bound().connect_ex("0.0.0.0:80".parse().unwrap(), b"", opts())), libc::EADDRNOTAVAIL);
    assert_eq!(errno_of(bound().connect_ex("127.0.0.1:0".parse().unwrap(), b"", opts())), libc::EADDRNOTAVAIL);
    // EAFNOSUPPORT: an IPv4-bound socket toward IPv6.
    assert_eq!(errno_of(bound().connect_ex("[::1]:80".parse().unwrap(), b"", opts())), libc::EAFNOSUPPORT);
    // EINVAL: unbound.
    assert_eq!(errno_of(switch.socket().connect_ex(server.local_addr().unwrap(), b"", opts())), libc::EINVAL);
    // ENOBUFS: a first buffer over the bound (C5).
    let big = vec![0u8; switch.inner.cfg.max_first_data + 1];
    assert_eq!(errno_of(bound().connect_ex(server.local_addr().unwrap(), &big, opts())), libc::ENOBUFS);
    // EADDRINUSE: bound to a port a listener holds.
    let mut s = switch.socket();
    s.bind(server.local_addr().unwrap()).unwrap();
    let other = TcpListener::bind(any()).unwrap();
    let r = s.connect_ex(other.local_addr().unwrap(), b"", opts()).and_then(|_| s.wait_connect(None).map(|_| ()));
    assert_eq!(errno_of(r), libc::EADDRINUSE);
}

#[test]
fn c6_disconnect_returns_to_bound_and_reconnects_but_accepted_sockets_cannot_connect() {
    let l = listener(ListenOptions::default());
    let switch = Switch::kernel_only();
    let mut s = switch.socket();
    s.bind(any()).unwrap();
    s.connect_ex(l.local_addr(), b"one", ConnectOptions::default()).unwrap();
    s.wait_connect(Some(Duration::from_secs(2))).unwrap();
    assert!(wait_ready(&l));
    let mut accepted = l.accept().unwrap();
    s.disconnect().unwrap();
    assert_eq!(s.connect_time(), ConnectTime::NotConnected);
    assert!(s.local_addr().is_some() && s.peer_addr().is_none(), "bound, not connected");
    // Reusable for connect...
    let other = TcpListener::bind(any()).unwrap();
    s.connect_ex(other.local_addr().unwrap(), b"two", ConnectOptions::default()).unwrap();
    assert_eq!(s.wait_connect(Some(Duration::from_secs(2))).unwrap().bytes_sent, 3);
    // ...but a reused accepted socket is not.
    accepted.disconnect().unwrap();
    assert_eq!(
        errno_of(accepted.connect_ex(other.local_addr().unwrap(), b"", ConnectOptions::default())),
        libc::EINVAL
    );
}

#[test]
fn c7_reuse_of_a_socket_that_failed_is_an_explicit_error() {
    let l = listener(ListenOptions::default());
    let mut s = Switch::kernel_only().socket();
    s.bind(any()).unwrap();
    s.connect_ex(l.local_addr(), b"", ConnectOptions::default()).unwrap();
    s.wait_connect(Some(Duration::from_secs(2))).unwrap();
    assert!(wait_ready(&l));
    l.accept().unwrap().abort(); // the peer resets
    let mut buf = [0u8; 8];
    let deadline = Instant::now() + Duration::from_secs(2);
    let e = loop {
        match s.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => break e,
            Ok(n) => panic!("read {n}"),
        }
        assert!(Instant::now() < deadline);
    };
    assert_eq!(errno(&e), Some(libc::ECONNRESET));
    assert!(s.is_failed());
    assert_eq!(errno_of(s.disconnect()), libc::EBADFD);
    assert_eq!(errno_of(s.connect_ex(l.local_addr(), b"", ConnectOptions::default())), libc::EBADFD);
}

#[test]
fn listen_conflict_is_eaddrinuse_from_the_kernel_path() {
    let l = listener(ListenOptions::default());
    let e = Switch::kernel_only().listen(l.local_addr(), ListenOptions::default()).unwrap_err();
    assert_eq!(errno(&e), Some(libc::EADDRINUSE));
    assert!(e.to_string().contains("kernel path"), "{e}");
}

#[test]
fn route_picks_the_fast_path_for_its_subnet_only() {
    let port = FastPort { address: "198.18.0.2".parse().unwrap(), prefix_len: 24, gateway: None };
    let fast = FastPath::new(port, vec![Arc::new(runtime::bridge::Commands::new(4))]);
    let switch = Switch::new(Some(fast), SwitchConfig::default());
    assert_eq!(switch.route("198.18.0.1:80".parse().unwrap()), Provider::Fast);
    assert_eq!(switch.route("198.19.0.1:80".parse().unwrap()), Provider::Kernel);
    assert_eq!(switch.route("127.0.0.1:80".parse().unwrap()), Provider::Kernel);
    assert_eq!(switch.route("[::1]:80".parse().unwrap()), Provider::Kernel);
    assert!(switch.listens_on_fast_path("0.0.0.0:80".parse().unwrap()));
    assert!(switch.listens_on_fast_path("198.18.0.2:80".parse().unwrap()));
    assert!(!switch.listens_on_fast_path("127.0.0.1:80".parse().unwrap()), "L2: kernel-only address");
    // A configured route through the port's gateway.
    let port = FastPort { gateway: Some("198.18.0.1".parse().unwrap()), ..port };
    let fast = FastPath::new(port, vec![Arc::new(runtime::bridge::Commands::new(4))]);
    let cfg = SwitchConfig { fast_routes: vec![("198.19.0.0".parse().unwrap(), 16)], ..Default::default() };
    let switch = Switch::new(Some(fast), cfg);
    assert_eq!(switch.route("198.19.200.1:80".parse().unwrap()), Provider::Fast);
    assert_eq!(switch.route("198.20.0.1:80".parse().unwrap()), Provider::Kernel);
}

#[test]
fn c5_first_buffer_up_to_the_bound_goes_whole_and_over_it_is_enobufs() {
    let server = TcpListener::bind(any()).unwrap();
    let to = server.local_addr().unwrap();
    let switch = Switch::kernel_only();
    let bound = switch.inner.cfg.max_first_data;
    let first: Vec<u8> = (0..bound).map(|i| (i % 251) as u8).collect();
    let reader = std::thread::spawn(move || {
        let (mut peer, _) = server.accept().unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        got
    });
    let mut s = switch.socket();
    s.bind(any()).unwrap();
    s.connect_ex(to, &first, ConnectOptions::default()).unwrap();
    let done = s.wait_connect(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(done.bytes_sent, bound, "the whole first buffer, in one call");
    s.shutdown_write().unwrap();
    assert_eq!(reader.join().unwrap(), first);
    let mut over = switch.socket();
    over.bind(any()).unwrap();
    let e = over.connect_ex(done.remote, &vec![0u8; bound + 1], ConnectOptions::default()).unwrap_err();
    assert_eq!(errno(&e), Some(libc::ENOBUFS));
    assert!(e.to_string().contains("C5"), "{e}");
}
