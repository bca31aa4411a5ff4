//! Connections and connecting sockets, whichever provider serves them (SEMANTICS A5, C1–C7).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use runtime::bridge::{self, AppEnd, Command, ConnectRequest, End, ReadOutcome};
use socket2::{Domain, Protocol, Type};

use super::{error, kernel_error, push, sys, EventNotify, Provider, Switch};

/// Options of [`Socket::connect_ex`].
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// Ask for TCP Fast Open (SEMANTICS C3): on the kernel path, TCP_FASTOPEN_CONNECT (the first
    /// buffer rides in the SYN once the kernel holds a cookie for the server); the fast path has
    /// no Fast Open and reports [`FastOpen::NotAvailable`].
    pub fast_open: bool,
    /// Give up with ETIMEDOUT when the handshake takes longer (default: the switch's
    /// `connect_timeout`).
    pub timeout: Option<Duration>,
}

/// What became of a Fast Open request (SEMANTICS C3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastOpen {
    NotRequested,
    /// Kernel path: the first data was acknowledged as part of the SYN.
    Used,
    /// Kernel path: requested, but the data went after the handshake (no cookie yet: the first
    /// connection to a server fetches one).
    NotUsed,
    /// Fast path: smoltcp has no Fast Open; the first data went after the handshake.
    NotAvailable,
}

/// A completed connect (SEMANTICS C1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connected {
    /// Bytes of the first buffer sent (queued in the connection, all of it).
    pub bytes_sent: usize,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub provider: Provider,
    pub fast_open: FastOpen,
}

/// SEMANTICS A5: how long a connection has been connected, counted from the moment its handshake
/// completed (not from when the application accepted it or polled its connect).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectTime {
    /// The handshake has not completed (or the socket has no connection).
    NotConnected,
    Connected(Duration),
}

impl ConnectTime {
    /// The seed's SO_CONNECT_TIME value: whole seconds, or 0xFFFFFFFF when not connected.
    pub fn as_seconds_or_max(self) -> u32 {
        match self {
            ConnectTime::NotConnected => u32::MAX,
            ConnectTime::Connected(d) => d.as_secs().min(u64::from(u32::MAX - 1)) as u32,
        }
    }
}

pub(crate) enum Conn {
    Kernel(socket2::Socket),
    Fast { end: AppEnd, notify: Arc<EventNotify> },
}

impl Conn {
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Conn::Kernel(s) => s.as_fd(),
            Conn::Fast { notify, .. } => notify.fd(),
        }
    }

    fn provider(&self) -> Provider {
        match self {
            Conn::Kernel(_) => Provider::Kernel,
            Conn::Fast { .. } => Provider::Fast,
        }
    }

    /// SEMANTICS A5: when the handshake completed, if it has. Fast path: the instant the engine
    /// completed it (stamped by the engine's end of the bridge). Kernel path: from TCP_INFO (see
    /// [`sys::tcp_connected_for`]).
    fn established_at(&self) -> Option<Instant> {
        match self {
            Conn::Kernel(s) => {
                let d = sys::tcp_connected_for(s.as_fd())?;
                let now = Instant::now();
                Some(now.checked_sub(d).unwrap_or(now))
            }
            Conn::Fast { end, .. } => end.established_at(),
        }
    }

    /// Resets the connection (RST).
    fn abort(self) {
        match self {
            Conn::Kernel(s) => {
                let _ = s.set_linger(Some(Duration::ZERO));
            }
            Conn::Fast { end, .. } => end.abort(),
        }
    }
}

/// A fast-path connection made from an incoming one.
pub(crate) fn fast_conn(end: AppEnd) -> io::Result<Conn> {
    let notify = EventNotify::new()?;
    end.set_notify(notify.clone());
    Ok(Conn::Fast { end, notify })
}

/// The errno an ended fast-path connection reports; `established` tells connect failures
/// (ECONNREFUSED) from resets (ECONNRESET).
fn end_errno(e: End, established: bool) -> i32 {
    match e {
        End::Reset if established => libc::ECONNRESET,
        End::Reset => libc::ECONNREFUSED,
        End::TimedOut => libc::ETIMEDOUT,
        End::Unreachable => libc::EHOSTUNREACH,
        End::Aborted => libc::ECONNABORTED,
        End::AddrInUse => libc::EADDRINUSE,
        End::AddrNotAvail => libc::EADDRNOTAVAIL,
        End::NoBuffers => libc::ENOBUFS,
        End::Graceful => libc::EPIPE,
    }
}

