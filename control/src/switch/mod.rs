//! The socket switch: one API over two providers, the fast path (the dataplane engines) and the
//! kernel path (Linux sockets).
//!
//! An application talks to a [`Switch`]; the switch decides which provider serves each socket
//! (SEMANTICS L, A and C rules; grep a rule id to find its code and its test):
//!
//! - [`Switch::listen`] (L1–L3) makes a kernel listener first, plus a fast-path listener on the
//!   same port when the address is a fast-path port's or the wildcard. Connections from both come
//!   out of one [`Listener`].
//! - [`Listener::accept`] never blocks (L5); the listener's fd ([`AsFd`]) is readable exactly while
//!   a completion waits or a connection waits with no posted accept to take it, and works with
//!   epoll, mio and tokio's `AsyncFd`. An accept condition may reject a connection (RST, counted).
//!   A connection the fast path refused because the backlog was full (L4) never wakes it.
//! - [`Listener::post_accept`] (A1–A3) posts accepts ahead of time; with a receive length they
//!   complete only once first data has arrived, delivered with the connection. The listener's
//!   worker thread matches arrivals to them without the application. Automatic mode
//!   ([`Listener::set_auto`]) keeps as many posted as arrivals need, growing and shrinking. A
//!   per-listener limit resets clients that connect and stay silent, on time, counted from their
//!   handshake (A4); [`Socket::connect_time`] tells how long any connection has been connected
//!   since its handshake (A5).
//! - [`Socket::connect_ex`] (C1–C5) connects and sends a first buffer in one asynchronous call;
//!   [`Socket::poll_connect`] completes it with the bytes sent. The provider is chosen by route:
//!   a fast-path port's subnet (or its gateway's routes) goes to the fast path, anything else to
//!   the kernel. Fast Open is used on the kernel path when asked; the fast path has none and says
//!   so in [`Connected::fast_open`].
//! - Errors are `io::Error`s whose [`errno`] is the real errno, the same on both providers (C4).
//! - [`Socket::disconnect`] (C6) returns a socket to "bound, not connected"; a socket that failed
//!   while connected refuses reuse with EBADFD (C7).
//!
//! # Example: an echo server on both providers
//! ```no_run
//! use control::switch::{ListenOptions, Switch};
//! use std::io::{Read, Write};
//!
//! let switch = Switch::kernel_only(); // or Switch::new(fast_path, config) inside the appliance
//! let listener = switch.listen("0.0.0.0:7007".parse().unwrap(), ListenOptions::default())?;
//! loop {
//!     listener.wait(None)?; // or register `listener` with epoll/mio/tokio
//!     while let Ok(mut conn) = listener.accept() {
//!         std::thread::spawn(move || {
//!             let mut buf = [0u8; 4096];
//!             while let Ok(n) = conn.read_blocking(&mut buf) {
//!                 if n == 0 || conn.write_all_blocking(&buf[..n]).is_err() {
//!                     break;
//!                 }
//!             }
//!         });
//!     }
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

mod listener;
mod socket;
pub mod sys;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use runtime::bridge::{Command, Commands, Notify};

pub use engine::{BacklogPolicy, OnFull};
pub use listener::{AcceptCompletion, AutoPost, ListenOptions, Listener, ListenerCounters, Peer};
pub use socket::{ConnectOptions, ConnectTime, Connected, FastOpen, Socket};

/// Which provider serves a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    /// The DPDK ports and the per-core engines.
    Fast,
    /// The Linux TCP/IP stack.
    Kernel,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Fast => "fast path",
            Provider::Kernel => "kernel path",
        })
    }
}

/// An error a provider reported, with the real errno (see [`errno`]).
#[derive(Debug)]
pub struct SwitchError {
    pub provider: Option<Provider>,
    pub errno: i32,
    pub what: String,
}

impl fmt::Display for SwitchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = io::Error::from_raw_os_error(self.errno);
        match self.provider {
            Some(p) => write!(f, "{p}: {}: {os}", self.what),
            None => write!(f, "{}: {os}", self.what),
        }
    }
}

impl std::error::Error for SwitchError {}

/// An `io::Error` carrying `errno`, with a message that says which provider and what.
pub(crate) fn error(provider: Option<Provider>, errno: i32, what: impl Into<String>) -> io::Error {
    let kind = io::Error::from_raw_os_error(errno).kind();
    io::Error::new(kind, SwitchError { provider, errno, what: what.into() })
}

