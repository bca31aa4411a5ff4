//! Hostile traffic: malformed frames, and floods of ACKs, RSTs, FINs and data on random 4-tuples
//! and on live connections' 4-tuples with numbers outside their windows.

use super::*;

/// Malformed and hostile frames (random bytes, truncations, mutated headers, bad checksums,
/// flag soup, frames for TIME_WAIT tuples) never panic the engine, and it keeps serving a real
/// client afterwards.
#[test]
fn hostile_frames_never_break_the_engine() {
    let mut p = Pair::new(&config());
    // A real exchange first, to capture valid frames as mutation seeds.
    let h = p.connect(7, 48000);
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    p.sock(h).send_slice(b"seed").unwrap();
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for _ in 0..20 {
        p.now += Duration::from_millis(1);
        p.cdev.refill();
        p.client.poll(p.now, &mut p.cdev, &mut p.sockets);
        while let Some(f) = p.edev.peek_owned() {
            seeds.push(f.clone());
            p.edev.refill();
            p.engine.poll(p.now, &mut p.edev);
        }
    }
    assert!(!seeds.is_empty());
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for i in 0..20_000 {
        let mut f = seeds[rng.below(seeds.len())].clone();
        match i % 4 {
            0 => f.truncate(rng.below(f.len() + 1)),
            1 => {
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(f.len());
                    f[at] = rng.next_u64() as u8;
                }
            }
            2 => f = (0..rng.below(1600)).map(|_| rng.next_u64() as u8).collect(),
            _ => {
                // keep Ethernet/IP intact, scramble TCP flags and ports (checksums now wrong)
                if f.len() > 14 + 20 + 14 {
                    f[14 + 20 + 13] = rng.next_u64() as u8;
                    f[14 + 20 + 2] = rng.next_u64() as u8;
                }
            }
        }
        p.edev.inject(f);
        p.edev.refill();
        p.engine.poll(p.now, &mut p.edev);
        p.now += Duration::from_micros(100);
    }
    // Still serving: a fresh connection gets its echo.
    let h = p.connect(7, 48001);
    assert!(p.run_until(2000, |p| p.sock(h).may_send()), "a new client still connects");
    p.sock(h).send_slice(b"after").unwrap();
    let mut got = Vec::new();
    assert!(p.run_until(2000, |p| {
        p.recv_all(h, &mut got);
        got == b"after"
    }));
}

/// Floods that must create nothing (issue 27's attack suite, in memory): ACKs (as a SYN cookie's
/// ACK would be, with random acknowledgment numbers), RSTs, FINs and data on random 4-tuples to the
/// echo port, and RSTs, SYNs and data with random sequence numbers on the 4-tuples of live
/// connections. No connection, flow or slot is created; the closed-port answers are counted; the
/// live connections are not reset and still echo afterwards (RFC 5961: an RST or SYN must fall in
/// the window, or be exact, to act).
#[test]
fn floods_on_random_and_live_four_tuples_create_nothing_and_harm_nobody() {
    use crate::flow::{plain_tcp, test_tcp_frame};
    use smoltcp::wire::TcpControl;
    let mut p = Pair::new(&config());
    let live: Vec<SocketHandle> = (0..4).map(|i| p.connect(7, 49000 + i)).collect();
    assert!(p.run_until(200, |p| live.iter().all(|&h| p.sock(h).may_send())));
    for &h in &live {
        assert_eq!(echo(&mut p, h, b"before"), b"before");
    }
    let before = p.engine.stats();
    let mut rng = Rng(0xf100_d5ee_d000_0001);
    let client_mac = [2, 0, 0, 0, 0, 1];
    for i in 0..20_000u32 {
        let kind = i % 5;
        let live_tuple = kind == 4;
        let (src, sport) = if live_tuple {
            (Ipv4Addr::from(CLIENT.octets()), 49000 + rng.below(4) as u16)
        } else {
            (Ipv4Addr::new(198, 19, rng.below(256) as u8, rng.below(256) as u8), 1024 + rng.below(60000) as u16)
        };
        let (seq, ack) = (rng.next_u64() as u32, rng.next_u64() as u32);
        let (control, ack, payload): (TcpControl, Option<u32>, &[u8]) = match kind {
            0 => (TcpControl::None, Some(ack), &[]),
            1 => (TcpControl::Rst, None, &[]),
            2 => (TcpControl::Fin, Some(ack), &[]),
            3 => (TcpControl::None, Some(ack), b"junk"),
            _ => match rng.below(3) {
                0 => (TcpControl::Rst, None, &[]),
                1 => (TcpControl::Syn, None, &[]),
                _ => (TcpControl::None, Some(ack), b"out of window"),
            },
        };
        let tcp = plain_tcp((sport, 7), control, seq, ack, 1000, payload);
        p.edev.inject(test_tcp_frame((client_mac, src), ([2, 0, 0, 0, 0, 2], SERVER), &tcp));
        if i % 32 == 31 {
            p.edev.refill();
            p.engine.poll(p.now, &mut p.edev);
        }
    }
    p.engine_poll();
    let after = p.engine.stats();
    assert_eq!(after.open, before.open, "no connection created or lost: {after:?}");
    assert_eq!(after.slots, before.slots, "no slot created");
    assert_eq!(p.engine.listener_stats(7).unwrap().syns, 4, "no SYN on a live 4-tuple opened anything");
    assert!(after.no_listener - before.no_listener >= 16_000 * 3 / 4, "random 4-tuples answered: {after:?}");
    for &h in &live {
        assert!(p.sock(h).may_send(), "a live connection was harmed");
    }
    // Drain what the flood made the engine send (RSTs, challenge ACKs) before talking again.
    p.run_until(100, |_| false);
    for &h in &live {
        let mut got = Vec::new();
        p.recv_all(h, &mut got); // whatever the junk left queued is not checked
        assert_eq!(echo(&mut p, h, b"after"), b"after");
    }
}
