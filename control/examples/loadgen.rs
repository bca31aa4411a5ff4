//! A small load generator and kernel-path baseline server for measuring the appliance over
//! net_tap with ordinary Linux sockets (used by the bench driver, `control/bench`: its proxy,
//! gateway and tap suites).
//!
//! - `loadgen echo --addr A:P --conns N --secs S --size B`: N connections, each doing B-byte
//!   ping-pongs for S seconds; prints round trips per second.
//! - `loadgen http --addr A:P --conns N --secs S`: N keep-alive connections, one GET in flight
//!   each; prints requests per second.
//! - `loadgen short --addr A:P --conns N --secs S --size B [--from A --sources K]`: N clients,
//!   each connecting, sending B bytes, reading them back and closing, for S seconds, from K source
//!   addresses (see `Mode::Short` for why); prints connections per second.
//! - `loadgen bulk --addr A:P --secs S`: one connection sending and reading back as fast as it
//!   can; prints Mbit/s each way.
//! - `loadgen serve --echo A:P --http A:P`: the same services on the Linux TCP stack (a thread per
//!   connection), as the baseline measured in the same run.
//! - `loadgen transfer --addr A:P --conns N --bytes B --limit-secs S`: N connections at once, each
//!   sending B bytes to an echo service and reading them back, SHA-256 compared; prints how long
//!   the slowest took (the loss benchmark's figure), or how far they got by the limit.
//! - `loadgen first-rtx --iface I --from A --addr A:P --limit-secs S`: a client of its own on a
//!   raw AF_PACKET socket (see [`first_rtx`]) connects, sends a 64-byte request and never
//!   acknowledges the reply; prints the milliseconds from the reply to its first retransmission
//!   (the loss benchmark's RTO figure).
//! - `loadgen udp-send --addr A:P --secs S --size B` sends B-byte datagrams as fast as it can and
//!   prints how many it sent per second; `loadgen udp-count --bind A:P --secs S` counts what
//!   arrives (for the gateway's forwarding benchmark).
//!
//! With `BENCH_JSON=1` in its environment, each mode's result line is one JSON object instead
//! (`mode`, `rate`, `unit` and the mode's settings), for the bench driver.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    Echo {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 1)]
        conns: usize,
        #[arg(long, default_value_t = 5)]
        secs: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    Http {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 1)]
        conns: usize,
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
    UdpSend {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 5)]
        secs: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Short connections: connect, send SIZE bytes, read them back, close; connections per second.
    /// Each one this client closes waits in its TIME_WAIT for a minute, holding its 4-tuple, and
    /// Linux reuses such a tuple only on loopback: one source address reaches a remote service
    /// about 28,000 times a minute (the ephemeral ports), then `connect` fails with "Cannot assign
    /// requested address". `--from A --sources N` spreads the connections over the N addresses
    /// from A on (they must be this host's).
    Short {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 16)]
        conns: usize,
        #[arg(long, default_value_t = 5)]
        secs: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// The first source address (default: the one the route gives).
        #[arg(long)]
        from: Option<Ipv4Addr>,
        /// How many source addresses, from `--from` on.
        #[arg(long, default_value_t = 1, requires = "from", value_parser = clap::value_parser!(u32).range(1..=65536))]
        sources: u32,
    },
    /// Bulk: one connection to an echo service, sending and reading back as fast as it can;
    /// Mbit/s each way.
    Bulk {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
    /// Transfers: N connections at once, each echoing B bytes through the service and checking
    /// them; seconds until the last one is done.
    Transfer {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 8)]
        conns: usize,
        #[arg(long, default_value_t = 2 << 20)]
        bytes: usize,
        #[arg(long, default_value_t = 120)]
        limit_secs: u64,
    },
    /// First retransmission: connects to an echo service from a raw socket, sends a request and
    /// never acknowledges the reply; milliseconds until the reply is sent again.
    FirstRtx {
        /// The interface to send and capture on.
        #[arg(long)]
        iface: String,
        /// The client's address: on the interface's subnet, and no host's in the namespace (so
        /// that the kernel there neither answers for it nor resets its connection).
        #[arg(long)]
        from: Ipv4Addr,
        #[arg(long)]
        addr: SocketAddrV4,
        /// How long to wait for the retransmission (and for each step before it).
        #[arg(long, default_value_t = 10)]
        limit_secs: u64,
    },
    UdpCount {
        #[arg(long)]
        bind: SocketAddr,
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
    Serve {
        #[arg(long)]
        echo: SocketAddr,
        #[arg(long)]
        http: SocketAddr,
        #[arg(long, default_value = "Hello from Switchyard\n")]
        body: String,
    },
}

