//! Active open (SEMANTICS C1): choosing a free 4-tuple (ephemeral ports, source addresses in
//! turn, the core's affinity), starting the handshake, and resolving the next hop's MAC for it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use crate::flow::FourTuple;
use crate::neighbor;
use crate::phy::BurstDevice;
use crate::slot::{configure, Phase};
use crate::upper::{ConnId, Service, Session};
use crate::Engine;

/// Ephemeral ports for outgoing connections (Linux's default range).
pub const EPHEMERAL: std::ops::Range<u16> = 32768..61000;

/// Why [`Engine::connect`] could not start a connection (the errno it maps to, SEMANTICS C4).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectError {
    /// EADDRNOTAVAIL: the remote address is all zeros, or its port is 0.
    #[error("remote address {0} is not a valid destination")]
    BadRemote(std::net::SocketAddrV4),
    /// EADDRNOTAVAIL: every local address and ephemeral port toward this remote is in use, in
    /// TIME_WAIT, or (with an affinity rule) hashes to another core.
    #[error("no free local port toward {0}")]
    NoPorts(std::net::SocketAddrV4),
    /// EADDRNOTAVAIL: the local address asked for is not one of the engine's.
    #[error("local address {0} is not this engine's")]
    BadLocal(std::net::SocketAddrV4),
    /// EADDRINUSE: the 4-tuple asked for is open, or the local port has a listener.
    #[error("{local} -> {remote} is in use")]
    InUse { local: std::net::SocketAddrV4, remote: std::net::SocketAddrV4 },
    /// ENOBUFS: the engine holds `max_connections` already.
    #[error("the engine holds its maximum of {0} connections")]
    TooMany(usize),
    /// The 4-tuple asked for is in TIME_WAIT until this instant (SEMANTICS C6: a reconnect may
    /// wait on it).
    #[error("{local} -> {remote} is in TIME_WAIT")]
    TimeWait { local: std::net::SocketAddrV4, remote: std::net::SocketAddrV4, until: Instant },
}

impl<S: Service> Engine<S> {
    /// Sends an ARP request for `peer` from each of the engine's addresses. The peer learns every
    /// source address at once instead of asking for each when its first SYN-ACK is due (a smoltcp
    /// peer asks at most once a second), and this engine learns the peer from its answer. Call it
    /// before opening connections from several addresses.
    pub fn announce_to<D: BurstDevice + ?Sized>(&mut self, now: Instant, device: &mut D, peer: Ipv4Addr) {
        for &ip in &self.addresses {
            if neighbor::send_arp(device, now, self.mac, ip, peer, None) {
                self.neighbors.note_asked(peer, now);
            }
        }
    }

    /// Opens a connection to `remote` (SEMANTICS C1), run by `session` once established. The source
    /// address is the engine's addresses in turn; the source port is a free ephemeral port (not in
    /// use toward `remote`, not in TIME_WAIT, and this core's under [`Engine::set_affinity`]). The
    /// SYN leaves on the next poll. Returns the connection's slot id.
    pub fn connect(&mut self, remote: SocketAddrV4, session: S::Session) -> Result<ConnId, ConnectError> {
        if remote.ip().is_unspecified() || remote.port() == 0 {
            return Err(ConnectError::BadRemote(remote));
        }
        self.room_for_one()?;
        let t = self.pick_tuple(remote)?;
        Ok(ConnId(self.open(t, session, None)))
    }

    /// Opens a connection from `local` (when the caller bound one; port 0: an ephemeral port) to
    /// `remote`, whose handshake must complete within `timeout` (ETIMEDOUT, or EHOSTUNREACH when
    /// not even the SYN could leave for lack of an ARP answer). A 4-tuple in TIME_WAIT is
    /// reported with its expiry ([`ConnectError::TimeWait`]).
    pub fn connect_from(
        &mut self,
        now: Instant,
        local: Option<SocketAddrV4>,
        remote: SocketAddrV4,
        timeout: Option<Duration>,
        session: S::Session,
    ) -> Result<ConnId, ConnectError> {
        if remote.ip().is_unspecified() || remote.port() == 0 || remote.ip().is_broadcast() {
            return Err(ConnectError::BadRemote(remote));
        }
        self.room_for_one()?;
        let t = match local {
            Some(l) if l.port() != 0 || !l.ip().is_unspecified() => {
                let ip = if l.ip().is_unspecified() { self.addresses[0] } else { *l.ip() };
                if !self.addresses.contains(&ip) {
                    return Err(ConnectError::BadLocal(l));
                }
                if l.port() == 0 {
                    self.pick_tuple_from(ip, remote)?
                } else {
                    let t = FourTuple {
                        remote_ip: *remote.ip(),
                        local_ip: ip,
                        remote_port: remote.port(),
                        local_port: l.port(),
                    };
                    let local = SocketAddrV4::new(ip, l.port());
                    if self.flows.contains_key(&t) || self.by_port.contains_key(&l.port()) {
                        return Err(ConnectError::InUse { local, remote });
                    }
                    if let Some(until) = self.time_wait.expiry(&t, now) {
                        return Err(ConnectError::TimeWait { local, remote, until });
                    }
                    t
                }
            }
            _ => self.pick_tuple(remote)?,
        };
        let deadline = timeout.map(|d| now + smoltcp::time::Duration::from_micros(d.as_micros() as u64));
        Ok(ConnId(self.open(t, session, deadline)))
    }

