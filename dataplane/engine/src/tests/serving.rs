//! The built-in services over the engine: echo and HTTP end to end, refusals for closed ports, classification for a gateway, configuration errors.

use super::*;

#[test]
fn echo_round_trip_of_one_mib_has_equal_sha256() {
    let mut p = Pair::new(&config());
    let h = p.connect(7, 40000);
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let (mut sent, mut got) = (0usize, Vec::new());
    let ok = p.run_until(100_000, |p| {
        let s = p.sock(h);
        if s.can_send() && sent < data.len() {
            sent += s.send_slice(&data[sent..]).unwrap();
        }
        p.recv_all(h, &mut got);
        got.len() == data.len()
    });
    assert!(ok, "echoed {} of {} bytes", got.len(), data.len());
    assert_eq!(Sha256::digest(&got), Sha256::digest(&data));
    assert_eq!(p.engine.stats().established, 1);
}

/// A client whose TIME_WAIT table is full (Linux keeps 131,072 entries per namespace, then closes
/// without one) can open a new connection on a 4-tuple at once: its last ACK of the old connection
/// and the new SYN reach the engine in one burst. The SYN is a new connection for the listener,
/// not a segment for the old connection's socket, which smoltcp has just closed and which would
/// answer with an RST ("Connection refused", seen from a load generator's short connections).
#[test]
fn a_syn_right_behind_the_last_ack_on_its_four_tuple_opens_a_new_connection() {
    let mut p = Pair::new(&config());
    let old = p.connect(7, 40002);
    assert!(p.run_until(100, |p| p.sock(old).may_send()));
    p.sock(old).set_ack_delay(None); // its ACK of the engine's FIN leaves with the next poll
    p.sock(old).send_slice(b"ping").unwrap();
    p.sock(old).close();
    // The client's data and FIN go; the echo service answers and closes: the engine's FIN waits
    // in the client's inbound queue.
    p.client_poll();
    p.engine_poll();
    assert!(p.cdev.pending() > 0, "the engine answered");
    // The old socket takes the engine's FIN and sends its last ACK; the new socket's SYN, on the
    // same 4-tuple, leaves in the same client poll, behind it. The engine gets both in one burst.
    let new = p.connect(7, 40002);
    p.client_poll();
    assert_eq!(p.sock(old).state(), tcp::State::TimeWait);
    assert_eq!(p.edev.pending(), 2, "the last ACK and the new SYN");
    p.sockets.remove(old); // the client forgets it, as Linux does without a TIME_WAIT entry
    assert!(p.run_until(100, |p| p.sock(new).state() != tcp::State::SynSent), "the new SYN got an answer");
    assert_eq!(p.sock(new).state(), tcp::State::Established, "the new connection is accepted, not reset");
    let st = p.engine.listener_stats(7).unwrap();
    assert_eq!((st.syns, st.completed, st.refused), (2, 2, 0), "{st:?}");
    assert_eq!(p.engine.stats().no_listener, 0);
    let (open, closed) = (p.engine.stats().open, p.engine.stats().closed);
    assert_eq!((open, closed), (1, 1), "the old connection ended, the new one is open");
    // And the new connection works.
    p.sock(new).send_slice(b"pong").unwrap();
    let mut got = Vec::new();
    assert!(p.run_until(100, |p| {
        p.recv_all(new, &mut got);
        got == b"pong"
    }));
}

#[test]
fn echo_closes_after_peer_fin_and_frees_the_connection() {
    let mut p = Pair::new(&config());
    let h = p.connect(7, 40001);
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    p.sock(h).send_slice(b"ping").unwrap();
    p.sock(h).close();
    let mut got = Vec::new();
    assert!(p.run_until(1000, |p| {
        p.recv_all(h, &mut got);
        matches!(p.sock(h).state(), tcp::State::TimeWait | tcp::State::Closed)
    }));
    assert_eq!(got, b"ping");
    // The engine frees the socket once smoltcp reports it closed (LAST_ACK -> CLOSED).
    assert!(p.run_until(1000, |p| p.engine.stats().open == 0));
    assert_eq!(p.engine.stats().closed, 1);
}