/// A kernel-path error with what was being done, keeping its errno.
pub(crate) fn kernel_error(e: io::Error, what: impl Into<String>) -> io::Error {
    match e.raw_os_error() {
        Some(errno) => error(Some(Provider::Kernel), errno, what),
        None => e,
    }
}

/// The errno behind an error from the switch (or any `io::Error` from the OS).
pub fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| e.get_ref()?.downcast_ref::<SwitchError>().map(|s| s.errno))
}

/// An eventfd as the engines' [`Notify`].
#[derive(Debug)]
pub(crate) struct EventNotify(pub sys::EventFd);

impl Notify for EventNotify {
    fn notify(&self) {
        self.0.signal();
    }
    fn clear(&self) {
        self.0.drain();
    }
}

impl EventNotify {
    pub(crate) fn new() -> io::Result<Arc<EventNotify>> {
        Ok(Arc::new(EventNotify(sys::EventFd::new()?)))
    }
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A fast-path port as the switch sees it: its address and subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastPort {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
}

impl FastPort {
    fn on_link(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.address) & mask
    }
}

/// Which engine (core index) receives the replies of a connection from `local` to `remote`.
pub type ReplyOwner = Arc<dyn Fn(SocketAddrV4, SocketAddrV4) -> usize + Send + Sync>;

/// The fast path: its port and the command queue of each engine serving it.
pub struct FastPath {
    pub port: FastPort,
    engines: Vec<Arc<Commands>>,
    next: AtomicUsize,
    owner: Option<ReplyOwner>,
}

impl fmt::Debug for FastPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FastPath").field("port", &self.port).field("engines", &self.engines.len()).finish()
    }
}

impl FastPath {
    /// A fast path over engines that take commands from these queues (one per core).
    pub fn new(port: FastPort, engines: Vec<Arc<Commands>>) -> FastPath {
        assert!(!engines.is_empty(), "a fast path has at least one engine");
        FastPath { port, engines, next: AtomicUsize::new(0), owner: None }
    }

    /// With several engines: `owner` tells which one receives a 4-tuple's replies (RSS or the
    /// software steering), so a connect from a bound port goes to the engine that will see its
    /// SYN-ACK. Connects from an ephemeral port go to the engines in turn; each picks a port
    /// whose replies come back to it.
    pub fn with_reply_owner(mut self, owner: ReplyOwner) -> FastPath {
        self.owner = Some(owner);
        self
    }

    /// The engine for a connect from a bound `local` (with its address filled in) to `remote`.
    pub(crate) fn engine_for(&self, local: SocketAddrV4, remote: SocketAddrV4) -> &Arc<Commands> {
        match &self.owner {
            Some(owner) if local.port() != 0 => &self.engines[owner(local, remote) % self.engines.len()],
            _ => self.next_engine(),
        }
    }

    pub(crate) fn engines(&self) -> &[Arc<Commands>] {
        &self.engines
    }

    /// The engine for the next outgoing connection (in turn; each picks a source port whose
    /// replies reach its own core).
    pub(crate) fn next_engine(&self) -> &Arc<Commands> {
        &self.engines[self.next.fetch_add(1, Ordering::Relaxed) % self.engines.len()]
    }

    /// Sends a command to every engine; ENOBUFS if a queue stays full.
    pub(crate) fn broadcast(&self, mut make: impl FnMut() -> Command) -> io::Result<()> {
        for q in &self.engines {
            push(q, make())?;
        }
        Ok(())
    }
}

/// Queues a command, waiting briefly for room; ENOBUFS when the engine does not make any.
pub(crate) fn push(q: &Commands, mut c: Command) -> io::Result<()> {
    for _ in 0..1000 {
        match q.push(c) {
            Ok(()) => return Ok(()),
            Err(back) => c = back,
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    Err(error(Some(Provider::Fast), libc::ENOBUFS, "the engine's command queue stays full"))
}

/// Settings of a switch.
#[derive(Clone, Debug)]
pub struct SwitchConfig {
    /// The largest first buffer [`Socket::connect_ex`] takes (SEMANTICS C5); larger is ENOBUFS.
    /// It is also the size of each direction's ring of a fast-path connection.
    pub max_first_data: usize,
    /// How long a connect may take when [`ConnectOptions::timeout`] does not say.
    pub connect_timeout: Duration,
    /// Destinations off the fast-path port's subnet that it reaches through its gateway
    /// (network, prefix length).
    pub fast_routes: Vec<(Ipv4Addr, u8)>,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig { max_first_data: 64 * 1024, connect_timeout: Duration::from_secs(30), fast_routes: Vec::new() }
    }
}

pub(crate) struct Inner {
    pub(crate) fast: Option<FastPath>,
    pub(crate) cfg: SwitchConfig,
}

/// The socket switch. Cheap to clone; every clone is the same switch.
#[derive(Clone)]
pub struct Switch {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Switch").field("fast", &self.inner.fast.as_ref().map(|f| f.port)).finish()
    }
}

