//! A smoltcp device over one rx/tx queue pair of a DPDK port: the port glue around an
//! [`MbufDevice`]. `refill` takes a burst from the queue (sorting frames that belong to another
//! core onto its ring, with several cores) and hands the frames in; `flush` takes the frames the
//! engine built and sends them with `tx_burst`. A gateway that owns its loop does the same with an
//! [`MbufDevice`] of its own: this is the appliance's use of that API, not a second path.

use std::collections::VecDeque;
use std::sync::Arc;

use dpdk::pcapng::CaptureHook;
use dpdk::{Burst, Mbuf, Mempool, Port, QueueId};
use engine::phy::BurstDevice;
use smoltcp::phy;
use smoltcp::time::Instant;

use super::faults::{FaultPlan, FaultStats, Faults};
use super::mbuf::{self, ChecksumOffload, MbufDevice};
use super::DeviceCounters;
use crate::steer::{SteerCtx, Target};

/// Counters of what the device dropped and moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// Bytes of the frames received on this queue, and of those handed to it for sending.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Received frames dropped because they spanned several mbufs.
    pub rx_multiseg_dropped: u64,
    /// Received frames dropped because a checksum was wrong (found by the port's receive
    /// offload, or by the device for frames the port did not check).
    pub rx_bad_checksum: u64,
    /// Frames smoltcp built that could not get an mbuf (pool exhausted).
    pub tx_nombuf: u64,
    /// Frames dropped because the tx queue stayed full.
    pub tx_queue_full: u64,
    /// Frames received here that belong to another core, handed to it.
    pub steered_out: u64,
    /// Frames another core received for this one.
    pub steered_in: u64,
    /// Frames for another core dropped because its ring was full (or, for copies to every core,
    /// because the pool was empty).
    pub steer_dropped: u64,
}

/// One queue pair of a port as a smoltcp device.
pub struct PortDevice<'p> {
    dev: MbufDevice<'p>,
    port: &'p Port,
    queue: QueueId,
    pool: &'p Mempool,
    /// Frames taken from the device, not yet accepted by the queue.
    tx: Burst,
    stats: DeviceStats,
    /// With several cores on the port: steering to the owning core.
    steer: Option<SteerCtx>,
    /// Packet capture (`switchyard ctl capture`), when one is armed.
    capture: Option<Arc<CaptureHook>>,
    /// A faulty wire on this queue, for tests and benchmarks ([`faults`]).
    faults: Option<Box<QueueFaults>>,
}

/// Both directions of a queue's faulty wire, their clock, and the frames to send that it let go.
struct QueueFaults {
    rx: Faults<Mbuf>,
    tx: Faults<Mbuf>,
    start: std::time::Instant,
    /// Frames the send side released, waiting for room in the tx burst.
    out: VecDeque<Mbuf>,
}

impl QueueFaults {
    fn now_us(&self) -> i64 {
        self.start.elapsed().as_micros() as i64
    }
}

impl<'p> PortDevice<'p> {
    /// A device over queue `queue` of `port`, allocating TX frames from `pool`.
    pub fn new(port: &'p Port, queue: QueueId, pool: &'p Mempool) -> Self {
        PortDevice {
            dev: MbufDevice::with_offloads(pool, ChecksumOffload::from_grant(port.grant())),
            port,
            queue,
            pool,
            tx: Burst::new(),
            stats: DeviceStats::default(),
            steer: None,
            capture: None,
            faults: None,
        }
    }

    /// Puts a faulty wire on this queue: `rx` for the frames it receives, `tx` for those it sends,
    /// drawn from `seed` (the send side from the next seed). For tests and benchmarks only.
    pub fn with_faults(mut self, rx: FaultPlan, tx: FaultPlan, seed: u64) -> Self {
        self.faults = Some(Box::new(QueueFaults {
            rx: Faults::new(rx, seed),
            tx: Faults::new(tx, seed.wrapping_add(1)),
            start: std::time::Instant::now(),
            out: VecDeque::new(),
        }));
        self
    }

    /// The faulty wire's counters, receive side then send side, if it has one.
    pub fn fault_stats(&self) -> Option<(FaultStats, FaultStats)> {
        self.faults.as_ref().map(|f| (f.rx.stats(), f.tx.stats()))
    }

