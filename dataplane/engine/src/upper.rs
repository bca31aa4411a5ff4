//! The engine's face to the layer above: what runs on its connections.
//!
//! The engine owns connections and listeners; it does not know who uses them. A listener carries
//! a [`Service`], which the engine asks what to do with each connection whose handshake completes
//! ([`Service::accept`]); an accepted or outgoing connection carries a [`Session`], which the
//! engine drives whenever the connection had something happen and tells how it ended. The built-in
//! services ([`crate::services`]) implement these traits; so does the runtime's bridge to
//! application threads, which composes them with its own. Connections and listeners are named by
//! [`ConnId`] and [`ListenerId`].
//!
//! Call order, per connection: [`Session::attached`] (outgoing connections, at `connect`), then
//! [`Session::established`] (outgoing, when the handshake completes), then [`Session::drive`]
//! whenever the connection was serviced and is open (also when its [`Session::deadline`] came),
//! with [`Session::abort_requested`] asked before each drive, and [`Session::closed`] once, last.

use std::net::SocketAddrV4;

use smoltcp::time::Instant;

use crate::listener::{ListenerStats, OnFull};

/// One connection of one engine: its slot. Valid while the connection lives; the engine reuses
/// the slot for a later connection once it ends ([`Session::closed`] says when).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// One listener of one engine (the index of its entry; a closed entry may be reused by a later
/// listener once no connection refers to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub u32);

/// A byte stream as a session sees it: the connection's buffers, never blocking.
pub trait Stream {
    /// Copies up to `buf.len()` received bytes into `buf`; returns how many.
    fn recv_into(&mut self, buf: &mut [u8]) -> usize;
    /// Received bytes waiting to be read.
    fn recv_waiting(&self) -> usize;
    /// Drops up to `max` received bytes unread (no copy); returns how many.
    fn discard(&mut self, max: usize) -> usize;
    /// Queues up to `data.len()` bytes for sending; returns how many fitted.
    fn send_from(&mut self, data: &[u8]) -> usize;
    /// Bytes that [`Stream::send_from`] would accept now.
    fn send_room(&self) -> usize;
    /// Whether the peer has closed its sending side and everything it sent has been read.
    fn peer_finished(&self) -> bool;
    /// Closes our sending side once queued data is sent (FIN).
    fn close(&mut self);
    /// Moves up to `max` received bytes, as many as the send queue takes, to the send queue (an
    /// echo); returns how many. A stream whose queues are both in memory moves them directly; by
    /// default they go through a stack buffer.
    fn loop_back(&mut self, max: usize) -> usize {
        let mut buf = [0u8; 1024];
        let mut moved = 0;
        loop {
            let want = (max - moved).min(self.send_room()).min(self.recv_waiting()).min(buf.len());
            if want == 0 {
                return moved;
            }
            let n = self.recv_into(&mut buf[..want]);
            if n == 0 {
                return moved;
            }
            let sent = self.send_from(&buf[..n]);
            debug_assert_eq!(sent, n, "send_room promised the space");
            moved += n;
        }
    }
}

/// What a session wants after a drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Keep the connection; drive again when it has data or room.
    Open,
    /// Close our side (FIN after queued data); the session is done.
    Close,
}

/// How a connection ended, as the engine saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Closed by FIN exchange (or by us after the session closed).
    Graceful,
    /// The peer reset it; before the handshake completed that is a refusal (ECONNREFUSED).
    Reset,
    /// Sent data, or the SYN, went unacknowledged past the timeout (ETIMEDOUT).
    TimedOut,
    /// The handshake never left: the neighbour (or gateway) did not answer ARP (EHOSTUNREACH).
    Unreachable,
    /// The engine aborted it (the listener went away, the session asked for it).
    Aborted,
    /// The connect could not start: the 4-tuple is in use (EADDRINUSE).
    AddrInUse,
    /// The connect could not start: no usable local address or port, or a bad remote
    /// (EADDRNOTAVAIL).
    AddrNotAvail,
    /// The connect could not start: the engine holds its maximum of connections (ENOBUFS).
    NoBuffers,
}

/// What runs on one connection: moves bytes between the connection's buffers and whatever it
/// serves, and hears about the connection's life. Sessions never do I/O themselves.
pub trait Session {
    /// Moves what can be moved at `now`.
    fn drive(&mut self, now: Instant, s: &mut dyn Stream) -> Progress;

    /// When the session wants to be driven again even if nothing happens on its connection (a
    /// timeout of its own), if ever. Asked after each drive.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// An outgoing connection was opened for this session: its id and addresses, before its SYN
    /// leaves.
    fn attached(&mut self, _conn: ConnId, _local: SocketAddrV4, _remote: SocketAddrV4) {}

    /// The outgoing connection's handshake completed at `now` (engine time).
    fn established(&mut self, _now: Instant) {}

    /// Whether the layer above wants the connection reset now (asked each time the connection is
    /// serviced).
    fn abort_requested(&self) -> bool {
        false
    }

    /// The connection ended, this way; `established` says whether its handshake had completed.
    fn closed(&mut self, _established: bool, _end: End) {}
}

/// What [`Service::accept`] decides for a connection whose handshake completed.
#[derive(Debug)]
pub enum Accept<T> {
    /// The session runs it from now on.
    Session(T),
    /// Leave it queued: the service does not accept (SEMANTICS B1: TCP accepted it, nobody
    /// else did). It counts against the listener's backlog until it ends.
    Queue,
    /// The layer above had no room after all (another core filled a shared queue first): the
    /// connection is reset and counted refused; the session hears that it ended.
    Refuse(T),
}

/// What a listener runs: decides about each connection whose handshake completed on it.
pub trait Service {
    /// The session of a connection it accepts (and of outgoing connections on the same engine).
    type Session: Session;

    /// The service's name, for logs and introspection.
    fn name(&self) -> &'static str;

    /// A connection's handshake completed on this listener at `now` (SEMANTICS B4).
    fn accept(
        &mut self,
        conn: ConnId,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        now: Instant,
    ) -> Accept<Self::Session>;

    /// Connections the layer above holds queued for this listener, when it keeps that count
    /// itself (a queue other cores also feed); `None`: the engine counts its own
    /// ([`Accept::Queue`]). Read when a SYN arrives, to decide whether the listener is full.
    fn queued(&self) -> Option<usize> {
        None
    }

    /// A SYN found the listener full and was refused or dropped, per `how` (L4, B3).
    fn rejected(&self, _how: OnFull) {}

    /// Counters the layer above keeps, laid over the engine's for introspection.
    fn report(&self, _stats: &mut ListenerStats) {}

    /// The listener stopped: reset what was handed over and not taken yet.
    fn stopped(&mut self) {}
}
