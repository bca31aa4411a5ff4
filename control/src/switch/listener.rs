//! One listener over both providers (SEMANTICS L1–L5, A1–A4).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use runtime::bridge::{Command, ListenError, ListenerShared};
use socket2::{Domain, Protocol, Type};

use super::socket::{fast_conn, Conn};
use super::{error, kernel_error, push, sys, BacklogPolicy, EventNotify, OnFull, Provider, Socket, Switch};

/// Options of [`Switch::listen`].
#[derive(Clone, Debug)]
pub struct ListenOptions {
    /// The backlog value (SEMANTICS B1–B2), turned into a queue limit by `policy`.
    pub backlog: usize,
    pub policy: BacklogPolicy,
    /// What the fast path does with a SYN when the queue is full (B3, L4). The kernel path
    /// always behaves as Linux does (it drops the SYN; the client retries).
    pub on_full: OnFull,
    /// Backlog values above this are clamped to it (B5).
    pub max_backlog: usize,
    /// SEMANTICS A4: a connection matched to a posted accept with a receive length that has sent
    /// nothing after this long is closed (RST) and counted; its posted accept waits on.
    pub silent_limit: Option<Duration>,
    /// Accept TCP Fast Open on the kernel listener (TCP_FASTOPEN).
    pub fast_open: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            backlog: 128,
            policy: BacklogPolicy::Linux,
            on_full: OnFull::Refuse,
            max_backlog: 4096,
            silent_limit: None,
            fast_open: false,
        }
    }
}

/// Who is connecting, as an accept condition sees it (SEMANTICS L5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub provider: Provider,
}

/// A posted accept that completed (SEMANTICS A1–A2): the connection and, for a posted receive
/// length, the first data (at least one byte, at most the length).
#[derive(Debug)]
pub struct AcceptCompletion {
    /// What [`Listener::post_accept`] returned (auto-posted accepts have ids too).
    pub id: u64,
    pub socket: Socket,
    pub data: Vec<u8>,
}

/// Counters of a listener.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerCounters {
    pub accepted_kernel: u64,
    pub accepted_fast: u64,
    /// Rejected by the accept condition (reset).
    pub rejected: u64,
    /// SYNs the fast path refused (RST) or dropped because the queue was full (L4, B3).
    pub refused: u64,
    pub dropped: u64,
    /// Fast-path connections whose handshake completed, waiting for the application (B1).
    pub queued_fast: usize,
    /// Posted accepts completed.
    pub completed: u64,
    /// Silent clients closed (A4).
    pub silent_closed: u64,
    /// Matched connections that closed before sending anything.
    pub abandoned: u64,
    /// Accepts the automatic mode posted (A3).
    pub auto_posted: u64,
    /// Posted accepts waiting for a connection, and matched ones waiting for first data.
    pub posted: usize,
    pub matched: usize,
}

const TOKEN_KERNEL: u64 = 0;
const TOKEN_FAST: u64 = 1;
const TOKEN_TIMER: u64 = 2;
const TOKEN_DONE: u64 = 3;
const FIRST_CONN_TOKEN: u64 = 16;

struct Matched {
    id: u64,
    receive_len: usize,
    socket: Socket,
    since: Instant,
}

#[derive(Clone, Copy)]
struct Auto {
    receive_len: usize,
    max: usize,
    target: usize,
}

#[derive(Default)]
struct State {
    posted: VecDeque<(u64, usize)>,
    matched: HashMap<u64, Matched>,
    done: VecDeque<AcceptCompletion>,
    auto: Option<Auto>,
    next_id: u64,
    next_token: u64,
    counters: ListenerCounters,
    /// Which provider `take_incoming` looks at first (they take turns).
    fast_first: bool,
    ready: Vec<u64>,
}

type Condition = Box<dyn Fn(&Peer) -> bool + Send + Sync>;