    /// No IPv4 or TCP checksum computed or checked on this queue: see [`MbufDevice::unchecked`].
    pub fn unchecked(mut self) -> Self {
        self.dev = MbufDevice::unchecked(self.pool);
        self
    }

    /// Who computes and checks the IPv4 and TCP checksums on this queue.
    pub fn checksum_mode(&self) -> mbuf::ChecksumMode {
        self.dev.checksum_mode()
    }

    /// Feeds the frames this queue receives and sends to `hook`'s capture when one is armed.
    pub fn with_capture(mut self, hook: Arc<CaptureHook>) -> Self {
        self.capture = Some(hook);
        self
    }

    /// Copies a received burst to the armed capture, if any (the frames stay in `raw`).
    fn tap_rx(&self, raw: &mut Burst) {
        if let Some(h) = self.capture.as_ref().filter(|h| h.is_armed()) {
            let frames: Vec<Mbuf> = std::iter::from_fn(|| raw.pop()).collect();
            h.tap_all(self.queue.0, frames.iter(), false);
            for m in frames {
                let _ = raw.push(m); // they came from it: room
            }
        }
    }

    /// Moves frames to send from the device into the tx burst (counting their bytes), copying
    /// them to the armed capture, if any.
    fn take_tx(&mut self) {
        if let Some(f) = &mut self.faults {
            let (pool, now) = (self.pool, f.now_us());
            let QueueFaults { tx, out, .. } = &mut **f;
            while let Some(m) = self.dev.pop_tx() {
                tx.push(m, now, |m| pool.alloc_copy(m.data()), &mut |m| out.push_back(m));
            }
            tx.release(now, &mut |m| out.push_back(m));
            while !self.tx.is_full() {
                let Some(m) = out.pop_front() else { break };
                self.stats.tx_bytes += u64::from(m.pkt_len());
                let _ = self.tx.push(m); // not full
            }
            if let Some(h) = self.capture.as_ref().filter(|h| h.is_armed()) {
                let frames: Vec<Mbuf> = std::iter::from_fn(|| self.tx.pop()).collect();
                h.tap_all(self.queue.0, frames.iter(), true);
                for m in frames {
                    let _ = self.tx.push(m); // they came from it: room
                }
            }
            return;
        }
        match self.capture.as_ref().filter(|h| h.is_armed()) {
            None => {
                while !self.tx.is_full() {
                    let Some(m) = self.dev.pop_tx() else { break };
                    self.stats.tx_bytes += u64::from(m.pkt_len());
                    let _ = self.tx.push(m); // not full
                }
            }
            Some(h) => {
                let mut frames = Vec::new();
                while frames.len() + self.tx.len() < dpdk::BURST {
                    let Some(m) = self.dev.pop_tx() else { break };
                    self.stats.tx_bytes += u64::from(m.pkt_len());
                    frames.push(m);
                }
                h.tap_all(self.queue.0, frames.iter(), true);
                for m in frames {
                    let _ = self.tx.push(m); // counted to fit
                }
            }
        }
    }

    /// One core's device on a port served by several cores: frames this queue receives for another
    /// core go to that core's ring, and frames other cores received for this one are taken from
    /// its own ring (`crate::steer`).
    pub fn with_steering(port: &'p Port, queue: QueueId, pool: &'p Mempool, steer: SteerCtx) -> Self {
        PortDevice { steer: Some(steer), ..PortDevice::new(port, queue, pool) }
    }

    /// Hands a frame to the engine's device (a full queue drops it: it cannot be, at one burst
    /// per turn).
    #[inline]
    fn give(&mut self, m: dpdk::Mbuf) {
        let Some(f) = &mut self.faults else {
            let _ = self.dev.handle(m);
            return;
        };
        let (pool, dev, now) = (self.pool, &mut self.dev, f.now_us());
        f.rx.push(m, now, |m| pool.alloc_copy(m.data()), &mut |m| drop(dev.handle(m)));
    }

    /// Hands the faulty wire's received frames whose time has come to the engine's device.
    fn release_rx(&mut self) {
        if let Some(f) = &mut self.faults {
            let (dev, now) = (&mut self.dev, f.now_us());
            f.rx.release(now, &mut |m| drop(dev.handle(m)));
        }
    }

