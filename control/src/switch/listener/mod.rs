//! One listener over both providers (SEMANTICS L1–L5, A1–A5).
//!
//! A listener has two sides. The application calls [`Listener::accept`],
//! [`Listener::post_accept`], [`Listener::completion`] and waits on the listener's fd. The
//! listener's worker, a thread of its own, does what AcceptEx leaves to the system once accepts
//! are posted: it gives each arriving connection to a posted accept, completes the accept when
//! first data comes (A2), resets silent clients when their time is up (A4) and moves the
//! automatic mode's count up and down (A3), whether or not the application calls in. Both sides
//! run the same code under the listener's lock ([`Shared::pump`]).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
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
    /// nothing this long after its handshake completed (its connect time, A5, not the time it
    /// was matched) is reset (RST) and counted; its posted accept waits on for the next client.
    /// The listener's worker thread does it on time, whether or not the application calls in.
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
    /// Accepts the automatic mode posted and then gave back unused, because posted accepts sat
    /// unused for a whole period (A3).
    pub auto_released: u64,
    /// How many accepts the automatic mode keeps posted now (0 when it is off).
    pub auto_target: usize,
    /// Posted accepts waiting for a connection, and matched ones waiting for first data.
    pub posted: usize,
    pub matched: usize,
}

/// The automatic mode's settings (SEMANTICS A3), for [`Listener::set_auto`].
///
/// The mode keeps a target number of accepts posted and waiting for connections, each with
/// `receive_len`, topping them up after every batch of arrivals:
/// - it grows: an arrival that finds no posted accept waiting doubles the target (at most
///   `max`) and is given one of the new accepts at once;
/// - it shrinks: at the end of every `shrink_after` period in which no arrival found the posted
///   accepts used up, the fewest that sat waiting at any time of the period were not needed;
///   the target drops by half of them (at least `min`), and the newest auto-posted accepts over
///   the target are given back ([`ListenerCounters::auto_released`]).
///
/// So the target follows the largest batch of connections that arrives between two looks of the
/// listener's worker: it doubles within one batch when arrivals outrun it, and halves its unused
/// margin every period when they fall. Posted plus matched accepts (matched: a connection waiting
/// for its first data) never exceed `max`; at `max`, arrivals wait in the provider's queue and the
/// accept event fires for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AutoPost {
    /// The receive length of each accept posted (A2; 0: complete at the connection).
    pub receive_len: usize,
    /// The fewest accepts kept posted, however few are used.
    pub min: usize,
    /// The most accepts outstanding (posted and matched) that the mode makes; 0 turns it off.
    pub max: usize,
    /// How long a period is: posted accepts unused for a whole period are given back by half.
    pub shrink_after: Duration,
}

impl Default for AutoPost {
    fn default() -> Self {
        AutoPost { receive_len: 0, min: 1, max: 64, shrink_after: Duration::from_secs(1) }
    }
}

// Tokens of the application's epoll.

mod pump;

const TOKEN_KERNEL: u64 = 0;
const TOKEN_FAST: u64 = 1;
const TOKEN_EVENT: u64 = 2;
// Tokens of the worker's epoll (TOKEN_KERNEL and TOKEN_FAST move there in worker mode).
const TOKEN_TIMER: u64 = 3;
const TOKEN_STOP: u64 = 4;
const FIRST_CONN_TOKEN: u64 = 16;

/// A posted accept (A1): its id, receive length, and whether the automatic mode posted it (then
/// the mode may give it back).
#[derive(Clone, Copy, Debug)]
struct Posted {
    id: u64,
    receive_len: usize,
    auto: bool,
}

/// A posted accept with a connection, waiting for the connection's first data (A2).
struct Matched {
    posted: Posted,
    socket: Socket,
    /// A4: when the connection counts as silent (its handshake plus the limit).
    deadline: Option<Instant>,
}

/// The automatic mode's state (A3).
struct Auto {
    cfg: AutoPost,
    target: usize,
    /// The fewest posted accepts left waiting after a batch of arrivals, this period.
    low_water: usize,
    /// An arrival found no posted accept this period.
    starved: bool,
    period_end: Instant,
}

#[derive(Default)]
struct State {
    posted: VecDeque<Posted>,
    matched: HashMap<u64, Matched>,
    done: VecDeque<AcceptCompletion>,
    auto: Option<Auto>,
    next_id: u64,
    next_token: u64,
    counters: ListenerCounters,
    /// Which provider `take_incoming` looks at first (they take turns).
    fast_first: bool,
    ready: Vec<u64>,
    /// Accepts have been posted: the worker watches for arrivals, and the application's fd shows
    /// only `Shared::event`.
    worker_mode: bool,
    /// Whether `Shared::event` is signalled.
    event_up: bool,
    /// What the timer is armed for.
    timer_at: Option<Instant>,
}

