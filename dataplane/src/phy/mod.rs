//! smoltcp devices the engine runs over.
//!
//! The per-core loop ([`crate::lcore`]) calls [`BurstDevice::refill`] before the engine polls and
//! [`BurstDevice::flush`] after, so frames move in bursts of up to [`crate::dpdk::BURST`] and the
//! engine's `poll` never blocks or reads more than one burst.

mod mbuf_device;
mod memory;
mod port_device;

pub(crate) use mbuf_device::checksums_ok;
pub use mbuf_device::{ChecksumMode, ChecksumOffload, MbufDevice, MbufDeviceStats, RX_QUEUE, TX_QUEUE};
pub use memory::{MemoryDevice, MemoryLink};
pub use port_device::{DeviceStats, PortDevice};

/// A smoltcp device whose frames move in bursts.
pub trait BurstDevice: smoltcp::phy::Device {
    /// Pulls the next burst of received frames into the device; returns how many arrived.
    fn refill(&mut self) -> usize;
    /// Sends the frames staged by TX tokens; returns how many left.
    fn flush(&mut self) -> usize;
    /// The next received frame, without taking it: [`smoltcp::phy::Device::receive`] returns this
    /// same frame next. Lets the engine demultiplex before smoltcp sees the frame.
    fn peek(&mut self) -> Option<&[u8]>;
    /// Drops the next received frame.
    fn skip(&mut self);
    /// The device's counters, for introspection, when it has a port behind it.
    fn device_stats(&self) -> Option<DeviceStats> {
        None
    }
}

/// Ethernet frame size for a 1500-byte MTU (header included, no FCS).
pub const MAX_FRAME: usize = 1514;
