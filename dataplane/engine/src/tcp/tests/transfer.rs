//! Whole transfers: a lossless exchange checked number by number against what the peer
//! delivered, and seeded transfers over a lossy, duplicating, reordering network that must
//! arrive byte for byte and close cleanly.

use super::*;

/// Both sides send `bytes` of their pattern, read everything and close once all is queued.
fn both_send(p: &mut Pair, bytes: [u64; 2]) {
    for side in [A, B] {
        p.app[side] = App { total: bytes[side], reads: true, close_at_end: true, ..App::default() };
    }
    p.service();
}

/// Both applications read all the peer sent, and both sides closed.
fn finished(p: &Pair) -> bool {
    p.closed_cleanly() && p.app[A].got == p.app[B].total && p.app[B].got == p.app[A].total
}

#[test]
fn rfc9293_3_4_lossless_exchange_numbers_follow_the_data_delivered() {
    // The reference model: on a lossless in-order wire, a segment's sequence number is where the
    // sender's previous one ended, and its ACK is one past every byte (and FIN) of the peer's
    // that had arrived when it left.
    let mut p = Pair::new(Setup::default());
    both_send(&mut p, [200_000, 50_000]);
    assert!(p.run_until(Duration::from_secs(5), finished), "not finished:\n{}", dump(&p.log));
    for side in [A, B] {
        let (app, peer) = (&p.app[side], &p.app[1 - side]);
        assert_eq!((app.got, app.bad), (peer.total, None), "side {side}");
        assert_eq!(p.tcb[side].stats.retransmits, 0, "side {side}");
    }
    let mut next_seq = [ISS[A].wrapping_add(1), ISS[B].wrapping_add(1)];
    let mut last_ack: [Option<u32>; 2] = [None; 2];
    for (i, r) in p.log.iter().enumerate() {
        let peer = 1 - r.from;
        let delivered: u32 = p.log[..i]
            .iter()
            .filter(|q| q.from == peer && q.arrived.is_some_and(|a| a <= r.at))
            .map(|q| q.end().wrapping_sub(q.seq))
            .sum();
        let expected_ack = ISS[peer].wrapping_add(1).wrapping_add(delivered);
        assert_eq!(r.ack, expected_ack, "segment {i} acknowledges what arrived:\n{}", dump(&p.log[..=i]));
        assert!(r.has(ACK) && !r.has(RST | SYN), "segment {i}");
        if r.len > 0 || r.has(FIN) {
            assert_eq!(r.seq, next_seq[r.from], "segment {i} follows the last:\n{}", dump(&p.log[..=i]));
            assert!(r.len <= 1448, "segment {i}: {} bytes past the MSS less timestamps", r.len);
            next_seq[r.from] = r.end();
        } else {
            assert_eq!(r.seq, next_seq[r.from], "a pure ACK carries SND.NXT (segment {i})");
        }
        assert!(r.ts.is_some() && r.nsack == 0, "segment {i}: timestamps, no SACK without a hole");
        assert!(!last_ack[r.from].is_some_and(|l| seq_lt(r.ack, l)), "segment {i}: the ACK went back");
        last_ack[r.from] = Some(r.ack);
    }
    // Every byte and both FINs were acknowledged.
    for side in [A, B] {
        let end = ISS[side].wrapping_add(1).wrapping_add(p.app[side].total as u32).wrapping_add(1);
        assert_eq!((p.tcb[side].snd_una(), next_seq[side]), (end, end), "side {side}");
        assert_eq!(p.tcb[1 - side].rcv_nxt(), end);
    }
}

