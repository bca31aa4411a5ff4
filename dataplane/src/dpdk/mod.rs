//! The safe layer over `dpdk-sys`: one RAII owner per DPDK resource ([`Eal`], [`Mempool`],
//! [`Port`], [`Mbuf`], [`Burst`]) and one errno bridge ([`DpdkError`]). This is the only module of
//! the crate with `unsafe` code, and no FFI type leaves it.
#![allow(unsafe_code)]

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
