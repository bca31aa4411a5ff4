//! The bridge between an engine and application threads: how a connection that an engine owns is
//! read and written from another thread, and how other threads ask an engine to listen or connect.
//!
//! The engine stays shared-nothing: every engine has one [`Commands`] queue that other threads
//! push to and only its own loop pops (an [`Attachment`](crate::Attachment), run before each engine poll),
//! and each bridged connection is two single-producer single-consumer byte rings:
//!
//! ```text
//!   application thread                          engine (its core)
//!   AppEnd.read  ◄── rx ring ◄── EngineEnd ◄── smoltcp receive buffer
//!   AppEnd.write ──► tx ring ──► EngineEnd ──► smoltcp send buffer
//! ```
//!
//! Neither side blocks or locks. Wake-ups are lazy both ways: the application pushes a `Wake`
//! command only when the engine has not been woken for that connection since it last looked, and
//! the engine calls the connection's [`Notify`] only when the application said it is waiting
//! (it got `WouldBlock`). Under load neither side makes a system call per message.
//!
//! A listener bridged to applications ([`ListenerShared`]) hands connections whose handshake has
//! completed to an accept queue; they count as "queued" (SEMANTICS B1) until an application pops
//! them, and a full queue makes the engine refuse or drop SYNs per the listener's `on_full` (L4).

use std::fmt;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use engine::{BacklogPolicy, ConnId, Progress, Stream};
pub use engine::{End, ListenError};

#[cfg(test)]
mod tests;

use engine::OnFull;

/// Wakes an application thread (the control plane implements it with an eventfd).
///
/// The protocol: the engine, after a change, calls `notify` if the application said it waits.
/// On a listener the application finds the queue empty, calls `clear`, says it waits, looks once
/// more, and only then sleeps. On a connection one signal serves both directions: the application
/// calls `clear` (through [`AppEnd::clear_notify`]) before a round of reads and writes, each of
/// which says it waits and looks again before answering `WouldBlock`. No wake-up is lost.
pub trait Notify: Send + Sync {
    /// Makes the application's wait end.
    fn notify(&self);
    /// Resets the signal (before the application says it waits again).
    fn clear(&self) {}
}

/// Ends a connection whose connect failed before it reached a slot.
pub(crate) fn fail(shared: &ConnShared, e: &engine::ConnectError) {
    use engine::ConnectError;
    let end = match e {
        ConnectError::InUse { .. } => End::AddrInUse,
        ConnectError::BadRemote(_) | ConnectError::NoPorts(_) | ConnectError::BadLocal(_) => End::AddrNotAvail,
        ConnectError::TimeWait { .. } => End::AddrInUse,
        ConnectError::TooMany(_) => End::NoBuffers,
    };
    let _ = shared.end.set(end);
    shared.set(ENDED);
    shared.want.store(true, Ordering::Release);
    shared.wake_app();
}

/// The engine connection a bridged connection was attached to.
pub(crate) fn conn_of(shared: &ConnShared) -> ConnId {
    ConnId(shared.slot.load(Ordering::Acquire))
}

// Connection state bits, set by the side named.
const ESTABLISHED: u32 = 1; // engine
const PEER_FIN: u32 = 1 << 1; // engine: the peer finished sending (all of it is in the rx ring)
const ENDED: u32 = 1 << 2; // engine: the connection is over (End in `end`)
const APP_SHUT_WR: u32 = 1 << 3; // app: send FIN once the tx ring is drained
const APP_CLOSE: u32 = 1 << 4; // app: done with the connection
const APP_ABORT: u32 = 1 << 5; // app: reset it now

/// What both ends of a bridged connection share.
pub struct ConnShared {
    state: AtomicU32,
    end: OnceLock<End>,
    /// The application is waiting for a change (it got WouldBlock): notify it.
    want: AtomicBool,
    /// A `Wake` command for this connection is queued or being handled.
    woken: AtomicBool,
    notify: OnceLock<Arc<dyn Notify>>,
    /// The engine slot serving it (set by the engine before the application can see it).
    slot: AtomicU32,
    addrs: OnceLock<(SocketAddrV4, SocketAddrV4)>,
    established_at: OnceLock<std::time::Instant>,
}

