//! Switchyard's fast path.
//!
//! How it is put together, bottom up:
//! - [`dpdk`]: the safe layer over `dpdk-sys` (EAL, mempools, ports, mbufs); the only module with
//!   `unsafe` code.
//! - [`mem`]: per-engine arenas for connection buffers (hugepages when reserved) and socket
//!   storage; the only other module with `unsafe` code.
//! - [`phy`]: smoltcp devices: [`phy::PortDevice`] over a DPDK port queue, and an in-memory link
//!   for deterministic tests.
//! - [`services`]: the built-in services (`echo`, `http`) as sans-I/O session state machines.
//! - [`engine`]: the TCP engine of one core: smoltcp interface, listeners, connections and the
//!   services that run on them. Pure logic over a device and a clock: it never touches DPDK.
//! - [`steer`]: software flow steering: which core owns a frame (Toeplitz, as RSS computes it),
//!   and the rings that hand frames to their owner.
//! - [`lcore`]: the per-core loop that drives a device and an engine, with idle back-off.
//! - [`bridge`]: how application threads reach an engine: command queues, bridged listeners and
//!   connections over lock-free byte rings (the fast provider of the control plane's switch).
#![deny(unsafe_code)]

pub mod bridge;
pub mod dpdk;
pub mod engine;
pub mod lcore;
pub mod mem;
pub mod phy;
pub mod services;
pub mod steer;