#[test]
fn http_keep_alive_serves_many_requests_on_one_connection() {
    let mut p = Pair::new(&config());
    let h = p.connect(80, 40002);
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    let mut got = Vec::new();
    for i in 0..200 {
        p.sock(h).send_slice(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let want = (i + 1) * b"hello\n".len();
        assert!(p.run_until(1000, |p| {
            p.recv_all(h, &mut got);
            got.windows(6).filter(|w| w == b"hello\n").count() * 6 == want
        }));
    }
    assert_eq!(p.engine.stats().established, 1);
    assert!(p.sock(h).is_active());
}

/// Slow senders on the HTTP service: a client that trickles a request head, one that sends
/// nothing, and one idle after its response are each answered 408 and closed once the header
/// timeout has passed since the connection started (or its last response was queued); a client
/// that completes its head in time is served.
#[test]
fn http_header_timeout_closes_slow_and_silent_clients() {
    let mut cfg = config();
    let http = HttpConfig::new(b"hello\n", "text/plain").with_header_timeout(std::time::Duration::from_secs(5));
    cfg.listeners[1].service = ServiceKind::Http(Arc::new(http));
    let mut p = Pair::new(&cfg);
    let (slow, silent, served) = (p.connect(80, 47000), p.connect(80, 47001), p.connect(80, 47002));
    assert!(p.run_until(100, |p| [slow, silent, served].iter().all(|&h| p.sock(h).may_send())));
    let mut got = [Vec::new(), Vec::new(), Vec::new()];
    for (i, piece) in [&b"GET / H"[..], b"TTP/1.1\r\n", b"Host: t\r\n"].iter().enumerate() {
        p.sock(slow).send_slice(piece).unwrap();
        if i == 0 {
            p.sock(served).send_slice(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        }
        p.step_by(Duration::from_millis(1500));
    }
    p.recv_all(served, &mut got[2]);
    assert!(got[2].ends_with(b"hello\n"), "served in time: {:?}", String::from_utf8_lossy(&got[2]));
    assert!(p.sock(slow).may_recv() && p.sock(silent).may_recv(), "nothing closed before the timeout");
    // 4.5 s in; the served response left at 1.5 s: both timeouts pass by 6.5 s.
    p.run_until(3000, |_| false);
    for (i, h) in [slow, silent, served].into_iter().enumerate() {
        p.recv_all(h, &mut got[i]);
        assert!(!p.sock(h).may_recv(), "client {i} closed by the engine");
    }
    for g in &got[..2] {
        assert!(g.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"), "{:?}", String::from_utf8_lossy(g));
    }
    let idle = String::from_utf8_lossy(&got[2]);
    assert!(idle.contains("hello\nHTTP/1.1 408 Request Timeout\r\n"), "the idle one: {idle:?}");
}

#[test]
fn syn_to_a_closed_port_is_refused() {
    let mut p = Pair::new(&config());
    let h = p.connect(9, 40003);
    assert!(p.run_until(100, |p| p.sock(h).state() == tcp::State::Closed), "RST closes the client at once");
    assert_eq!(p.engine.stats().established, 0);
}

#[test]
fn a_burst_of_syns_beyond_the_backlog_is_all_served() {
    // 20 clients connect in the same instant; the listener keeps only a couple of LISTEN sockets
    // armed and re-arms after each SYN (DESIGN fact 6), so none is refused.
    let mut p = Pair::new(&config());
    let handles: Vec<_> = (0..20).map(|i| p.connect(7, 41000 + i)).collect();
    let mut done = vec![false; handles.len()];
    let ok = p.run_until(5_000, |p| {
        for (i, h) in handles.iter().enumerate() {
            let s = p.sock(*h);
            assert_ne!(s.state(), tcp::State::Closed, "client {i} was refused");
            if s.may_send() && s.send_queue() == 0 && s.recv_queue() == 0 && !done[i] {
                let _ = s.send_slice(b"x");
            }
            if s.can_recv() {
                let mut b = [0u8; 16];
                if s.recv_slice(&mut b).unwrap() > 0 {
                    done[i] = true;
                }
            }
        }
        done.iter().all(|d| *d)
    });
    assert!(ok, "served {} of 20", done.iter().filter(|d| **d).count());
    assert_eq!(p.engine.stats().established, 20);
}

#[test]
fn config_errors_name_what_is_wrong() {
    let mut link = MemoryLink::new();
    let now = Instant::from_millis(0);
    let mut c = config();
    c.listeners.push(listener(7, ServiceKind::Echo, 1));
    assert_eq!(Engine::new(&c, &mut link.b, now).err(), Some(EngineError::DuplicatePort(7)));
    let mut c = config();
    c.gateway = Some(Ipv4Addr::new(198, 19, 0, 1));
    assert!(matches!(Engine::new(&c, &mut link.b, now).err(), Some(EngineError::GatewayOffLink { .. })));
    let mut c = config();
    c.prefix_len = 33;
    assert_eq!(Engine::new(&c, &mut link.b, now).err(), Some(EngineError::BadPrefix(33)));
    let mut c = config();
    c.time_wait = std::time::Duration::from_secs(301);
    assert_eq!(
        Engine::new(&c, &mut link.b, now).err(),
        Some(EngineError::TimeWaitOutOfRange(std::time::Duration::from_secs(301)))
    );
    c.time_wait = std::time::Duration::from_secs(300);
    assert!(Engine::new(&c, &mut link.b, now).is_ok(), "T1: 300 s is the upper edge");
    c.time_wait = std::time::Duration::ZERO;
    assert!(Engine::new(&c, &mut link.b, now).is_ok(), "T1: 0 s is the lower edge");
    let mut c = config();
    c.mac = [1, 0, 0, 0, 0, 1];
    assert!(matches!(Engine::new(&c, &mut link.b, now).err(), Some(EngineError::BadMac(_))));
}

/// The frames a gateway would ask about, built by the client's smoltcp and by hand.
#[test]
fn classify_tells_a_gateway_which_frames_are_the_engines() {
    let mut p = Pair::new(&config());
    let client_poll = |p: &mut Pair| {
        p.now += Duration::from_millis(1);
        p.client.poll(p.now, &mut p.cdev, &mut p.sockets);
    };
    // The client's first frame toward the engine is an ARP request for the engine's address.
    let h = p.connect(7, 40300);
    client_poll(&mut p);
    let arp = p.edev.peek_owned().expect("an ARP request");
    assert_eq!(p.engine.classify(&arp), Verdict::Arp);
    // Once resolved, its SYN is for a listener; then the connection's segments are a connection's.
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    p.sock(h).send_slice(b"x").unwrap();
    client_poll(&mut p);
    let seg = p.edev.peek_owned().expect("a data segment");
    assert_eq!(p.engine.classify(&seg), Verdict::Connection);
    p.step();
    let h2 = p.connect(7, 40301);
    client_poll(&mut p);
    assert_eq!(p.engine.classify(&p.edev.peek_owned().unwrap()), Verdict::Listener);
    p.step();
    let _ = h2;
    // A port with nothing: the engine would answer with an RST.
    let h3 = p.connect(9, 40302);
    client_poll(&mut p);
    assert_eq!(p.engine.classify(&p.edev.peek_owned().unwrap()), Verdict::ClosedPort);
    p.step();
    let _ = h3;
    // ARP about someone else, and IPv4 for another address, are not the engine's.
    let (asker, asked) = (Ipv4Addr::new(198, 18, 0, 9), Ipv4Addr::new(198, 18, 0, 3));
    let buf = neighbor::test_arp_frame([2, 0, 0, 0, 0, 9], asker, asked, None);
    assert_eq!(p.engine.classify(&buf), Verdict::NotOurs);
    let mut ip_other = seg.clone();
    ip_other[14 + 16..14 + 20].copy_from_slice(&[198, 18, 0, 3]); // destination address
    assert_eq!(p.engine.classify(&ip_other), Verdict::NotOurs);
    let mut icmp = seg.clone();
    icmp[14 + 9] = 1; // protocol ICMP
    assert_eq!(p.engine.classify(&icmp), Verdict::OtherIp);
    assert_eq!(p.engine.classify(&[0u8; 10]), Verdict::NotOurs, "runt");
}

#[test]
fn a_pooled_socket_starts_each_connection_with_a_fresh_congestion_window() {
    // smoltcp's reset (listen and connect on a closed socket) keeps the congestion controller's
    // state; the engine reuses its sockets, so each connection must get a fresh controller or it
    // starts with the window (or the loss history) of the socket's last connection.
    let mut p = Pair::new(&config());
    let fresh = first_echo_flight(&mut p, 45000, 12 * 1024);
    let iw = crate::tcp::cc::initial_window(1460) as usize;
    assert!(fresh <= iw, "a first connection starts in slow start (RFC 6928): {fresh} bytes at once");
    // Grow every pooled socket's window with a long echo each.
    for i in 0..2 * ARMED as u16 + 2 {
        let h = p.connect(7, 45100 + i);
        let data = vec![0xa5; 256 * 1024];
        let (mut sent, mut got) = (0, Vec::new());
        assert!(p.run_until(100_000, |p| {
            let s = p.sock(h);
            if s.can_send() && sent < data.len() {
                sent += s.send_slice(&data[sent..]).unwrap();
            }
            p.recv_all(h, &mut got);
            got.len() == data.len()
        }));
        p.sock(h).close();
        assert!(p.run_until(10_000, |p| p.engine.stats().open == 0));
        p.sockets.remove(h);
    }
    for i in 0..2 * ARMED as u16 + 2 {
        let again = first_echo_flight(&mut p, 45200 + i, 12 * 1024);
        assert_eq!(again, fresh, "connection {i} on a reused socket sent {again} bytes at once, a fresh one {fresh}");
    }
}

/// A session that sends a request, closes its sending side at once (a half-close) and reads the
/// answer to the end; it records what it read.
#[derive(Clone, Default)]
struct HalfCloser(std::rc::Rc<std::cell::RefCell<(Vec<u8>, bool)>>);

impl crate::Session for HalfCloser {
    fn drive(&mut self, _: Instant, s: &mut dyn crate::Stream) -> crate::Progress {
        let mut st = self.0.borrow_mut();
        if !st.1 {
            s.send_from(b"request");
            s.close();
            st.1 = true;
        }
        let mut buf = [0u8; 4096];
        loop {
            let n = s.recv_into(&mut buf);
            if n == 0 {
                break;
            }
            st.0.extend_from_slice(&buf[..n]);
        }
        if s.peer_finished() {
            crate::Progress::Close
        } else {
            crate::Progress::Open
        }
    }
}

impl crate::Service for HalfCloser {
    type Session = HalfCloser;
    fn name(&self) -> &'static str {
        "half-closer"
    }
    fn accept(
        &mut self,
        _: crate::ConnId,
        _: std::net::SocketAddrV4,
        _: std::net::SocketAddrV4,
        _: Instant,
    ) -> crate::Accept<HalfCloser> {
        crate::Accept::Session(self.clone())
    }
}

/// RFC 9293 §3.6 (half-close): the engine's side closes first, the peer then sends its answer and
/// its FIN in one flight. The FIN takes the connection to TIME-WAIT in the same burst as the data;
/// the session still reads every byte before the connection is released.
#[test]
fn data_that_comes_with_the_fin_after_our_half_close_is_read() {
    let service = HalfCloser::default();
    let log = service.0.clone();
    let cfg = config().map_services(|_| service.clone());
    let mut p = Pair::new(&cfg);
    let h = p.connect(7, 45500);
    assert!(p.run_until(100, |p| p.sock(h).state() == tcp::State::CloseWait), "the request and FIN came");
    let mut req = [0u8; 16];
    let n = p.sock(h).recv_slice(&mut req).unwrap();
    assert_eq!(&req[..n], b"request");
    let answer: Vec<u8> = (0..12_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(p.sock(h).send_slice(&answer).unwrap(), answer.len());
    p.sock(h).close(); // the answer and the FIN leave in one flight
    assert!(p.run_until(2000, |p| p.engine.stats().open == 0), "the connection ended");
    let got = &log.borrow().0;
    assert!(*got == answer, "the session read {} of the answer's {} bytes", got.len(), answer.len());
}

/// Differential (issue 26): on a lossless, in-order, lock-step echo the engine's own TCP and
/// smoltcp number every segment alike. Each run records the engine's segments (sequence and
/// acknowledgment numbers relative to each side's ISS, data length, FIN); the two lists must match
/// segment for segment, and the client must read the same bytes.
#[test]
fn differential_the_engines_tcp_and_smoltcp_number_a_lock_step_echo_alike() {
    let run = |engine_tcp: bool| {
        let mut p = Pair::new(&EngineConfig { engine_tcp, ..config() });
        let h = p.connect(7, 41000);
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let turn = |p: &mut Pair<_>, frames: &mut Vec<Vec<u8>>| {
            p.client_poll();
            p.engine_poll();
            for f in sent_frames(p) {
                frames.push(f.clone());
                p.cdev.inject(f);
            }
        };
        for _ in 0..5 {
            turn(&mut p, &mut frames);
        }
        assert!(p.sock(h).may_send());
        let mut got = Vec::new();
        for i in 0..24usize {
            let msg: Vec<u8> = (0..(i * 61) % 1400 + 1).map(|j| (i * 7 + j) as u8).collect();
            p.sock(h).send_slice(&msg).unwrap();
            let want = got.len() + msg.len();
            for _ in 0..50 {
                turn(&mut p, &mut frames);
                p.recv_all(h, &mut got);
                if got.len() == want {
                    break;
                }
            }
            assert_eq!(got.len(), want, "message {i} echoed (engine_tcp {engine_tcp})");
        }
        p.sock(h).close();
        for _ in 0..50 {
            turn(&mut p, &mut frames);
        }
        let segs: Vec<crate::tcp::seg::Seg> = frames.iter().filter_map(|f| crate::tcp::seg::parse(f)).collect();
        let syn_ack = segs.iter().find(|s| s.has(crate::tcp::seg::SYN)).expect("the SYN-ACK");
        let (iss, irs) = (syn_ack.seq, syn_ack.ack.wrapping_sub(1));
        let numbers: Vec<(u32, u32, usize, bool)> = segs
            .iter()
            .filter(|s| !s.payload.is_empty() || s.has(crate::tcp::seg::FIN))
            .map(|s| (s.seq.wrapping_sub(iss), s.ack.wrapping_sub(irs), s.payload.len(), s.has(crate::tcp::seg::FIN)))
            .collect();
        (numbers, got)
    };
    let (ours, got_ours) = run(true);
    let (theirs, got_theirs) = run(false);
    assert_eq!(got_ours, got_theirs, "the same bytes back");
    assert_eq!(ours.len(), 25, "24 echoes and the FIN: {ours:?}");
    assert_eq!(ours, theirs, "segment by segment: (seq, ack, length, FIN) from each ISS");
}
