//! The faulty wire (`[port.faults]`, `runtime::device::faults`) with real Linux clients over
//! net_tap: frames lost, duplicated and reordered each way on purpose, and every byte still
//! arrives intact.

mod common;

use std::time::Instant;

use common::{echo, require_environment, Appliance, NetNs};
use sha2::{Digest, Sha256};

/// Retransmitted segments the namespace's Linux TCP counted (`Tcp: RetransSegs`).
fn linux_retransmissions(ns: &NetNs) -> u64 {
    let out = ns.command("cat").arg("/proc/net/snmp").output().expect("reading /proc/net/snmp");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().expect("Tcp: names"), tcp.next().expect("Tcp: values"));
    let at = names.split_whitespace().position(|n| n == "RetransSegs").expect("RetransSegs");
    values.split_whitespace().nth(at).and_then(|v| v.parse().ok()).expect("a number")
}

#[test]
fn a_lossy_duplicating_reordering_wire_keeps_an_echo_intact() {
    require_environment();
    // The only test in this binary: no other thread reads the environment meanwhile.
    std::env::set_var("SWITCHYARD_ALLOW_FAULTS", "1");
    let ns = NetNs::new("faults");
    let faults = "\n[port.faults]\nloss_percent = 1.0\nduplicate_percent = 1.0\nreorder_percent = 2.0\nseed = 7\n";
    let mut app = Appliance::start_with(&ns, "syfault", faults);
    app.wait_for_log("a faulty wire on this port", std::time::Duration::from_secs(10));
    let data: Vec<u8> = (0..512u32 << 10).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    let want = Sha256::digest(&data);
    let before = linux_retransmissions(&ns);
    let t = Instant::now();
    let got = ns.run(move || echo(data));
    let took = t.elapsed();
    let retransmitted = linux_retransmissions(&ns) - before;
    eprintln!("512 KiB echoed through the faulty wire in {took:?}; Linux retransmitted {retransmitted} segments");
    assert_eq!(got.len(), 512 << 10);
    assert_eq!(Sha256::digest(&got), want, "echoed bytes differ");
    assert!(retransmitted > 0, "the wire lost nothing the Linux side had to send again");
}
