//! An engine's memory outlives it by nothing: a process that makes and drops engines one after
//! another (a fuzz target, an embedder that restarts a port) stays the size it was. A test binary
//! of its own, so that no other test's engines move the process's size meanwhile.

use std::net::Ipv4Addr;
use std::time::Duration;

use engine::listener::{BacklogPolicy, OnFull};
use engine::phy::MemoryLink;
use engine::services::ServiceKind;
use engine::{Engine, EngineConfig, EngineInstant, ListenerSpec};

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One engine with a listener, so that it arms sockets: buffers and socket storage from its
/// arenas. Made and dropped.
fn make_and_drop(reclaim: bool) {
    let mut cfg: EngineConfig = EngineConfig::new([2, 0, 0, 0, 0, 2], Ipv4Addr::new(198, 18, 0, 2), 24);
    cfg.listeners = vec![ListenerSpec {
        port: 7,
        service: ServiceKind::Echo,
        backlog: 8,
        policy: BacklogPolicy::Exact,
        on_full: OnFull::Refuse,
    }];
    cfg.tcp_rx_buffer = 4096;
    cfg.tcp_tx_buffer = 4096;
    cfg.max_connections = 16;
    cfg.max_time_wait = 16;
    cfg.buffer_idle = reclaim.then_some(Duration::from_secs(1));
    let mut link = MemoryLink::new();
    let e: Engine = Engine::new(&cfg, &mut link.b, EngineInstant::from_millis(0)).unwrap();
    assert!(e.memory().buffers.reserved > 0 && e.memory().socket_storage > 0, "{:?}", e.memory());
}

#[test]
fn a_dropped_engine_gives_its_memory_back() {
    make_and_drop(false);
    let (size, rss) = (status_kib("VmSize:"), status_kib("VmRSS:"));
    for i in 0..1000 {
        make_and_drop(i % 2 == 0);
    }
    // Each engine maps a buffer chunk of 256 KiB and fills 64 socket storage slots: kept, 1000
    // engines would add 250 MiB of mappings and tens of MiB resident.
    let (grew, grew_rss) = (status_kib("VmSize:").saturating_sub(size), status_kib("VmRSS:").saturating_sub(rss));
    assert!(grew < 16 << 10, "the process grew by {grew} KiB of mappings over 1000 engines");
    assert!(grew_rss < 8 << 10, "the process grew by {grew_rss} KiB resident over 1000 engines");
}