/// Connect errors after which the same socket may connect again (SEMANTICS C4).
fn retryable(errno: i32) -> bool {
    matches!(errno, libc::ECONNREFUSED | libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ETIMEDOUT)
}

enum State {
    Unbound,
    /// Bound, not connected. `from_accepted`: a disconnected accepted socket, which may not
    /// connect (C6).
    Bound {
        local: SocketAddr,
        from_accepted: bool,
    },
    Connecting {
        conn: Conn,
        local: SocketAddr,
        remote: SocketAddr,
        /// First data not yet in the kernel's send buffer.
        pending: Vec<u8>,
        total: usize,
        fast_open: FastOpen,
        /// The errno of a kernel connect that failed at once (reported by `poll_connect`).
        early: Option<i32>,
        /// When the handshake completed, once seen (A5). Kernel path: stamped at the first look
        /// after it completed, before the first buffer's rest is sent (sending moves the stamp
        /// TCP_INFO reads).
        established: OnceLock<Instant>,
    },
    Connected {
        conn: Conn,
        local: SocketAddr,
        remote: SocketAddr,
        /// When the handshake completed (A5).
        since: Instant,
    },
    /// Failed while connected, with the errno (C7: reuse is an error).
    Failed(i32),
    /// Being moved between states.
    Gone,
}

/// A TCP socket of the switch: unbound, bound, connecting or connected, on either provider.
/// Accepted connections are sockets too.
///
/// I/O never blocks: `WouldBlock` means "wait on [`Socket::event_fd`]" (readable when the
/// connection may have progressed; register it for readable and writable, edge-triggered as mio
/// and tokio do, or use the `*_blocking` helpers).
pub struct Socket {
    switch: Switch,
    state: State,
    /// The local address given to `bind` (kept across `disconnect`).
    bound: Option<SocketAddr>,
    accepted: bool,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Unbound => "unbound".to_owned(),
            State::Bound { local, .. } => format!("bound {local}"),
            State::Connecting { remote, .. } => format!("connecting to {remote}"),
            State::Connected { local, remote, conn, .. } => format!("{local} -> {remote} ({})", conn.provider()),
            State::Failed(e) => format!("failed: {}", io::Error::from_raw_os_error(*e)),
            State::Gone => "gone".to_owned(),
        };
        f.debug_struct("Socket").field("state", &state).finish()
    }
}

impl Socket {
    pub(crate) fn new(switch: Switch) -> Socket {
        Socket { switch, state: State::Unbound, bound: None, accepted: false }
    }

    /// An accepted connection; its connect time counts from its handshake (A5), which may be well
    /// before now: the connection waited in the provider's queue meanwhile.
    pub(crate) fn accepted(switch: Switch, conn: Conn, local: SocketAddr, remote: SocketAddr) -> Socket {
        let since = conn.established_at().unwrap_or_else(Instant::now);
        Socket { switch, state: State::Connected { conn, local, remote, since }, bound: Some(local), accepted: true }
    }