impl fmt::Debug for ConnShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnShared")
            .field("state", &self.state.load(Ordering::Relaxed))
            .field("end", &self.end.get())
            .field("addrs", &self.addrs.get())
            .finish()
    }
}

impl ConnShared {
    fn new() -> ConnShared {
        ConnShared {
            state: AtomicU32::new(0),
            end: OnceLock::new(),
            want: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            notify: OnceLock::new(),
            slot: AtomicU32::new(u32::MAX),
            addrs: OnceLock::new(),
            established_at: OnceLock::new(),
        }
    }

    fn has(&self, bit: u32) -> bool {
        self.state.load(Ordering::Acquire) & bit != 0
    }

    fn set(&self, bit: u32) {
        self.state.fetch_or(bit, Ordering::AcqRel);
    }

    /// Tells the application something changed, if it is waiting.
    fn wake_app(&self) {
        if self.want.swap(false, Ordering::AcqRel) {
            if let Some(n) = self.notify.get() {
                n.notify();
            }
        }
    }
}

/// The engine's end of a bridged connection: a [`Session`](crate::Session) that moves
/// bytes between the smoltcp socket and the rings.
pub struct EngineEnd {
    rx: rtrb::Producer<u8>,
    tx: rtrb::Consumer<u8>,
    shared: Arc<ConnShared>,
    fin_sent: bool,
}

impl fmt::Debug for EngineEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineEnd").field("shared", &self.shared).finish()
    }
}

impl EngineEnd {
    /// Called by the engine when it attaches this end to a slot.
    pub(crate) fn attach(&self, conn: ConnId, local: SocketAddrV4, remote: SocketAddrV4) {
        self.shared.slot.store(conn.0, Ordering::Release);
        let _ = self.shared.addrs.set((local, remote));
    }

    pub(crate) fn shared(&self) -> &Arc<ConnShared> {
        &self.shared
    }

    /// The handshake completed.
    pub(crate) fn established(&self) {
        let _ = self.shared.established_at.set(std::time::Instant::now());
        self.shared.set(ESTABLISHED);
        self.shared.wake_app();
    }

    /// Whether the application asked for a reset.
    pub(crate) fn abort_requested(&self) -> bool {
        self.shared.has(APP_ABORT)
    }

    /// Moves what can be moved between the socket and the rings.
    pub(crate) fn drive(&mut self, s: &mut dyn Stream) -> Progress {
        self.shared.woken.store(false, Ordering::Release);
        let mut changed = false;
        // Received bytes into the rx ring, as far as it has room. The chunk is sized to what is
        // waiting: rtrb zero-fills it first, and the ring's room can be far more than a segment.
        loop {
            let n = self.rx.slots().min(s.recv_waiting());
            if n == 0 {
                break;
            }
            let Ok(mut chunk) = self.rx.write_chunk(n) else { break };
            let (a, b) = chunk.as_mut_slices();
            let mut n = s.recv_into(a);
            if n == a.len() && !b.is_empty() {
                n += s.recv_into(b);
            }
            chunk.commit(n);
            if n == 0 {
                break;
            }
            changed = true;
        }
        if !self.shared.has(PEER_FIN) && s.peer_finished() {
            self.shared.set(PEER_FIN);
            changed = true;
        }
        // The tx ring into the send buffer, as far as it has room.
        loop {
            let n = self.tx.slots().min(s.send_room());
            if n == 0 {
                break;
            }
            let Ok(chunk) = self.tx.read_chunk(n) else { break };
            let (a, b) = chunk.as_slices();
            let mut sent = s.send_from(a);
            if sent == a.len() && !b.is_empty() {
                sent += s.send_from(b);
            }
            chunk.commit(sent);
            if sent == 0 {
                break;
            }
            changed = true;
        }
        if changed {
            self.shared.wake_app();
        }
        let state = self.shared.state.load(Ordering::Acquire);
        let drained = self.tx.is_empty();
        if state & APP_CLOSE != 0 && drained {
            return Progress::Close;
        }
        if state & APP_SHUT_WR != 0 && drained && !self.fin_sent {
            s.close();
            self.fin_sent = true;
        }
        Progress::Open
    }

