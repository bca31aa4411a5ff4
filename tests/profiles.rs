//! NIC profiles: `switchyard profiles check` on every shipped profile and on a bad one, and the
//! profiles that can run here beyond net_tap and net_memif (tested elsewhere): net_af_packet over a
//! veth pair with real Linux clients, and net_ring.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{NetNs, Process};

fn switchyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

fn profiles_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../nic-profiles")
}

/// A reader that went away (`switchyard profiles list | head -1`, `ctl stats | head -2`): the
/// command ends as one killed by SIGPIPE would (status 141), with no panic or message.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = switchyard()
        .args(["profiles", "list"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("running switchyard profiles list");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
}

#[test]
fn profiles_check_accepts_every_shipped_profile_and_names_the_field_of_a_bad_one() {
    let files: Vec<PathBuf> = std::fs::read_dir(profiles_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(files.len() >= 9, "net_tap, net_memif, net_ring, net_af_packet, virtio, mlx5, ice, i40e, ixgbe");
    let out = switchyard().args(["profiles", "check"]).args(&files).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().filter(|l| l.contains(": ok (profile ")).count(), files.len(), "{text}");

    let bad = std::env::temp_dir().join(format!("syt-bad-profile-{}.toml", std::process::id()));
    std::fs::write(
        &bad,
        "name = \"x\"\n[device]\nbus = \"pci\"\ndriver = \"net_ice\"\n[rss]\nhash = [\"ipv4-tcpp\"]\n",
    )
    .unwrap();
    let out = switchyard().args(["profiles", "check"]).arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("rss.hash") && err.contains("ipv4-tcpp") && err.contains("ipv4-tcp"), "{err}");

    let out = switchyard().args(["profiles", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    for name in ["net_tap", "net_af_packet", "virtio", "mlx5", "ice", "i40e", "ixgbe"] {
        assert!(list.lines().any(|l| l.starts_with(name)), "{name} not listed:\n{list}");
    }
}

/// Starts `switchyard run` in `ns` with `config`, waits for its ready line.
fn run_appliance(ns: &NetNs, config: &str) -> (Process, PathBuf) {
    let path = std::env::temp_dir().join(format!("{}.toml", ns.name));
    std::fs::write(&path, config).unwrap();
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(["run", "--config"]).arg(&path);
    let mut p = Process::spawn(cmd, std::env::temp_dir().join(format!("{}.log", ns.name)));
    p.wait_for_log("switchyard ready", Duration::from_secs(30));
    (p, path)
}

/// `ethtool -K IFNAME tx off` (ETHTOOL_STXCSUM through SIOCETHTOOL), on the calling thread's
/// namespace. A veth hands locally made TCP segments over with their checksum left to offload;
/// AF_PACKET passes them on as they are, and the engine (smoltcp) drops segments whose checksum is
/// wrong. Frames from a real wire carry full checksums.
fn tx_checksum_off(ifname: &str) {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    const ETHTOOL_STXCSUM: u32 = 0x17;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    let mut ev = EthtoolValue { cmd: ETHTOOL_STXCSUM, data: 0 };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in ifname.bytes().take(15).enumerate() {
        ifr.ifr_name[i] = b as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&raw mut ev).cast();
    // SAFETY: a datagram socket for the ioctl, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    assert!(fd >= 0, "socket for SIOCETHTOOL");
    // SAFETY: ifr names the interface and points at a live ethtool_value for the call.
    let r = unsafe { libc::ioctl(fd, SIOCETHTOOL, &mut ifr) };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    assert_eq!(r, 0, "turning tx checksum offload off on {ifname}: {err}");
}

#[test]
fn net_af_packet_serves_linux_clients_over_a_veth() {
    common::require_environment();
    let ns = NetNs::new("afp");
    // The appliance takes one end of a veth through AF_PACKET (no address on it); the kernel's end
    // has 198.18.0.1.
    ns.ip(&["link", "add", "syafa", "type", "veth", "peer", "name", "syafb"]);
    ns.ip(&["link", "set", "syafa", "up"]);
    ns.ip(&["addr", "add", "198.18.0.1/24", "dev", "syafb"]);
    ns.ip(&["link", "set", "syafb", "up"]);
    ns.run(|| tx_checksum_off("syafb"));
    let config = format!(
        "[eal]\nfile_prefix = \"{}\"\nmemory_mb = 128\n[engine]\ndrain_secs = 0\n[control]\nsocket = \"/run/switchyard/{}.sock\"\n\
         [[port]]\nprofile = \"net_af_packet\"\ndevargs = \"iface=syafa\"\naddress = \"198.18.0.2/24\"\n\
         [[service]]\nkind = \"echo\"\nport = 7\n[[service]]\nkind = \"http\"\nbody = \"over af_packet\\n\"\n",
        ns.name, ns.name
    );
    let (app, config_path) = run_appliance(&ns, &config);
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 31 + i / 7) as u8).collect();
    let (echoed, http) = ns.run(move || {
        let start = Instant::now();
        let mut s = loop {
            match TcpStream::connect_timeout(&"198.18.0.2:7".parse().unwrap(), Duration::from_millis(500)) {
                Ok(s) => break s,
                Err(e) => assert!(start.elapsed() < Duration::from_secs(20), "echo over af_packet: {e}"),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = s.try_clone().unwrap();
        let d = data.clone();
        let writer = std::thread::spawn(move || {
            w.write_all(&d).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        let mut h = TcpStream::connect("198.18.0.2:80").unwrap();
        h.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        h.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        let mut resp = String::new();
        h.read_to_string(&mut resp).unwrap();
        (back == data, resp)
    });
    assert!(echoed, "256 KiB echoed byte for byte over net_af_packet");
    assert!(http.starts_with("HTTP/1.1 200") && http.ends_with("over af_packet\n"), "{http}");
    let out = switchyard().args(["ctl", "--config"]).arg(&config_path).args(["--json", "status"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["ports"][0]["device"], "net_af_packet0", "{status}");
    let (status, log) = app.stop();
    let _ = std::fs::remove_file(&config_path);
    let _ = std::fs::remove_dir(format!("/var/run/dpdk/{}", ns.name));
    assert!(status.success(), "{log}");
    assert!(log.contains("driver=net_af_packet"), "{log}");
}

#[test]
fn net_ring_profile_starts_and_stops() {
    common::require_environment();
    let ns = NetNs::new("ring");
    let config = format!(
        "[eal]\nfile_prefix = \"{}\"\nmemory_mb = 128\n[engine]\ndrain_secs = 0\n[control]\nsocket = \"/run/switchyard/{}.sock\"\n\
         [[port]]\nprofile = \"net_ring\"\naddress = \"198.18.0.2/24\"\n[[service]]\nkind = \"echo\"\nport = 7\n",
        ns.name, ns.name
    );
    let (app, config_path) = run_appliance(&ns, &config);
    let out = switchyard().args(["ctl", "--config"]).arg(&config_path).args(["--json", "status"]).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["ports"][0]["device"], "net_ring0", "{status}");
    let (status, log) = app.stop();
    let _ = std::fs::remove_file(&config_path);
    let _ = std::fs::remove_dir(format!("/var/run/dpdk/{}", ns.name));
    assert!(status.success() && log.contains("stopped cleanly"), "{log}");
}