/// Prints a result: `human` normally, `json` on one line when `BENCH_JSON=1` is set.
fn report(human: String, json: serde_json::Value) {
    if std::env::var("BENCH_JSON").as_deref() == Ok("1") {
        println!("{json}");
    } else {
        println!("{human}");
    }
}

/// One connection of `transfer`: sends `bytes` (a pattern of its own) while reading the echo back;
/// returns the bytes echoed intact, with the time it took when all were.
fn transfer_one(addr: SocketAddr, bytes: usize, seed: u8, limit: Duration) -> anyhow::Result<(usize, Option<f64>)> {
    use sha2::{Digest, Sha256};
    let t = Instant::now();
    // Through a lossy wire the SYN or its answer may be lost a few times (Linux sends the SYN
    // again after 1, 3, 7, ... s): the connect counts within the limit, and one that does not
    // complete in it is a transfer not done, not a failed run.
    let s = match TcpStream::connect_timeout(&addr, limit) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("transfer: connection {seed} to {addr}: {e}");
            return Ok((0, None));
        }
    };
    s.set_read_timeout(Some(limit.saturating_sub(t.elapsed()).max(Duration::from_millis(1)))).ok();
    let data: Vec<u8> = (0..bytes).map(|i| (i as u32).wrapping_mul(2654435761).to_be_bytes()[0] ^ seed).collect();
    let want = Sha256::digest(&data);
    let mut w = s.try_clone()?;
    let writer = std::thread::spawn(move || w.write_all(&data).and_then(|()| w.shutdown(std::net::Shutdown::Write)));
    let mut back = Vec::with_capacity(bytes);
    let mut buf = vec![0u8; 64 << 10];
    let mut r = &s;
    while back.len() < bytes && t.elapsed() < limit {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let took = t.elapsed().as_secs_f64();
    let done = back.len();
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    if done == bytes && Sha256::digest(&back) != want {
        bail!("connection {seed}: echoed bytes differ");
    }
    Ok((done, (done == bytes).then_some(took)))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().mode {
        Mode::Transfer { addr, conns, bytes, limit_secs } => {
            let limit = Duration::from_secs(limit_secs);
            let handles: Vec<_> =
                (0..conns).map(|i| std::thread::spawn(move || transfer_one(addr, bytes, i as u8, limit))).collect();
            let mut results = Vec::new();
            for h in handles {
                results.push(h.join().map_err(|_| anyhow::anyhow!("a transfer thread panicked"))??);
            }
            let done: usize = results.iter().map(|r| r.0).sum();
            let all = results.iter().all(|r| r.1.is_some());
            let secs = results.iter().filter_map(|r| r.1).fold(0.0f64, f64::max);
            report(
                if all {
                    format!("transfer: {conns} x {bytes} bytes echoed intact in {secs:.2} s")
                } else {
                    format!("transfer: {done} of {} bytes echoed within the {limit_secs} s limit", conns * bytes)
                },
                serde_json::json!({
                    "mode": "transfer", "addr": addr, "conns": conns, "bytes": bytes,
                    "complete": all, "secs": if all { secs } else { limit_secs as f64 },
                    "done_bytes": done, "rate": if all { secs } else { f64::NAN }, "unit": "s",
                }),
            );
        }
        Mode::FirstRtx { iface, from, addr, limit_secs } => {
            let limit = Duration::from_secs(limit_secs);
            let ms = first_rtx(&iface, from, addr, limit)?;
            report(
                match ms {
                    Some(ms) => format!("first-rtx {addr}: the reply was sent again after {ms:.1} ms"),
                    None => format!("first-rtx {addr}: the reply was not sent again within {limit_secs} s"),
                },
                serde_json::json!({
                    "mode": "first-rtx", "addr": addr, "complete": ms.is_some(),
                    "ms": ms.unwrap_or(limit.as_secs_f64() * 1e3), "rate": ms.unwrap_or(f64::NAN), "unit": "ms",
                }),
            );
        }
        Mode::Echo { addr, conns, secs, size } => {
            let rate = drive(conns, secs, move |stop, count| echo_client(addr, size, stop, count))?;
            report(
                format!("echo {addr}: {rate:.0} round trips/s ({conns} conns, {size} B)"),
                serde_json::json!({ "mode": "echo", "addr": addr, "rate": rate, "unit": "round trips/s", "conns": conns, "size": size }),
            );
        }
        Mode::Http { addr, conns, secs } => {
            let rate = drive(conns, secs, move |stop, count| http_client(addr, stop, count))?;
            report(
                format!("http {addr}: {rate:.0} requests/s ({conns} keep-alive conns)"),
                serde_json::json!({ "mode": "http", "addr": addr, "rate": rate, "unit": "requests/s", "conns": conns }),
            );
        }
        Mode::Serve { echo, http, body } => serve(echo, http, body)?,
        Mode::Short { addr, conns, secs, size, from, sources } => {
            if let Some(a) = from {
                if u32::from(a).checked_add(sources - 1).is_none() {
                    bail!("--from {a} --sources {sources}: the addresses would pass 255.255.255.255");
                }
            }
            let next = Arc::new(AtomicU32::new(0));
            let rate = drive(conns, secs, move |stop, count| {
                let msg = vec![0x5a; size];
                let mut back = vec![0; size];
                while !stop.load(Ordering::Relaxed) {
                    let source =
                        from.map(|a| Ipv4Addr::from(u32::from(a) + next.fetch_add(1, Ordering::Relaxed) % sources));
                    let mut s = connect_from(addr, source)?;
                    s.write_all(&msg)?;
                    s.read_exact(&mut back)?;
                    drop(s);
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })?;
            report(
                format!("short {addr}: {rate:.0} conns/s ({conns} at a time, {size} B)"),
                serde_json::json!({ "mode": "short", "addr": addr, "rate": rate, "unit": "conns/s", "conns": conns, "size": size }),
            );
        }
        Mode::Bulk { addr, secs } => {
            let s = connect(addr)?;
            let mut r = s.try_clone()?;
            let stop = Arc::new(AtomicBool::new(false));
            let st = stop.clone();
            let mut w = s;
            let writer = std::thread::spawn(move || {
                let chunk = vec![0x5a; 64 * 1024];
                while !st.load(Ordering::Relaxed) {
                    if w.write_all(&chunk).is_err() {
                        break;
                    }
                }
                let _ = w.shutdown(std::net::Shutdown::Write);
            });
            let mut buf = vec![0u8; 256 * 1024];
            let (start, mut got) = (Instant::now(), 0u64);
            let mut measured = None;
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n as u64,
                }
                if measured.is_none() && start.elapsed() >= Duration::from_secs(secs) {
                    measured = Some((got, start.elapsed()));
                    stop.store(true, Ordering::Relaxed);
                }
            }
            writer.join().expect("writer");
            let (bytes, took) = measured.unwrap_or((got, start.elapsed()));
            let mbit = bytes as f64 * 8.0 / took.as_secs_f64() / 1e6;
            report(
                format!("bulk {addr}: {mbit:.0} Mbit/s each way ({bytes} bytes echoed in {:.1} s)", took.as_secs_f64()),
                serde_json::json!({
                    "mode": "bulk",
                    "addr": addr,
                    "rate": mbit,
                    "unit": "Mbit/s each way",
                    "bytes": bytes,
                    "secs": took.as_secs_f64(),
                }),
            );
        }
        Mode::UdpSend { addr, secs, size } => {
            let s = std::net::UdpSocket::bind(if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
            s.connect(addr)?;
            let d = vec![0x5a; size];
            let (start, mut n, mut failed) = (Instant::now(), 0u64, 0u64);
            while start.elapsed() < Duration::from_secs(secs) {
                for _ in 0..256 {
                    match s.send(&d) {
                        Ok(_) => n += 1,
                        Err(_) => failed += 1, // ENOBUFS and the like: the queue is full
                    }
                }
            }
            let rate = n as f64 / start.elapsed().as_secs_f64();
            report(
                format!("udp-send {addr}: {rate:.0} datagrams/s sent ({size} B, {failed} refused by the kernel)"),
                serde_json::json!({
                    "mode": "udp-send",
                    "addr": addr,
                    "rate": rate,
                    "unit": "datagrams/s",
                    "size": size,
                    "sent": n,
                    "refused": failed,
                }),
            );
        }
        Mode::UdpCount { bind, secs } => {
            let s = std::net::UdpSocket::bind(bind)?;
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            let mut buf = [0u8; 2048];
            let (mut n, mut first) = (0u64, None::<Instant>);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(secs) {
                if s.recv(&mut buf).is_ok() {
                    first.get_or_insert_with(Instant::now);
                    n += 1;
                }
            }
            let span = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
            let rate = if span > 0.0 { n as f64 / span } else { 0.0 };
            report(
                format!("udp-count {bind}: {n} datagrams, {rate:.0}/s"),
                serde_json::json!({ "mode": "udp-count", "bind": bind, "rate": rate, "unit": "datagrams/s", "datagrams": n }),
            );
        }
    }
    Ok(())
}