    /// The connection is over.
    pub(crate) fn ended(&mut self, how: End) {
        let _ = self.shared.end.set(how);
        self.shared.set(ENDED);
        // Whatever the application waits for, it will not come now.
        self.shared.want.store(true, Ordering::Release);
        self.shared.wake_app();
    }
}

/// The application's end of a bridged connection. Reads and writes never block: `WouldBlock`
/// means "wait for this connection's [`Notify`]", which the engine calls on the next change.
pub struct AppEnd {
    rx: rtrb::Consumer<u8>,
    tx: rtrb::Producer<u8>,
    shared: Arc<ConnShared>,
    commands: Arc<Commands>,
}

impl fmt::Debug for AppEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppEnd").field("shared", &self.shared).finish()
    }
}

/// What [`AppEnd::read`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes were copied.
    Data(usize),
    /// The peer finished sending and everything has been read.
    Eof,
    /// Nothing yet: wait for the notification.
    WouldBlock,
    /// The connection ended this way before the peer finished.
    Ended(End),
}

impl AppEnd {
    /// Sets how this connection wakes the application; the first call wins.
    pub fn set_notify(&self, n: Arc<dyn Notify>) {
        let _ = self.shared.notify.set(n);
    }

    /// Local and remote address (known once the engine has taken the connection).
    pub fn addrs(&self) -> Option<(SocketAddrV4, SocketAddrV4)> {
        self.shared.addrs.get().copied()
    }

    /// When the handshake completed (SEMANTICS A5).
    pub fn established_at(&self) -> Option<std::time::Instant> {
        self.shared.established_at.get().copied()
    }

    pub fn is_established(&self) -> bool {
        self.shared.has(ESTABLISHED)
    }

    /// How the connection ended, if it has.
    pub fn ended(&self) -> Option<End> {
        if self.shared.has(ENDED) {
            self.shared.end.get().copied()
        } else {
            None
        }
    }

    /// Bytes waiting in the receive ring.
    pub fn readable(&self) -> usize {
        self.rx.slots()
    }

    /// Asks the engine to look at this connection, unless it has been asked already.
    fn wake_engine(&self) {
        if !self.shared.woken.swap(true, Ordering::AcqRel) {
            self.commands.push_wake(self.shared.clone());
        }
    }

    /// Registers interest before a `WouldBlock`: the engine will notify on its next change.
    /// It does not reset the signal: one signal serves reads and writes alike, and resetting it
    /// here could swallow news for the other direction. The application resets it with
    /// [`AppEnd::clear_notify`] before a round of reads and writes, never in the middle.
    fn arm(&self) {
        self.shared.want.store(true, Ordering::SeqCst);
    }

    /// Resets the notification signal. Call it before trying the connection's reads and writes
    /// (then wait only after they all said `WouldBlock`): a change after the reset signals again.
    pub fn clear_notify(&self) {
        if let Some(n) = self.shared.notify.get() {
            n.clear();
        }
    }

