//! A smoltcp device over one rx/tx queue pair of a DPDK port.
//!
//! RX tokens own the received mbuf and give smoltcp its data in place; TX tokens write into an
//! mbuf from the pool and queue it on a burst that is flushed with `tx_burst` when full or when the
//! loop turn ends. A TX token that smoltcp drops without consuming frees its mbuf (the `Mbuf`
//! owner does; smoltcp issues #1147/#1053).

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::{BurstDevice, MAX_FRAME};
use crate::dpdk::{Burst, Mbuf, Mempool, Port, QueueId};
use crate::steer::{SteerCtx, Target};

/// Counters of what the device dropped and moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// Received frames dropped because they spanned several mbufs.
    pub rx_multiseg_dropped: u64,
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
    port: &'p Port,
    queue: QueueId,
    pool: &'p Mempool,
    rx: Burst,
    tx: Burst,
    stats: DeviceStats,
    checksums: ChecksumCapabilities,
    /// With several cores on the port: steering to the owning core.
    steer: Option<SteerCtx>,
}

impl<'p> PortDevice<'p> {
    /// A device over queue `queue` of `port`, allocating TX frames from `pool`.
    pub fn new(port: &'p Port, queue: QueueId, pool: &'p Mempool) -> Self {
        let mut checksums = ChecksumCapabilities::default();
        // smoltcp computes and verifies every checksum; no per-packet offload flags are set yet.
        checksums.ipv4 = Checksum::Both;
        checksums.tcp = Checksum::Both;
        PortDevice {
            port,
            queue,
            pool,
            rx: Burst::new(),
            tx: Burst::new(),
            stats: DeviceStats::default(),
            checksums,
            steer: None,
        }
    }

    /// One core's device on a port served by several cores: frames this queue receives for another
    /// core go to that core's ring, and frames other cores received for this one are taken from
    /// its own ring (`crate::steer`).
    pub fn with_steering(port: &'p Port, queue: QueueId, pool: &'p Mempool, steer: SteerCtx) -> Self {
        PortDevice { steer: Some(steer), ..PortDevice::new(port, queue, pool) }
    }

    /// Sorts one rx burst by owner, then tops the local burst up from this core's ring.
    fn refill_steered(&mut self, st: &SteerCtx) -> usize {
        let mut raw = Burst::new();
        let n = self.port.rx_burst(self.queue, &mut raw);
        self.stats.rx_frames += n as u64;
        while let Some(m) = raw.pop() {
            match st.steering.target(m.data()) {
                Target::Core(c) if c == st.me => {
                    let _ = self.rx.push(m); // the local burst was empty: room for a burst
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
                    let _ = self.rx.push(m);
                }
            }
        }
        while !self.rx.is_full() {
            let Some(m) = st.inboxes[usize::from(st.me)].pop() else { break };
            self.stats.steered_in += 1;
            let _ = self.rx.push(m);
        }
        self.rx.len()
    }

    pub fn stats(&self) -> DeviceStats {
        self.stats
    }

    pub fn port(&self) -> &Port {
        self.port
    }
}

impl BurstDevice for PortDevice<'_> {
    #[inline]
    fn refill(&mut self) -> usize {
        if !self.rx.is_empty() {
            return 0;
        }
        if let Some(st) = self.steer.take() {
            let n = self.refill_steered(&st);
            self.steer = Some(st);
            return n;
        }
        let n = self.port.rx_burst(self.queue, &mut self.rx);
        self.stats.rx_frames += n as u64;
        n
    }

    #[inline]
    fn flush(&mut self) -> usize {
        let n = self.port.tx_burst(self.queue, &mut self.tx);
        self.stats.tx_frames += n as u64;
        n
    }

    #[inline]
    fn peek(&mut self) -> Option<&[u8]> {
        while !self.rx.front_is_contiguous()? {
            drop(self.rx.pop());
            self.stats.rx_multiseg_dropped += 1;
        }
        self.rx.front_data()
    }

    #[inline]
    fn skip(&mut self) {
        drop(self.rx.pop());
    }
}

impl<'p> phy::Device for PortDevice<'p> {
    type RxToken<'a>
        = RxToken
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, 'p>
    where
        Self: 'a;

    #[inline]
    fn receive(&mut self, _now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let mbuf = loop {
            let m = self.rx.pop()?;
            if m.is_contiguous() {
                break m;
            }
            self.stats.rx_multiseg_dropped += 1;
        };
        Some((RxToken { mbuf }, TxToken { dev: self, mbuf: None }))
    }

    #[inline]
    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        let mbuf = match self.pool.alloc() {
            Some(m) => m,
            None => {
                self.stats.tx_nombuf += 1;
                return None;
            }
        };
        Some(TxToken { dev: self, mbuf: Some(mbuf) })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = None; // DESIGN fact 8: a burst limit shrank the advertised window
        caps.checksum = self.checksums.clone();
        caps
    }
}

/// A received frame, read in place.
pub struct RxToken {
    mbuf: Mbuf,
}

impl phy::RxToken for RxToken {
    #[inline]
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.mbuf.data())
        // the mbuf is freed here
    }
}

/// A frame to send. Holds its mbuf when it came from `transmit`; one that came with a received
/// frame allocates only if smoltcp actually replies.
pub struct TxToken<'a, 'p> {
    dev: &'a mut PortDevice<'p>,
    mbuf: Option<Mbuf>,
}

impl phy::TxToken for TxToken<'_, '_> {
    #[inline]
    fn consume<R, F>(mut self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let dev = &mut *self.dev;
        let mbuf = self.mbuf.take().or_else(|| dev.pool.alloc());
        let Some(mut mbuf) = mbuf else {
            dev.stats.tx_nombuf += 1;
            return f(&mut [0u8; MAX_FRAME][..len.min(MAX_FRAME)]);
        };
        let Some(buf) = mbuf.append(len) else {
            // Longer than the data room: smoltcp never builds one above the MTU we advertise.
            dev.stats.tx_nombuf += 1;
            return f(&mut [0u8; MAX_FRAME][..len.min(MAX_FRAME)]);
        };
        let r = f(buf);
        if dev.tx.is_full() {
            dev.flush();
        }
        if dev.tx.push(mbuf).is_err() {
            dev.stats.tx_queue_full += 1; // the dropped mbuf is freed
        }
        r
    }
}
