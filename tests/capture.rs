//! `switchyard ctl capture`: frames of a running appliance's port into pcapng (`rte_pcapng`),
//! read back by tshark, which must find the test's own handshake in both directions.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::{Appliance, Fixture, NetNs};

#[test]
fn capture_to_pcapng_holds_the_tests_handshake_as_tshark_reads_it() {
    common::require_environment();
    let tshark = Command::new("tshark").arg("--version").output();
    assert!(
        tshark.is_ok_and(|o| o.status.success()),
        "this test needs tshark: `apt-get install tshark` (make test installs it)"
    );
    let ns = NetNs::new("cap");
    let socket = std::env::temp_dir().join(format!("{}.sock", ns.name));
    let app = Appliance::start_with(&ns, "sytcap", &format!("\n[control]\nsocket = \"{}\"\n", socket.display()));
    let f = Fixture { app, ns };
    let out = std::env::temp_dir().join(format!("{}.pcapng", f.ns.name));

    // The capture runs while the test makes one echo connection.
    let capture = {
        let (socket, out) = (socket.clone(), out.clone());
        std::thread::spawn(move || {
            Command::new(env!("CARGO_BIN_EXE_switchyard"))
                .args(["ctl", "--socket"])
                .arg(&socket)
                .args(["capture", "--port", "0", "--count", "6", "--secs", "20", "--out"])
                .arg(&out)
                .output()
                .expect("running ctl capture")
        })
    };
    std::thread::sleep(Duration::from_millis(300)); // armed
    let client_port = f.ns.run(|| {
        let mut s = common::connect(7);
        s.write_all(b"captured").unwrap();
        let mut back = [0u8; 8];
        s.read_exact(&mut back).unwrap();
        s.local_addr().unwrap().port()
    });
    let done = capture.join().unwrap();
    let said = String::from_utf8_lossy(&done.stdout).into_owned();
    assert!(done.status.success(), "{said}{}", String::from_utf8_lossy(&done.stderr));
    assert!(said.contains("6 frame(s) written"), "{said}");

    let read = Command::new("tshark")
        .arg("-r")
        .arg(&out)
        .args([
            "-Y",
            "tcp.flags.syn == 1",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.flags.ack",
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&out);
    let text = String::from_utf8_lossy(&read.stdout);
    assert!(read.status.success(), "tshark: {}", String::from_utf8_lossy(&read.stderr));
    let syn = format!("198.18.0.1\t{client_port}\t7\tFalse");
    let syn_ack = format!("198.18.0.2\t7\t{client_port}\tTrue");
    let has =
        |want: &str| text.lines().any(|l| l.replace("\t0", "\tFalse").replace("\t1", "\tTrue") == want || l == want);
    assert!(has(&syn), "no SYN from the client in the capture:\n{text}");
    assert!(has(&syn_ack), "no SYN-ACK from the appliance in the capture:\n{text}");
}
