//! `switchyard ctl` and the Prometheus endpoint against a running appliance: every command, as
//! text and as JSON, and the metrics, checked against the traffic the test made; and ctl's errors
//! when the appliance is not there or the command line is wrong.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{ctl, ctl_json, Appliance, Fixture, NetNs};
use serde_json::Value;

#[test]
fn ctl_commands_show_the_traffic_the_test_made() {
    common::require_environment();
    let ns = NetNs::new("ctl");
    let socket = std::env::temp_dir().join(format!("{}.sock", ns.name));
    let extra = format!(
        "\n[[service]]\nkind = \"hold\"\nport = 9000\nbacklog = 2\npolicy = \"bsd\"\n\n[control]\nsocket = \"{}\"\n",
        socket.display()
    );
    let app = Appliance::start_with(&ns, "sytctl", &extra);
    let f = Fixture { app, ns };

    // Two echo connections that stay open, four clients queued on `hold` (bsd 2 -> 4) and one
    // refused.
    let (echo, holders, refused) = f.ns.run(|| {
        let echo: Vec<TcpStream> = (0..2)
            .map(|_| {
                let mut s = common::connect(7);
                s.write_all(b"hello").unwrap();
                let mut back = [0u8; 5];
                s.read_exact(&mut back).unwrap();
                s
            })
            .collect();
        let held: Vec<TcpStream> = (0..4).map(|_| common::connect(9000)).collect();
        let refused = TcpStream::connect_timeout(&Fixture::addr(9000), Duration::from_secs(3)).is_err();
        // A port with no listener: refused too, and counted as no_listener.
        let closed = TcpStream::connect_timeout(&Fixture::addr(4444), Duration::from_secs(3)).map(|_| ());
        assert_eq!(closed.map_err(|e| e.kind()), Err(std::io::ErrorKind::ConnectionRefused), "port 4444");
        (echo, held, refused) // kept open until the checks are done
    });
    assert!(refused, "the fifth hold client is refused");
    let echo_ports: Vec<u16> = echo.iter().map(|s| s.local_addr().unwrap().port()).collect();
    let held = holders.len();

    let status = ctl_json(&socket, "status");
    assert_eq!(status["cores"], 1);
    assert_eq!(status["ports"][0]["address"], "198.18.0.2/24");
    assert_eq!(status["ports"][0]["device"], "net_tap0");
    assert_eq!(status["ports"][0]["checksums"], "port", "net_tap offloads IPv4 and TCP checksums both ways");
    assert!(status["dpdk"].as_str().unwrap().contains("22.11"), "{status}");

    let listeners = ctl_json(&socket, "listeners");
    let row = |port: &str| {
        listeners
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["address"] == format!("198.18.0.2:{port}"))
            .unwrap_or_else(|| panic!("no listener on {port}: {listeners}"))
            .clone()
    };
    let hold = row("9000");
    assert_eq!((hold["service"].as_str(), hold["policy"].as_str()), (Some("hold"), Some("bsd")));
    assert_eq!(hold["backlog_limit"], 4);
    assert_eq!(hold["queued"], held);
    assert!(hold["refused"].as_u64().unwrap() >= 1, "{hold}");
    assert!(row("7")["accepted"].as_u64().unwrap() >= 2);

    let conns = ctl_json(&socket, "conns");
    let conns = conns.as_array().unwrap();
    for p in &echo_ports {
        let c = conns
            .iter()
            .find(|c| c["remote"] == format!("198.18.0.1:{p}"))
            .unwrap_or_else(|| panic!("echo client port {p} not listed: {conns:?}"));
        assert_eq!((c["state"].as_str(), c["kind"].as_str()), (Some("ESTABLISHED"), Some("accepted")));
        assert_eq!((c["bytes_in"].as_u64(), c["bytes_out"].as_u64()), (Some(5), Some(5)), "{c}");
        assert!(c["connected_secs"].as_f64().unwrap() >= 0.0);
    }
    let queued = conns.iter().filter(|c| c["local"] == "198.18.0.2:9000" && c["kind"] == "queued").count();
    assert_eq!(queued, held);

    let stats = ctl_json(&socket, "stats");
    let lane = &stats["cores"][0]["lanes"][0];
    assert!(lane["rx_frames"].as_u64().unwrap() > 10, "{stats}");
    assert!(lane["rx_bytes"].as_u64().unwrap() > 10 * 54, "at least a header per frame: {stats}");
    assert!(lane["tx_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert!(lane["open"].as_u64().unwrap() >= 6, "{stats}");
    // Connections that carried data hold buffer pages until they idle for 30-60 s
    // (buffer_idle_secs = 30), then give them back: one or the other, whatever the test's pace.
    // (On hugepages, when the machine has some free, buffers are never given back nor counted.)
    let hugepages = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("HugePages_Free:") && l.split_whitespace().nth(1) != Some("0"));
    let pages = lane["buffers_holding"].as_u64().unwrap() + lane["buffer_releases"].as_u64().unwrap();
    assert!(pages >= 1 || hugepages, "{stats}");
    assert!(stats["ports"][0]["rx_packets"].as_u64().unwrap() > 10);
    assert!(stats["ports"][0]["mbufs_in_use"].as_u64().is_some());
    // Linux in the namespace asked ARP for the appliance, which answered and learned it.
    assert!(lane["arp_replies"].as_u64().unwrap() >= 1, "{stats}");
    assert!(lane["neighbors"].as_u64().unwrap() >= 1, "{stats}");
    assert!(lane["arp_requests"].as_u64().is_some(), "{stats}");
    assert!(lane["no_listener"].as_u64().unwrap() >= 1, "the SYN to port 4444: {stats}");
    // The core's load: some of its time moved frames, never more than all of it.
    let core = &stats["cores"][0];
    let (busy, elapsed) = (core["busy_us"].as_u64().unwrap(), core["elapsed_us"].as_u64().unwrap());
    assert!(busy > 0 && busy <= elapsed, "{stats}");

    // The same commands as text.
    for (cmd, header) in [
        ("status", "ADDRESS"),
        ("status", "CHECKSUMS"),
        ("listeners", "QUEUED"),
        ("conns", "REMOTE"),
        ("stats", "BUSY_%"),
        ("stats", "RX_FRAMES"),
        ("stats", "NO_LISTENER"),
    ] {
        let (ok, out, err) = ctl(&socket, &[cmd]);
        assert!(ok && out.contains(header), "ctl {cmd}: {out}{err}");
    }
    let (_, out, _) = ctl(&socket, &["listeners"]);
    assert!(out.lines().any(|l| l.starts_with("198.18.0.2:9000") && l.contains("hold")), "{out}");

    // Prometheus, on the kernel path inside the appliance's namespace: the same counters.
    let metrics = f.ns.run(|| {
        let mut s = TcpStream::connect("127.0.0.1:9464").expect("the metrics endpoint");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    });
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    assert!(metrics.contains("Content-Type: text/plain; version=0.0.4"));
    let sample = |name: &str, labels: &str| -> f64 {
        let prefix = format!("{name}{{{labels}}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{metrics}"))
            .parse()
            .unwrap()
    };
    let hold_labels = r#"port="0",listen="198.18.0.2:9000",service="hold""#;
    assert_eq!(sample("switchyard_listener_queued", hold_labels), held as f64);
    assert!(sample("switchyard_listener_refused_total", hold_labels) >= 1.0);
    let busy = sample("switchyard_core_busy_seconds_total", r#"core="0""#);
    assert!(busy > 0.0 && busy <= sample("switchyard_core_seconds_total", r#"core="0""#));
    assert_eq!(sample("switchyard_listener_backlog_limit", hold_labels), 4.0);
    assert!(sample("switchyard_connections_open", r#"core="0",port="0""#) >= 6.0);
    let lane0 = r#"core="0",port="0""#;
    let pages = sample("switchyard_buffers_holding", lane0) + sample("switchyard_buffer_releases_total", lane0);
    assert!(pages >= 1.0 || hugepages);
    assert!(sample("switchyard_port_rx_packets_total", r#"port="0",device="net_tap0""#) > 10.0);
    assert!(sample("switchyard_arp_replies_total", lane0) >= 1.0);
    assert!(sample("switchyard_neighbors", lane0) >= 1.0);
    assert!(sample("switchyard_no_listener_total", lane0) >= 1.0);
    assert!(metrics.contains("# TYPE switchyard_listener_refused_total counter"));
    let not_found = f.ns.run(|| {
        let mut s = TcpStream::connect("127.0.0.1:9464").unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    });
    assert!(not_found.starts_with("HTTP/1.1 404"), "{not_found}");

    // DPDK telemetry: the stock dpdk-telemetry.py shows our commands next to DPDK's.
    let mut py = Command::new("dpdk-telemetry.py")
        .args(["-f", &f.ns.name])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("dpdk-telemetry.py (package dpdk)");
    py.stdin
        .take()
        .unwrap()
        .write_all(
            b"/switchyard/status\n/switchyard/listeners\n/switchyard/listener,198.18.0.2:9000\n/switchyard/core,0\n/ethdev/list\n",
        )
        .unwrap();
    let out = py.wait_with_output().unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l.trim_start_matches("--> ")).ok())
        .collect();
    let get = |key: &str| {
        lines.iter().find_map(|v| v.get(key).cloned()).unwrap_or_else(|| {
            panic!(
                "no {key} from dpdk-telemetry.py:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    assert_eq!(get("/switchyard/status")["port0_checksums"], "port");
    assert!(get("/switchyard/listeners").as_array().unwrap().iter().any(|a| a == "198.18.0.2:9000"));
    let tl = get("/switchyard/listener");
    assert_eq!((tl["service"].as_str(), tl["queued"].as_u64()), (Some("hold"), Some(held as u64)), "{tl}");
    let core = get("/switchyard/core");
    assert!(core["port0_rx_frames"].as_u64().unwrap() > 10, "{core}");
    assert!(core["port0_no_listener"].as_u64().unwrap() >= 1, "the SYN to port 4444: {core}");
    for key in ["port0_rx_bad_checksum", "port0_rx_multiseg_dropped", "port0_arp_replies"] {
        assert!(core[key].as_u64().is_some(), "{key}: {core}");
    }
    assert_eq!(get("/ethdev/list"), serde_json::json!([0]), "DPDK's own commands beside ours");

    // Stopped: the socket goes, and ctl says what to do.
    drop((echo, holders));
    let (status, _) = f.app.stop();
    assert!(status.success());
    assert!(!socket.exists(), "the control socket is removed on the way out");
    let (ok, _, err) = ctl(&socket, &["status"]);
    assert!(!ok && err.contains("not running") && err.contains("switchyard run"), "{err}");
}

#[test]
fn ctl_command_line_errors_say_what_was_wrong() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard")).args(["ctl", "lisenters"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lisenters") && err.contains("listeners"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ctl", "--socket", "/nonexistent/sy.sock", "stats"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no control socket at /nonexistent/sy.sock"));
}
