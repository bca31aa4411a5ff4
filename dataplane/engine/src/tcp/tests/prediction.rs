//! Header prediction (`conn/fast.rs`, RFC 9293 §3.10.7.4's common case): the short path gives
//! what the full path gives, segment for segment, and a segment that fails any of its tests takes
//! the full path.

use super::*;
use crate::tcp::seg::{Options, Seg, PSH, URG};

/// What a segment on the wire said, and whether it was lost: all the two paths must agree on.
type Wire = (Instant, usize, u32, u32, u8, u16, Option<(u32, u32)>, Vec<(u32, u32)>, u32, bool);

fn wire(p: &Pair) -> Vec<Wire> {
    p.log
        .iter()
        .map(|r| (r.at, r.from, r.seq, r.ack, r.flags, r.window, r.ts, r.sack().to_vec(), r.len, r.dropped))
        .collect()
}

/// Both sides send `bytes` and read all, with header prediction on or off (odd `read_chunk`s make
/// the window move), then close: the data moves in ESTABLISHED, where the short path is.
fn exchange(s: Setup, bytes: [u64; 2], predict: bool, chunk: usize) -> Pair {
    let app = |side: usize| App { total: bytes[side], reads: true, read_chunk: chunk, ..App::default() };
    exchange_apps(s, [app(A), app(B)], predict)
}

/// A's requests of `msg` bytes, each answered by B with as many, `total` bytes each way: the
/// short output path's case (nothing in flight when a reply or the next request leaves).
fn requests(s: Setup, msg: u64, total: u64, predict: bool) -> Pair {
    let a = App { total, reads: true, request: msg, ..App::default() };
    let b = App { total, reads: true, reply: true, ..App::default() };
    exchange_apps(s, [a, b], predict)
}

/// Runs the two applications to the end with header prediction on or off, then closes.
fn exchange_apps(s: Setup, apps: [App; 2], predict: bool) -> Pair {
    let cfg = TcpConfig { header_prediction: predict, ..s.cfg };
    let mut p = Pair::new(Setup { cfg, ..s });
    p.app = apps;
    let bytes = [apps[A].total, apps[B].total];
    p.service();
    let tail = |p: &Pair| dump(&p.log[p.log.len().saturating_sub(30)..]);
    let moved = |p: &Pair| p.app[A].got == bytes[B] && p.app[B].got == bytes[A];
    assert!(p.run_until(Duration::from_secs(600), moved), "not delivered:\n{}", tail(&p));
    for side in [A, B] {
        p.app[side].close_at_end = true;
    }
    p.service();
    assert!(p.run_until(Duration::from_secs(600), Pair::closed_cleanly), "not closed:\n{}", tail(&p));
    for side in [A, B] {
        assert_eq!(p.app[side].bad, None, "side {side} read a wrong byte");
    }
    p
}

/// The same exchange both ways: the same segments at the same times, the same end.
fn same_both_ways(s: Setup, bytes: [u64; 2], chunk: usize) {
    let (on, off) = (exchange(s, bytes, true, chunk), exchange(s, bytes, false, chunk));
    same(s, &format!("{bytes:?} bytes"), &on, &off);
}

/// Whether the runs `on` (header prediction on) and `off` sent the same segments at the same
/// times and ended alike; returns the segments the short paths took, input and output.
fn same(s: Setup, what: &str, on: &Pair, off: &Pair) -> (u64, u64) {
    let (w_on, w_off) = (wire(on), wire(off));
    if let Some(i) = (0..w_on.len().min(w_off.len())).find(|&i| w_on[i] != w_off[i]) {
        panic!(
            "segment {i} differs: short path {:?}, full path {:?}\nshort path:\n{}full path:\n{}",
            w_on[i],
            w_off[i],
            dump(&on.log[i.saturating_sub(10)..=i]),
            dump(&off.log[i.saturating_sub(10)..=i])
        );
    }
    assert_eq!(w_on.len(), w_off.len(), "as many segments");
    let predicted = [on.tcb[A].stats.predicted, on.tcb[B].stats.predicted];
    let out = [on.tcb[A].stats.predicted_out, on.tcb[B].stats.predicted_out];
    println!("seed {}, {what}: {} segments, predicted {predicted:?}, output {out:?}", s.seed, w_on.len());
    assert!(predicted[A] + predicted[B] > 0, "nothing took the short path");
    for side in [A, B] {
        let (a, b) = (&on.tcb[side], &off.tcb[side]);
        assert_eq!((b.stats.predicted, b.stats.predicted_out), (0, 0), "side {side}: prediction is off");
        assert_eq!((a.snd_una(), a.rcv_nxt(), a.state, a.cwnd()), (b.snd_una(), b.rcv_nxt(), b.state, b.cwnd()));
        assert_eq!(a.rtt(), b.rtt(), "side {side}: the same round-trip samples");
        assert_eq!(TcbStats { predicted: 0, predicted_out: 0, ..a.stats }, b.stats, "side {side}");
    }
    (predicted[A] + predicted[B], out[A] + out[B])
}