/// A listener of the switch: a kernel listener, plus a fast-path one on the same port when the
/// address is a fast-path port's or the wildcard (SEMANTICS L1–L3). Connections from both come
/// out of [`Listener::accept`] or complete posted accepts.
///
/// The listener's fd ([`AsFd`]) is readable while a connection waits with no posted accept for
/// it, while a completion waits, or when a silent client's time is up (L5, A3, A4): wait on it,
/// then call `accept` or `completion` until `WouldBlock`. It is an epoll fd, so it nests in
/// epoll, mio and tokio's `AsyncFd`.
pub struct Listener {
    switch: Switch,
    local: SocketAddr,
    kernel: socket2::Socket,
    fast: Option<Arc<ListenerShared>>,
    fast_event: Option<Arc<EventNotify>>,
    epoll: sys::Epoll,
    timer: sys::TimerFd,
    done_event: sys::EventFd,
    silent_limit: Option<Duration>,
    condition: Mutex<Option<Condition>>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("local", &self.local).field("providers", &self.providers()).finish()
    }
}

impl Listener {
    pub(crate) fn new(switch: Switch, addr: SocketAddr, opts: ListenOptions) -> io::Result<Listener> {
        // L1: the kernel listener first.
        let kernel =
            socket2::Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))?;
        kernel.set_reuse_address(true)?;
        if switch.fast_port().is_some_and(|p| addr.ip() == p.address) {
            // The fast-path port's address is not the kernel's: listen on it anyway, so the
            // kernel path stays first (L1) and the port is reserved there.
            if addr.is_ipv4() {
                kernel.set_freebind_v4(true)?;
            }
        }
        kernel.bind(&addr.into()).map_err(|e| kernel_error(e, format!("listen on {addr}")))?;
        let limit = opts.policy.limit(opts.backlog, opts.max_backlog);
        kernel.listen(limit.min(i32::MAX as usize) as i32).map_err(|e| kernel_error(e, format!("listen on {addr}")))?;
        if opts.fast_open {
            sys::set_fastopen_listen(kernel.as_fd(), 256)?;
        }
        let local = kernel.local_addr()?.as_socket().expect("an IP socket");

        let epoll = sys::Epoll::new()?;
        epoll.add(kernel.as_fd(), TOKEN_KERNEL, false)?;
        let timer = sys::TimerFd::new()?;
        epoll.add(timer.as_fd(), TOKEN_TIMER, false)?;
        let done_event = sys::EventFd::new()?;
        epoll.add(done_event.as_fd(), TOKEN_DONE, false)?;

        // L2: and a fast-path listener on the same port, for a fast-path address or the wildcard.
        let (mut fast, mut fast_event) = (None, None);
        if let (true, Some(fp)) = (switch.listens_on_fast_path(addr), switch.inner.fast.as_ref()) {
            let notify = EventNotify::new()?;
            let mut shared = ListenerShared::new(
                local.port(),
                opts.backlog,
                opts.policy,
                opts.on_full,
                limit.max(1),
                notify.clone(),
            );
            shared.ring_bytes = switch.inner.cfg.max_first_data.max(4096);
            let shared = Arc::new(shared);
            let mut replies = Vec::new();
            for q in fp.engines() {
                let (tx, rx) = mpsc::channel();
                push(q, Command::Listen(shared.clone(), tx))?;
                replies.push((q, rx));
            }
            let mut result = Ok(());
            let mut listening = Vec::new();
            for (q, rx) in replies {
                match rx.recv_timeout(Duration::from_secs(5)) {
                    Ok(Ok(())) => listening.push(q),
                    Ok(Err(ListenError::InUse(port))) => {
                        result = Err(error(Some(Provider::Fast), libc::EADDRINUSE, format!("listen on port {port}")))
                    }
                    Ok(Err(ListenError::ZeroPort)) => {
                        result = Err(error(Some(Provider::Fast), libc::EINVAL, "listen on port 0"))
                    }
                    Err(_) => {
                        result =
                            Err(error(Some(Provider::Fast), libc::ETIMEDOUT, "the fast-path engines do not answer"))
                    }
                }
            }
            if let Err(e) = result {
                // Undo it where it was done; the engines that refused keep their own listener.
                for q in listening {
                    let _ = push(q, Command::Unlisten(local.port()));
                }
                return Err(e);
            }
            epoll.add(notify.fd(), TOKEN_FAST, false)?;
            fast = Some(shared);
            fast_event = Some(notify);
        }
        Ok(Listener {
            switch,
            local,
            kernel,
            fast,
            fast_event,
            epoll,
            timer,
            done_event,
            silent_limit: opts.silent_limit,
            condition: Mutex::new(None),
            state: Mutex::new(State { next_token: FIRST_CONN_TOKEN, ..Default::default() }),
        })
    }

    /// The address listened on (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The providers this listener takes connections from (L2).
    pub fn providers(&self) -> Vec<Provider> {
        let mut v = vec![Provider::Kernel];
        if self.fast.is_some() {
            v.push(Provider::Fast);
        }
        v
    }

    /// Sets the accept condition (L5): a connection it returns `false` for is reset and counted
    /// as rejected, and never reaches the application.
    ///
    /// ```no_run
    /// # let switch = control::switch::Switch::kernel_only();
    /// # let listener = switch.listen("0.0.0.0:7007".parse().unwrap(), Default::default())?;
    /// listener.set_accept_condition(|peer| !peer.remote.ip().is_loopback());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_accept_condition(&self, f: impl Fn(&Peer) -> bool + Send + Sync + 'static) {
        *self.condition.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(f));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a waiting connection (L5): never blocks; `WouldBlock` when none waits.
    ///
    /// ```no_run
    /// # let switch = control::switch::Switch::kernel_only();
    /// # let listener = switch.listen("0.0.0.0:7007".parse().unwrap(), Default::default())?;
    /// match listener.accept() {
    ///     Ok(conn) => println!("{:?} from {:?}", conn.provider(), conn.peer_addr()),
    ///     Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => { /* wait on the listener's fd */ }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn accept(&self) -> io::Result<Socket> {
        let mut st = self.lock();
        self.pump(&mut st);
        let r = self.take_incoming(&mut st).ok_or_else(|| io::ErrorKind::WouldBlock.into());
        self.update_done(&st);
        r
    }

    /// Posts an accept (A1): it completes with the next connection, and with `receive_len > 0`
    /// only once that connection's first data has arrived (A2), delivered with it. Returns the
    /// id its [`AcceptCompletion`] will carry.
    ///
    /// ```no_run
    /// # let switch = control::switch::Switch::kernel_only();
    /// # let listener = switch.listen("0.0.0.0:7007".parse().unwrap(), Default::default())?;
    /// let id = listener.post_accept(4096);
    /// listener.wait(None)?;
    /// if let Ok(done) = listener.completion() {
    ///     println!("slot {id}: {} first bytes from {:?}", done.data.len(), done.socket.peer_addr());
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn post_accept(&self, receive_len: usize) -> u64 {
        let mut st = self.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.posted.push_back((id, receive_len));
        self.pump(&mut st);
        id
    }

    /// Automatic mode (A3): when a connection arrives with no posted accept waiting, the switch
    /// posts more, doubling the number outstanding up to `max`, each with `receive_len`.
    /// `max = 0` turns it off.
    ///
    /// ```no_run
    /// # let switch = control::switch::Switch::kernel_only();
    /// # let listener = switch.listen("0.0.0.0:7007".parse().unwrap(), Default::default())?;
    /// listener.set_auto_post(4096, 64); // first data up to 4 KiB, at most 64 outstanding
    /// loop {
    ///     listener.wait(None)?;
    ///     while let Ok(done) = listener.completion() {
    ///         println!("request of {} bytes", done.data.len());
    ///     }
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_auto_post(&self, receive_len: usize, max: usize) {
        let mut st = self.lock();
        st.auto = (max > 0).then_some(Auto { receive_len, max, target: 1 });
        self.pump(&mut st);
    }

    /// The next completed posted accept; `WouldBlock` when none has completed.
    pub fn completion(&self) -> io::Result<AcceptCompletion> {
        let mut st = self.lock();
        self.pump(&mut st);
        let r = st.done.pop_front().ok_or_else(|| io::ErrorKind::WouldBlock.into());
        self.update_done(&st);
        r
    }

    /// Waits until the listener's fd is readable or `timeout` passes; returns whether it is.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        sys::wait_fd(self.epoll.as_fd(), false, timeout)
    }

    pub fn counters(&self) -> ListenerCounters {
        let mut st = self.lock();
        self.pump(&mut st);
        let mut c = st.counters;
        if let Some(f) = &self.fast {
            c.refused = f.refused.load(std::sync::atomic::Ordering::Relaxed);
            c.dropped = f.dropped.load(std::sync::atomic::Ordering::Relaxed);
            c.queued_fast = f.queued();
        }
        c.posted = st.posted.len();
        c.matched = st.matched.len();
        c
    }

    /// The next connection from either provider that the accept condition lets in.
    fn take_incoming(&self, st: &mut State) -> Option<Socket> {
        loop {
            st.fast_first = !st.fast_first;
            let (socket, peer) = if st.fast_first {
                self.take_fast(st).or_else(|| self.take_kernel(st))?
            } else {
                self.take_kernel(st).or_else(|| self.take_fast(st))?
            };
            let condition = self.condition.lock().unwrap_or_else(|p| p.into_inner());
            if condition.as_ref().is_none_or(|f| f(&peer)) {
                return Some(socket);
            }
            st.counters.rejected += 1;
            socket.abort();
        }
    }

    fn take_kernel(&self, st: &mut State) -> Option<(Socket, Peer)> {
        loop {
            match self.kernel.accept() {
                Ok((s, addr)) => {
                    let Some(remote) = addr.as_socket() else { continue };
                    if s.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = s.set_tcp_nodelay(true);
                    let local = s.local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(self.local);
                    st.counters.accepted_kernel += 1;
                    let peer = Peer { remote, local, provider: Provider::Kernel };
                    return Some((Socket::accepted(self.switch.clone(), Conn::Kernel(s), local, remote), peer));
                }
                // A connection reset while queued, say: the next one.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(_) => return None,
            }
        }
    }

    fn take_fast(&self, st: &mut State) -> Option<(Socket, Peer)> {
        let f = self.fast.as_ref()?;
        let c = f.pop()?;
        let (local, remote) = (SocketAddr::V4(c.local), SocketAddr::V4(c.remote));
        let conn = fast_conn(c.end).ok()?;
        st.counters.accepted_fast += 1;
        Some((
            Socket::accepted(self.switch.clone(), conn, local, remote),
            Peer { remote, local, provider: Provider::Fast },
        ))
    }

    /// Moves posted accepts along: matches waiting connections to them, completes those whose
    /// first data came, closes silent clients, posts more in automatic mode.
    fn pump(&self, st: &mut State) {
        // First data for matched connections.
        let mut ready = std::mem::take(&mut st.ready);
        self.epoll.ready(&mut ready);
        for token in ready.drain(..) {
            if token >= FIRST_CONN_TOKEN {
                self.try_first_data(st, token);
            }
        }
        st.ready = ready;
        // Waiting connections into posted accepts.
        loop {
            if st.posted.is_empty() {
                // A3: a connection arriving with no posted accept waiting makes the automatic
                // mode post more.
                let Some(auto) = st.auto else { break };
                let outstanding = st.matched.len();
                if outstanding >= auto.max {
                    break;
                }
                let Some(socket) = self.take_incoming(st) else { break };
                let target = (auto.target * 2).min(auto.max);
                st.auto = Some(Auto { target, ..auto });
                let add = target.saturating_sub(outstanding).max(1);
                for _ in 0..add {
                    let id = st.next_id;
                    st.next_id += 1;
                    st.posted.push_back((id, auto.receive_len));
                    st.counters.auto_posted += 1;
                }
                self.match_one(st, socket);
                continue;
            }
            let Some(socket) = self.take_incoming(st) else { break };
            self.match_one(st, socket);
        }
        // A4: silent clients.
        if let Some(limit) = self.silent_limit {
            let now = Instant::now();
            let silent: Vec<u64> =
                st.matched.iter().filter(|(_, m)| now.duration_since(m.since) >= limit).map(|(&t, _)| t).collect();
            for token in silent {
                let m = st.matched.remove(&token).expect("listed just now");
                if let Some(fd) = m.socket.event_fd() {
                    self.epoll.delete(fd);
                }
                m.socket.abort();
                st.counters.silent_closed += 1;
                if let Some(f) = &self.fast {
                    f.silent_closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                st.posted.push_front((m.id, m.receive_len)); // the accept stays posted
            }
            let next = st.matched.values().map(|m| m.since + limit).min();
            self.timer.set(next.map(|d| d.saturating_duration_since(now)));
        }
        self.update_done(st);
    }

    /// Gives a connection to the first posted accept.
    fn match_one(&self, st: &mut State, socket: Socket) {
        let (id, receive_len) = st.posted.pop_front().expect("a posted accept");
        if receive_len == 0 {
            st.counters.completed += 1;
            st.done.push_back(AcceptCompletion { id, socket, data: Vec::new() });
            return;
        }
        let token = st.next_token;
        st.next_token += 1;
        if let Some(fd) = socket.event_fd() {
            // Cannot fail for a fresh fd; if it did, the first-data check below still runs now.
            let _ = self.epoll.add(fd, token, false);
        }
        st.matched.insert(token, Matched { id, receive_len, socket, since: Instant::now() });
        self.try_first_data(st, token);
    }

    /// Completes a matched accept if its first data is there (A2).
    fn try_first_data(&self, st: &mut State, token: u64) {
        let Some(m) = st.matched.get_mut(&token) else { return };
        m.socket.clear_event();
        let mut buf = vec![0u8; m.receive_len];
        let outcome = m.socket.read(&mut buf);
        let gone = match outcome {
            Ok(0) => true,
            Ok(n) => {
                buf.truncate(n);
                let m = st.matched.remove(&token).expect("present");
                if let Some(fd) = m.socket.event_fd() {
                    self.epoll.delete(fd);
                }
                st.counters.completed += 1;
                st.done.push_back(AcceptCompletion { id: m.id, socket: m.socket, data: buf });
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                m.socket.arm();
                if m.socket.has_data() {
                    return self.try_first_data(st, token);
                }
                false
            }
            Err(_) => true,
        };
        if gone {
            // Closed or reset before sending anything: the accept waits for another client.
            let m = st.matched.remove(&token).expect("present");
            if let Some(fd) = m.socket.event_fd() {
                self.epoll.delete(fd);
            }
            st.counters.abandoned += 1;
            st.posted.push_front((m.id, m.receive_len));
        }
    }

    fn update_done(&self, st: &State) {
        if let Some(f) = &self.fast {
            f.settle();
        }
        if st.done.is_empty() {
            self.done_event.drain();
        } else {
            self.done_event.signal();
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

/// The accept event as a raw fd, for APIs that take one (tokio's `AsyncFd`, mio's `SourceFd`).
impl std::os::fd::AsRawFd for Listener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.epoll.as_fd().as_raw_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let (Some(f), Some(fp)) = (&self.fast, self.switch.inner.fast.as_ref()) {
            let port = f.port;
            let _ = fp.broadcast(|| Command::Unlisten(port));
        }
        let _ = &self.fast_event;
    }
}
