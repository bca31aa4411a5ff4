//! The pool of connection slots, and the listeners' rings of armed LISTEN sockets drawn from it.
//!
//! A slot whose connection ended keeps its socket and buffers; `listen()` re-arms it silently (no
//! RST), so a handshake allocates nothing once the pool is warm. A listener keeps [`ARMED`]
//! LISTEN sockets ahead of SYNs and is topped up the moment one leaves LISTEN (DESIGN fact 6).

use std::collections::VecDeque;

use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use crate::listener::{BacklogPolicy, ListenError, Listener, ListenerStats, OnFull};
use crate::slot::{configure, Phase, Slot};
use crate::tcp::ring::Region;
use crate::upper::{ListenerId, Service};
use crate::{mem, Engine};

/// LISTEN sockets kept armed per listener, ahead of SYNs.
pub(crate) const ARMED: usize = 2;

impl<S: Service> Engine<S> {
    /// Listens on `port` with `service` (SEMANTICS L2: the fast-path half of a listener), with
    /// the backlog, policy and `on_full` of B2/B3.
    pub fn listen(
        &mut self,
        port: u16,
        service: S,
        backlog: usize,
        policy: BacklogPolicy,
        on_full: OnFull,
    ) -> Result<ListenerId, ListenError> {
        if port == 0 {
            return Err(ListenError::ZeroPort);
        }
        if self.by_port.contains_key(&port) {
            return Err(ListenError::InUse(port));
        }
        Ok(self.add_listener(port, service, backlog, policy, on_full))
    }

    /// Starts a listener (the port is free: validated or checked by the caller) and arms its
    /// ring. A closed entry no connection refers to any more is reused (slots name their listener
    /// only while half-open or queued).
    pub(crate) fn add_listener(
        &mut self,
        port: u16,
        service: S,
        backlog: usize,
        policy: BacklogPolicy,
        on_full: OnFull,
    ) -> ListenerId {
        let limit = policy.limit(backlog, self.max_backlog);
        tracing::info!(
            port,
            service = service.name(),
            backlog,
            policy = %policy,
            on_full = on_full.as_str(),
            queue_limit = limit,
            "listening"
        );
        let entry = Listener {
            port,
            service,
            policy,
            on_full,
            ring: VecDeque::with_capacity(ARMED),
            half_open: VecDeque::new(),
            stats: ListenerStats { limit, ..Default::default() },
            closed: false,
        };
        let li = match self.listeners.iter().position(|l| l.closed && l.stats.half_open == 0 && l.stats.queued == 0) {
            Some(li) => {
                self.listeners[li] = entry;
                li
            }
            None => {
                self.listeners.push(entry);
                self.listeners.len() - 1
            }
        };
        self.by_port.insert(port, li);
        self.rearm(li);
        ListenerId(li as u32)
    }

    /// Tops the listener's ring up to [`ARMED`] LISTEN sockets.
    pub(crate) fn rearm(&mut self, li: usize) {
        while self.listeners[li].ring.len() < ARMED {
            let id = self.arm(li);
            self.listeners[li].ring.push_back(id);
        }
    }

    /// A slot from the pool (or a new one), in LISTEN on listener `li`'s port.
    pub(crate) fn arm(&mut self, li: usize) -> u32 {
        let id = self.take_slot();
        let port = self.listeners[li].port;
        let slot = &mut self.slots[id as usize];
        slot.phase = Phase::Armed;
        slot.listener = li;
        let s = slot.socket();
        // listen() resets a Closed or TimeWait socket without sending anything.
        s.listen(port).expect("a pooled socket is closed and the port is non-zero");
        configure(s);
        id
    }

    /// A free slot: from the pool, or a new one whose memory comes from the arenas.
    pub(crate) fn take_slot(&mut self) -> u32 {
        match self.free.pop() {
            Some(id) => id,
            None => {
                // A new pool slot: its buffers and socket storage come from the arenas, once.
                // SAFETY: the buffers go to this slot's socket, and the socket storage to its set:
                // `Engine` drops its slots before `storage`, and `storage` before `arena` (their
                // order in the struct), so neither is used after its arena is dropped.
                let (bufs, on_hugepages) = unsafe { self.arena.take(self.buf_stride) };
                let buf = bufs.as_ptr() as usize;
                let buf =
                    if self.reclaim.enabled() && !on_hugepages && buf.is_multiple_of(mem::PAGE) { buf } else { 0 };
                let (rx, rest) = bufs.split_at_mut(self.rx_buffer);
                let (rx_region, tx_region) = (Region::new(rx), Region::new(&mut rest[..self.tx_buffer]));
                // SAFETY: the regions were just made; the socket is their only user until the
                // engine's own TCP takes the connection over and drops it (`own`).
                let (rx, tx) = unsafe { (rx_region.slice(), tx_region.slice()) };
                // SAFETY: as above.
                let mut set = SocketSet::new(unsafe { self.storage.take_one() });
                let handle = set.add(tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx)));
                self.slots.push(Slot {
                    set,
                    handle,
                    phase: Phase::Free,
                    listener: 0,
                    tuple: None,
                    peer_mac: [0; 6],
                    peer_fin_end: None,
                    closing: false,
                    dirty: false,
                    neighbor_wait: false,
                    timer_at: None,
                    wheel_tick: None,
                    rst_seen: false,
                    emitted: false,
                    connect_deadline: None,
                    ended_by_engine: None,
                    established_at: None,
                    bytes: [0; 2],
                    waiting: None,
                    heard_at: Instant::ZERO,
                    buf,
                    irs: 0,
                    iss: 0,
                    in_flight_since: None,
                    ooo_until: None,
                    recent: false,
                    syn_stamp: 0,
                    resident: false,
                    rx_region,
                    tx_region,
                    tcb: None,
                    hs: Default::default(),
                });
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 connections")
            }
        }
    }

    /// Stops listening on `port`: its armed sockets go back to the pool; connections it already
    /// handed over stay; half-open ones are reset when their handshake completes.
    pub fn unlisten(&mut self, port: u16) {
        let Some(li) = self.by_port.remove(&port) else { return };
        let l = &mut self.listeners[li];
        l.closed = true;
        // Connections handed over but never accepted are reset, as a closed listening socket's
        // are (the service does that for those it holds).
        l.service.stopped();
        if let Some(queued) = l.service.queued() {
            l.stats.queued = queued;
        }
        for id in l.ring.drain(..) {
            let slot = &mut self.slots[id as usize];
            slot.socket().abort(); // LISTEN → CLOSED, nothing sent
            slot.phase = Phase::Free;
            self.free.push(id);
        }
    }
}