/// Runs `conns` client threads for `secs` seconds; returns operations per second.
fn drive<F>(conns: usize, secs: u64, client: F) -> anyhow::Result<f64>
where
    F: Fn(&AtomicBool, &AtomicU64) -> anyhow::Result<()> + Send + Sync + Clone + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (stop, count, client) = (stop.clone(), count.clone(), client.clone());
            std::thread::spawn(move || client(&stop, &count))
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let n = count.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for t in threads {
        t.join().expect("client thread")?;
    }
    Ok(n as f64 / elapsed)
}

fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    connect_from(addr, None)
}

/// Connects to `addr` from `source`, if given, with a port chosen at connect time
/// (`IP_BIND_ADDRESS_NO_PORT`), so that one source port serves many destinations.
fn connect_from(addr: SocketAddr, source: Option<Ipv4Addr>) -> anyhow::Result<TcpStream> {
    let s = match source {
        None => TcpStream::connect_timeout(&addr, Duration::from_secs(5)),
        Some(ip) => bound_connect(addr, ip),
    }
    .with_context(|| match source {
        Some(ip) => format!("connect {addr} from {ip}"),
        None => format!("connect {addr}"),
    })?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

fn bound_connect(addr: SocketAddr, ip: Ipv4Addr) -> std::io::Result<TcpStream> {
    use std::os::fd::AsFd;
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    control::switch::sys::set_bind_address_no_port(s.as_fd())?;
    s.bind(&SocketAddr::from((ip, 0)).into())?;
    s.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    Ok(s.into())
}

fn echo_client(addr: SocketAddr, size: usize, stop: &AtomicBool, count: &AtomicU64) -> anyhow::Result<()> {
    let mut s = connect(addr)?;
    let out = vec![0x5a; size];
    let mut back = vec![0; size];
    while !stop.load(Ordering::Relaxed) {
        s.write_all(&out)?;
        s.read_exact(&mut back)?;
        count.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn http_client(addr: SocketAddr, stop: &AtomicBool, count: &AtomicU64) -> anyhow::Result<()> {
    let s = connect(addr)?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut line = String::new();
    let mut body = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        w.write_all(req.as_bytes())?;
        let mut len = 0usize;
        line.clear();
        r.read_line(&mut line)?;
        if !line.starts_with("HTTP/1.1 200") {
            bail!("unexpected status line {line:?}");
        }
        loop {
            line.clear();
            r.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse()?;
            }
        }
        body.resize(len, 0);
        r.read_exact(&mut body)?;
        count.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn serve(echo: SocketAddr, http: SocketAddr, body: String) -> anyhow::Result<()> {
    let e = TcpListener::bind(echo).with_context(|| format!("bind {echo}"))?;
    let h = TcpListener::bind(http).with_context(|| format!("bind {http}"))?;
    let response: Arc<[u8]> = format!(
        "HTTP/1.1 200 OK\r\nServer: kernel-baseline\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
    .into();
    std::thread::spawn(move || {
        for s in e.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut buf = [0u8; 65536];
                let mut s = s;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    for s in h.incoming().flatten() {
        let response = response.clone();
        std::thread::spawn(move || {
            let _ = s.set_nodelay(true);
            let Ok(mut w) = s.try_clone() else { return };
            let mut r = BufReader::new(s);
            let mut line = String::new();
            loop {
                // one request: lines up to the empty one (no bodies in this baseline)
                loop {
                    line.clear();
                    match r.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                if w.write_all(&response).is_err() {
                    return;
                }
            }
        });
    }
    Ok(())
}

/// A raw AF_PACKET socket on one interface: whole Ethernet frames out, every frame seen on the
/// interface in (with a short read timeout).
struct RawPort {
    fd: std::os::fd::OwnedFd,
}

impl RawPort {
    fn open(iface: &str) -> anyhow::Result<RawPort> {
        use std::os::fd::FromRawFd;
        let name = std::ffi::CString::new(iface)?;
        // SAFETY: if_nametoindex reads the NUL-terminated string it is given.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            bail!("no interface {iface} here: {}", std::io::Error::last_os_error());
        }
        let all = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: socket(2) takes no pointer; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(all)) };
        if fd < 0 {
            bail!("an AF_PACKET socket (root): {}", std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket(2) and nothing else owns it.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let port = RawPort { fd };
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = all;
        sll.sll_ifindex = index as i32;
        // SAFETY: sll is a valid sockaddr_ll and the length passed is its size.
        let r = unsafe {
            libc::bind(
                port.raw(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            bail!("binding the AF_PACKET socket to {iface}: {}", std::io::Error::last_os_error());
        }
        let tv = libc::timeval { tv_sec: 0, tv_usec: 2000 };
        // SAFETY: tv is a valid timeval and the length passed is its size.
        let r = unsafe {
            libc::setsockopt(
                port.raw(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r != 0 {
            bail!("SO_RCVTIMEO: {}", std::io::Error::last_os_error());
        }
        Ok(port)
    }

    fn raw(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    fn send(&self, frame: &[u8]) -> anyhow::Result<()> {
        // SAFETY: frame is a valid buffer of frame.len() bytes for the call's duration.
        let n = unsafe { libc::send(self.raw(), frame.as_ptr().cast(), frame.len(), 0) };
        if n != frame.len() as isize {
            bail!("sending a frame: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next frame that came in (not one sent from this host), or `None` after the read
    /// timeout.
    fn recv<'a>(&self, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: buf is valid for buf.len() bytes, `from` for `len` bytes, for the call.
        let n = unsafe {
            libc::recvfrom(
                self.raw(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
            return None;
        }
        Some(&buf[..n as usize])
    }
}

/// What [`first_rtx`] reads from a frame.
enum Seen {
    /// Someone asks who has this address (the sender's MAC and address).
    ArpRequest {
        target: Ipv4Addr,
        mac: [u8; 6],
        ip: Ipv4Addr,
    },
    ArpReply {
        ip: Ipv4Addr,
        mac: [u8; 6],
    },
    Tcp {
        src: SocketAddrV4,
        dst: SocketAddrV4,
        syn: bool,
        ack: bool,
        rst: bool,
        seq: u32,
        ack_number: u32,
        len: usize,
    },
    Other,
}

fn parse(frame: &[u8]) -> Seen {
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket,
    };
    let Ok(eth) = EthernetFrame::new_checked(frame) else { return Seen::Other };
    match eth.ethertype() {
        EthernetProtocol::Arp => {
            let Ok(Ok(ArpRepr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_protocol_addr,
                ..
            })) = ArpPacket::new_checked(eth.payload()).map(|p| ArpRepr::parse(&p))
            else {
                return Seen::Other;
            };
            match operation {
                ArpOperation::Request => Seen::ArpRequest {
                    target: target_protocol_addr,
                    mac: source_hardware_addr.0,
                    ip: source_protocol_addr,
                },
                ArpOperation::Reply => Seen::ArpReply { ip: source_protocol_addr, mac: source_hardware_addr.0 },
                _ => Seen::Other,
            }
        }
        EthernetProtocol::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { return Seen::Other };
            if ip.next_header() != IpProtocol::Tcp {
                return Seen::Other;
            }
            let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else { return Seen::Other };
            Seen::Tcp {
                src: SocketAddrV4::new(ip.src_addr(), tcp.src_port()),
                dst: SocketAddrV4::new(ip.dst_addr(), tcp.dst_port()),
                syn: tcp.syn(),
                ack: tcp.ack(),
                rst: tcp.rst(),
                seq: tcp.seq_number().0 as u32,
                ack_number: tcp.ack_number().0 as u32,
                len: tcp.payload().len(),
            }
        }
        _ => Seen::Other,
    }
}

/// An ARP frame from `(mac, ip)`: a request for `target`, or a reply to `to`.
fn arp_frame(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr, to: Option<[u8; 6]>) -> Vec<u8> {
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr,
    };
    let arp = ArpRepr::EthernetIpv4 {
        operation: if to.is_some() { ArpOperation::Reply } else { ArpOperation::Request },
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress(to.unwrap_or([0; 6])),
        target_protocol_addr: target,
    };
    let mut buf = vec![0u8; 14 + arp.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: EthernetAddress(to.unwrap_or([0xff; 6])),
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut eth);
    arp.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    buf
}

/// A client of its own on a raw socket: its MAC and address, and its server's.
struct RawClient {
    port: RawPort,
    mac: [u8; 6],
    ip: Ipv4Addr,
    server: Ipv4Addr,
    server_mac: Option<[u8; 6]>,
    buf: Vec<u8>,
}

impl RawClient {
    /// The next frame that came in, parsed, with when it came (`None` after the read timeout).
    /// Answers ARP requests for the client's address, and learns the server's MAC.
    fn poll(&mut self) -> anyhow::Result<Option<(Seen, Instant)>> {
        let Some(frame) = self.port.recv(&mut self.buf) else { return Ok(None) };
        let at = Instant::now();
        let seen = parse(frame);
        match seen {
            Seen::ArpRequest { target, mac, ip } if target == self.ip => {
                self.port.send(&arp_frame(self.mac, self.ip, ip, Some(mac)))?;
            }
            Seen::ArpReply { ip, mac } if ip == self.server => self.server_mac = Some(mac),
            _ => {}
        }
        Ok(Some((seen, at)))
    }
}

/// The first retransmission of an unacknowledged segment: a client of its own on a raw socket on
/// `iface`, from `from` (an address no host in the namespace owns, so that the kernel there
/// neither answers for it nor resets its connection; this client answers ARP for it), connects
/// to the echo service at `addr`, sends a 64-byte request, and never acknowledges the reply.
/// Returns the milliseconds from the reply's arrival to the arrival of the reply sent again
/// (`None`: not within `limit`), then resets the connection. Meant for a wire without faults,
/// where a second copy of the reply is the server's retransmission, not the wire's.
fn first_rtx(iface: &str, from: Ipv4Addr, addr: SocketAddrV4, limit: Duration) -> anyhow::Result<Option<f64>> {
    use engine::flow::{plain_tcp, tcp_frame_len, write_tcp_frame};
    use smoltcp::wire::TcpControl;
    let o = from.octets();
    let mut c = RawClient {
        port: RawPort::open(iface)?,
        mac: [0x02, 0x00, o[0], o[1], o[2], o[3]],
        ip: from,
        server: *addr.ip(),
        server_mac: None,
        buf: vec![0u8; 65536],
    };
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos() ^ std::process::id();
    let (sport, iss) = (20000 + (seed % 40000) as u16, seed.wrapping_mul(2654435761));
    let me = SocketAddrV4::new(from, sport);
    let segment = |c: &RawClient, control, seq: u32, ack: Option<u32>, payload: &[u8]| -> anyhow::Result<()> {
        let mut repr = plain_tcp((sport, addr.port()), control, seq, ack, 64240, payload);
        if control == TcpControl::Syn {
            repr.max_seg_size = Some(1460);
        }
        let mut frame = vec![0u8; tcp_frame_len(&repr)];
        let server_mac = c.server_mac.context("the server's MAC")?;
        write_tcp_frame(&mut frame, (c.mac, from), (server_mac, *addr.ip()), &repr);
        c.port.send(&frame)
    };
    let late = |what: &str| anyhow::anyhow!("first-rtx {addr}: no {what} within {} s", limit.as_secs());

    // The server's MAC (ARP asked again every half second).
    let t = Instant::now();
    let mut asked = None::<Instant>;
    while c.server_mac.is_none() {
        if t.elapsed() > limit {
            return Err(late("ARP reply"));
        }
        if asked.is_none_or(|a| a.elapsed() > Duration::from_millis(500)) {
            c.port.send(&arp_frame(c.mac, from, *addr.ip(), None))?;
            asked = Some(Instant::now());
        }
        c.poll()?;
    }
    // The handshake (the SYN sent again every half second).
    let t = Instant::now();
    let mut sent = None::<Instant>;
    let irs = loop {
        if t.elapsed() > limit {
            return Err(late("SYN-ACK"));
        }
        if sent.is_none_or(|a| a.elapsed() > Duration::from_millis(500)) {
            segment(&c, TcpControl::Syn, iss, None, &[])?;
            sent = Some(Instant::now());
        }
        if let Some((Seen::Tcp { src, dst, syn, ack, rst, seq, ack_number, .. }, _)) = c.poll()? {
            if src == addr && dst == me {
                if rst {
                    bail!("first-rtx {addr}: the connection was refused (RST)");
                }
                if syn && ack && ack_number == iss.wrapping_add(1) {
                    break seq;
                }
            }
        }
    };
    // The handshake's last ACK with the request; then the reply, never acknowledged.
    let request = [0x5a; 64];
    segment(&c, TcpControl::Psh, iss.wrapping_add(1), Some(irs.wrapping_add(1)), &request)?;
    let reply_seq = irs.wrapping_add(1);
    let mut first = None::<Instant>;
    let t = Instant::now();
    let result = loop {
        if t.elapsed() > limit {
            if first.is_none() {
                return Err(late("reply"));
            }
            break None;
        }
        let Some((Seen::Tcp { src, dst, seq, len, rst, .. }, at)) = c.poll()? else { continue };
        if src != addr || dst != me {
            continue;
        }
        if rst {
            bail!("first-rtx {addr}: the server reset the connection");
        }
        if len > 0 && seq == reply_seq {
            match first {
                None => first = Some(at),
                Some(f) => break Some(at.duration_since(f).as_secs_f64() * 1e3),
            }
        }
    };
    // Done with it: a reset, so that the server does not keep retransmitting.
    segment(&c, TcpControl::Rst, iss.wrapping_add(1 + request.len() as u32), None, &[])?;
    Ok(result)
}
