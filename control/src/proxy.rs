//! The `proxy` service: a TCP proxy built on the socket switch.
//!
//! - It listens through the switch, so clients arrive from both providers (SEMANTICS L1–L3).
//! - It accepts with first data (A2, automatic posting: A3) and closes clients that stay silent
//!   (A4).
//! - It opens the upstream with `connect_ex` carrying that first data (C1). The switch picks the
//!   provider by route: the fast path for the fast-path port's subnet, the kernel otherwise.
//! - It relays both ways through two bounded buffers. A side that does not take data stops the
//!   reading of the other (back-pressure), and an end of stream on one side becomes a FIN on the
//!   other (half-close).
//! - Upstreams are taken in turn. One whose connect fails is marked down for `retry` and the
//!   client goes to the next; when every upstream is down, the client is reset.
//!
//! One thread runs a proxy: it polls every socket it holds (poll(2) over their event fds) and
//! moves what can move. Each connection costs two 64 KiB buffers.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::switch::{errno, BacklogPolicy, ConnectOptions, ListenOptions, OnFull, Provider, Socket, Switch};

/// Bytes buffered per direction of a connection.
const BUF: usize = 64 * 1024;

/// A proxy's settings.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub backlog: usize,
    pub policy: BacklogPolicy,
    pub on_full: OnFull,
    pub upstreams: Vec<SocketAddr>,
    pub retry: Duration,
    pub silent: Duration,
    pub first_data: bool,
    pub connect_timeout: Duration,
}

/// Counters of a proxy.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub accepted: AtomicU64,
    pub relayed: AtomicU64,
    pub upstream_failures: AtomicU64,
    pub no_upstream: AtomicU64,
    /// Relayed connections that ended in an error (both sides reset).
    pub failed: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
}

/// One direction's bytes in flight.
struct Buf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf { data: vec![0u8; BUF].into_boxed_slice(), start: 0, end: 0 }
    }
    fn is_empty(&self) -> bool {
        self.start == self.end
    }
    /// Whether a read can go in: at the end, or from the start once everything was written.
    fn has_room(&self) -> bool {
        self.start == self.end || self.end < self.data.len()
    }
    fn room(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        &mut self.data[self.end..]
    }
    fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }
}

/// One side of a relayed connection, and the buffer of what it sent that the other side has not
/// taken yet.
struct Side {
    sock: Socket,
    /// Bytes read from this side, for the other.
    buf: Buf,
    /// This side finished sending (read returned 0).
    eof: bool,
    /// FIN sent to this side.
    shut: bool,
}

impl Side {
    fn new(sock: Socket) -> Side {
        Side { sock, buf: Buf::new(), eof: false, shut: false }
    }
}

enum Conn {
    /// The client's first data is in hand; the upstream connect is under way.
    Connecting {
        client: Socket,
        upstream: Socket,
        first: Vec<u8>,
        target: usize,
        tried: usize,
    },
    Relaying {
        client: Side,
        upstream: Side,
    },
}

struct Upstream {
    addr: SocketAddr,
    down_until: Option<Instant>,
}

/// A proxy at work.
pub struct Proxy {
    switch: Switch,
    cfg: ProxyConfig,
    listener: crate::switch::Listener,
    upstreams: Vec<Upstream>,
    next: usize,
    conns: Vec<Conn>,
    pub stats: Arc<ProxyStats>,
}