#[test]
fn rfc9293_3_10_7_4_held_out_of_order_bytes_survive_the_application_emptying_the_ring() {
    // Segment 2 of 3 is lost. B holds segment 1 (unread) and segment 3 (beyond the hole, past
    // the ring's end); then its application reads segment 1, emptying the ring; then segment 2
    // comes again and joins segment 3. B must read all three as sent.
    let mut p = Pair::settled(Setup::default());
    let base = ISS[A].wrapping_add(1);
    p.drop_once(A, move |r| r.len > 0 && r.seq == base.wrapping_add(1448));
    p.app[A].total = 3 * 1448;
    p.service();
    assert!(p.run_until(Duration::from_secs(1), |p| p.tcb[B].holds_out_of_order()));
    assert_eq!(p.tcb[B].rx.len(), 1448);
    p.app[B].reads = true;
    p.service();
    assert!(p.run_until(Duration::from_secs(1), |p| p.app[B].got == 3 * 1448));
    assert_eq!(p.app[B].bad, None, "the bytes of segment 3 changed");
}

pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// One seeded transfer of `bytes` each way at `loss`, with SACK, timestamps and window scaling
/// or (`options` false) none of them; returns the virtual time it took, or what went wrong.
fn seeded(seed: u64, loss: f64, bytes: u64, options: bool) -> Result<Duration, String> {
    let mut r = Rng(seed ^ 0x5eed);
    let net = Net {
        delay: Duration::from_micros(200 + r.next() % 2800),
        loss,
        dup: 0.01,
        reorder: 0.05,
        reorder_by: Duration::from_micros(500 + r.next() % 3000),
        ..Net::default()
    };
    let s = Setup { net, seed, sack: options, ts: options, wscale: options, ..Setup::default() };
    let mut p = Pair::new(s);
    both_send(&mut p, [bytes, bytes]);
    // Odd seeds read a few kB per event: the window moves and the rings wrap mid-segment.
    if seed % 2 == 1 {
        for app in &mut p.app {
            app.read_chunk = 1000 + (r.next() % 8000) as usize;
        }
    }
    let ok = p.run_until(Duration::from_secs(600), finished);
    let s = [p.tcb[A].stats, p.tcb[B].stats];
    let states = [p.tcb[A].state, p.tcb[B].state];
    let name = format!("seed {seed:>3} loss {:>2} %{}", loss * 100.0, if options { "" } else { " no options" });
    for side in [A, B] {
        if let Some(at) = p.app[side].bad {
            return Err(format!("{name}: side {side} read a wrong byte at offset {at}"));
        }
    }
    if !ok {
        let got = [p.app[A].got, p.app[B].got];
        let tail = dump(&p.log[p.log.len().saturating_sub(20)..]);
        return Err(format!("{name}: not done: got {got:?}, states {states:?}, stats {s:?}\n{tail}"));
    }
    let t = p.t();
    println!(
        "{name}: {:>8.1} ms virtual, one-way {:>4} us; A {:?}; B {:?}",
        t.as_secs_f64() * 1e3,
        net.delay.as_micros(),
        s[A],
        s[B]
    );
    Ok(t)
}

/// Runs every seed; fails naming each seed that failed.
fn all_seeds(seeds: std::ops::Range<u64>, loss: f64, bytes: u64, options: bool) {
    let n = seeds.end - seeds.start;
    let (mut total, mut failed) = (Duration::ZERO, Vec::new());
    for seed in seeds {
        match seeded(seed, loss, bytes, options) {
            Ok(t) => total += t,
            Err(e) => failed.push(e),
        }
    }
    let what = if options { "" } else { ", no options" };
    println!("{} % loss{what}: {n} seeds, {:.1} s virtual in all", loss * 100.0, total.as_secs_f64());
    assert!(failed.is_empty(), "{} of {n} seeds failed:\n{}", failed.len(), failed.join("\n"));
}

const MIB: u64 = 1 << 20;

#[test]
fn seeded_transfers_at_1_percent_loss_arrive_whole_and_close() {
    all_seeds(0..32, 0.01, 2 * MIB, true);
}

#[test]
fn seeded_transfers_at_5_percent_loss_arrive_whole_and_close() {
    all_seeds(100..132, 0.05, 2 * MIB, true);
}

#[test]
fn seeded_transfers_without_sack_timestamps_or_scaling_arrive_whole_and_close() {
    // RFC 5681's fast retransmit and RFC 6582's partial ACKs instead of SACK and RACK.
    all_seeds(200..216, 0.01, MIB, false);
}
