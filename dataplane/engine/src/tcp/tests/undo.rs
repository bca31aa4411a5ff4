//! Undoing a loss episode whose retransmissions were not needed: RFC 2883 §4's D-SACKs and RFC
//! 3522's timestamps tell it, RFC 4015 §2 says what comes back (the window before the cut).

use super::*;

const SEG: u32 = 1448;

/// A pair after a lossless exchange, the window well open.
fn warm() -> Pair {
    let mut p = Pair::settled(Setup::default());
    p.app[A] = App { total: 300_000, reads: true, ..App::default() };
    p.app[B].reads = true;
    p.service();
    assert!(p.run_until(Duration::from_secs(1), |p| p.app[B].got == 300_000));
    p.run_for(300 * MS);
    p
}

/// A's segment at `seq` as A sent it, for B.
fn copy_of(p: &Pair, seq: u32, buf: &mut Vec<u8>) -> Out<'static> {
    buf.resize(SEG as usize, 0);
    let off = seq.wrapping_sub(p.setup.iss[A].wrapping_add(1));
    stream(A, u64::from(off), buf, false);
    let data: &'static [u8] = Box::leak(buf.clone().into_boxed_slice());
    Out { seq, ack: p.tcb[A].rcv_nxt(), data: [data, &[]], ..p.forge(B, ACK) }
}

#[test]
fn rfc2883_4_a_retransmission_reported_as_a_duplicate_undoes_the_cut() {
    let mut p = warm();
    let base = p.tcb[A].snd_una();
    let late = base.wrapping_add(3 * SEG);
    // The original is held back (dropped here, delivered by hand below, after its retransmission).
    p.drop_once(A, move |r| r.len > 0 && r.seq == late);
    p.app[A].total += u64::from(20 * SEG);
    p.service();
    let mut before = p.tcb[A].cwnd();
    assert!(p.run_until(Duration::from_secs(1), |p| {
        if p.tcb[A].stats.fast_recoveries == 0 {
            before = p.tcb[A].cwnd();
        }
        lt_seq(late, p.tcb[B].rcv_nxt())
    }));
    assert!(p.tcb[A].cwnd() < before, "recovery cut the window");
    let mut buf = Vec::new();
    let original = copy_of(&p, late, &mut buf);
    p.inject(B, &original);
    assert!(p.run_until(Duration::from_secs(1), |p| p.tcb[A].stats.undos == 1), "\n{}", dump(&p.log));
    assert!(p.tcb[A].cwnd() >= before, "the window before the cut: {before} -> {}", p.tcb[A].cwnd());
    assert!(p.run_until(Duration::from_secs(1), |p| p.tcb[A].snd_una() == base.wrapping_add(20 * SEG)));
}

#[test]
fn rfc3522_a_timeout_whose_original_arrived_is_undone_by_the_timestamp_echo() {
    let mut p = warm();
    let base = p.tcb[A].snd_una();
    // B's ACKs of four segments are lost until A's retransmission timer fired: A sent again what
    // had arrived.
    p.cut[B] = true;
    p.app[A].total += u64::from(4 * SEG);
    p.service();
    let before = p.tcb[A].cwnd();
    assert!(p.run_until(Duration::from_secs(2), |p| p.tcb[A].stats.timeouts == 1));
    assert_eq!(p.tcb[A].cwnd(), SEG, "slow start from one segment");
    p.cut[B] = false;
    // B's answer to the retransmission echoes the original's timestamp: the timeout was spurious.
    assert!(p.run_until(Duration::from_secs(1), |p| p.tcb[A].snd_una() == base.wrapping_add(4 * SEG)));
    let s = p.tcb[A].stats;
    assert_eq!(s.undos, 1, "{s:?}\n{}", dump(&p.log));
    assert!(p.tcb[A].cwnd() >= before, "the window before the timeout: {before} -> {}", p.tcb[A].cwnd());
}

#[test]
fn rfc3522_a_real_loss_is_not_undone() {
    let mut p = warm();
    let base = p.tcb[A].snd_una();
    let lost = base.wrapping_add(3 * SEG);
    p.drop_once(A, move |r| r.len > 0 && r.seq == lost);
    p.app[A].total += u64::from(20 * SEG);
    p.service();
    assert!(p.run_until(Duration::from_secs(1), |p| p.tcb[A].snd_una() == base.wrapping_add(20 * SEG)));
    let s = p.tcb[A].stats;
    assert_eq!((s.fast_recoveries, s.undos), (1, 0), "{s:?}");
}

#[test]
fn rfc2883_4_a_duplicate_is_reported_once_in_the_first_block() {
    let mut p = warm();
    let old = p.tcb[B].rcv_nxt().wrapping_sub(3 * SEG);
    let mut buf = Vec::new();
    let dup = copy_of(&p, old, &mut buf);
    let mark = p.log.len();
    p.inject(B, &dup);
    p.run_for(10 * MS);
    let acks: Vec<&Rec> = p.sent_by(B, mark).collect();
    assert_eq!(acks.len(), 1, "\n{}", dump(&p.log[mark..]));
    assert_eq!(acks[0].sack(), [(old, old.wrapping_add(SEG))], "a D-SACK of the duplicate");
    // The next ACK carries it no more.
    p.app[A].total += u64::from(SEG);
    p.service();
    p.run_for(10 * MS);
    assert!(p.sent_by(B, mark + 1).all(|r| r.nsack == 0), "\n{}", dump(&p.log[mark..]));
}

fn lt_seq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
