//! Introspection: the engine's counters, its listeners and connections as an operator sees them,
//! and where its memory is. Walks over tables, for operators, never on the packet path.

use std::net::SocketAddrV4;
use std::time::Duration;

use smoltcp::iface::SocketStorage;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use crate::flow::FourTuple;
use crate::listener::{BacklogPolicy, ListenerStats, OnFull};
use crate::mem::ArenaStats;
use crate::slot::{Phase, Slot};
use crate::time_wait::TimeWaitStats;
use crate::upper::Service;
use crate::Engine;

/// Counters of an engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Handshakes completed, on all listeners.
    pub established: u64,
    /// Connections that ended (closed, reset or timed out) and went back to the pool.
    pub closed: u64,
    /// Connections open now (half-open, queued or accepted).
    pub open: usize,
    /// Slots allocated (open connections, armed LISTEN sockets and the free pool).
    pub slots: usize,
    /// Slots in the free pool.
    pub free_slots: usize,
    /// Outgoing connections whose handshake completed.
    pub connected: u64,
    /// Outgoing connections that ended before their handshake completed (refused, timed out).
    pub connect_failed: u64,
    /// Frames demultiplexed.
    pub frames: u64,
    /// SYNs a listener refused or dropped (per its `on_full`) because the engine held
    /// `max_connections` already.
    pub over_max_connections: u64,
    /// TCP segments answered with an RST because no connection or listener wanted them.
    pub no_listener: u64,
    /// ARP requests sent: for next hops of outgoing connections ([`crate::neighbor`]), and by
    /// [`Engine::announce_to`].
    pub arp_requests: u64,
    /// ARP requests for the engine's addresses that it answered (replies that left).
    pub arp_replies: u64,
    /// Addresses in the neighbour table with an answer.
    pub neighbors: usize,
    /// Neighbour entries forgotten to make room (the table's bound is 65,536 addresses).
    pub neighbors_evicted: u64,
    /// Segments for connections the engine's own TCP runs that were dropped unread: a wrong
    /// checksum, or a header that cannot be read.
    pub tcp_bad_segments: u64,
    /// Passive handshakes whose last ACK the engine's own TCP took itself (smoltcp ran the rest).
    pub handshake_acks: u64,
    /// What the engine's own TCP counted: the connections that ended and those open now.
    pub tcp: crate::tcp::conn::TcbStats,
}

/// A listener as introspection shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerInfo {
    pub port: u16,
    pub service: &'static str,
    pub policy: BacklogPolicy,
    pub on_full: OnFull,
    pub stats: ListenerStats,
}

/// A connection as introspection shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    /// The TCP state, as RFC 793 names it (ESTABLISHED, CLOSE-WAIT, ...).
    pub state: &'static str,
    /// half-open, queued (handshake done, not accepted), accepted, or outgoing.
    pub kind: &'static str,
    /// The listener it came through, while half-open or queued.
    pub listener: Option<u16>,
    /// How long since its handshake completed (SEMANTICS A5), if it has.
    pub connected: Option<Duration>,
    /// Bytes its session (service or application) received and sent.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

pub(crate) fn tcp_state_name(s: tcp::State) -> &'static str {
    match s {
        tcp::State::Closed => "CLOSED",
        tcp::State::Listen => "LISTEN",
        tcp::State::SynSent => "SYN-SENT",
        tcp::State::SynReceived => "SYN-RECEIVED",
        tcp::State::Established => "ESTABLISHED",
        tcp::State::FinWait1 => "FIN-WAIT-1",
        tcp::State::FinWait2 => "FIN-WAIT-2",
        tcp::State::CloseWait => "CLOSE-WAIT",
        tcp::State::Closing => "CLOSING",
        tcp::State::LastAck => "LAST-ACK",
        tcp::State::TimeWait => "TIME-WAIT",
    }
}

/// Where an engine's connection memory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryStats {
    /// Buffer arena: bytes mapped, bytes handed out, bytes on hugepages.
    pub buffers: ArenaStats,
    /// Socket storage slots mapped (one per pool slot, plus the chunk's spare).
    pub socket_storage: usize,
    /// Pool slots.
    pub slots: usize,
    /// Flow-table capacity (entries it can hold before growing).
    pub flow_capacity: usize,
    /// Bytes per pool slot, everything counted: buffers reserved, socket storage, the slot record,
    /// the flow-table share and the pool's free list.
    pub bytes_per_slot: usize,
}

