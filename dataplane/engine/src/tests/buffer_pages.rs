//! Giving idle connections' buffer pages back to the kernel, and keeping those in use.

use super::*;

#[test]
fn an_idle_connection_gives_its_buffer_pages_back_and_carries_on() {
    let mut p = Pair::new(&reclaim_config());
    let h = p.connect(7, 44000);
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(echo(&mut p, h, &data), data);
    let (id, before) = the_connection(&p);
    assert!(before >= 2, "the rings' first pages were written: {before} resident");
    assert_eq!(p.engine.reclaim_stats().holding, 1, "only the connection was ever serviced");
    // Idle for two periods and a bit: the sweep gives the pages back.
    for _ in 0..250 {
        p.step_by(Duration::from_millis(10));
    }
    let (_, after) = the_connection(&p);
    assert_eq!(after, 0, "no buffer page left resident");
    let r = p.engine.reclaim_stats();
    assert!(r.releases >= 1 && r.released_bytes >= p.engine.buf_stride as u64, "{r:?}");
    assert!(!p.engine.slots[id].resident);
    // It carries on: the next bytes land on fresh pages and come back intact.
    let more: Vec<u8> = (0..5000u32).map(|i| (i * 13 + 1) as u8).collect();
    assert_eq!(echo(&mut p, h, &more), more);
    assert!(p.engine.slots[id].resident);
    assert!(the_connection(&p).1 >= 2);
}

#[test]
fn a_connection_in_use_keeps_its_pages() {
    let mut p = Pair::new(&reclaim_config());
    let h = p.connect(7, 44001);
    echo(&mut p, h, b"first");
    let (id, _) = the_connection(&p);
    // A request every 300 ms for 5 s, with a 1 s idle period: never idle for a whole pass. The
    // pass takes the whole period even with a handful of slots.
    for i in 0..16 {
        for _ in 0..30 {
            p.step_by(Duration::from_millis(10));
        }
        assert!(p.engine.slots[id].resident, "released while in use, before request {i}");
        assert_eq!(echo(&mut p, h, format!("request {i}").as_bytes()), format!("request {i}").as_bytes());
    }
    // Idle for less than one period: kept. Then for two: given back.
    for _ in 0..90 {
        p.step_by(Duration::from_millis(10));
    }
    assert!(p.engine.slots[id].resident, "released after 0.9 s idle, with a 1 s period");
    for _ in 0..120 {
        p.step_by(Duration::from_millis(10));
    }
    assert!(!p.engine.slots[id].resident, "kept after 2.1 s idle");
}

#[test]
fn unread_data_keeps_its_pages() {
    // `hold` never accepts: what a client sends waits in the receive ring.
    let mut c = hold_config(4, BacklogPolicy::Exact, OnFull::Refuse);
    c.buffer_idle = Some(std::time::Duration::from_secs(1));
    let mut p = Pair::new(&c);
    let h = p.connect(9000, 44002);
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    p.sock(h).send_slice(&[0x5a; 1000]).unwrap();
    assert!(p.run_until(100, |p| p.sock(h).send_queue() == 0), "acknowledged");
    for _ in 0..300 {
        p.step_by(Duration::from_millis(10));
    }
    let (id, resident) = the_connection(&p);
    assert!(p.engine.slots[id].resident && resident >= 1, "waiting data kept its page");
    assert_eq!(p.engine.slots[id].recv_queue(), 1000);
}

/// smoltcp keeps a segment that arrives beyond a hole in the free part of its receive ring and says
/// nothing of it. Giving that page back would turn the segment into zeros once the hole is filled.
#[test]
fn out_of_order_data_keeps_its_pages_until_the_hole_is_filled() {
    let mut p = Pair::new(&reclaim_config());
    let h = p.connect(7, 44003);
    echo(&mut p, h, b"warm");
    p.sock(h).set_nagle_enabled(false);
    let first: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8 + 1).collect();
    let second: Vec<u8> = (0..700u32).map(|i| (i % 241) as u8 + 1).collect();
    // Two segments on the wire; the first one is held back.
    p.sock(h).send_slice(&first).unwrap();
    p.now += Duration::from_millis(1);
    p.client.poll(p.now, &mut p.cdev, &mut p.sockets);
    p.sock(h).send_slice(&second).unwrap();
    p.client.poll(p.now, &mut p.cdev, &mut p.sockets);
    assert_eq!(p.edev.pending(), 2, "two data segments on the wire");
    let held = p.edev.take_inbound().unwrap();
    // The engine alone runs for 3 s (the client would retransmit the missing segment).
    for _ in 0..300 {
        p.now += Duration::from_millis(10);
        p.edev.refill();
        p.engine.poll(p.now, &mut p.edev);
    }
    let (id, resident) = the_connection(&p);
    assert_eq!(p.engine.slots[id].recv_queue(), 0, "nothing in order to read");
    assert!(holds_out_of_order(&p.engine.slots[id]));
    assert!(p.engine.slots[id].resident && resident >= 1, "the page with the out-of-order segment stays");
    // The hole is filled: both segments come back as sent.
    p.edev.inject(held);
    let mut got = Vec::new();
    assert!(p.run_until(1000, |p| {
        p.recv_all(h, &mut got);
        got.len() >= first.len() + second.len()
    }));
    let sent = [first, second].concat();
    let differ = got.iter().zip(&sent).position(|(a, b)| a != b);
    assert!(got.len() == sent.len() && differ.is_none(), "echo differs from byte {differ:?} on");
    // And then, idle, the pages go.
    for _ in 0..250 {
        p.step_by(Duration::from_millis(10));
    }
    assert!(!holds_out_of_order(&p.engine.slots[id]));
    assert_eq!(the_connection(&p).1, 0);
}

/// Whether the connection keeps out-of-order data: the engine's control block knows; for a
/// connection smoltcp runs the engine notes it (`reclaim::note_segment`).
fn holds_out_of_order<T>(slot: &crate::slot::Slot<T>) -> bool {
    match &slot.tcb {
        Some(t) => t.holds_out_of_order(),
        None => slot.ooo_until.is_some(),
    }
}

#[test]
fn reclaim_off_leaves_buffers_alone_and_its_range_is_checked() {
    let mut c = config();
    c.buffer_idle = None;
    let mut p = Pair::new(&c);
    let h = p.connect(7, 44004);
    echo(&mut p, h, b"x");
    for _ in 0..100 {
        p.step_by(Duration::from_secs(1));
    }
    assert!(p.engine.slots.iter().all(|s| s.buf == 0));
    assert_eq!(p.engine.reclaim_stats(), ReclaimStats::default());
    let mut link = MemoryLink::new();
    for bad in [std::time::Duration::from_millis(9), std::time::Duration::from_secs(86401)] {
        c.buffer_idle = Some(bad);
        assert_eq!(Engine::new(&c, &mut link.b, p.now).err(), Some(EngineError::BadBufferIdle(bad)));
    }
}
