//! A smoltcp device over mbufs its owner hands in and takes out: the device a gateway that runs
//! its own DPDK loop gives the engine (see the crate's embedding guide), and the one the
//! appliance's [`super::PortDevice`] wraps around a port queue.
//!
//! RX: [`MbufDevice::handle`] queues a received mbuf; the engine reads it in place and frees it.
//! TX: TX tokens write into mbufs from the pool and queue them; [`MbufDevice::take_tx`] hands
//! them to the owner for its own `tx_burst`. A TX token that smoltcp drops without consuming frees
//! its mbuf (the `Mbuf` owner does; smoltcp issues #1147/#1053).

use std::collections::VecDeque;

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::{BurstDevice, MAX_FRAME};
use crate::dpdk::{Burst, Mbuf, Mempool};

/// Received frames an [`MbufDevice`] holds before [`MbufDevice::handle`] says no.
pub const RX_QUEUE: usize = 1024;
/// Frames to send an [`MbufDevice`] holds before it drops (and counts) more.
pub const TX_QUEUE: usize = 8192;

/// What an [`MbufDevice`] moved and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MbufDeviceStats {
    /// Frames handed in.
    pub handled: u64,
    /// Frames handed in while the receive queue was full (given back to the caller).
    pub rx_queue_full: u64,
    /// Received frames dropped because they spanned several mbufs.
    pub rx_multiseg_dropped: u64,
    /// Frames built for sending.
    pub built: u64,
    /// Frames smoltcp built that could not get an mbuf (pool exhausted).
    pub tx_nombuf: u64,
    /// Frames dropped because the send queue was full (the owner did not take them).
    pub tx_queue_full: u64,
}

/// A smoltcp device over handed-in and taken-out mbufs. See the module documentation.
pub struct MbufDevice<'p> {
    pool: &'p Mempool,
    rx: VecDeque<Mbuf>,
    tx: VecDeque<Mbuf>,
    stats: MbufDeviceStats,
    checksums: ChecksumCapabilities,
}

impl<'p> MbufDevice<'p> {
    /// A device whose frames to send come from `pool`.
    pub fn new(pool: &'p Mempool) -> Self {
        let mut checksums = ChecksumCapabilities::default();
        // smoltcp computes and verifies every checksum; no per-packet offload flags are set yet.
        checksums.ipv4 = Checksum::Both;
        checksums.tcp = Checksum::Both;
        MbufDevice {
            pool,
            rx: VecDeque::with_capacity(RX_QUEUE),
            tx: VecDeque::with_capacity(crate::dpdk::BURST * 4),
            stats: MbufDeviceStats::default(),
            checksums,
        }
    }

    /// Queues a received frame for the engine's next poll. Gives it back when [`RX_QUEUE`]
    /// frames wait already (poll the engine, or drop it).
    #[inline]
    pub fn handle(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.rx.len() >= RX_QUEUE {
            self.stats.rx_queue_full += 1;
            return Err(m);
        }
        self.stats.handled += 1;
        self.rx.push_back(m);
        Ok(())
    }

    /// Moves frames to send into `out`, as many as it has room for; returns how many.
    #[inline]
    pub fn take_tx(&mut self, out: &mut Burst) -> usize {
        let mut n = 0;
        while !out.is_full() {
            let Some(m) = self.tx.pop_front() else { break };
            let _ = out.push(m); // room checked
            n += 1;
        }
        n
    }

    /// Takes the next frame to send.
    #[inline]
    pub fn pop_tx(&mut self) -> Option<Mbuf> {
        self.tx.pop_front()
    }

    /// Frames waiting to be received by the engine, and to be sent by the owner.
    pub fn pending(&self) -> (usize, usize) {
        (self.rx.len(), self.tx.len())
    }

    pub fn stats(&self) -> MbufDeviceStats {
        self.stats
    }

    fn queue_tx(&mut self, m: Mbuf) {
        if self.tx.len() >= TX_QUEUE {
            self.stats.tx_queue_full += 1; // the dropped mbuf is freed
            return;
        }
        self.stats.built += 1;
        self.tx.push_back(m);
    }
}

impl BurstDevice for MbufDevice<'_> {
    /// Frames arrive through [`MbufDevice::handle`]: nothing to pull.
    #[inline]
    fn refill(&mut self) -> usize {
        0
    }

    /// Frames leave through [`MbufDevice::take_tx`]: nothing to push.
    #[inline]
    fn flush(&mut self) -> usize {
        0
    }

    #[inline]
    fn peek(&mut self) -> Option<&[u8]> {
        loop {
            let front = self.rx.front()?;
            if front.is_contiguous() {
                break;
            }
            drop(self.rx.pop_front());
            self.stats.rx_multiseg_dropped += 1;
        }
        self.rx.front().map(Mbuf::data)
    }

    #[inline]
    fn skip(&mut self) {
        drop(self.rx.pop_front());
    }
}

impl<'p> phy::Device for MbufDevice<'p> {
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
            let m = self.rx.pop_front()?;
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
    dev: &'a mut MbufDevice<'p>,
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
        dev.queue_tx(mbuf);
        r
    }
}
