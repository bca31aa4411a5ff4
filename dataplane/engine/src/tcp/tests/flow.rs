//! Flow control and ACK policy, RFC 9293 §3.8.6: zero windows and the persist timer (§3.8.6.1),
//! silly window avoidance on both sides (§3.8.6.2), delayed ACKs (§3.8.6.3).

use super::*;

const SEG: u32 = 1448;

/// A fills B's ring, which B does not read; returns the pair and when the zero window reached A.
fn zero_window() -> (Pair, Duration) {
    let mut p = Pair::settled(Setup::default());
    p.app[A].total = 200_000;
    p.service();
    assert!(p.run_until(Duration::from_secs(1), |p| p.tcb[B].rx.free() == 0));
    p.run_until(Duration::from_secs(1), |p| p.sent_by(B, 0).any(|r| r.window == 0 && r.arrived.is_some()));
    let zero = p.sent_by(B, 0).find(|r| r.window == 0).unwrap_or_else(|| panic!("no zero window\n{}", dump(&p.log)));
    let t = since_start(zero.arrived.expect("it arrived"));
    (p, t)
}

#[test]
fn rfc9293_3_8_6_1_a_zero_window_is_probed_after_an_rto_then_at_growing_intervals() {
    let (mut p, t_zero) = zero_window();
    let mark = p.log.len();
    p.run_for(Duration::from_secs(2));
    // Nothing for an RTO, then probes of at most one byte past the window, backed off.
    let probes: Vec<&Rec> = p.sent_by(A, mark).collect();
    assert!(probes.len() >= 3, "zero at {t_zero:?}, probes:\n{}", dump(&p.log[mark.saturating_sub(8)..]));
    assert!(probes.iter().all(|r| r.len <= 1), "\n{}", dump(&p.log[mark..]));
    let first = probes[0].t() - t_zero;
    assert!(first >= 200 * MS && first < 220 * MS, "first probe {first:?} after the zero window");
    let gaps: Vec<Duration> = probes.windows(2).map(|w| w[1].t() - w[0].t()).collect();
    assert!(gaps.windows(2).all(|g| g[1] > g[0]), "backed off: {gaps:?}");
    assert_eq!(p.tcb[B].rx.free(), 0);
    assert_eq!(p.tcb[A].state, State::Established, "a zero window never ends the connection");
}

#[test]
fn rfc9293_3_8_6_1_when_the_window_opens_an_update_leaves_and_the_transfer_resumes_at_once() {
    let (mut p, _) = zero_window();
    p.run_for(Duration::from_secs(2));
    // B reads: a window update leaves at once (§3.8.6.2.2), and A resumes on it without
    // waiting for its next probe or retransmission timeout.
    p.app[B].reads = true;
    let mark = p.log.len();
    let t_read = p.t();
    p.service();
    let update = p.sent_by(B, mark).next().expect("a window update");
    assert!(update.window > 0 && update.at == p.now);
    assert!(p.run_until(Duration::from_secs(60), |p| p.app[B].got == 200_000), "\n{}", dump(&p.log[mark..]));
    let took = p.t() - t_read;
    let s = p.tcb[A].stats;
    assert!(took < 50 * MS, "resumed after {took:?}: {s:?}\n{}", dump(&p.log[mark..mark + 6]));
}

#[test]
fn rfc9293_3_8_6_1_a_zero_window_probe_draws_an_ack_with_the_window() {
    // "When the receiving TCP endpoint has a zero window and a segment arrives, it must still
    // send an acknowledgment showing its next expected sequence number and current window."
    let (mut p, _) = zero_window();
    let mark = p.log.len();
    p.run_for(Duration::from_secs(2));
    let probes: Vec<Rec> = p.sent_by(A, mark).copied().collect();
    assert!(!probes.is_empty());
    for probe in probes.iter().filter(|r| r.arrived.is_some()) {
        let answer = p.sent_by(B, mark).find(|r| Some(r.at) == probe.arrived);
        let answer =
            answer.unwrap_or_else(|| panic!("no answer to the probe at {:?}\n{}", probe.t(), dump(&p.log[mark..])));
        assert_eq!((answer.ack, answer.window), (p.tcb[B].rcv_nxt(), 0));
    }
}

