//! Connecting a socket, ConnectEx style (SEMANTICS C1-C7): `connect_ex` with a first buffer,
//! through the kernel or the fast path, and its completion (`poll_connect`, `wait_connect`).

use super::*;

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

impl Socket {
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