    /// Sorts one rx burst by owner, then tops up from this core's ring.
    fn refill_steered(&mut self, st: &SteerCtx) -> usize {
        let mut raw = Burst::new();
        let n = self.port.rx_burst(self.queue, &mut raw);
        self.stats.rx_frames += n as u64;
        self.tap_rx(&mut raw);
        let mut mine = 0;
        while let Some(m) = raw.pop() {
            self.stats.rx_bytes += u64::from(m.pkt_len());
            match st.steering.target(m.data()) {
                Target::Core(c) if c == st.me => {
                    self.give(m);
                    mine += 1;
                }
                Target::Core(c) => match st.inboxes[usize::from(c)].push(m) {
                    Ok(()) => self.stats.steered_out += 1,
                    Err(_) => self.stats.steer_dropped += 1, // the mbuf is freed
                },
                Target::All => {
                    for c in (0..st.inboxes.len()).filter(|&c| c != usize::from(st.me)) {
                        match self.pool.alloc_copy(m.data()).map(|copy| st.inboxes[c].push(copy)) {
                            Some(Ok(())) => self.stats.steered_out += 1,
                            _ => self.stats.steer_dropped += 1,
                        }
                    }
                    self.give(m);
                    mine += 1;
                }
            }
        }
        while mine < dpdk::BURST {
            let Some(m) = st.inboxes[usize::from(st.me)].pop() else { break };
            self.stats.steered_in += 1;
            self.give(m);
            mine += 1;
        }
        mine
    }

    pub fn stats(&self) -> DeviceStats {
        let d = self.dev.stats();
        DeviceStats {
            rx_multiseg_dropped: d.rx_multiseg_dropped,
            rx_bad_checksum: d.rx_bad_checksum,
            tx_nombuf: d.tx_nombuf,
            tx_queue_full: self.stats.tx_queue_full + d.tx_queue_full,
            ..self.stats
        }
    }

    /// Frames built and not yet taken by the port's tx queue (a process about to exit waits for
    /// them, or its last segments, the final ACKs among them, are lost).
    pub fn tx_pending(&self) -> usize {
        self.dev.pending().1 + self.tx.len() + self.faults.as_ref().map_or(0, |f| f.out.len() + f.tx.held())
    }

    pub fn port(&self) -> &Port {
        self.port
    }
}

impl BurstDevice for PortDevice<'_> {
    #[inline]
    fn refill(&mut self) -> usize {
        if self.dev.pending().0 > 0 {
            return 0;
        }
        self.release_rx();
        if let Some(st) = self.steer.take() {
            let n = self.refill_steered(&st);
            self.steer = Some(st);
            return n;
        }
        let mut raw = Burst::new();
        let n = self.port.rx_burst(self.queue, &mut raw);
        self.stats.rx_frames += n as u64;
        self.tap_rx(&mut raw);
        while let Some(m) = raw.pop() {
            self.stats.rx_bytes += u64::from(m.pkt_len());
            self.give(m);
        }
        n
    }

    #[inline]
    fn flush(&mut self) -> usize {
        let mut sent = 0;
        loop {
            self.take_tx();
            if self.tx.is_empty() {
                break;
            }
            let before = self.tx.len();
            let n = self.port.tx_burst(self.queue, &mut self.tx);
            sent += n;
            if n < before {
                // The queue is full: what is left waits for the next flush, unless the engine
                // keeps building; then the oldest go.
                if self.dev.pending().1 >= mbuf::TX_QUEUE / 2 {
                    self.stats.tx_queue_full += self.tx.len() as u64;
                    while self.tx.pop().is_some() {}
                }
                break;
            }
        }
        self.stats.tx_frames += sent as u64;
        sent
    }

    #[inline]
    fn peek(&mut self) -> Option<&[u8]> {
        self.dev.peek()
    }

    #[inline]
    fn skip(&mut self) {
        self.dev.skip();
    }
}

impl DeviceCounters for PortDevice<'_> {
    fn device_stats(&self) -> Option<DeviceStats> {
        Some(self.stats())
    }
}

impl<'p> phy::Device for PortDevice<'p> {
    type RxToken<'a>
        = mbuf::RxToken
    where
        Self: 'a;
    type TxToken<'a>
        = mbuf::TxToken<'a, 'p>
    where
        Self: 'a;

    #[inline]
    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.dev.receive(now)
    }

    #[inline]
    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        self.dev.transmit(now)
    }

    fn capabilities(&self) -> phy::DeviceCapabilities {
        self.dev.capabilities()
    }
}