impl<S: Service> Engine<S> {
    /// The engine's counters. Its own TCP's are summed over the open connections too: one pass
    /// over the slots, for introspection only.
    pub fn stats(&self) -> EngineStats {
        let mut tcp = self.stats.tcp;
        for t in self.slots.iter().filter_map(|s| s.tcb.as_deref()) {
            tcp += t.stats;
        }
        EngineStats {
            tcp,
            slots: self.slots.len(),
            free_slots: self.free.len(),
            arp_requests: self.neighbors.asked,
            neighbors: self.neighbors.len(),
            neighbors_evicted: self.neighbors.evicted,
            ..self.stats
        }
    }

    /// Every listener of the engine, with its settings and counters (for introspection).
    pub fn listeners(&self) -> Vec<ListenerInfo> {
        let mut v: Vec<ListenerInfo> = self
            .by_port
            .values()
            .map(|&li| {
                let l = &self.listeners[li];
                let mut stats = l.stats;
                l.service.report(&mut stats);
                ListenerInfo { port: l.port, service: l.service.name(), policy: l.policy, on_full: l.on_full, stats }
            })
            .collect();
        v.sort_by_key(|l| l.port);
        v
    }

    /// Up to `limit` open connections (handshakes in progress included), for introspection; a
    /// walk over the slots, so for operators, not for the packet path.
    pub fn connections(&mut self, now: Instant, limit: usize) -> Vec<ConnectionInfo> {
        let mut v = Vec::new();
        for slot in &mut self.slots {
            if v.len() >= limit {
                break;
            }
            let Some(t) = slot.tuple else { continue };
            let (kind, listener) = match &slot.phase {
                Phase::HalfOpen => ("half-open", Some(self.listeners[slot.listener].port)),
                Phase::Queued => ("queued", Some(self.listeners[slot.listener].port)),
                Phase::Accepted(_) => ("accepted", None),
                Phase::Client { .. } => ("outgoing", None),
                Phase::Free | Phase::Armed => continue,
            };
            let state = slot.state();
            v.push(ConnectionInfo {
                local: SocketAddrV4::new(t.local_ip, t.local_port),
                remote: SocketAddrV4::new(t.remote_ip, t.remote_port),
                state: tcp_state_name(state),
                kind,
                listener,
                connected: slot.established_at.map(|at| Duration::from_micros((now - at).total_micros())),
                bytes_in: slot.bytes[0],
                bytes_out: slot.bytes[1],
            });
        }
        v
    }

    /// Listener entries, open and closed: a closed entry no connection refers to any more is
    /// reused by the next listener, so this stays at the peak number of listeners.
    pub fn listener_entries(&self) -> usize {
        self.listeners.len()
    }

    /// The counters of the listener on `port`.
    pub fn listener_stats(&self, port: u16) -> Option<ListenerStats> {
        self.by_port.get(&port).map(|&li| self.listeners[li].stats)
    }

    pub fn time_wait_stats(&self) -> TimeWaitStats {
        self.time_wait.stats()
    }

    /// Where the engine's connection memory is, and what a pool slot costs all told.
    pub fn memory(&self) -> MemoryStats {
        let slots = self.slots.len().max(1);
        let flow_bucket = std::mem::size_of::<(FourTuple, u32)>() + 1;
        let total = self.arena.stats().reserved
            + self.storage.reserved() * std::mem::size_of::<SocketStorage>()
            + self.slots.capacity() * std::mem::size_of::<Slot<S::Session>>()
            + self.flows.capacity() * flow_bucket
            + self.free.capacity() * 4;
        MemoryStats {
            buffers: self.arena.stats(),
            socket_storage: self.storage.reserved(),
            slots: self.slots.len(),
            flow_capacity: self.flows.capacity(),
            bytes_per_slot: total / slots,
        }
    }

    /// Slots on the list of connections polled again when an ARP frame arrives (at most the pool).
    pub fn neighbor_waiters(&self) -> usize {
        self.neighbor_wait.len()
    }

    /// Entries in the timer wheel, live or waiting to be ignored (about one per slot at most).
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }
}
