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

#[path = "loadgen/first_rtx.rs"]
mod first_rtx;
use first_rtx::first_rtx;

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
