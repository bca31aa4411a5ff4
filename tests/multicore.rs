//! Two cores on one net_tap port: each core runs its own engine on its own queue; frames that the
//! kernel puts on the other core's queue are steered to the flow's owner. Real Linux clients must
//! see one coherent server.

mod common;

use common::{echo, Appliance, NetNs};
use sha2::{Digest, Sha256};

/// Field `name` (`established`, `arp_replies`, ...) of each core's "port totals" line in the
/// appliance log, as (core, value).
fn totals_per_core(log: &str, name: &str) -> Vec<(u32, u64)> {
    log.lines()
        .filter(|l| l.contains("port totals"))
        .map(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(name).and_then(|w| w.strip_prefix('=')))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("no {name} in {l}"))
            };
            (field("core") as u32, field(name))
        })
        .collect()
}

#[test]
fn two_cores_serve_one_address_coherently() {
    common::require_environment();
    let ns = NetNs::new("mc");
    let app = Appliance::start_cores(&ns, "sytmc", 2, "");
    // 1 MiB echo on one connection, and 40 concurrent connections spread over both cores.
    let big: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 9) as u8).collect();
    let want = Sha256::digest(&big);
    let got = ns.run(move || echo(big));
    assert_eq!(Sha256::digest(&got), want, "1 MiB echo through two cores");
    let clients: Vec<_> = (0..40u32)
        .map(|c| {
            ns.spawn(move || {
                let data: Vec<u8> = (0..16384u32).map(|i| (i ^ c) as u8).collect();
                assert_eq!(echo(data.clone()), data, "client {c}");
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        c.join().unwrap_or_else(|_| panic!("client {i} failed"));
    }
    let (status, log) = app.stop();
    assert!(status.success(), "exit {status}; log:\n{log}");
    let per_core = totals_per_core(&log, "established");
    assert_eq!(per_core.len(), 2, "one totals line per core; log:\n{log}");
    let total: u64 = per_core.iter().map(|&(_, n)| n).sum();
    assert!(total >= 41, "{per_core:?}");
    assert!(per_core.iter().all(|&(_, n)| n > 0), "both cores served connections: {per_core:?}");
    eprintln!("connections per core: {per_core:?}");
    // Linux ARPs for the appliance; both cores see the request and learn Linux's MAC, and core 0
    // alone answers, so Linux gets one reply, not one per core.
    let replies = totals_per_core(&log, "arp_replies");
    let of = |core: u32| replies.iter().find(|&&(c, _)| c == core).map(|&(_, n)| n);
    assert!(of(0) >= Some(1) && of(1) == Some(0), "ARP replies per core: {replies:?}");
    let learned = totals_per_core(&log, "neighbors");
    assert!(learned.iter().all(|&(_, n)| n >= 1), "neighbours per core: {learned:?}");
    for l in log.lines().filter(|l| l.contains("port totals")) {
        eprintln!("{l}");
    }
}
