//! The `proxy` service: Linux clients in a namespace → the appliance on net_tap (fast path) →
//! upstream echo servers on the kernel path (loopback of the appliance's namespace).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Appliance, Fixture, NetNs};
use sha2::{Digest, Sha256};

const PROXY: &str = "198.18.0.2:8080";

/// An echo server with a thread per connection, which can be killed: its listener and every
/// connection closed at once.
struct Upstream {
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    served: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    fn start(ns: &NetNs, addr: &str) -> Upstream {
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let served = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let (s, c, n, a) = (stop.clone(), conns.clone(), served.clone(), addr.to_owned());
        let thread = ns.spawn(move || {
            let l = TcpListener::bind(&a).unwrap();
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        n.fetch_add(1, Ordering::Relaxed);
                        c.lock().unwrap().push(conn.try_clone().unwrap());
                        std::thread::spawn(move || {
                            let mut buf = vec![0u8; 65536];
                            loop {
                                match conn.read(&mut buf) {
                                    Ok(0) | Err(_) => break,
                                    Ok(k) => {
                                        if conn.write_all(&buf[..k]).is_err() {
                                            break;
                                        }
                                    }
                                }
                            }
                            let _ = conn.shutdown(Shutdown::Write);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        rx.recv().unwrap();
        Upstream { stop, conns, served, thread: Some(thread) }
    }

    /// Closes the listener and every connection (RST where data is unread).
    fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

fn fixture(tag: &str, tap: &str) -> Fixture {
    common::require_environment();
    let ns = NetNs::new(tag);
    let extra = "\n[[service]]\nkind = \"proxy\"\nport = 8080\nupstreams = [\"127.0.0.1:5101\", \"127.0.0.1:5102\"]\nretry_secs = 60\n";
    let mut app = Appliance::start_with(&ns, tap, extra);
    app.wait_for_log("proxy listening", Duration::from_secs(10));
    Fixture { app, ns }
}

/// Sends `data` through the proxy, half-closes, returns what came back.
fn through_proxy(data: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let s = TcpStream::connect_timeout(&PROXY.parse::<SocketAddr>().unwrap(), Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = s.try_clone()?;
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        w.write_all(&data)?;
        w.shutdown(Shutdown::Write)
    });
    let mut back = Vec::new();
    (&s).read_to_end(&mut back)?;
    writer.join().unwrap()?;
    Ok(back)
}

fn data(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 11) as u8).collect()
}

#[test]
fn proxy_relays_ten_mib_both_ways_to_a_kernel_path_upstream() {
    let f = fixture("pxa", "sytpxa");
    let _a = Upstream::start(&f.ns, "127.0.0.1:5101");
    let _b = Upstream::start(&f.ns, "127.0.0.1:5102");
    let d = data(1, 10 << 20);
    let want = Sha256::digest(&d);
    let t = Instant::now();
    let back = f.ns.run(move || through_proxy(d)).expect("10 MiB through the proxy");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(back.len(), 10 << 20);
    assert_eq!(Sha256::digest(&back), want, "SHA-256 of what came back");
    println!("10 MiB each way through the proxy in {secs:.2} s ({:.0} Mbit/s each way)", 80.0 / secs);
}

#[test]
fn proxy_serves_fifty_concurrent_clients_across_its_upstreams() {
    let f = fixture("pxb", "sytpxb");
    let a = Upstream::start(&f.ns, "127.0.0.1:5101");
    let b = Upstream::start(&f.ns, "127.0.0.1:5102");
    let clients: Vec<_> = (0..50)
        .map(|i| {
            f.ns.spawn(move || {
                let d = data(i, 256 * 1024);
                let back = through_proxy(d.clone()).unwrap_or_else(|e| panic!("client {i}: {e}"));
                assert_eq!(Sha256::digest(&back), Sha256::digest(&d), "client {i}");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("every client's echo through the proxy");
    }
    let (na, nb) = (a.served.load(Ordering::Relaxed), b.served.load(Ordering::Relaxed));
    assert_eq!(na + nb, 50);
    assert!(na >= 20 && nb >= 20, "round robin: {na} and {nb}");
}

#[test]
fn proxy_upstream_killed_mid_run_leaves_the_others_clients_unaffected() {
    let f = fixture("pxc", "sytpxc");
    let a = Upstream::start(&f.ns, "127.0.0.1:5101");
    let mut b = Upstream::start(&f.ns, "127.0.0.1:5102");
    // Twenty clients in long conversations: 1 KiB ping-pongs every 20 ms for ~1.5 s.
    let started = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let started = started.clone();
            f.ns.spawn(move || -> Result<usize, String> {
                let mut s = TcpStream::connect_timeout(&PROXY.parse().unwrap(), Duration::from_secs(5))
                    .map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                started.fetch_add(1, Ordering::Relaxed);
                let msg = data(i, 1024);
                for round in 0..75 {
                    let mut back = vec![0u8; msg.len()];
                    s.write_all(&msg)
                        .and_then(|_| s.read_exact(&mut back))
                        .map_err(|e| format!("round {round}: {e}"))?;
                    if back != msg {
                        return Err(format!("round {round}: corrupted"));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(i as usize)
            })
        })
        .collect();
    let t = Instant::now();
    while started.load(Ordering::Relaxed) < 20 {
        assert!(t.elapsed() < Duration::from_secs(10), "clients did not all connect");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    let on_b = b.served.load(Ordering::Relaxed);
    b.kill();
    let results: Vec<Result<usize, String>> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let failed = results.len() - ok;
    assert_eq!(ok, a.served.load(Ordering::Relaxed), "every client of the live upstream finished: {results:?}");
    assert_eq!(failed, on_b, "only the killed upstream's clients failed: {results:?}");
    assert!(ok >= 5 && failed >= 5, "both upstreams had clients: {ok} ok, {failed} failed");
    // New clients: the dead upstream is marked down at the first failed connect; all go through.
    for i in 0..10 {
        let d = data(100 + i, 4096);
        let back = f.ns.run(move || through_proxy(d.clone()).map(|b| b == d)).expect("a new client after the kill");
        assert!(back, "new client {i}");
    }
    assert!(f.app.log_text().contains("upstream down"), "the failure is logged");
}