    /// Whether one more connection fits under `max_connections`.
    fn room_for_one(&self) -> Result<(), ConnectError> {
        if self.stats.open >= self.max_connections {
            return Err(ConnectError::TooMany(self.max_connections));
        }
        Ok(())
    }

    /// A free 4-tuple toward `remote` from the next source address in turn.
    pub(crate) fn pick_tuple(&mut self, remote: SocketAddrV4) -> Result<FourTuple, ConnectError> {
        let local_ip = self.addresses[self.next_source % self.addresses.len()];
        self.next_source = self.next_source.wrapping_add(1);
        self.pick_tuple_from(local_ip, remote)
    }

    /// A free ephemeral port from `local_ip` toward `remote`.
    pub(crate) fn pick_tuple_from(
        &mut self,
        local_ip: Ipv4Addr,
        remote: SocketAddrV4,
    ) -> Result<FourTuple, ConnectError> {
        let span = EPHEMERAL.end - EPHEMERAL.start;
        let mut tuple = None;
        for _ in 0..span {
            let port = self.next_port;
            self.next_port = if port + 1 >= EPHEMERAL.end { EPHEMERAL.start } else { port + 1 };
            let t = FourTuple { remote_ip: *remote.ip(), local_ip, remote_port: remote.port(), local_port: port };
            if self.flows.contains_key(&t) || self.time_wait.contains(&t) || self.by_port.contains_key(&port) {
                continue;
            }
            if self.affinity.as_ref().is_some_and(|mine| !mine(&t)) {
                continue;
            }
            tuple = Some(t);
            break;
        }
        tuple.ok_or(ConnectError::NoPorts(remote))
    }

    /// Starts the handshake of an outgoing connection on `t`; returns its slot.
    pub(crate) fn open(&mut self, t: FourTuple, mut session: S::Session, deadline: Option<Instant>) -> u32 {
        let id = self.take_slot();
        session.attached(
            ConnId(id),
            SocketAddrV4::new(t.local_ip, t.local_port),
            SocketAddrV4::new(t.remote_ip, t.remote_port),
        );
        let slot = &mut self.slots[id as usize];
        let s = slot.set.get_mut::<tcp::Socket>(slot.handle);
        s.connect(self.iface.context(), (t.remote_ip, t.remote_port), (t.local_ip, t.local_port))
            .expect("a pooled socket is closed; remote and local were checked");
        configure(s);
        slot.phase = Phase::Client { session, established: false };
        slot.tuple = Some(t);
        slot.peer_mac = [0; 6]; // its next hop is resolved before the SYN leaves
        slot.connect_deadline = deadline;
        self.flows.insert(t, id);
        self.stats.open += 1;
        self.mark_dirty(id); // the SYN goes out on egress
        id
    }

    /// When the 4-tuple `local` → `remote` leaves TIME_WAIT, if it is in it now (SEMANTICS C6: a
    /// reconnect from a bound port may wait for it).
    pub fn time_wait_expiry(&self, local: SocketAddrV4, remote: SocketAddrV4, now: Instant) -> Option<Instant> {
        let local_ip = if local.ip().is_unspecified() { self.addresses[0] } else { *local.ip() };
        let t = FourTuple { remote_ip: *remote.ip(), local_ip, remote_port: remote.port(), local_port: local.port() };
        self.time_wait.expiry(&t, now)
    }

    /// The MAC a connection the engine opened sends its first segments to: its next hop's (the
    /// peer on the link, else the gateway), from the neighbour table, which is asked by ARP when
    /// it does not know (at most once a second per address). `None`: wait for an ARP frame.
    pub(crate) fn resolve<D: BurstDevice + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        t: &FourTuple,
    ) -> Option<[u8; 6]> {
        let hop = if self.on_link(t.remote_ip) { t.remote_ip } else { self.gateway? };
        let (mac, ask) = match self.neighbors.lookup(hop, now) {
            neighbor::Lookup::Found { mac, ask } => (Some(mac), ask),
            neighbor::Lookup::Missing { ask } => (None, ask),
        };
        if ask && neighbor::send_arp(device, now, self.mac, t.local_ip, hop, None) {
            self.neighbors.note_asked(hop, now);
        }
        mac
    }
}
