//! Raw bindings to the system DPDK 22.11, found through `pkg-config libdpdk`.
//!
//! Bindings only: bindgen output for an allowlist of EAL, ethdev and mempool functions, plus a C
//! shim (`src/shim.c`) for the static-inline functions and macros DPDK keeps in its headers. The
//! shim's functions are re-exported here under DPDK's own names, so callers write
//! `rte_eth_rx_burst` whichever way a function is reached. The safe layer lives in
//! the `switchyard-dpdk` crate (`dataplane/dpdk`); nothing else should use this crate.
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case)]
#![allow(clippy::all, clippy::undocumented_unsafe_blocks)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

pub use self::{
    sy_rte_errno as rte_errno, sy_rte_eth_rx_burst as rte_eth_rx_burst, sy_rte_eth_tx_burst as rte_eth_tx_burst,
    sy_rte_eth_tx_prepare as rte_eth_tx_prepare, sy_rte_lcore_id as rte_lcore_id,
    sy_rte_mbuf_ol_flags as rte_mbuf_ol_flags, sy_rte_mbuf_tx_offload as rte_mbuf_tx_offload,
    sy_rte_pktmbuf_alloc as rte_pktmbuf_alloc, sy_rte_pktmbuf_append as rte_pktmbuf_append,
    sy_rte_pktmbuf_chain as rte_pktmbuf_chain, sy_rte_pktmbuf_first_seg as rte_pktmbuf_first_seg,
    sy_rte_pktmbuf_free as rte_pktmbuf_free, sy_rte_pktmbuf_free_bulk as rte_pktmbuf_free_bulk,
    sy_rte_pktmbuf_is_contiguous as rte_pktmbuf_is_contiguous, sy_rte_pktmbuf_pkt_len as rte_pktmbuf_pkt_len,
    sy_rte_rdtsc as rte_rdtsc, sy_rte_softrss as rte_softrss,
};