/// What moving bytes between two sockets came to.
enum Moved {
    /// Something moved; keep going.
    Some,
    /// Nothing can move now.
    Nothing,
    /// Both sides are done.
    Done,
    /// An error on one side: reset both.
    Failed(io::Error),
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// One step in one direction: reads what `src` sent into its buffer (while it has room), writes
/// that buffer to `dst`, and passes `src`'s end of stream on to `dst` once the buffer is empty.
fn step(src: &mut Side, dst: &mut Side, counter: &AtomicU64) -> Result<bool, io::Error> {
    let mut moved = false;
    if !src.eof && src.buf.has_room() {
        match src.sock.read(src.buf.room()) {
            Ok(0) => {
                src.eof = true;
                moved = true;
            }
            Ok(n) => {
                src.buf.end += n;
                moved = true;
            }
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(e),
        }
    }
    if !src.buf.is_empty() {
        match dst.sock.write(src.buf.pending()) {
            Ok(n) => {
                src.buf.start += n;
                counter.fetch_add(n as u64, Ordering::Relaxed);
                moved |= n > 0;
            }
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(e),
        }
    }
    if src.eof && src.buf.is_empty() && !dst.shut {
        // Half-close: what this side finished, the other hears as a FIN.
        dst.sock.shutdown_write()?;
        dst.shut = true;
        moved = true;
    }
    Ok(moved)
}

fn relay(client: &mut Side, upstream: &mut Side, stats: &ProxyStats) -> Moved {
    let mut any = false;
    loop {
        let up = step(client, upstream, &stats.bytes_up);
        let down = step(upstream, client, &stats.bytes_down);
        match (up, down) {
            (Ok(a), Ok(b)) if a || b => any = true,
            (Ok(_), Ok(_)) => break,
            (Err(e), _) | (_, Err(e)) => return Moved::Failed(e),
        }
    }
    if client.eof && upstream.eof && client.buf.is_empty() && upstream.buf.is_empty() {
        return Moved::Done;
    }
    if any {
        Moved::Some
    } else {
        Moved::Nothing
    }
}

/// What to wait for on a socket: (fd, events) for poll(2). A fast-path socket signals any
/// progress on its eventfd (readable); a kernel socket is asked for what this side needs.
fn interest(s: &Socket, read: bool, write: bool) -> Option<libc::pollfd> {
    let fd = s.event_fd()?.as_raw_fd();
    let events = match s.provider() {
        Some(Provider::Fast) => libc::POLLIN,
        _ => (if read { libc::POLLIN } else { 0 }) | (if write { libc::POLLOUT } else { 0 }),
    };
    Some(libc::pollfd { fd, events, revents: 0 })
}

impl Proxy {
    /// Listens through `switch` (both providers for the fast-path port's address or the
    /// wildcard).
    pub fn new(switch: Switch, cfg: ProxyConfig) -> io::Result<Proxy> {
        let opts = ListenOptions {
            backlog: cfg.backlog,
            policy: cfg.policy,
            on_full: cfg.on_full,
            silent_limit: cfg.first_data.then_some(cfg.silent),
            ..Default::default()
        };
        let listener = switch.listen(cfg.listen, opts)?;
        // A2/A3: accepts posted automatically, each completing with the client's first data.
        listener.set_auto_post(if cfg.first_data { 16 * 1024 } else { 0 }, 1024);
        let upstreams = cfg.upstreams.iter().map(|&addr| Upstream { addr, down_until: None }).collect();
        tracing::info!(listen = %cfg.listen, upstreams = ?cfg.upstreams, providers = ?listener.providers(), "proxy listening");
        Ok(Proxy { switch, cfg, listener, upstreams, next: 0, conns: Vec::new(), stats: Arc::default() })
    }

    /// The next upstream that is not marked down, in turn (`None`: all are down).
    fn pick(&mut self, skip: usize) -> Option<usize> {
        let now = Instant::now();
        let n = self.upstreams.len();
        for k in 0..n {
            let i = (self.next + skip + k) % n;
            match self.upstreams[i].down_until {
                Some(t) if t > now => continue,
                _ => {
                    self.next = (i + 1) % n;
                    return Some(i);
                }
            }
        }
        None
    }

    fn start_connect(&mut self, client: Socket, first: Vec<u8>, tried: usize) {
        if tried >= self.upstreams.len() {
            self.stats.no_upstream.fetch_add(1, Ordering::Relaxed);
            client.abort();
            return;
        }
        let Some(target) = self.pick(0) else {
            self.stats.no_upstream.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("proxy: every upstream is down; client reset");
            client.abort();
            return;
        };
        let addr = self.upstreams[target].addr;
        let opts = ConnectOptions { timeout: Some(self.cfg.connect_timeout), ..Default::default() };
        match self.switch.connect_ex(addr, &first, opts) {
            Ok(upstream) => self.conns.push(Conn::Connecting { client, upstream, first, target, tried }),
            Err(e) => {
                self.mark_down(target, &e);
                self.start_connect(client, first, tried + 1);
            }
        }
    }

    fn mark_down(&mut self, i: usize, e: &io::Error) {
        self.stats.upstream_failures.fetch_add(1, Ordering::Relaxed);
        let u = &mut self.upstreams[i];
        if u.down_until.is_none_or(|t| t <= Instant::now()) {
            tracing::warn!(upstream = %u.addr, error = %e, errno = ?errno(e), retry_secs = self.cfg.retry.as_secs(), "proxy: upstream down");
        }
        u.down_until = Some(Instant::now() + self.cfg.retry);
    }