    pub fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        for attempt in 0..2 {
            let n = self.rx.pop_partial_slice(buf).0.len();
            if n > 0 {
                // Room appeared in the rx ring: the engine may have data waiting for it.
                self.wake_engine();
                return ReadOutcome::Data(n);
            }
            let state = self.shared.state.load(Ordering::Acquire);
            if state & PEER_FIN != 0 && self.rx.is_empty() {
                return ReadOutcome::Eof;
            }
            if state & ENDED != 0 && self.rx.is_empty() {
                return match self.shared.end.get() {
                    Some(End::Graceful) | None => ReadOutcome::Eof,
                    Some(&e) => ReadOutcome::Ended(e),
                };
            }
            if attempt == 0 {
                self.arm(); // then look again: data that came in between is not missed
            }
        }
        ReadOutcome::WouldBlock
    }

    /// Queues bytes for sending; `Ok(0)` for a non-empty `data` means "no room now: wait".
    pub fn write(&mut self, data: &[u8]) -> Result<usize, End> {
        if let Some(e) = self.ended() {
            return Err(e);
        }
        for attempt in 0..2 {
            let (pushed, _) = self.tx.push_partial_slice(data);
            if !pushed.is_empty() || data.is_empty() {
                self.wake_engine();
                return Ok(pushed.len());
            }
            if attempt == 0 {
                self.arm();
            }
        }
        Ok(0)
    }

    /// Sends FIN once everything written has gone.
    pub fn shutdown_write(&self) {
        self.shared.set(APP_SHUT_WR);
        self.wake_engine();
    }

    /// Resets the connection (RST) and releases it.
    pub fn abort(&self) {
        self.shared.set(APP_ABORT);
        self.wake_engine();
    }

    /// Registers interest in the next change (for a caller about to wait on its notification).
    pub fn want_notify(&self) {
        self.arm();
    }
}

impl Drop for AppEnd {
    /// A dropped end closes the connection gracefully: FIN after what was written.
    fn drop(&mut self) {
        self.shared.set(APP_CLOSE);
        self.wake_engine();
    }
}

/// Makes the two ends of a bridged connection; `rx` and `tx` are the ring sizes in bytes.
pub fn pair(rx: usize, tx: usize, commands: Arc<Commands>) -> (EngineEnd, AppEnd) {
    let shared = Arc::new(ConnShared::new());
    let (rx_p, rx_c) = rtrb::RingBuffer::new(rx);
    let (tx_p, tx_c) = rtrb::RingBuffer::new(tx);
    (
        EngineEnd { rx: rx_p, tx: tx_c, shared: shared.clone(), fin_sent: false },
        AppEnd { rx: rx_c, tx: tx_p, shared, commands },
    )
}

/// A connection whose handshake completed on a bridged listener, waiting in its accept queue.
#[derive(Debug)]
pub struct Incoming {
    pub end: AppEnd,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
}

/// A listener bridged to applications: its settings, and the accept queue every core feeds.
pub struct ListenerShared {
    pub port: u16,
    pub backlog: usize,
    pub policy: BacklogPolicy,
    pub on_full: OnFull,
    /// Ring sizes of accepted connections.
    pub ring_bytes: usize,
    queue: ArrayQueue<Incoming>,
    want: AtomicBool,
    notify: Arc<dyn Notify>,
    /// SYNs refused (RST) and dropped because the queue was full, on every core (L4, B3).
    pub refused: AtomicU64,
    pub dropped: AtomicU64,
    /// Silent clients the application's listener closed (A4), for introspection.
    pub silent_closed: AtomicU64,
}

impl fmt::Debug for ListenerShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerShared")
            .field("port", &self.port)
            .field("backlog", &self.backlog)
            .field("queued", &self.queue.len())
            .finish()
    }
}

impl ListenerShared {
    /// `capacity` bounds the accept queue (at least the policy's limit).
    pub fn new(
        port: u16,
        backlog: usize,
        policy: BacklogPolicy,
        on_full: OnFull,
        capacity: usize,
        notify: Arc<dyn Notify>,
    ) -> ListenerShared {
        ListenerShared {
            port,
            backlog,
            policy,
            on_full,
            ring_bytes: 64 * 1024,
            queue: ArrayQueue::new(capacity.max(1)),
            want: AtomicBool::new(true),
            notify,
            refused: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            silent_closed: AtomicU64::new(0),
        }
    }

    /// Connections waiting to be accepted (SEMANTICS B1's "TCP accepted it, the application has
    /// not").
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Hands a connection to the application; gives it back if the queue is full.
    pub(crate) fn push(&self, c: Incoming) -> Result<(), Incoming> {
        self.queue.push(c)?;
        if self.want.swap(false, Ordering::AcqRel) {
            self.notify.notify();
        }
        Ok(())
    }

