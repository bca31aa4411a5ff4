//! The devices that put the engine on DPDK: [`MbufDevice`], a smoltcp device over mbufs handed in
//! and taken out (what an embedding gateway uses), and [`PortDevice`], the same glued to one queue
//! of a DPDK port, with software steering to the core that owns each frame. Both implement the
//! engine's [`BurstDevice`](engine::phy::BurstDevice); the engine itself never sees DPDK.
//! [`faults`] makes a port queue a lossy, duplicating, reordering wire for tests and benchmarks.

pub mod faults;
mod mbuf;
mod port;

pub use mbuf::{ChecksumMode, ChecksumOffload, MbufDevice, MbufDeviceStats, RX_QUEUE, TX_QUEUE};
pub use port::{DeviceStats, PortDevice};

/// A device's counters, for introspection, when it has a port behind it.
pub trait DeviceCounters {
    fn device_stats(&self) -> Option<DeviceStats> {
        None
    }
}

/// The in-memory device has no port and no counters of its own.
impl DeviceCounters for engine::phy::MemoryDevice {}
