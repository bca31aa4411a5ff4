//! The peer's window as a sender must keep to it, also when the peer moves it in ways the
//! ordinary flow never shows: a window that comes on a retransmission of old data, a window
//! shrunk under data already sent, a window shut with data outstanding (RFC 9293 §3.8.6 and
//! §3.10.7.4).
//!
//! Linux since 6.17 discards a segment that ends past its window whole, ACK field and all, while
//! its receive queue is not empty. A sender that goes past the window there never gets its ACKs
//! heard: over net_tap, with the proxy's upstream connection, that was a deadlock (each side's
//! send buffer full of data the other never acknowledged).

use super::*;

const SEG: u32 = 1448;
/// B's ring: its window scale is 5, so a window field of 32 is 1 KiB.
const B_RX: usize = 1 << 20;
const KIB_FIELD: u16 = 32;

/// A with ten segments in flight that B received while B's ACKs were lost (B's side of the wire
/// stays cut), and the sequence number of A's first one.
fn in_flight() -> (Pair, u32) {
    let mut p = Pair::settled(Setup { rx: [65536, B_RX], ..Setup::default() });
    assert_eq!(crate::own::our_wscale(B_RX), 5);
    p.app[B].reads = true;
    p.cut[B] = true;
    let first = p.tcb[A].snd_una();
    p.app[A].total = u64::from(10 * SEG);
    p.service();
    assert!(p.run_until(5 * MS, |p| p.app[B].got == u64::from(10 * SEG)), "\n{}", dump(&p.log));
    (p, first)
}

/// A segment from B as if B had sent it: `seq`, acknowledging `ack`, offering `window` (the
/// field, scaled by 32).
fn from_b(p: &Pair, seq: u32, ack: u32, window: u16) -> Out<'static> {
    Out { seq, ack, window, ..p.forge(A, ACK) }
}

/// B's segments make A's SND.WL1 a later sequence number than the one at A's RCV.NXT, as when B
/// sent data past a hole in what A received.
fn later_wl1(p: &mut Pair, first: u32) {
    let seg = from_b(p, p.tcb[A].rcv_nxt().wrapping_add(5000), first, 2000);
    p.inject(A, &seg);
}

#[test]
fn rfc9293_3_10_7_4_an_ack_that_moves_snd_una_brings_its_window_whatever_its_sequence_number() {
    let (mut p, first) = in_flight();
    later_wl1(&mut p, first);
    // B's retransmission of the old data at A's RCV.NXT (a sequence number before SND.WL1)
    // acknowledges four segments and offers 1 KiB: its window counts, not the 64 KiB before.
    let ack = first.wrapping_add(4 * SEG);
    let mark = p.log.len();
    p.inject(A, &from_b(&p, p.tcb[A].rcv_nxt(), ack, KIB_FIELD));
    assert_eq!(p.tcb[A].snd_una(), ack);
    p.run_for(Duration::from_secs(2));
    let right = ack.wrapping_add(1024);
    let data: Vec<&Rec> = p.data_by(A, mark).collect();
    assert!(!data.is_empty(), "A sends again within the window\n{}", dump(&p.log[mark..]));
    for r in &data {
        assert!(
            r.end().wrapping_sub(right) as i32 <= 0,
            "a segment past the window's right edge (ack + 1024)\n{}",
            dump(&p.log[mark..])
        );
    }
    // What fits of the first segment outstanding went again: 1 KiB of it, the rest stays lost.
    assert!(data.iter().any(|r| r.seq == ack && r.len == 1024), "\n{}", dump(&p.log[mark..]));
}

#[test]
fn rfc9293_3_10_7_4_an_ack_sent_past_a_shrunk_window_carries_its_right_edge() {
    let (mut p, first) = in_flight();
    let ack = first.wrapping_add(2 * SEG);
    p.inject(A, &from_b(&p, p.tcb[A].rcv_nxt(), ack, KIB_FIELD));
    // A segment B's side cannot accept draws A's ACK (§3.10.7.4, first step): its sequence number
    // must be one B accepts, the right edge of B's window, not SND.NXT (eight segments past it).
    let mark = p.log.len();
    p.inject(A, &from_b(&p, p.tcb[A].rcv_nxt().wrapping_add(1 << 30), ack, KIB_FIELD));
    let acks: Vec<&Rec> = p.sent_by(A, mark).filter(|r| r.len == 0).collect();
    assert_eq!(acks.len(), 1, "\n{}", dump(&p.log[mark..]));
    assert_eq!(acks[0].seq, ack.wrapping_add(1024), "\n{}", dump(&p.log[mark..]));
}

#[test]
fn rfc9293_3_8_6_1_a_window_shut_with_data_outstanding_is_probed_at_each_timeout() {
    let (mut p, first) = in_flight();
    let ack = first.wrapping_add(3 * SEG);
    let mark = p.log.len();
    p.inject(A, &from_b(&p, p.tcb[A].rcv_nxt(), ack, 0));
    p.run_for(Duration::from_secs(2));
    // Nothing can be retransmitted into a shut window; each timeout sends a probe (an ACK of an
    // old sequence number draws B's window), backed off.
    assert_eq!(p.data_by(A, mark).count(), 0, "\n{}", dump(&p.log[mark..]));
    let probes: Vec<&Rec> = p.sent_by(A, mark).filter(|r| r.seq == ack.wrapping_sub(1)).collect();
    assert!(probes.len() >= 2, "\n{}", dump(&p.log[mark..]));
    let gaps: Vec<Duration> = probes.windows(2).map(|w| w[1].t() - w[0].t()).collect();
    assert!(gaps.windows(2).all(|g| g[1] > g[0]), "backed off: {gaps:?}");
    // The window opens: B's answer to a probe brings it, and A sends everything.
    p.cut[B] = false;
    assert!(p.run_until(Duration::from_secs(10), |p| p.tcb[A].snd_una() == first.wrapping_add(10 * SEG)));
}

#[test]
fn rfc9293_3_10_7_4_an_ack_at_the_right_edge_of_our_window_is_taken() {
    // B filled A's window exactly, and its next ACK (at that edge) overtook the data: the ACK is
    // taken (as Linux does), one byte further it is not.
    let (mut p, first) = in_flight();
    let edge = p.tcb[A].rcv_nxt().wrapping_add(65536);
    let past = from_b(&p, edge.wrapping_add(1), first.wrapping_add(SEG), 2000);
    p.inject(A, &past);
    assert_eq!(p.tcb[A].snd_una(), first);
    p.inject(A, &from_b(&p, edge, first.wrapping_add(10 * SEG), 2000));
    assert_eq!(p.tcb[A].snd_una(), first.wrapping_add(10 * SEG));
}