#[test]
fn rfc9293_3_10_7_4_the_short_output_path_sends_what_the_full_path_sends_for_requests() {
    // Lossless, then lossy with duplicates and reordering (where the short path must step aside
    // for every retransmission, probe and SACK owed), with and without the options.
    for seed in 0..6 {
        let net =
            if seed < 2 { Net::default() } else { Net { loss: 0.03, dup: 0.01, reorder: 0.05, ..Net::default() } };
        let opts = seed % 2 == 0;
        let s = Setup { net, seed, ts: opts, sack: opts, wscale: opts, ..Setup::default() };
        for (msg, total) in [(64, 64 * 200), (1000, 1000 * 100), (3000, 3000 * 40)] {
            let (on, off) = (requests(s, msg, total, true), requests(s, msg, total, false));
            let (_, out) = same(s, &format!("requests of {msg} bytes"), &on, &off);
            assert!(out > 0, "seed {seed}, {msg}-byte requests: nothing took the short output path");
        }
    }
}

#[test]
fn rfc9293_3_10_7_4_the_short_path_sends_what_the_full_path_sends_on_a_lossless_exchange() {
    for (ts, sack, wscale) in [(true, true, true), (false, false, false), (true, false, false), (false, true, true)] {
        let s = Setup { ts, sack, wscale, ..Setup::default() };
        same_both_ways(s, [300_000, 70_000], 0);
        same_both_ways(s, [20_000, 5_000], 0);
        same_both_ways(s, [64 * 1024, 64 * 1024], 30_000);
    }
}

#[test]
fn rfc9293_3_10_7_4_the_short_path_sends_what_the_full_path_sends_on_lossy_seeded_exchanges() {
    // Loss, duplicates and reordering send segments both ways; the runs are the same only if
    // every segment the short path took left the block as the full path would have.
    for seed in 0..8 {
        let net = Net { loss: 0.02, dup: 0.01, reorder: 0.05, ..Net::default() };
        let s = Setup { net, seed, ts: seed % 4 != 3, sack: seed % 4 != 3, ..Setup::default() };
        same_both_ways(s, [256 * 1024, 128 * 1024], if seed % 2 == 1 { 5_000 } else { 0 });
    }
}

/// A settled pair in which B has sent 100 bytes that A has not acknowledged (they never left).
fn in_flight(s: Setup) -> Pair {
    let mut p = Pair::settled(s);
    assert_eq!(p.tcb[B].send(&[7; 100]), 100);
    let ts = p.ts_now(B);
    let now = p.now;
    assert_eq!(p.tcb[B].output(now, ts, &mut |_: &Out| true), 1);
    p
}

