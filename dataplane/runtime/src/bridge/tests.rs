//! The bridge with an engine, against a plain smoltcp client over an in-memory link, on a virtual
//! clock (the engine's test harness, [`engine::testing::Pair`]).

use std::sync::Arc;

use engine::phy::{BurstDevice, MemoryDevice};
use engine::testing::{config, sent_frames, Pair, Rng};
use engine::{BacklogPolicy, OnFull};
use sha2::{Digest, Sha256};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::Duration;

use crate::Service;

/// The engine of the engine's tests (echo on 7, HTTP on 80), with the runtime's services.
fn pair() -> Pair<Service> {
    Pair::new(&config().map_services(Service::from))
}

/// A notification counter, as an application's eventfd would be.
#[derive(Default)]
struct Count(std::sync::atomic::AtomicUsize);

impl crate::bridge::Notify for Count {
    fn notify(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Count {
    fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A bridged listener on `port` through the engine's command queue; returns the queue too.
fn bridged(
    p: &mut Pair<Service>,
    port: u16,
    backlog: usize,
) -> (Arc<crate::bridge::Commands>, Arc<crate::bridge::ListenerShared>, Arc<Count>) {
    use crate::bridge::{Command, Commands, ListenerShared};
    use crate::Attachment;
    let q = Arc::new(Commands::new(64));
    let mut attachment = Attachment::new(q.clone());
    p.before_poll = Some(Box::new(move |engine, now| attachment.run(engine, now)));
    let count = Arc::new(Count::default());
    let limit = BacklogPolicy::Exact.limit(backlog, 4096);
    let shared =
        Arc::new(ListenerShared::new(port, backlog, BacklogPolicy::Exact, OnFull::Refuse, limit, count.clone()));
    let (tx, rx) = std::sync::mpsc::channel();
    q.push(Command::Listen(shared.clone(), tx)).unwrap();
    p.step();
    assert_eq!(rx.try_recv().unwrap(), Ok(()));
    (q, shared, count)
}

/// The application's end of the next connection `shared` queues (within 200 steps).
fn accept(p: &mut Pair<Service>, shared: &crate::bridge::ListenerShared) -> crate::bridge::AppEnd {
    let mut inc = None;
    assert!(
        p.run_until(200, |_| {
            inc = shared.pop();
            inc.is_some()
        }),
        "a connection to accept"
    );
    inc.unwrap().end
}

#[test]
fn bridge_connection_carries_one_mib_both_ways_through_the_rings() {
    use crate::bridge::ReadOutcome;
    let mut p = pair();
    let (_q, shared, accept_count) = bridged(&mut p, 7200, 8);
    let h = p.connect(7200, 40100);
    let mut app = accept(&mut p, &shared);
    assert_eq!(accept_count.get(), 1, "the accept notification fired once");
    let conn_count = Arc::new(Count::default());
    app.set_notify(conn_count.clone());
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    let (mut sent, mut app_got, mut app_sent, mut back) = (0, Vec::new(), 0, Vec::new());
    let mut buf = vec![0u8; 8192];
    let ok = p.run_until(200_000, |p| {
        let s = p.sock(h);
        if s.can_send() && sent < data.len() {
            sent += s.send_slice(&data[sent..]).unwrap();
        }
        // The application echoes what it reads.
        while let ReadOutcome::Data(n) = app.read(&mut buf) {
            app_got.extend_from_slice(&buf[..n]);
        }
        if app_sent < app_got.len() {
            app_sent += app.write(&app_got[app_sent..]).unwrap();
        }
        p.recv_all(h, &mut back);
        back.len() == data.len()
    });
    assert!(ok, "echoed {} of {}", back.len(), data.len());
    assert_eq!(Sha256::digest(&back), Sha256::digest(&data));
    assert!(conn_count.get() > 0, "the application was woken when it waited");
    // The client finishes: the application sees end of stream, closes, and the engine frees it.
    p.sock(h).close();
    assert!(p.run_until(1000, |_| app.read(&mut buf) == ReadOutcome::Eof));
    drop(app);
    assert!(p.run_until(2000, |p| p.engine.stats().open == 0));
}

/// B4: data the client sends after the handshake, before any application takes the connection
/// from the accept queue, is kept and read once the application does.
#[test]
fn b4_data_sent_before_the_application_accepts_is_kept() {
    use crate::bridge::ReadOutcome;
    let mut p = pair();
    let (_q, shared, _) = bridged(&mut p, 7204, 8);
    let h = p.connect(7204, 40600);
    assert!(p.run_until(200, |p| p.sock(h).may_send() && shared.queued() == 1));
    p.sock(h).send_slice(b"early bytes").unwrap();
    p.run_until(50, |_| false); // delivered into the connection, nobody has accepted it
    assert_eq!(shared.queued(), 1);
    let mut app = accept(&mut p, &shared);
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    assert!(p.run_until(200, |_| {
        while let ReadOutcome::Data(n) = app.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        got == b"early bytes"
    }));
}

#[test]
fn bridge_l4_queued_until_taken_then_refused_and_unlisten_resets_the_queue() {
    let mut p = pair();
    let (q, shared, count) = bridged(&mut p, 7201, 1);
    let first = p.connect(7201, 40200);
    assert!(p.run_until(200, |_| shared.queued() == 1));
    assert_eq!(count.get(), 1);
    let second = p.connect(7201, 40201);
    assert!(p.run_until(200, |p| p.sock(second).state() == tcp::State::Closed), "refused at once (L4)");
    assert_eq!(shared.refused.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(count.get(), 1, "a refusal never notifies");
    assert_eq!(p.engine.listener_stats(7201).unwrap().queued, 1);
    // Unlisten: the queued connection is reset, the port is free again.
    q.push(crate::bridge::Command::Unlisten(7201)).unwrap();
    assert!(p.run_until(200, |p| p.sock(first).state() == tcp::State::Closed));
    assert!(p.engine.listener_stats(7201).is_none());
    assert!(p.run_until(200, |p| p.engine.stats().open == 0));
    // And a new listener on it reuses the closed entry.
    let before = p.engine.listener_entries();
    let _again = bridged(&mut p, 7201, 1);
    assert_eq!(p.engine.listener_entries(), before);
}

/// The retransmission deadline survives another timer firing: a bridged application's segment is
/// lost, and its retransmission timer runs; the client's data then starts its delayed ACK, and the
/// application's next write goes out carrying the engine's ACK. The lost data is sent again when
/// the RTO that started with the first segment expires (RFC 6298 §5.1: the timer is not restarted
/// by later sends; §2.4 with the engine's 200 ms floor; or the tail loss probe, never later, RFC
/// 8985 §7.2), not an RTO after the second write, and both lost segments go again.
#[test]
fn a_lost_segment_is_sent_again_on_time_after_a_delayed_ack_fired() {
    let mut p = pair();
    let (_q, shared, _) = bridged(&mut p, 7202, 8);
    let h = p.connect(7202, 40400);
    let mut app = accept(&mut p, &shared);
    p.run_until(20, |_| false); // the handshake's last ACKs settle
    assert_eq!(app.write(b"lost"), Ok(4));
    p.step();
    assert_eq!(sent_frames(&mut p).len(), 1, "the engine sent the application's data; it is lost");
    let left = p.now;
    p.step_by(Duration::from_millis(100));
    p.sock(h).send_slice(b"c1").unwrap();
    p.step(); // the client's data arrives; the engine's ACK waits (its delayed ACK)
    assert!(sent_frames(&mut p).is_empty(), "the ACK is delayed");
    p.step_by(Duration::from_millis(9));
    assert_eq!(app.write(b"d2"), Ok(2));
    p.now += Duration::from_millis(1);
    p.poll_once(); // "d2" goes, carrying the ACK
    assert_eq!(sent_frames(&mut p).len(), 1, "one segment: the new data with the ACK; it is lost too");
    let mut again = Vec::new();
    while again.is_empty() && p.now < left + Duration::from_millis(1500) {
        p.now += Duration::from_millis(1);
        p.poll_once();
        again = sent_frames(&mut p);
    }
    let after = p.now - left;
    assert!(after >= Duration::from_millis(200) && after <= Duration::from_millis(210), "after {after}");
    for f in again {
        p.cdev.inject(f);
    }
    // What went first may be the tail loss probe (the last segment, RFC 8985 §7.3); the client's
    // SACK of it then brings the first one at once (RACK).
    let mut got = Vec::new();
    assert!(p.run_until(300, |p| {
        p.recv_all(h, &mut got);
        got.len() >= 6
    }));
    assert_eq!(got, b"lostd2", "both lost segments, sent again, in order");
    let mut buf = [0u8; 8];
    assert_eq!(app.read(&mut buf), crate::bridge::ReadOutcome::Data(2));
    assert_eq!(&buf[..2], b"c1", "and the application had the client's data");
}

/// Bridged connections over a lossy wire, with applications that lag: six clients each trickle
/// 48 KiB in pieces of up to 600 bytes, each application now and then reads what came and writes
/// a piece of it back, and 3 % of the frames each way are lost (each frame on its own draw), over
/// four seeded loss patterns. Everything arrives intact, each connection ends cleanly, and nothing
/// is left open. (When smoltcp ran established connections, this caught the engine's timer
/// shortcut counting from the wrong moment, a case
/// `a_lost_segment_is_sent_again_on_time_after_a_delayed_ack_fired` lines up.)
#[test]
fn lossy_bridged_echo_with_lagging_applications_stays_intact() {
    for seed in 1..=4 {
        lossy_bridged_echo(seed);
    }
}

fn lossy_bridged_echo(seed: u64) {
    use crate::bridge::ReadOutcome;
    const CONNS: usize = 6;
    const LEN: usize = 48 << 10;
    const CHUNK: usize = 600;
    const LOSS_PERMILLE: usize = 30;
    let mut rng = Rng(seed);
    let mut p = pair();
    let (_q, shared, _) = bridged(&mut p, 7203, 16);
    let data: Vec<Vec<u8>> =
        (0..CONNS).map(|c| (0..LEN).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8 ^ c as u8).collect()).collect();
    let handles: Vec<SocketHandle> = (0..CONNS).map(|c| p.connect(7203, 40500 + c as u16)).collect();
    let mut apps: Vec<(crate::bridge::AppEnd, Vec<u8>, usize)> = Vec::new(); // end, read, written back
    let (mut sent, mut back) = (vec![0usize; CONNS], vec![Vec::new(); CONNS]);
    let mut buf = vec![0u8; 4096];
    // Loses each frame waiting on `dev`'s inbound wire on its own draw.
    let lossy = |rng: &mut Rng, dev: &mut MemoryDevice| {
        let frames: Vec<Vec<u8>> = std::iter::from_fn(|| dev.take_inbound()).collect();
        for f in frames.into_iter().filter(|_| rng.below(1000) >= LOSS_PERMILLE) {
            dev.inject(f);
        }
    };
    let mut steps = 0;
    while back.iter().map(Vec::len).sum::<usize>() < CONNS * LEN {
        steps += 1;
        assert!(
            steps < 200_000,
            "seed {seed}: 200 s of virtual time, echoed {:?} of {LEN} each",
            back.iter().map(Vec::len).collect::<Vec<_>>()
        );
        // `Pair::step`, with each frame lost on its own draw: the client's on their way to the
        // engine, the engine's on theirs to the client.
        p.now += Duration::from_millis(1);
        p.cdev.refill();
        p.client.poll(p.now, &mut p.cdev, &mut p.sockets);
        lossy(&mut rng, &mut p.edev);
        while p.edev.pending() > 0 {
            p.edev.refill();
            p.poll_once();
        }
        p.poll_once();
        lossy(&mut rng, &mut p.cdev);
        while let Some(inc) = shared.pop() {
            apps.push((inc.end, Vec::new(), 0));
        }
        for (app, got, written) in &mut apps {
            if rng.below(3) == 0 {
                while let ReadOutcome::Data(n) = app.read(&mut buf) {
                    got.extend_from_slice(&buf[..n]);
                }
                let end = got.len().min(*written + 1 + rng.below(CHUNK));
                if *written < end {
                    *written += app.write(&got[*written..end]).expect("the connection is open");
                }
            }
        }
        for (c, &h) in handles.iter().enumerate() {
            let s = p.sock(h);
            if s.can_send() && sent[c] < LEN && rng.below(2) == 0 {
                let end = LEN.min(sent[c] + 1 + rng.below(CHUNK));
                sent[c] += s.send_slice(&data[c][sent[c]..end]).unwrap();
            }
            p.recv_all(h, &mut back[c]);
        }
    }
    for c in 0..CONNS {
        assert_eq!(Sha256::digest(&back[c]), Sha256::digest(&data[c]), "seed {seed}: connection {c}");
    }
    // The clients close; each application sees the end of the stream and drops its end (FIN).
    for &h in &handles {
        p.sock(h).close();
    }
    let mut apps: Vec<Option<crate::bridge::AppEnd>> = apps.into_iter().map(|(a, _, _)| Some(a)).collect();
    assert!(
        p.run_until(60_000, |p| {
            for app in &mut apps {
                if app.as_mut().is_some_and(|a| a.read(&mut buf) == ReadOutcome::Eof) {
                    *app = None;
                }
            }
            handles.iter().all(|&h| p.sock(h).state() == tcp::State::TimeWait)
        }),
        "seed {seed}: every connection closed: client states {:?}",
        handles.iter().map(|&h| p.sock(h).state()).collect::<Vec<_>>()
    );
    assert!(p.run_until(60_000, |p| p.engine.stats().open == 0), "seed {seed}: {:?}", p.engine.stats());
}
