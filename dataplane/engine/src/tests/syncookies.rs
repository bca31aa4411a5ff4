//! SYN cookies (RFC 4987 §3.6): a listener past its half-open budget, or with `syn_cookies =
//! always`, answers SYNs statelessly; a valid cookie in the client's ACK makes the connection, a
//! bad one makes nothing.

use smoltcp::wire::{TcpControl, TcpRepr};

use super::*;
use crate::flow::{plain_tcp, test_syn_frame, test_tcp_frame};
use crate::tcp::seg;
use crate::SynCookies;

const ENGINE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

fn cookie_config(mode: SynCookies, syn_backlog: usize) -> EngineConfig {
    let mut c = config();
    c.syn_cookies = mode;
    c.syn_backlog = syn_backlog;
    c
}

/// The SYN-ACKs (their sequence numbers and options) among the frames the engine sent.
fn syn_acks(frames: &[Vec<u8>]) -> Vec<(u32, u32, seg::Options)> {
    frames
        .iter()
        .filter_map(|f| seg::parse(f))
        .filter(|s| s.has(seg::SYN) && s.has(seg::ACK))
        .map(|s| (s.seq, s.ack, s.options))
        .collect()
}

fn ack_frame(src: Ipv4Addr, sport: u16, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let tcp: TcpRepr = plain_tcp((sport, 7), TcpControl::Psh, seq, Some(ack), 1000, payload);
    test_tcp_frame((CLIENT_MAC, src), (ENGINE_MAC, SERVER), &tcp)
}

#[test]
fn rfc4987_with_cookies_always_a_client_connects_and_is_echoed() {
    let mut p = Pair::new(&cookie_config(SynCookies::Always, 4096));
    let h = p.connect(7, 46000);
    assert_eq!(echo(&mut p, h, b"through a cookie"), b"through a cookie");
    let st = p.engine.listener_stats(7).unwrap();
    assert_eq!((st.cookies_sent, st.cookies_accepted, st.cookies_invalid), (1, 1, 0), "{st:?}");
    assert_eq!((st.completed, st.half_open), (1, 0));
    p.sock(h).close();
    assert!(p.run_until(2000, |p| p.engine.stats().open == 0), "it closes like any other");
}

/// A spoofed flood fills the half-open budget; past it every SYN, the real client's too, gets a
/// cookie: nobody is refused, nothing is evicted, and the real client connects.
#[test]
fn rfc4987_past_the_half_open_budget_syns_get_cookies_and_a_real_client_connects() {
    let mut p = Pair::new(&cookie_config(SynCookies::Auto, 4));
    for i in 0..200u16 {
        let src = Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8);
        p.edev.inject(test_syn_frame(src, 1024 + i, SERVER, 7));
    }
    p.engine_poll();
    drop(sent_frames(&mut p)); // the SYN-ACKs to spoofed sources go nowhere
    let st = p.engine.listener_stats(7).unwrap();
    assert_eq!((st.half_open, st.cookies_sent, st.syn_evicted, st.refused), (4, 196, 0, 0), "{st:?}");
    let h = p.connect(7, 46001);
    assert_eq!(echo(&mut p, h, b"real"), b"real");
    let st = p.engine.listener_stats(7).unwrap();
    assert_eq!((st.cookies_accepted, st.refused), (1, 0), "{st:?}");
    assert_eq!(p.engine.stats().open, 5, "the four half-open ones and the client's");
}

/// An ACK that matches no connection and carries no valid cookie makes nothing: it is counted and
/// answered with an RST, as before cookies.
#[test]
fn rfc4987_a_bad_cookie_makes_nothing() {
    let mut p = Pair::new(&cookie_config(SynCookies::Always, 4096));
    let src = Ipv4Addr::new(198, 19, 0, 9);
    p.edev.inject(ack_frame(src, 5000, 1000, 0xdead_beef, b""));
    p.engine_poll();
    let sent = sent_frames(&mut p);
    let rst = sent.iter().filter_map(|f| seg::parse(f)).any(|s| s.has(seg::RST));
    assert!(rst, "answered with an RST");
    let st = p.engine.listener_stats(7).unwrap();
    assert_eq!((st.cookies_invalid, st.cookies_accepted), (1, 0));
    assert_eq!(p.engine.stats().open, 0);
}

/// The client's third segment carries data: the connection the cookie makes keeps it (the echo
/// service sends it back), and a cookie is good for its own 4-tuple and ISN only.
#[test]
fn rfc4987_data_in_the_third_segment_is_kept() {
    let mut p = Pair::new(&cookie_config(SynCookies::Always, 4096));
    let src = CLIENT;
    p.edev.inject(test_syn_frame(src, 5001, SERVER, 7)); // ISN 1
    p.engine_poll();
    let acks = syn_acks(&sent_frames(&mut p));
    assert_eq!(acks.len(), 1);
    let (iss, ack, opts) = acks[0];
    assert_eq!((ack, opts.mss), (2, Some(1460)));
    // The same cookie from another port is no cookie.
    p.edev.inject(ack_frame(src, 5002, 2, iss.wrapping_add(1), b"x"));
    p.engine_poll();
    drop(sent_frames(&mut p));
    p.edev.inject(ack_frame(src, 5001, 2, iss.wrapping_add(1), b"hello"));
    p.engine_poll();
    let echoed: Vec<u8> =
        sent_frames(&mut p).iter().filter_map(|f| seg::parse(f)).flat_map(|s| s.payload.to_vec()).collect();
    assert_eq!(echoed, b"hello");
    let st = p.engine.listener_stats(7).unwrap();
    assert_eq!((st.cookies_accepted, st.cookies_invalid), (1, 1), "{st:?}");
}