impl Switch {
    /// A switch with the kernel path only (no fast-path port).
    pub fn kernel_only() -> Switch {
        Switch { inner: Arc::new(Inner { fast: None, cfg: SwitchConfig::default() }) }
    }

    /// A switch over a fast path (and the kernel path).
    pub fn new(fast: Option<FastPath>, cfg: SwitchConfig) -> Switch {
        Switch { inner: Arc::new(Inner { fast, cfg }) }
    }

    /// The fast-path port, if the switch has one.
    pub fn fast_port(&self) -> Option<FastPort> {
        self.inner.fast.as_ref().map(|f| f.port)
    }

    /// Which provider a connection to `remote` goes through: the fast path when `remote` is on
    /// the fast-path port's subnet, or inside one of [`SwitchConfig::fast_routes`] (reached
    /// through the port's gateway); the kernel otherwise.
    pub fn route(&self, remote: SocketAddr) -> Provider {
        match (&self.inner.fast, remote) {
            (Some(f), SocketAddr::V4(r)) => {
                let ip = *r.ip();
                let routed = f.port.gateway.is_some()
                    && self.inner.cfg.fast_routes.iter().any(|&(net, len)| {
                        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                        u32::from(ip) & mask == u32::from(net) & mask
                    });
                if f.port.on_link(ip) || routed {
                    Provider::Fast
                } else {
                    Provider::Kernel
                }
            }
            _ => Provider::Kernel,
        }
    }

    /// Whether `addr` is a fast-path port's address or the wildcard (SEMANTICS L2).
    pub fn listens_on_fast_path(&self, addr: SocketAddr) -> bool {
        match (&self.inner.fast, addr) {
            (Some(f), SocketAddr::V4(a)) => a.ip().is_unspecified() || *a.ip() == f.port.address,
            (Some(_), SocketAddr::V6(a)) => a.ip().is_unspecified(),
            (None, _) => false,
        }
    }

    /// Listens on `addr` (SEMANTICS L1–L3): see [`Listener`].
    ///
    /// ```no_run
    /// # use control::switch::{ListenOptions, Switch, BacklogPolicy, OnFull};
    /// let switch = Switch::kernel_only();
    /// let opts = ListenOptions { backlog: 2, policy: BacklogPolicy::Bsd, on_full: OnFull::Refuse, ..Default::default() };
    /// let listener = switch.listen("0.0.0.0:9000".parse().unwrap(), opts)?;
    /// println!("listening on {} through {:?}", listener.local_addr(), listener.providers());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn listen(&self, addr: SocketAddr, opts: ListenOptions) -> io::Result<Listener> {
        Listener::new(self.clone(), addr, opts)
    }

    /// A new, unbound TCP socket (bind it, then [`Socket::connect_ex`]).
    ///
    /// ```no_run
    /// # use control::switch::{ConnectOptions, Switch};
    /// let switch = Switch::kernel_only();
    /// let mut s = switch.socket();
    /// s.bind("0.0.0.0:0".parse().unwrap())?;
    /// s.connect_ex("127.0.0.1:7".parse().unwrap(), b"hello", ConnectOptions::default())?;
    /// let done = s.wait_connect(None)?;
    /// assert_eq!(done.bytes_sent, 5);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn socket(&self) -> Socket {
        Socket::new(self.clone())
    }

    /// Binds a new socket to the wildcard and starts `connect_ex` on it: the implicit-bind form
    /// of SEMANTICS C2.
    pub fn connect_ex(&self, remote: SocketAddr, first: &[u8], opts: ConnectOptions) -> io::Result<Socket> {
        let mut s = self.socket();
        let any: SocketAddr = match remote {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        s.bind(any)?;
        s.connect_ex(remote, first, opts)?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests;
