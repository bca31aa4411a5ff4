//! What the attack tests share: a raw-socket frame sender for spoofed segments, the appliance's
//! counters as the control socket reports them, and its CPU time and resident memory from /proc.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use serde_json::Value;
use smoltcp::wire::TcpControl;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::common::{ctl_json, NetNs, APPLIANCE};

/// A raw IPv4 socket with IP_HDRINCL, sending whole TCP/IPv4 packets with any source to the
/// appliance. Make it on a thread inside the test's namespace (the socket is that namespace's).
pub struct Raw {
    sock: Socket,
    to: SockAddr,
    buf: Vec<u8>,
    pub failed: u64,
}

impl Raw {
    pub fn new() -> Raw {
        let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW))).expect("a raw socket");
        sock.set_header_included_v4(true).expect("IP_HDRINCL");
        let to = SockAddr::from(SocketAddrV4::new(Ipv4Addr::from(APPLIANCE), 0));
        Raw { sock, to, buf: vec![0; 1600], failed: 0 }
    }

    /// One segment from `src` to the appliance's `dport` (checksums right); a send the kernel
    /// refuses (its queue full) is not retried, and is counted in `failed`.
    pub fn send(
        &mut self,
        src: SocketAddrV4,
        dport: u16,
        control: TcpControl,
        seq: u32,
        ack: Option<u32>,
        data: &[u8],
    ) {
        use engine::flow::{plain_tcp, write_tcp_frame};
        let tcp = plain_tcp((src.port(), dport), control, seq, ack, 64240, data);
        let len = write_tcp_frame(&mut self.buf, ([0; 6], *src.ip()), ([0; 6], Ipv4Addr::from(APPLIANCE)), &tcp);
        if self.sock.send_to(&self.buf[14..len], &self.to).is_err() {
            self.failed += 1;
        }
    }
}

/// xorshift64: the floods' random numbers (sources, ports, sequence numbers, cookies).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A random source in 198.19.0.0/16 (inside 198.18.0.0/15, off the appliance's link) with a
    /// random port from 1024 up.
    pub fn spoofed(&mut self) -> SocketAddrV4 {
        let x = self.next();
        SocketAddrV4::new(Ipv4Addr::new(198, 19, (x >> 8) as u8, x as u8), 1024 + (x >> 16) as u16 % 64000)
    }
}

/// The appliance's control socket, as the harness names it.
pub fn socket(ns: &NetNs) -> PathBuf {
    PathBuf::from(format!("/run/switchyard/{}.sock", ns.name))
}

/// `ctl stats`, every core's lanes summed: `field` of each lane added up.
pub fn lane_sum(stats: &Value, field: &str) -> u64 {
    let cores = stats["cores"].as_array().cloned().unwrap_or_default();
    cores
        .iter()
        .flat_map(|c| c["lanes"].as_array().cloned().unwrap_or_default())
        .map(|l| {
            // `tcp.retransmits` names a field of a nested object.
            let v = l.pointer(&format!("/{}", field.replace('.', "/")));
            v.and_then(Value::as_u64).unwrap_or_else(|| panic!("no counter {field} in {l}"))
        })
        .sum()
}

/// `ctl stats`, every core's `field` (`busy_us`, ...) summed.
pub fn core_sum(stats: &Value, field: &str) -> u64 {
    stats["cores"].as_array().map_or(0, |c| c.iter().map(|c| c[field].as_u64().unwrap_or(0)).sum())
}

/// The appliance's counters at one moment: `ctl stats` and `ctl listeners`.
pub struct Counters {
    pub stats: Value,
    pub listeners: Value,
}

impl Counters {
    pub fn read(ns: &NetNs) -> Counters {
        let s = socket(ns);
        Counters { stats: ctl_json(&s, "stats"), listeners: ctl_json(&s, "listeners") }
    }

    /// A lane counter, summed over cores.
    pub fn lane(&self, field: &str) -> u64 {
        lane_sum(&self.stats, field)
    }

    /// A counter of the listener on `port`.
    pub fn listener(&self, port: u16, field: &str) -> u64 {
        let suffix = format!(":{port}");
        let row = self
            .listeners
            .as_array()
            .and_then(|v| v.iter().find(|l| l["address"].as_str().is_some_and(|a| a.ends_with(&suffix))))
            .unwrap_or_else(|| panic!("no listener on port {port}: {}", self.listeners));
        row[field].as_u64().unwrap_or_else(|| panic!("no {field} in {row}"))
    }
}

/// `ctl conns`: the remote addresses of every connection the appliance holds.
pub fn conn_remotes(ns: &NetNs) -> Vec<String> {
    let conns = ctl_json(&socket(ns), "conns");
    conns.as_array().map_or(Vec::new(), |v| v.iter().filter_map(|c| c["remote"].as_str().map(String::from)).collect())
}

/// Frames the kernel sent into `tap` (towards the appliance) and dropped there, from
/// `ip -s link` in the namespace.
pub fn tap_tx(ns: &NetNs, tap: &str) -> (u64, u64) {
    let out = ns.command("ip").args(["-j", "-s", "link", "show", "dev", tap]).output().expect("ip -s link");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let tx = &v[0]["stats64"]["tx"];
    (tx["packets"].as_u64().unwrap_or(0), tx["dropped"].as_u64().unwrap_or(0))
}

/// The appliance's CPU time so far (user and system, every thread), in nanoseconds.
pub fn cpu_ns(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    // After the command: state is field 3; utime and stime are fields 14 and 15.
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    f.iter().sum::<u64>() * 1_000_000_000 / hz
}

/// The appliance's resident memory, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The median of `v` (sorted here), or zero if empty.
pub fn median<T: Ord + Copy + Default>(v: &mut [T]) -> T {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}