#[test]
fn rfc9293_3_8_6_2_neither_side_makes_a_silly_window() {
    // B reads 300 bytes every 5 ms from a full ring while it sends A data of its own (whose
    // segments carry its window). The receiver must not offer a window that grew by less than
    // min(MSS, half the ring) (§3.8.6.2.2); the sender must not send a segment smaller than an
    // MSS while more is queued, unless it is half the largest window offered (§3.8.6.2.1).
    let mut p = Pair::settled(Setup::default());
    p.app[A].total = 1_000_000;
    p.app[B] = App { total: 10_000_000, ..App::default() };
    p.app[A].reads = true;
    p.service();
    assert!(p.run_until(Duration::from_secs(1), |p| p.tcb[B].rx.free() == 0));
    let mark = p.log.len();
    let mut buf = [0u8; 300];
    for _ in 0..100 {
        p.run_for(5 * MS);
        p.tcb[B].recv(&mut buf);
        p.service();
    }
    let shift = crate::own::our_wscale(65536);
    let mut right = None::<u32>;
    let mut silly_offers = Vec::new();
    for r in p.sent_by(B, mark) {
        let edge = r.ack.wrapping_add(u32::from(r.window) << shift);
        if let Some(old) = right {
            let grew = edge.wrapping_sub(old) as i32;
            if grew > 0 && (grew as u32) < SEG {
                silly_offers.push(grew);
            }
        }
        right = Some(edge);
    }
    let small: Vec<u32> = p.data_by(A, mark).map(|r| r.len).filter(|&n| n < SEG).collect();
    assert!(
        silly_offers.is_empty() && small.is_empty(),
        "B's window grew {} times by less than an MSS: {:?}; A sent {} small segments: {:?}",
        silly_offers.len(),
        &silly_offers[..silly_offers.len().min(5)],
        small.len(),
        &small[..small.len().min(5)]
    );
}

#[test]
fn rfc9293_3_8_6_3_a_lone_segment_is_acknowledged_after_ack_delay() {
    for ms in [40, 25] {
        let cfg = TcpConfig { ack_delay: Duration::from_millis(ms), ..TcpConfig::default() };
        let mut p = Pair::settled(Setup { cfg, ..Setup::default() });
        p.app[B].reads = true;
        let mark = p.log.len();
        p.tcb[A].send(&[0; 100]);
        p.service();
        p.run_for(100 * MS);
        let seg = p.data_by(A, mark).next().expect("sent");
        let acks: Vec<&Rec> = p.sent_by(B, mark).collect();
        assert_eq!(acks.len(), 1, "\n{}", dump(&p.log[mark..]));
        assert_eq!(acks[0].at - seg.arrived.expect("arrived"), smoltcp::time::Duration::from_millis(ms));
    }
}

#[test]
fn rfc9293_3_8_6_3_every_second_segment_is_acknowledged_at_once() {
    let mut p = Pair::settled(Setup::default());
    p.app[B].reads = true;
    let mark = p.log.len();
    p.app[A].total = u64::from(4 * SEG);
    p.service();
    p.run_for(100 * MS);
    let data: Vec<&Rec> = p.data_by(A, mark).collect();
    let acks: Vec<&Rec> = p.sent_by(B, mark).collect();
    assert_eq!((data.len(), acks.len()), (4, 2), "\n{}", dump(&p.log[mark..]));
    for (k, ack) in acks.iter().enumerate() {
        let second = data[2 * k + 1];
        assert_eq!((ack.at, ack.ack), (second.arrived.expect("arrived"), second.end()), "ACK {k}");
    }
}

#[test]
fn rfc9293_3_8_6_3_out_of_order_data_and_a_filled_hole_are_acknowledged_at_once() {
    let mut p = Pair::settled(Setup::default());
    p.app[B].reads = true;
    let base = ISS[A].wrapping_add(1);
    p.drop_once(A, move |r| r.len > 0 && r.seq == base);
    let mark = p.log.len();
    p.app[A].total = u64::from(2 * SEG);
    p.service();
    p.run_for(300 * MS);
    let data: Vec<&Rec> = p.data_by(A, mark).collect();
    let acks: Vec<&Rec> = p.sent_by(B, mark).collect();
    // The second segment beyond the hole: a duplicate ACK with its SACK block, at once.
    assert_eq!((acks[0].at, acks[0].ack), (data[1].arrived.expect("arrived"), base), "\n{}", dump(&p.log));
    assert_eq!(acks[0].sack(), [(base.wrapping_add(SEG), base.wrapping_add(2 * SEG))]);
    // The retransmission fills the hole: the cumulative ACK at once, no delay.
    let rtx = data.iter().find(|r| r.seq == base && !r.dropped).expect("retransmitted");
    let fill = acks.iter().find(|r| r.ack == base.wrapping_add(2 * SEG)).expect("the hole filled");
    assert_eq!(fill.at, rtx.arrived.expect("arrived"));
}
