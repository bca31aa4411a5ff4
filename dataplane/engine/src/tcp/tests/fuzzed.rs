//! Defects the `tcp` fuzz target found (docs/fuzzing.md), one test each, with the input that
//! showed it in `dataplane/fuzz/seeds/tcp/`.

use super::*;

/// Without window scaling a window field offers 65,535 bytes at most; a receive ring larger than
/// that by two segments must not make every output with nothing to send a "window update" that
/// offers the same window again (RFC 9293 §3.8.6.2.2: an update when the window opened). It
/// does: `output` compares RCV.NXT plus the free ring, not what a field can offer, with the edge
/// last offered, so the ACK goes out on every service, and delayed ACKs never delay (seed
/// `window-update-unscaled`).
#[test]
fn an_unscaled_window_wider_than_the_field_sends_no_empty_updates() {
    let mut p = Pair::settled(Setup { wscale: false, rx: [262_144; 2], ..Setup::default() });
    let since = p.log.len();
    for side in [A, B] {
        p.output(side);
        p.output(side);
    }
    assert_eq!(p.log.len(), since, "segments with nothing to say:\n{}", dump(&p.log[since..]));
    // And one data segment is ACKed after the delay, not at once.
    p.app[A].total = 100;
    p.service();
    let since = p.log.len();
    p.run_for(5 * MS);
    assert_eq!(p.sent_by(B, since).count(), 0, "an ACK before the delay:\n{}", dump(&p.log[since..]));
}