    /// Binds to a local address (port 0: any). SEMANTICS C2: a socket must be bound before
    /// [`Socket::connect_ex`]. Conflicts (EADDRINUSE) surface at connect.
    ///
    /// ```no_run
    /// # let switch = control::switch::Switch::kernel_only();
    /// let mut s = switch.socket();
    /// s.bind("198.18.0.2:40000".parse().unwrap())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bind(&mut self, local: SocketAddr) -> io::Result<()> {
        match self.state {
            State::Unbound => {
                self.state = State::Bound { local, from_accepted: false };
                self.bound = Some(local);
                Ok(())
            }
            _ => Err(error(None, libc::EINVAL, "the socket is bound already")),
        }
    }

    /// Connects to `remote` and sends `first` (SEMANTICS C1–C5), asynchronously: completion comes
    /// through [`Socket::poll_connect`] when [`Socket::event_fd`] signals. Errors about the call
    /// itself come at once (C4): EINVAL (unbound, or an accepted socket reused), EALREADY,
    /// EISCONN, EADDRNOTAVAIL (all-zero remote or port 0), EAFNOSUPPORT (remote of another family
    /// than the bound address), ENOBUFS (`first` larger than the switch's `max_first_data`, or the
    /// engine's queue full), EBADFD (the socket failed earlier: C7). What the network says
    /// (ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, ETIMEDOUT, EADDRINUSE) comes from `poll_connect`;
    /// after the first four the socket is bound again and may retry.
    ///
    /// ```no_run
    /// # use control::switch::ConnectOptions;
    /// # let switch = control::switch::Switch::kernel_only();
    /// let mut s = switch.socket();
    /// s.bind("0.0.0.0:0".parse().unwrap())?;
    /// s.connect_ex("198.18.0.2:7".parse().unwrap(), b"GET / HTTP/1.0\r\n\r\n", ConnectOptions::default())?;
    /// let done = s.wait_connect(None)?;
    /// println!("{} bytes sent through the {}", done.bytes_sent, done.provider);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connect_ex(&mut self, remote: SocketAddr, first: &[u8], opts: ConnectOptions) -> io::Result<()> {
        let local = match &self.state {
            State::Unbound => {
                return Err(error(None, libc::EINVAL, "connect_ex on an unbound socket: bind it first (SEMANTICS C2)"))
            }
            State::Bound { from_accepted: true, .. } => {
                return Err(error(
                    None,
                    libc::EINVAL,
                    "an accepted socket, even disconnected, cannot connect (SEMANTICS C6)",
                ))
            }
            State::Bound { local, .. } => *local,
            State::Connecting { .. } => return Err(error(None, libc::EALREADY, "a connect is in progress")),
            State::Connected { .. } => return Err(error(None, libc::EISCONN, "the socket is connected")),
            State::Failed(e) => return Err(failed_error(*e)),
            State::Gone => unreachable!("only seen inside a transition"),
        };
        if remote.ip().is_unspecified() || remote.port() == 0 {
            return Err(error(None, libc::EADDRNOTAVAIL, format!("{remote} is not a valid remote address")));
        }
        if local.is_ipv4() != remote.is_ipv4() {
            return Err(error(None, libc::EAFNOSUPPORT, format!("bound to {local}, cannot reach {remote}")));
        }
        let cfg = &self.switch.inner.cfg;
        if first.len() > cfg.max_first_data {
            return Err(error(
                None,
                libc::ENOBUFS,
                format!(
                    "first buffer of {} bytes is over the limit of {} (SEMANTICS C5)",
                    first.len(),
                    cfg.max_first_data
                ),
            ));
        }
        let timeout = opts.timeout.unwrap_or(cfg.connect_timeout);
        let provider = match (self.switch.fast_port(), local) {
            (Some(p), SocketAddr::V4(l)) if *l.ip() == p.address => Provider::Fast,
            (_, l) if !l.ip().is_unspecified() => Provider::Kernel,
            _ => self.switch.route(remote),
        };
        let state = match provider {
            Provider::Kernel => connect_kernel(local, remote, first, &opts, timeout)?,
            Provider::Fast => self.connect_fast(local, remote, first, &opts, timeout)?,
        };
        self.state = state;
        Ok(())
    }

    fn connect_fast(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        first: &[u8],
        opts: &ConnectOptions,
        timeout: Duration,
    ) -> io::Result<State> {
        let fast = self.switch.inner.fast.as_ref().expect("routed to the fast path, so it exists");
        let (SocketAddr::V4(l), SocketAddr::V4(r)) = (local, remote) else {
            return Err(error(Some(Provider::Fast), libc::EAFNOSUPPORT, "the fast path is IPv4 only"));
        };
        let local_ip = if l.ip().is_unspecified() { fast.port.address } else { *l.ip() };
        let engine = fast.engine_for(SocketAddrV4::new(local_ip, l.port()), r);
        let ring = self.switch.inner.cfg.max_first_data.max(4096);
        let (engine_end, mut app) = bridge::pair(ring, ring, engine.clone());
        let notify = EventNotify::new()?;
        app.set_notify(notify.clone());
        let queued = app.write(first).unwrap_or(0);
        debug_assert_eq!(queued, first.len(), "the ring holds max_first_data");
        let local_req = (l.port() != 0 || !l.ip().is_unspecified()).then_some(l);
        push(
            engine,
            Command::Connect(ConnectRequest { end: engine_end, local: local_req, remote: r, timeout: Some(timeout) }),
        )?;
        app.want_notify();
        let fast_open = if opts.fast_open { FastOpen::NotAvailable } else { FastOpen::NotRequested };
        let local = SocketAddr::V4(SocketAddrV4::new(local_ip, l.port()));
        Ok(State::Connecting {
            conn: Conn::Fast { end: app, notify },
            local,
            remote,
            pending: Vec::new(),
            total: first.len(),
            fast_open,
            early: None,
            established: OnceLock::new(),
        })
    }

    /// Completes a connect started by [`Socket::connect_ex`]: `WouldBlock` while in progress.
    /// After ECONNREFUSED, ENETUNREACH, EHOSTUNREACH or ETIMEDOUT the socket is bound again and
    /// may connect again (C4).
    ///
    /// ```no_run
    /// # use control::switch::ConnectOptions;
    /// # let switch = control::switch::Switch::kernel_only();
    /// # let mut s = switch.socket();
    /// # s.bind("0.0.0.0:0".parse().unwrap())?;
    /// s.connect_ex("198.18.0.2:7".parse().unwrap(), b"hi", ConnectOptions::default())?;
    /// // ... epoll/mio says s.event_fd() is ready:
    /// match s.poll_connect() {
    ///     Ok(done) => println!("connected, {} bytes sent", done.bytes_sent),
    ///     Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => { /* not yet */ }
    ///     Err(e) => println!("failed: errno {:?}", control::switch::errno(&e)),
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn poll_connect(&mut self) -> io::Result<Connected> {
        let State::Connecting { conn, pending, early, established, .. } = &mut self.state else {
            return match &self.state {
                State::Connected { .. } => Err(error(None, libc::EISCONN, "the socket is connected")),
                State::Failed(e) => Err(failed_error(*e)),
                _ => Err(error(None, libc::EINVAL, "no connect in progress")),
            };
        };
        let outcome: Result<(), i32> = match conn {
            Conn::Kernel(_) if early.is_some() => Err(early.unwrap_or(libc::EIO)),
            Conn::Kernel(s) => match s.take_error() {
                Ok(Some(e)) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
                Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
                Ok(None) => match s.peer_addr() {
                    Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
                    Ok(_) => {
                        // Connected. A5: the handshake's time first, while TCP_INFO still tells
                        // it; then the rest of the first buffer goes.
                        if established.get().is_none() {
                            let now = Instant::now();
                            let at =
                                sys::tcp_connected_for(s.as_fd()).map_or(now, |d| now.checked_sub(d).unwrap_or(now));
                            let _ = established.set(at);
                        }
                        while !pending.is_empty() {
                            match s.send(pending) {
                                Ok(n) => drop(pending.drain(..n)),
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                    return Err(io::ErrorKind::WouldBlock.into())
                                }
                                Err(e) => return Err(e),
                            }
                        }
                        Ok(())
                    }
                },
            },
            Conn::Fast { end, .. } => match (end.ended(), end.is_established()) {
                (Some(e), established) => Err(end_errno(e, established)),
                (None, true) => Ok(()),
                (None, false) => {
                    end.want_notify();
                    match (end.ended(), end.is_established()) {
                        (Some(e), established) => Err(end_errno(e, established)),
                        (None, true) => Ok(()),
                        (None, false) => return Err(io::ErrorKind::WouldBlock.into()),
                    }
                }
            },
        };
        let State::Connecting { conn, local, remote, total, fast_open, established, .. } =
            std::mem::replace(&mut self.state, State::Gone)
        else {
            unreachable!()
        };
        let provider = conn.provider();
        match outcome {
            Ok(()) => {
                let (local, fast_open) = match &conn {
                    Conn::Kernel(s) => {
                        let l = s.local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(local);
                        let f = match fast_open {
                            FastOpen::NotRequested => FastOpen::NotRequested,
                            _ if sys::syn_data_acked(s.as_fd()) => FastOpen::Used,
                            _ => FastOpen::NotUsed,
                        };
                        (l, f)
                    }
                    Conn::Fast { end, .. } => (end.addrs().map_or(local, |(l, _)| SocketAddr::V4(l)), fast_open),
                };
                let since = established.get().copied().or_else(|| conn.established_at()).unwrap_or_else(Instant::now);
                self.state = State::Connected { conn, local, remote, since };
                Ok(Connected { bytes_sent: total, local, remote, provider, fast_open })
            }
            Err(errno) => {
                drop(conn);
                let bound = self.bound.expect("a connecting socket was bound");
                self.state = if retryable(errno) || matches!(errno, libc::EADDRINUSE | libc::EADDRNOTAVAIL) {
                    State::Bound { local: bound, from_accepted: false }
                } else {
                    State::Failed(errno)
                };
                Err(error(Some(provider), errno, format!("connect to {remote}")))
            }
        }
    }

    /// Waits for [`Socket::poll_connect`] to complete (or `timeout` to pass: WouldBlock).
    pub fn wait_connect(&mut self, timeout: Option<Duration>) -> io::Result<Connected> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            self.clear_event();
            match self.poll_connect() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return r,
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let fd = self.event_fd().expect("a connecting socket has an fd");
            sys::wait_fd(fd, true, left.map(|l| l.min(Duration::from_millis(100))))?;
        }
    }

    fn conn(&mut self) -> io::Result<&mut Conn> {
        match &mut self.state {
            State::Connected { conn, .. } => Ok(conn),
            State::Failed(e) => Err(error(None, *e, "the connection failed earlier")),
            State::Connecting { .. } => Err(io::ErrorKind::WouldBlock.into()),
            _ => Err(error(None, libc::ENOTCONN, "the socket is not connected")),
        }
    }

    /// Marks the socket failed (C7) when `r` is a connection error.
    fn check<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            if let Some(errno) = super::errno(e) {
                if matches!(
                    errno,
                    libc::ECONNRESET | libc::EPIPE | libc::ETIMEDOUT | libc::ECONNABORTED | libc::EHOSTUNREACH
                ) {
                    self.state = State::Failed(errno);
                }
            }
        }
        r
    }

    /// Reads what has arrived: `Ok(0)` at end of stream, `WouldBlock` when nothing has.
    ///
    /// ```no_run
    /// # fn f(conn: &mut control::switch::Socket) -> std::io::Result<()> {
    /// let mut buf = [0u8; 4096];
    /// match conn.read(&mut buf) {
    ///     Ok(0) => println!("the peer finished"),
    ///     Ok(n) => { conn.write(&buf[..n])?; }
    ///     Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => { /* wait on conn.event_fd() */ }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = match self.conn()? {
            Conn::Kernel(s) => s.read(buf),
            Conn::Fast { end, .. } => match end.read(buf) {
                ReadOutcome::Data(n) => Ok(n),
                ReadOutcome::Eof => Ok(0),
                ReadOutcome::WouldBlock => Err(io::ErrorKind::WouldBlock.into()),
                ReadOutcome::Ended(e) => Err(error(Some(Provider::Fast), end_errno(e, true), "read")),
            },
        };
        self.check(r)
    }

    /// Queues bytes for sending: `WouldBlock` when there is no room.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = match self.conn()? {
            Conn::Kernel(s) => s.write(buf),
            Conn::Fast { end, .. } => match end.write(buf) {
                Ok(0) if !buf.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
                Ok(n) => Ok(n),
                Err(e) => Err(error(Some(Provider::Fast), end_errno(e, true), "write")),
            },
        };
        self.check(r)
    }

    /// Reads, waiting for data when there is none yet.
    pub fn read_blocking(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.clear_event();
            match self.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let fd = self.event_fd().expect("a connected socket has an fd");
                    sys::wait_fd(fd, false, Some(Duration::from_millis(100)))?;
                }
                r => return r,
            }
        }
    }

    /// Writes all of `buf`, waiting for room when needed.
    pub fn write_all_blocking(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            self.clear_event();
            match self.write(buf) {
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let fd = self.event_fd().expect("a connected socket has an fd");
                    sys::wait_fd(fd, true, Some(Duration::from_millis(100)))?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends FIN after what was written (half-close); reading goes on.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        match self.conn()? {
            Conn::Kernel(s) => s.shutdown(std::net::Shutdown::Write),
            Conn::Fast { end, .. } => {
                end.shutdown_write();
                Ok(())
            }
        }
    }

    /// SEMANTICS C6: closes the connection gracefully and returns the socket to "bound, not
    /// connected" at the address it was bound to, ready for [`Socket::connect_ex`] (not for
    /// accept; an accepted socket cannot connect at all). A reconnect to the same remote from the
    /// same port meets the old 4-tuple's TIME_WAIT: the fast path waits it out before sending
    /// the SYN; the kernel path reports EADDRNOTAVAIL (Linux's answer) until it has expired.
    /// A failed socket refuses with EBADFD (C7).
    ///
    /// ```no_run
    /// # use control::switch::ConnectOptions;
    /// # fn f(s: &mut control::switch::Socket) -> std::io::Result<()> {
    /// s.disconnect()?; // bound, not connected
    /// s.connect_ex("198.18.0.1:8080".parse().unwrap(), b"again", ConnectOptions::default())?;
    /// # Ok(()) }
    /// ```
    pub fn disconnect(&mut self) -> io::Result<()> {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Connected { conn, local, .. } => {
                match conn {
                    Conn::Kernel(s) => {
                        let _ = s.shutdown(std::net::Shutdown::Write);
                    }
                    Conn::Fast { end, .. } => end.shutdown_write(),
                } // dropped: closed gracefully
                self.state = State::Bound { local: self.bound.unwrap_or(local), from_accepted: self.accepted };
                Ok(())
            }
            State::Failed(e) => {
                self.state = State::Failed(e);
                Err(failed_error(e))
            }
            other => {
                self.state = other;
                Err(error(None, libc::ENOTCONN, "disconnect: the socket is not connected"))
            }
        }
    }

    /// Resets the connection (RST) and drops the socket.
    ///
    /// ```no_run
    /// # fn f(s: control::switch::Socket) {
    /// s.abort();
    /// # }
    /// ```
    pub fn abort(mut self) {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Connected { conn, .. } | State::Connecting { conn, .. } => conn.abort(),
            _ => {}
        }
    }

    /// SEMANTICS A5: how long the socket has been connected, counted from the moment its
    /// handshake completed; "not connected" only before that (and when there is no connection).
    /// An accepted connection that waited in the provider's queue has been connected all that
    /// time; an outgoing one is connected from its handshake on, whether or not the application
    /// has called [`Socket::poll_connect`] yet.
    ///
    /// Where the moment comes from, and how precise it is:
    /// - fast path: the engine stamps it when it processes the segment that completes the
    ///   handshake, on the turn that receives it; the engine's loop sleeps at most 1 ms when idle,
    ///   so the stamp is at most that (plus a turn) late;
    /// - kernel path: Linux's own stamps, read through TCP_INFO ([`sys::tcp_connected_for`]):
    ///   within one jiffy (4 ms at CONFIG_HZ=250) either way. An accepted socket reads them when
    ///   it is accepted, an outgoing one at its first look after the handshake (a call to
    ///   `connect_time` or `poll_connect`); both are exact as long as one direction has carried
    ///   no data by then, which holds for a connection the application has not written to.
    ///
    /// ```no_run
    /// # fn f(s: &control::switch::Socket) {
    /// let seconds = s.connect_time().as_seconds_or_max(); // 0xFFFFFFFF: not connected
    /// # }
    /// ```
    pub fn connect_time(&self) -> ConnectTime {
        match self.established_at() {
            Some(at) => ConnectTime::Connected(at.elapsed()),
            None => ConnectTime::NotConnected,
        }
    }

    /// SEMANTICS A5: when the handshake completed, if it has (the instant
    /// [`Socket::connect_time`] counts from).
    pub(crate) fn established_at(&self) -> Option<Instant> {
        match &self.state {
            State::Connected { since, .. } => Some(*since),
            State::Connecting { conn, established, early: None, .. } => {
                if let Some(at) = established.get() {
                    return Some(*at);
                }
                if let Conn::Fast { end, .. } = conn {
                    // Established and then reset before the application looked: not connected
                    // (as the kernel path's TCP_INFO says for such a socket).
                    if end.ended().is_some() {
                        return None;
                    }
                }
                let at = conn.established_at()?;
                Some(*established.get_or_init(|| at))
            }
            _ => None,
        }
    }

    /// The provider serving the connection, if there is one.
    pub fn provider(&self) -> Option<Provider> {
        match &self.state {
            State::Connected { conn, .. } | State::Connecting { conn, .. } => Some(conn.provider()),
            _ => None,
        }
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.state {
            State::Connected { local, .. } | State::Connecting { local, .. } | State::Bound { local, .. } => {
                Some(*local)
            }
            _ => None,
        }
    }

    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match &self.state {
            State::Connected { remote, .. } | State::Connecting { remote, .. } => Some(*remote),
            _ => None,
        }
    }

    /// Whether the socket failed while connected (SEMANTICS C7: discard it, make a new one).
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    /// The fd that signals progress of a connecting or connected socket: the kernel socket
    /// itself, or the fast-path connection's eventfd.
    pub fn event_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.state {
            State::Connected { conn, .. } | State::Connecting { conn, .. } => Some(conn.fd()),
            _ => None,
        }
    }

    /// Bytes readable now without waiting (fast path: exact; kernel path: 0 or 1 "some").
    pub(crate) fn has_data(&mut self) -> bool {
        match &mut self.state {
            State::Connected { conn: Conn::Fast { end, .. }, .. } => end.readable() > 0,
            State::Connected { conn: Conn::Kernel(s), .. } => {
                let mut b = [std::mem::MaybeUninit::<u8>::uninit(); 1];
                matches!(s.peek(&mut b), Ok(n) if n > 0)
            }
            _ => false,
        }
    }

    /// Arms the fast path's notification before waiting (kernel sockets need nothing).
    pub(crate) fn arm(&self) {
        if let State::Connected { conn: Conn::Fast { end, .. }, .. } = &self.state {
            end.want_notify();
        }
    }

    /// Resets the event fd's signal before a round of reads and writes (fast path; a kernel
    /// socket's readiness is its own). Wait on [`Socket::event_fd`] only after every operation of
    /// the round said `WouldBlock`: what changes after the reset signals again.
    pub fn clear_event(&self) {
        match &self.state {
            State::Connected { conn: Conn::Fast { end, .. }, .. }
            | State::Connecting { conn: Conn::Fast { end, .. }, .. } => end.clear_notify(),
            _ => {}
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Socket::read(self, buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Socket::write(self, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn failed_error(errno: i32) -> io::Error {
    error(
        None,
        libc::EBADFD,
        format!(
            "the socket failed earlier ({}): discard it and create a new one (SEMANTICS C7)",
            io::Error::from_raw_os_error(errno)
        ),
    )
}

/// Starts a kernel-path connect.
fn connect_kernel(
    local: SocketAddr,
    remote: SocketAddr,
    first: &[u8],
    opts: &ConnectOptions,
    timeout: Duration,
) -> io::Result<State> {
    let s =
        socket2::Socket::new(Domain::for_address(remote), Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))?;
    s.set_tcp_nodelay(true)?;
    if local.port() != 0 {
        s.set_reuse_address(true)?;
    }
    if local.port() != 0 || !local.ip().is_unspecified() {
        s.bind(&local.into()).map_err(|e| kernel_error(e, format!("bind {local}")))?;
    }
    sys::set_user_timeout(s.as_fd(), timeout)?;
    if opts.fast_open {
        sys::set_fastopen_connect(s.as_fd())?;
    }
    let mut pending = first.to_vec();
    match s.connect(&remote.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        // Reported through poll_connect like every network answer (the socket's fd is ready).
        // A socket whose connect failed is in TCP_CLOSE: its fd polls ready (EPOLLOUT|EPOLLHUP).
        Err(e)
            if e.raw_os_error().is_some_and(|n| retryable(n) || n == libc::EADDRNOTAVAIL || n == libc::EADDRINUSE) =>
        {
            return Ok(State::Connecting {
                conn: Conn::Kernel(s),
                local,
                remote,
                pending,
                total: first.len(),
                fast_open: FastOpen::NotRequested,
                early: e.raw_os_error(),
                established: OnceLock::new(),
            });
        }
        Err(e) => return Err(kernel_error(e, format!("connect to {remote}"))),
    }
    if opts.fast_open && !pending.is_empty() {
        // With TCP_FASTOPEN_CONNECT the first send starts the handshake, carrying data when the
        // kernel holds a cookie.
        match s.send(&pending) {
            Ok(n) => drop(pending.drain(..n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(kernel_error(e, format!("connect to {remote}"))),
        }
    }
    let fast_open = if opts.fast_open { FastOpen::NotUsed } else { FastOpen::NotRequested };
    let local = s.local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(local);
    Ok(State::Connecting {
        conn: Conn::Kernel(s),
        local,
        remote,
        pending,
        total: first.len(),
        fast_open,
        early: None,
        established: OnceLock::new(),
    })
}