    /// Moves everything that can move now; returns whether anything did.
    pub fn turn(&mut self) -> bool {
        let mut busy = false;
        while let Ok(done) = self.listener.completion() {
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            self.start_connect(done.socket, done.data, 0);
            busy = true;
        }
        let mut i = 0;
        while i < self.conns.len() {
            // Fast-path signals are reset before the round; what changes after signals again.
            match &self.conns[i] {
                Conn::Connecting { upstream, .. } => upstream.clear_event(),
                Conn::Relaying { client, upstream } => {
                    client.sock.clear_event();
                    upstream.sock.clear_event();
                }
            }
            let keep = match &mut self.conns[i] {
                Conn::Connecting { upstream, .. } => match upstream.poll_connect() {
                    Err(e) if would_block(&e) => true,
                    Ok(_) => {
                        let Conn::Connecting { client, upstream, .. } = self.conns.swap_remove(i) else {
                            unreachable!()
                        };
                        self.stats.relayed.fetch_add(1, Ordering::Relaxed);
                        self.conns.push(Conn::Relaying { client: Side::new(client), upstream: Side::new(upstream) });
                        busy = true;
                        continue;
                    }
                    Err(e) => {
                        let Conn::Connecting { client, first, target, tried, .. } = self.conns.swap_remove(i) else {
                            unreachable!()
                        };
                        self.mark_down(target, &e);
                        self.start_connect(client, first, tried + 1);
                        busy = true;
                        continue;
                    }
                },
                Conn::Relaying { client, upstream } => match relay(client, upstream, &self.stats) {
                    Moved::Some => {
                        busy = true;
                        true
                    }
                    Moved::Nothing => true,
                    Moved::Done => false,
                    Moved::Failed(e) => {
                        let Conn::Relaying { client, upstream } = self.conns.swap_remove(i) else { unreachable!() };
                        tracing::debug!(client = ?client.sock.peer_addr(), upstream = ?upstream.sock.peer_addr(), error = %e, "proxy: connection failed; both sides reset");
                        self.stats.failed.fetch_add(1, Ordering::Relaxed);
                        client.sock.abort();
                        upstream.sock.abort();
                        continue;
                    }
                },
            };
            if keep {
                i += 1;
            } else {
                drop(self.conns.swap_remove(i)); // both closed gracefully
                busy = true;
            }
        }
        busy
    }

    /// Waits until a socket or the listener may have progress, or `timeout`.
    pub fn wait(&self, timeout: Duration) {
        let mut fds = vec![libc::pollfd { fd: self.listener_fd(), events: libc::POLLIN, revents: 0 }];
        for c in &self.conns {
            match c {
                Conn::Connecting { upstream, .. } => fds.extend(interest(upstream, true, true)),
                Conn::Relaying { client, upstream } => {
                    // Read a side only while its buffer has room; write it while the other side
                    // has bytes for it.
                    fds.extend(interest(&client.sock, !client.eof && client.buf.has_room(), !upstream.buf.is_empty()));
                    fds.extend(interest(
                        &upstream.sock,
                        !upstream.eof && upstream.buf.has_room(),
                        !client.buf.is_empty(),
                    ));
                }
            }
        }
        crate::switch::sys::poll_many(&mut fds, timeout);
    }

    fn listener_fd(&self) -> i32 {
        use std::os::fd::AsFd;
        self.listener.as_fd().as_raw_fd()
    }

    /// Runs until one of `stops` is set.
    pub fn run_until(mut self, stops: &[&AtomicBool]) {
        while !stops.iter().any(|s| s.load(Ordering::Relaxed)) {
            if !self.turn() {
                self.wait(Duration::from_millis(100));
            }
        }
        tracing::info!(
            listen = %self.cfg.listen,
            accepted = self.stats.accepted.load(Ordering::Relaxed),
            relayed = self.stats.relayed.load(Ordering::Relaxed),
            upstream_failures = self.stats.upstream_failures.load(Ordering::Relaxed),
            "proxy stopped"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer filled to the end and written out whole takes reads again (a stall once).
    #[test]
    fn a_drained_full_buffer_has_room_again() {
        let mut b = Buf::new();
        let n = b.room().len();
        b.end += n;
        assert!(!b.has_room() && !b.is_empty());
        b.start += n / 2;
        assert!(!b.has_room(), "half written: no room at the end yet");
        b.start = b.end;
        assert!(b.is_empty() && b.has_room(), "all written: room from the start");
        assert_eq!(b.room().len(), BUF);
    }
}
