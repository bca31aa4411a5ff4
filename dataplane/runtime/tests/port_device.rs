//! The smoltcp device over a real DPDK port: a `net_ring` vdev, whose queue's TX ring is its RX
//! ring, so every frame sent comes back. EAL runs once per process: one test function holds all
//! the checks, each a block with its own name in the failure message.

use std::sync::Arc;

use dpdk::{Eal, Mempool, MempoolConfig, Port, PortRequest, QueueId, BURST};
use engine::phy::BurstDevice;
use runtime::device::{MbufDevice, PortDevice};
use smoltcp::phy::{Device, RxToken, TxToken};
use smoltcp::time::Instant;

fn frame(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|b| (b * 31 + i * 7) as u8).collect()
}

#[test]
fn port_device_over_a_dpdk_ring_port() {
    let name = format!("sy-unit-{}", std::process::id());
    let prefix = format!("--file-prefix={name}");
    let args = [
        "port_device_test",
        "--no-huge",
        "-m",
        "128",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        &prefix,
        "--vdev=net_ring0",
        "-l",
        "0",
        "--log-level=warning",
    ];
    let eal = Eal::init(args).expect(
        "EAL init with --no-huge and a net_ring vdev (this test needs DPDK: apt-get install dpdk-dev libdpdk-dev)",
    );
    let ports = eal.require_ports(1).expect("net_ring0 probed");
    let pool = Mempool::new(&eal, "unit_pool", &MempoolConfig { mbufs: 4095, cache: 0, ..Default::default() }).unwrap();
    let port =
        Port::open(&eal, ports[0], &PortRequest { rx_desc: 1024, tx_desc: 1024, ..Default::default() }, pool.clone())
            .unwrap();
    let baseline = pool.in_use();
    let now = Instant::from_millis(0);
    let mut dev = PortDevice::new(&port, QueueId(0), &pool);

    // Frames written through TX tokens come back through RX tokens byte for byte, across more
    // than one burst (the device flushes a full burst by itself).
    let n = BURST + 8;
    for i in 0..n {
        let tok = dev.transmit(now).expect("a TX token while the pool has mbufs");
        let f = frame(i, 60 + i);
        tok.consume(f.len(), |buf| buf.copy_from_slice(&f));
    }
    dev.flush();
    let mut got = Vec::new();
    while got.len() < n {
        assert!(dev.refill() > 0 || !got.is_empty(), "round trip: nothing came back");
        while let Some((rx, _tx)) = dev.receive(now) {
            got.push(rx.consume(|b| b.to_vec()));
        }
    }
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g, &frame(i, 60 + i), "round trip: frame {i} differs");
    }
    assert_eq!(dev.stats().tx_frames, n as u64);
    assert_eq!(dev.stats().rx_frames, n as u64);
    assert_eq!(pool.in_use(), baseline, "round trip: RX tokens free their mbufs");

    // A TX token dropped without consume frees its mbuf; so does the one that comes with an RX
    // token (it allocates nothing unless used).
    {
        let before = pool.in_use();
        let tok = dev.transmit(now).unwrap();
        assert_eq!(pool.in_use(), before + 1);
        drop(tok);
        assert_eq!(pool.in_use(), before, "dropped TX token: mbuf not freed");
    }

    // An exhausted pool: transmit() says no and counts it; nothing leaks once mbufs return.
    {
        let mut held = Vec::new();
        while let Some(m) = pool.alloc() {
            held.push(m);
        }
        assert!(dev.transmit(now).is_none(), "exhausted pool: transmit must return None");
        assert_eq!(dev.stats().tx_nombuf, 1);
        drop(held);
        assert!(dev.transmit(now).is_some());
        assert_eq!(pool.in_use(), baseline, "exhausted pool: mbufs back");
    }
    // A frame that spans two mbufs: the device drops it on the way in and counts it, and both
    // segments go back to the pool.
    {
        let mut md = MbufDevice::new(&pool);
        let mut head = pool.alloc_copy(&frame(0, 60)).unwrap();
        head.chain(pool.alloc_copy(&frame(1, 60)).unwrap()).unwrap_or_else(|_| panic!("chained"));
        assert_eq!((head.pkt_len(), head.is_contiguous()), (120, false));
        assert_eq!(pool.in_use(), baseline + 2);
        assert!(md.handle(head).is_ok());
        assert_eq!(md.stats().rx_multiseg_dropped, 1);
        assert!(md.peek().is_none(), "nothing for the engine");
        assert_eq!(pool.in_use(), baseline, "multi-segment frame: both mbufs freed");
    }
    // A device for a trusted memory wire: smoltcp neither computes nor checks IPv4 and TCP
    // checksums, and the device checks none either (a frame with wrong ones reaches the engine).
    {
        let mut md = MbufDevice::unchecked(&pool);
        let c = md.capabilities().checksum;
        assert!(!c.ipv4.rx() && !c.ipv4.tx() && !c.tcp.rx() && !c.tcp.tx(), "unchecked: smoltcp does no checksums");
        let mut tcp = vec![0u8; 54];
        tcp[12..14].copy_from_slice(&[0x08, 0x00]);
        tcp[14] = 0x45;
        tcp[16..18].copy_from_slice(&40u16.to_be_bytes());
        tcp[23] = 6; // TCP, both checksum fields zero: wrong
        assert!(md.handle(pool.alloc_copy(&tcp).unwrap()).is_ok());
        assert_eq!(md.peek(), Some(&tcp[..]), "unchecked: the frame is handed on");
        assert_eq!(md.stats().rx_bad_checksum, 0);
        md.skip();
        assert_eq!(pool.in_use(), baseline);
    }
    drop(dev);
    drop(port);
    assert_eq!(Arc::strong_count(&pool), 1);
    drop(pool);
    drop(eal);
    let _ = std::fs::remove_dir(std::path::Path::new("/var/run/dpdk").join(name));
}