/// A segment from A as B predicts it: at RCV.NXT, acknowledging `acked` of B's 100 bytes, with
/// A's last window and current timestamps.
fn from_a(p: &Pair, acked: u32, payload: &'static [u8]) -> Seg<'static> {
    let last = p.sent_by(A, 0).last().expect("A's opening ACK");
    let b = &p.tcb[B];
    Seg {
        seq: b.rcv_nxt(),
        ack: b.snd_una().wrapping_add(acked),
        flags: ACK | PSH,
        window: last.window,
        options: Options { ts: p.setup.ts.then(|| (p.ts_now(A), p.ts_now(B))), ..Options::default() },
        payload,
    }
}

/// Whether B took `seg` by the short path.
fn predicted(p: &mut Pair, seg: &Seg) -> bool {
    let before = p.tcb[B].stats.predicted;
    let now = p.now;
    p.tcb[B].input(now, seg);
    p.tcb[B].stats.predicted > before
}

#[test]
fn rfc9293_3_10_7_4_in_order_data_and_acks_of_new_data_are_predicted() {
    for ts in [true, false] {
        let s = Setup { ts, ..Setup::default() };
        let mut p = in_flight(s);
        let rcv = p.tcb[B].rcv_nxt();
        assert!(
            {
                let seg = from_a(&p, 0, b"data, ACK at SND.UNA");
                predicted(&mut p, &seg)
            },
            "ts {ts}"
        );
        assert_eq!(p.tcb[B].rcv_nxt(), rcv.wrapping_add(20));
        assert!(
            {
                let seg = from_a(&p, 40, b"data that acknowledges");
                predicted(&mut p, &seg)
            },
            "ts {ts}"
        );
        assert!(
            {
                let seg = from_a(&p, 60, b"");
                predicted(&mut p, &seg)
            },
            "ts {ts}: a pure ACK of new data"
        );
        assert_eq!(p.tcb[B].snd_una(), p.setup.iss[B].wrapping_add(101), "ts {ts}: all 100 acknowledged");
    }
}

#[test]
fn rfc9293_3_10_7_4_a_segment_that_fails_a_prediction_test_takes_the_full_path() {
    type Change = fn(&mut Pair, &mut Seg<'static>);
    let cases: [(&str, u32, &'static [u8], Change); 16] = [
        ("FIN", 0, b"x", |_, s| s.flags |= FIN),
        ("RST", 0, b"", |_, s| s.flags |= RST),
        ("SYN", 0, b"x", |_, s| s.flags |= SYN),
        ("URG", 0, b"x", |_, s| s.flags |= URG),
        ("no ACK", 0, b"x", |_, s| s.flags = PSH),
        ("past RCV.NXT (out of order)", 0, b"x", |_, s| s.seq = s.seq.wrapping_add(10)),
        ("before RCV.NXT (a duplicate)", 0, b"xy", |_, s| s.seq = s.seq.wrapping_sub(1)),
        ("another window", 0, b"x", |_, s| s.window -= 1),
        ("a SACK block", 20, b"", |p, s| {
            let una = p.tcb[B].snd_una();
            s.options.sack[0] = (una.wrapping_add(40), una.wrapping_add(60));
            s.options.nsack = 1;
        }),
        ("no timestamps where both use them", 0, b"x", |_, s| s.options.ts = None),
        ("PAWS: an older TSval", 0, b"x", |_, s| {
            let (val, ecr) = s.options.ts.unwrap();
            s.options.ts = Some((val.wrapping_sub(1_000), ecr));
        }),
        ("an ACK of unsent data", 101, b"x", |_, _| {}),
        ("an ACK below SND.UNA", 0, b"x", |_, s| s.ack = s.ack.wrapping_sub(1)),
        ("a duplicate pure ACK", 0, b"", |_, _| {}),
        ("data beside an out-of-order range", 0, b"x", |p, s| {
            let mut ooo = *s;
            ooo.seq = ooo.seq.wrapping_add(100);
            let now = p.now;
            p.tcb[B].input(now, &ooo);
            assert!(p.tcb[B].holds_out_of_order());
        }),
        ("our FIN queued (FIN-WAIT-1)", 0, b"x", |p, _| p.tcb[B].close()),
    ];
    for (name, acked, payload, change) in cases {
        let mut p = in_flight(Setup::default());
        let mut seg = from_a(&p, acked, payload);
        change(&mut p, &mut seg);
        let before = p.tcb[B].stats.predicted;
        assert!(!predicted(&mut p, &seg), "{name}: took the short path");
        assert_eq!(p.tcb[B].stats.predicted, before, "{name}");
    }
    // The same segment is predicted on a connection without timestamps only when it carries none.
    let mut p = in_flight(Setup { ts: false, ..Setup::default() });
    let mut seg = from_a(&p, 0, b"x");
    seg.options.ts = Some((1, 2));
    assert!(!predicted(&mut p, &seg), "timestamps where none were negotiated");
    // And never with prediction off.
    let cfg = TcpConfig { header_prediction: false, ..TcpConfig::default() };
    let mut p = in_flight(Setup { cfg, ..Setup::default() });
    assert!(
        !{
            let seg = from_a(&p, 0, b"x");
            predicted(&mut p, &seg)
        },
        "prediction off"
    );
}
