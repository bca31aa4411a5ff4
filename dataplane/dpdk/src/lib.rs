//! The safe layer over `dpdk-sys`: one RAII owner per DPDK resource ([`Eal`], [`Mempool`],
//! [`Port`], [`Mbuf`], [`Burst`]) and one errno bridge ([`DpdkError`]). This is the only crate of
//! Switchyard's besides `dpdk-sys` that touches DPDK, and no FFI type leaves it; every `unsafe`
//! block carries a `// SAFETY:` line.
//!
//! - [`Eal`]: the environment, once per process; [`launch`] runs closures on its lcores.
//! - [`Mempool`], [`Mbuf`], [`Burst`]: packet memory, owned and freed on drop.
//! - [`Port`]: an ethdev port and its queues, configured from a request negotiated against what
//!   the device reports ([`PortRequest`], [`PortGrant`]).
//! - [`clock`]: the TSC as a microsecond clock; [`thash`]: Toeplitz hashing as RSS computes it;
//!   [`telemetry`]: commands on DPDK's telemetry socket; [`pcapng`]: packet capture to pcapng.

pub mod clock;
mod eal;
mod error;
pub mod launch;
mod mbuf;
mod mempool;
pub mod pcapng;
mod port;
pub mod telemetry;
pub mod thash;

pub use eal::{version, Eal};
pub use error::{DpdkError, Errno};
pub use mbuf::{Burst, Mbuf, RxChecksum, BURST};
pub use mempool::{Mempool, MempoolConfig};
pub use port::{
    format_mac, known_offload, rss_mask, symmetric_key, Port, PortGrant, PortId, PortRequest, PortStats, QueueId,
    RssRequest, RSS_TYPES,
};
