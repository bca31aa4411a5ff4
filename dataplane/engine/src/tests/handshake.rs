//! The ACK that completes a passive handshake is taken by the engine (`Engine::handshake_ack`),
//! not smoltcp: its data and FIN reach the control block; an ACK of another number goes to
//! smoltcp as before.

use smoltcp::wire::{TcpControl, TcpRepr};

use super::*;
use crate::flow::{plain_tcp, test_syn_frame, test_tcp_frame};
use crate::tcp::seg;

const ENGINE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

/// A client's SYN (ISN 1) to the echo port; returns the ISS of the engine's SYN-ACK.
fn syn(p: &mut Pair) -> u32 {
    p.edev.inject(test_syn_frame(CLIENT, 5001, SERVER, 7));
    p.engine_poll();
    let synacks: Vec<u32> = sent_frames(p)
        .iter()
        .filter_map(|f| seg::parse(f))
        .filter(|s| s.has(seg::SYN) && s.has(seg::ACK))
        .map(|s| s.seq)
        .collect();
    assert_eq!(synacks.len(), 1);
    synacks[0]
}

fn third(control: TcpControl, ack: u32, payload: &[u8]) -> Vec<u8> {
    let tcp: TcpRepr = plain_tcp((5001, 7), control, 2, Some(ack), 1000, payload);
    test_tcp_frame((CLIENT_MAC, CLIENT), (ENGINE_MAC, SERVER), &tcp)
}

#[test]
fn rfc9293_3_10_7_4_the_handshake_ack_with_data_and_fin_reaches_the_control_block() {
    let mut p = Pair::new(&config());
    let iss = syn(&mut p);
    p.edev.inject(third(TcpControl::Fin, iss.wrapping_add(1), b"hello"));
    p.engine_poll();
    let out: Vec<_> = sent_frames(&mut p)
        .iter()
        .filter_map(|f| seg::parse(f).map(|s| (s.payload.to_vec(), s.flags, s.ack)))
        .collect();
    let echoed: Vec<u8> = out.iter().flat_map(|(d, ..)| d.clone()).collect();
    assert_eq!(echoed, b"hello", "{out:?}");
    assert!(out.iter().any(|(_, f, ack)| f & seg::FIN != 0 && *ack == 2 + 5 + 1), "our FIN after the peer's: {out:?}");
    let st = p.engine.listener_stats(7).unwrap();
    assert_eq!((st.completed, st.half_open), (1, 0), "{st:?}");
    assert_eq!(p.engine.stats().handshake_acks, 1, "the engine took the ACK");
}

#[test]
fn rfc9293_3_10_7_4_an_ack_of_another_number_in_syn_received_is_left_to_smoltcp() {
    let mut p = Pair::new(&config());
    let iss = syn(&mut p);
    // RFC 9293 §3.10.7.4: in SYN-RECEIVED an unacceptable ACK draws an RST; no connection.
    p.edev.inject(third(TcpControl::Psh, iss.wrapping_add(7), b"early"));
    p.engine_poll();
    let out: Vec<_> = sent_frames(&mut p).iter().filter_map(|f| seg::parse(f).map(|s| (s.flags, s.seq))).collect();
    assert!(out.iter().any(|&(f, seq)| f & seg::RST != 0 && seq == iss.wrapping_add(7)), "{out:?}");
    let st = p.engine.listener_stats(7).unwrap();
    assert_eq!((st.completed, st.half_open), (0, 1), "{st:?}");
    assert_eq!(p.engine.stats().handshake_acks, 0);
    // The right one then completes the handshake.
    p.edev.inject(third(TcpControl::Psh, iss.wrapping_add(1), b"hi"));
    p.engine_poll();
    let echoed: Vec<u8> =
        sent_frames(&mut p).iter().filter_map(|f| seg::parse(f)).flat_map(|s| s.payload.to_vec()).collect();
    assert_eq!(echoed, b"hi");
    assert_eq!(p.engine.listener_stats(7).unwrap().completed, 1);
}