    /// Makes the notification's state exact: signalled if and only if a connection waits (call
    /// after taking connections, so an emptied queue does not leave the signal up).
    pub fn settle(&self) {
        if self.queue.is_empty() {
            self.notify.clear();
            self.want.store(true, Ordering::SeqCst);
            if !self.queue.is_empty() && self.want.swap(false, Ordering::AcqRel) {
                self.notify.notify();
            }
        }
    }

    /// The next waiting connection. `None` arms the notification for the next one: call it until
    /// `None` before waiting.
    pub fn pop(&self) -> Option<Incoming> {
        if let Some(c) = self.queue.pop() {
            return Some(c);
        }
        self.notify.clear();
        self.want.store(true, Ordering::SeqCst);
        self.queue.pop()
    }
}

/// A connect request for an engine.
#[derive(Debug)]
pub struct ConnectRequest {
    pub end: EngineEnd,
    /// The local address and port, if the socket was bound to one (else the engine picks).
    pub local: Option<SocketAddrV4>,
    pub remote: SocketAddrV4,
    /// Give up (ETIMEDOUT) when the handshake has not completed after this long.
    pub timeout: Option<Duration>,
}

/// A request for an engine, from another thread.
pub enum Command {
    /// Look at this connection: the application read, wrote, shut down or closed.
    Wake(Arc<ConnShared>),
    /// Listen on a port, handing connections to the shared accept queue.
    Listen(Arc<ListenerShared>, mpsc::Sender<Result<(), ListenError>>),
    /// Stop listening: queued and half-open connections of the port are reset.
    Unlisten(u16),
    /// Open a connection.
    Connect(ConnectRequest),
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Wake(s) => write!(f, "Wake({s:?})"),
            Command::Listen(l, _) => write!(f, "Listen({})", l.port),
            Command::Unlisten(p) => write!(f, "Unlisten({p})"),
            Command::Connect(r) => write!(f, "Connect({})", r.remote),
        }
    }
}

/// An engine's command queue: many threads push, the engine pops at each poll.
pub struct Commands {
    queue: ArrayQueue<Command>,
    /// Wakes that did not fit, retried by the engine (a wake must never be lost).
    overflow: std::sync::Mutex<Vec<Arc<ConnShared>>>,
    /// `overflow` may hold something (so the engine takes the lock only then).
    overflowed: AtomicBool,
}

impl fmt::Debug for Commands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Commands").field("queued", &self.queue.len()).finish()
    }
}

impl Commands {
    pub fn new(capacity: usize) -> Commands {
        Commands {
            queue: ArrayQueue::new(capacity),
            overflow: std::sync::Mutex::new(Vec::new()),
            overflowed: AtomicBool::new(false),
        }
    }

    /// Queues a command; gives it back when the queue is full (the caller retries or reports
    /// ENOBUFS).
    pub fn push(&self, c: Command) -> Result<(), Command> {
        self.queue.push(c)
    }

    fn push_wake(&self, s: Arc<ConnShared>) {
        if let Err(Command::Wake(s)) = self.queue.push(Command::Wake(s)) {
            self.overflow.lock().unwrap_or_else(|p| p.into_inner()).push(s);
            self.overflowed.store(true, Ordering::Release);
        }
    }

    /// The next command (for the engine). Asked every loop turn: an empty queue is told by two
    /// loads, without the fence `ArrayQueue::pop` makes to be sure it is empty (a command pushed
    /// meanwhile is taken on the next turn).
    pub(crate) fn pop(&self) -> Option<Command> {
        if self.queue.is_empty() {
            return None;
        }
        self.queue.pop()
    }

    /// Wakes that overflowed the queue (for the engine; rare, so a lock is fine).
    pub(crate) fn take_overflow(&self, out: &mut Vec<Arc<ConnShared>>) {
        if !self.overflowed.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut v) = self.overflow.try_lock() {
            self.overflowed.store(false, Ordering::Release);
            out.append(&mut v);
        }
    }
}
