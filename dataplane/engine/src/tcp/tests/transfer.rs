//! Whole transfers: a lossless exchange checked number by number against what the peer
//! delivered.

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

pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