type Condition = Box<dyn Fn(&Peer) -> bool + Send + Sync>;

/// What the application's calls and the listener's worker share.
struct Shared {
    switch: Switch,
    local: SocketAddr,
    kernel: socket2::Socket,
    fast: Option<Arc<ListenerShared>>,
    fast_event: Option<Arc<EventNotify>>,
    /// The application's accept event (the listener's fd).
    epoll: sys::Epoll,
    /// Signalled while a completion waits, or (in worker mode) while a connection waits with no
    /// posted accept for it; a member of `epoll`.
    event: sys::EventFd,
    /// What the worker waits on: the timer, `stop`, and in worker mode arrivals (edge-triggered)
    /// and matched connections.
    work: sys::Epoll,
    timer: sys::TimerFd,
    stop: sys::EventFd,
    stopping: AtomicBool,
    silent_limit: Option<Duration>,
    condition: Mutex<Option<Condition>>,
    state: Mutex<State>,
}

/// A listener of the switch: a kernel listener, plus a fast-path one on the same port when the
/// address is a fast-path port's or the wildcard (SEMANTICS L1–L3). Connections from both come
/// out of [`Listener::accept`] or complete posted accepts.
///
/// The listener's fd ([`AsFd`]) is readable exactly while a completion waits, or a connection
/// waits with no posted accept to take it (L5, A3): wait on it, then call `accept` or
/// `completion` until `WouldBlock`. A connection that a posted accept takes does not make it
/// readable, nor does a silent client being reset (A4): that is the worker's business. It is an
/// epoll fd, so it nests in epoll, mio and tokio's `AsyncFd`.
///
/// # The worker
///
/// Each listener has one thread of its own, started by [`Switch::listen`] and joined when the
/// listener is dropped. Until the first [`Listener::post_accept`] or [`Listener::set_auto`] it only
/// sleeps: the provider's listeners are members of the application's fd, and `accept` takes from
/// them directly. From then on the provider's listeners move to the worker's own epoll
/// (edge-triggered), and the worker wakes once per arrival, once per first data of a matched
/// connection, and at the next silent client's deadline (A4) or the automatic mode's period end
/// (A3), each time taking the listener's lock for one round of matching, completing and reaping.
/// Its cost: one thread per listener (a 256 KiB stack reserved, a few pages of it used), four
/// more fds, and a context switch per arrival once accepts are posted. A silent client is reset
/// within a scheduling delay of its deadline (a timerfd on CLOCK_MONOTONIC), on either provider:
/// a fast-path reset is a command to the connection's engine, sent on its next turn.
pub struct Listener {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("local", &self.shared.local).field("providers", &self.providers()).finish()
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
        let event = sys::EventFd::new()?;
        epoll.add(event.as_fd(), TOKEN_EVENT, false)?;
        let work = sys::Epoll::new()?;
        let timer = sys::TimerFd::new()?;
        work.add(timer.as_fd(), TOKEN_TIMER, false)?;
        let stop = sys::EventFd::new()?;
        work.add(stop.as_fd(), TOKEN_STOP, false)?;

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
            let registered = result.and_then(|()| epoll.add(notify.fd(), TOKEN_FAST, false));
            if let Err(e) = registered {
                // Undo it where it was done; the engines that refused keep their own listener.
                for q in listening {
                    let _ = push(q, Command::Unlisten(local.port()));
                }
                return Err(e);
            }
            fast = Some(shared);
            fast_event = Some(notify);
        }
        let shared = Arc::new(Shared {
            switch,
            local,
            kernel,
            fast,
            fast_event,
            epoll,
            event,
            work,
            timer,
            stop,
            stopping: AtomicBool::new(false),
            silent_limit: opts.silent_limit,
            condition: Mutex::new(None),
            state: Mutex::new(State { next_token: FIRST_CONN_TOKEN, ..Default::default() }),
        });
        let mut listener = Listener { shared: shared.clone(), worker: None };
        // From here on a failure drops `listener`, which undoes the fast-path listener.
        let worker = std::thread::Builder::new()
            .name(format!("sy-accept-{}", local.port()))
            .stack_size(256 * 1024)
            .spawn(move || shared.work_loop())
            .map_err(|e| kernel_error(e, format!("start the worker of the listener on {local}")))?;
        listener.worker = Some(worker);
        Ok(listener)
    }

    /// The address listened on (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// The providers this listener takes connections from (L2).
    pub fn providers(&self) -> Vec<Provider> {
        let mut v = vec![Provider::Kernel];
        if self.shared.fast.is_some() {
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
        *self.shared.condition.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(f));
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
        let sh = &self.shared;
        let mut st = sh.lock();
        sh.pump(&mut st);
        let r = sh.take_incoming(&mut st).ok_or_else(|| io::ErrorKind::WouldBlock.into());
        sh.update_event(&mut st);
        r
    }

    /// Posts an accept (A1): it completes with the next connection, and with `receive_len > 0`
    /// only once that connection's first data has arrived (A2), delivered with it. Returns the
    /// id its [`AcceptCompletion`] will carry. The listener's worker gives connections to posted
    /// accepts as they arrive, without the application's help.
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
        let sh = &self.shared;
        let mut st = sh.lock();
        sh.enter_worker_mode(&mut st);
        let id = st.next_id;
        st.next_id += 1;
        st.posted.push_back(Posted { id, receive_len, auto: false });
        sh.pump(&mut st);
        id
    }

    /// Automatic mode (A3) with a floor of one posted accept and a period of one second: see
    /// [`AutoPost`] and [`Listener::set_auto`]. `max = 0` turns it off.
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
        self.set_auto(Some(AutoPost { receive_len, max, ..AutoPost::default() }));
    }

    /// Turns the automatic mode (A3) on with these settings, or off with `None` (or `max` 0).
    /// Accepts it posted earlier stay posted until they complete or the new settings give them
    /// back.
    ///
    /// ```no_run
    /// # use control::switch::AutoPost;
    /// # use std::time::Duration;
    /// # let switch = control::switch::Switch::kernel_only();
    /// # let listener = switch.listen("0.0.0.0:7007".parse().unwrap(), Default::default())?;
    /// listener.set_auto(Some(AutoPost { receive_len: 4096, min: 4, max: 256, shrink_after: Duration::from_secs(2) }));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_auto(&self, cfg: Option<AutoPost>) {
        let sh = &self.shared;
        let mut st = sh.lock();
        st.auto = cfg.filter(|c| c.max > 0).map(|c| {
            let cfg =
                AutoPost { min: c.min.min(c.max), shrink_after: c.shrink_after.max(Duration::from_millis(1)), ..c };
            Auto {
                cfg,
                target: cfg.min,
                low_water: usize::MAX,
                starved: false,
                period_end: Instant::now() + cfg.shrink_after,
            }
        });
        if st.auto.is_some() {
            sh.enter_worker_mode(&mut st);
            sh.fit_to_target(&mut st);
        }
        sh.pump(&mut st);
    }

    /// The next completed posted accept; `WouldBlock` when none has completed.
    pub fn completion(&self) -> io::Result<AcceptCompletion> {
        let sh = &self.shared;
        let mut st = sh.lock();
        sh.pump(&mut st);
        let r = st.done.pop_front().ok_or_else(|| io::ErrorKind::WouldBlock.into());
        sh.update_event(&mut st);
        r
    }

    /// Waits until the listener's fd is readable or `timeout` passes; returns whether it is.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        sys::wait_fd(self.shared.epoll.as_fd(), false, timeout)
    }

    pub fn counters(&self) -> ListenerCounters {
        let sh = &self.shared;
        let mut st = sh.lock();
        sh.pump(&mut st);
        let mut c = st.counters;
        if let Some(f) = &sh.fast {
            c.refused = f.refused.load(Ordering::Relaxed);
            c.dropped = f.dropped.load(Ordering::Relaxed);
            c.queued_fast = f.queued();
        }
        c.posted = st.posted.len();
        c.matched = st.matched.len();
        c.auto_target = st.auto.as_ref().map_or(0, |a| a.target);
        c
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.shared.epoll.as_fd()
    }
}

/// The accept event as a raw fd, for APIs that take one (tokio's `AsyncFd`, mio's `SourceFd`).
impl std::os::fd::AsRawFd for Listener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.shared.epoll.as_fd().as_raw_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.stop.signal();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        if let (Some(f), Some(fp)) = (&self.shared.fast, self.shared.switch.inner.fast.as_ref()) {
            let port = f.port;
            let _ = fp.broadcast(|| Command::Unlisten(port));
        }
    }
}
