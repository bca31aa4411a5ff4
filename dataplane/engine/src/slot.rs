//! Connection slots: one per connection, pooled; each holds its smoltcp socket alone in its set,
//! where the connection is in its life ([`Phase`]), and the engine's book-keeping about it.

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use crate::flow::{FourTuple, Segment};
use crate::neighbor;
use crate::own::Owned;
use crate::tcp::conn;
use crate::tcp::ring::Region;
use crate::tcp::seg::Options;
use crate::upper::End;

/// smoltcp's smallest retransmission timeout (RFC 6298's one second): the earliest a timer it
/// starts when it sends data can fire. A test pins it (`a_lost_response_is_sent_again_after_a_second`).
pub(crate) const SMOLTCP_MIN_RTO: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(1);

/// Socket options every connection gets, on a socket that `listen` or `connect` has just reset.
pub(crate) fn configure(s: &mut tcp::Socket<'static>) {
    s.set_nagle_enabled(false); // services write whole messages
                                // Timestamps on our SYN and SYN-ACK (RFC 7323 §3.2), from the engine's clock; smoltcp drops
                                // the generator for a connection whose peer offered none, so each connection gets it again.
    s.set_tsval_generator(Some(crate::tcp::clock::tsval));
    s.set_ack_delay(Some(smoltcp::time::Duration::from_millis(10)));
    // smoltcp's reset keeps a socket's settings (smoltcp #603), and the congestion controller, a
    // setting since #907, with them: with its state (window, threshold, loss history) as the
    // socket's last connection left it. Sockets are pooled, so each connection gets a new one, in
    // slow start from the initial window
    // (`a_pooled_socket_starts_each_connection_with_a_fresh_congestion_window`).
    s.set_congestion_control(tcp::CongestionControl::Cubic);
    // smoltcp's timeout ends a connection whose peer has been silent that long, even one with
    // nothing to be acknowledged: an idle connection would die (without an RST) after
    // `tcp_timeout`. The engine times out only what waits for the peer (`Slot::waiting`).
    s.set_timeout(None);
}

/// Where a slot's connection is in its life.
pub(crate) enum Phase<T> {
    /// In the pool.
    Free,
    /// LISTEN, in its listener's ring.
    Armed,
    /// SYN received, handshake in progress.
    HalfOpen,
    /// Handshake completed, not accepted (a service that does not accept).
    Queued,
    /// Accepted by a service session.
    Accepted(T),
    /// An outgoing connection, run by its session once established.
    Client { session: T, established: bool },
}

/// One connection: its socket, alone in its set, and the engine's book-keeping.
pub(crate) struct Slot<T> {
    pub(crate) set: SocketSet<'static>,
    pub(crate) handle: SocketHandle,
    pub(crate) phase: Phase<T>,
    pub(crate) listener: usize,
    pub(crate) tuple: Option<FourTuple>,
    /// Where its segments go: the source MAC of the peer's last segment (the router's when the
    /// peer is off the link); zero until known (see [`crate::neighbor`]).
    pub(crate) peer_mac: [u8; 6],
    /// The sequence number past the peer's FIN, once seen (for TIME_WAIT).
    pub(crate) peer_fin_end: Option<u32>,
    /// Our FIN is queued (the session is done).
    pub(crate) closing: bool,
    pub(crate) dirty: bool,
    pub(crate) neighbor_wait: bool,
    /// When the connection next needs a poll (smoltcp's `poll_at`), if ever.
    pub(crate) timer_at: Option<Instant>,
    /// An RST arrived for it.
    pub(crate) rst_seen: bool,
    /// It sent at least one segment.
    pub(crate) emitted: bool,
    /// An outgoing connection's handshake must complete by then.
    pub(crate) connect_deadline: Option<Instant>,
    /// Why the engine ended it, when it did.
    pub(crate) ended_by_engine: Option<End>,
    /// When its handshake completed (engine time).
    pub(crate) established_at: Option<Instant>,
    /// Bytes its session received and sent.
    pub(crate) bytes: [u64; 2],
    /// The tick of this slot's live entry in the timer wheel, if it has one.
    pub(crate) wheel_tick: Option<i64>,
    /// What it waits for from its peer, if anything: see [`crate::EngineConfig::tcp_timeout`].
    pub(crate) waiting: Option<Wait>,
    /// When its peer was last heard from: the handshake completed, or, while the connection waits,
    /// a segment in its receive window arrived (a blind sender cannot keep it waiting).
    pub(crate) heard_at: Instant,
    /// Where its buffers start, if their pages can be given back (normal pages, reclaim on);
    /// else 0. See [`reclaim`].
    pub(crate) buf: usize,
    /// The peer's initial sequence number, from its SYN or SYN-ACK.
    pub(crate) irs: u32,
    /// Ours, from the SYN or SYN-ACK smoltcp sent.
    pub(crate) iss: u32,
    /// Since when its send queue has held data (sent and not yet acknowledged, or not yet sent);
    /// `None` while it is empty. smoltcp's retransmission timer cannot have started before this,
    /// whatever else fired since ([`Slot::sent_all`]).
    pub(crate) in_flight_since: Option<Instant>,
    /// The end of out-of-order data smoltcp may keep for it ([`crate::reclaim::note_segment`]).
    pub(crate) ooo_until: Option<u32>,
    /// Serviced since the reclaim sweep last passed.
    pub(crate) recent: bool,
    /// Which SYN made it half-open (the engine's count of admitted SYNs then): tells its entry in
    /// its listener's list of half-open connections from a later incarnation's.
    pub(crate) syn_stamp: u32,
    /// Its buffer pages may be resident: serviced since they were last given back.
    pub(crate) resident: bool,
    /// The connection's buffers, lent to smoltcp's socket for the handshake and to the engine's
    /// control block after it.
    pub(crate) rx_region: Region,
    pub(crate) tx_region: Region,
    /// The engine's own TCP runs the connection (after its handshake): `set` holds no socket.
    pub(crate) tcb: Option<Box<Owned>>,
    /// What the handshake's segments said, for the control block that takes over.
    pub(crate) hs: HandshakeNotes,
}

/// What the engine notes of a handshake that smoltcp runs, for the control block that takes the
/// connection over when it completes (see `crate::own`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HandshakeNotes {
    /// The options of the peer's SYN or SYN-ACK.
    pub(crate) peer: Options,
    /// The last segment from the peer: its window field, sequence and acknowledgment numbers,
    /// and TSval.
    pub(crate) window: u16,
    /// That segment was a SYN (its window is not scaled, RFC 7323 §2.2).
    pub(crate) window_is_syn: bool,
    pub(crate) seq: u32,
    pub(crate) ack: u32,
    pub(crate) tsval: Option<u32>,
    /// When our SYN or SYN-ACK first left, and how many times it did.
    pub(crate) syn_sent_at: Option<Instant>,
    pub(crate) syn_sends: u8,
}

/// What a connection waits for from its peer ([`crate::EngineConfig::tcp_timeout`] runs while it does).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// An answer to what it sends: data, a SYN, a SYN-ACK or a FIN not yet acknowledged. The clock
    /// runs from the first segment it sent since the peer was last heard (`None`: none since), so
    /// a peer that answers every window probe is never silent, however far apart the probes.
    Answer { asked_at: Option<Instant> },
    /// The peer's FIN, ours acknowledged (FIN-WAIT-2). The clock runs from when this began or the
    /// peer was last heard, whichever is later.
    PeerFin { since: Instant },
}

impl<T> Slot<T> {
    /// The session running the connection, if one does.
    pub(crate) fn session(&self) -> Option<&T> {
        match &self.phase {
            Phase::Accepted(s) | Phase::Client { session: s, .. } => Some(s),
            _ => None,
        }
    }

    /// smoltcp's socket: only while smoltcp runs the connection (or it is in the pool).
    pub(crate) fn socket(&mut self) -> &mut tcp::Socket<'static> {
        debug_assert!(self.tcb.is_none(), "the engine's own TCP runs this connection");
        self.set.get_mut::<tcp::Socket>(self.handle)
    }

    /// The connection's TCP state, whoever runs it, in smoltcp's terms.
    pub(crate) fn state(&self) -> tcp::State {
        match &self.tcb {
            Some(t) => match t.state {
                conn::State::Established => tcp::State::Established,
                conn::State::CloseWait => tcp::State::CloseWait,
                conn::State::FinWait1 => tcp::State::FinWait1,
                conn::State::FinWait2 => tcp::State::FinWait2,
                conn::State::Closing => tcp::State::Closing,
                conn::State::LastAck => tcp::State::LastAck,
                conn::State::TimeWait => tcp::State::TimeWait,
                conn::State::Closed => tcp::State::Closed,
            },
            None => self.set.get::<tcp::Socket>(self.handle).state(),
        }
    }

    /// Whether sent data or our FIN waits for acknowledgment, or data waits to be sent.
    pub(crate) fn send_pending(&self) -> bool {
        match &self.tcb {
            Some(t) => t.has_unacknowledged(),
            None => self.set.get::<tcp::Socket>(self.handle).send_queue() > 0,
        }
    }

    /// Received data waits for a session that may still read it: the session runs (it has not
    /// closed its side with [`crate::Progress::Close`]) and bytes wait in the receive buffer.
    /// Such a connection is not released when it reaches TIME_WAIT (after our FIN the peer's last
    /// data and FIN may come in one burst): the session reads the bytes first.
    pub(crate) fn unread_for_session(&self) -> bool {
        self.session().is_some() && !self.closing && self.recv_queue() > 0
    }

    /// Bytes received in order and not read yet.
    pub(crate) fn recv_queue(&self) -> usize {
        match &self.tcb {
            Some(t) => t.rx.len(),
            None => self.set.get::<tcp::Socket>(self.handle).recv_queue(),
        }
    }

    /// Resets the connection (the RST leaves on its next egress).
    pub(crate) fn abort(&mut self) {
        match &mut self.tcb {
            Some(t) => t.abort(),
            None => self.socket().abort(),
        }
    }

    /// Whether the connection has ended (CLOSED, or TIME_WAIT, which the engine keeps in its
    /// own table): the service phase releases such a connection.
    pub(crate) fn ended(&self) -> bool {
        matches!(self.state(), tcp::State::Closed | tcp::State::TimeWait)
    }

    /// The next in-order byte the connection expects from its peer: the ISN, one for the SYN, and
    /// every byte received in order (read by the session, or waiting).
    pub(crate) fn rcv_nxt(&mut self) -> u32 {
        if let Some(t) = &self.tcb {
            return t.rcv_nxt();
        }
        let waiting = self.socket().recv_queue();
        self.irs.wrapping_add(1).wrapping_add(self.bytes[0] as u32).wrapping_add(waiting as u32)
    }

    /// [`Slot::rcv_nxt`], read from the socket once per segment: `once` keeps it between the
    /// checks `ingress` makes before smoltcp takes the segment.
    pub(crate) fn rcv_nxt_once(&mut self, once: &mut Option<u32>) -> u32 {
        match *once {
            Some(n) => n,
            None => *once.insert(self.rcv_nxt()),
        }
    }

    /// Whether `sent`, the segment smoltcp just sent for this open connection, carried the last
    /// byte its session queued (or, with nothing queued, acknowledged). Then smoltcp has nothing
    /// more to send now: no data or FIN waits, the segment carried the latest acknowledgment and
    /// window, and the only timer it may have started is the retransmission timer, at least
    /// [`SMOLTCP_MIN_RTO`] after it started: no earlier than [`Slot::in_flight_since`], since
    /// that timer restarts only when data is sent or acknowledged. Its `poll_at` need not be asked
    /// (it costs about 230 instructions per request, 6 % of the server's): the engine's timer is
    /// set to fire by then, or earlier if it was already due earlier, and asks then. A pure ACK
    /// while data waits (a zero window) does not count, nor does a segment one long: it may be a
    /// zero-window probe, which smoltcp sends leaving its state as it was, so that it still owes
    /// the ACK the probe carried, at once (a FIN alone is one long too, and is asked about).
    pub(crate) fn sent_all(&mut self, sent: Option<neighbor::SentTcp>) -> bool {
        let Some(s) = sent else { return false };
        let end = self.iss.wrapping_add(1).wrapping_add(self.bytes[1] as u32);
        s.end == end && s.end.wrapping_sub(s.seq) != 1 && (s.end != s.seq || self.socket().send_queue() == 0)
    }

    /// The peer was heard from now.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.heard_at = now;
        if let Some(Wait::Answer { asked_at }) = &mut self.waiting {
            *asked_at = None;
        }
    }

    /// When the engine gives up on a peer that stays silent, if the connection waits for it.
    pub(crate) fn give_up(&self, timeout: smoltcp::time::Duration) -> Option<Instant> {
        match self.waiting? {
            Wait::Answer { asked_at } => asked_at.map(|t| t + timeout),
            Wait::PeerFin { since } => Some(since.max(self.heard_at) + timeout),
        }
    }

    /// Its handshake is in progress (passive or active open).
    pub(crate) fn in_handshake(&self) -> bool {
        matches!(self.phase, Phase::HalfOpen | Phase::Client { established: false, .. })
    }

    /// Whether a segment that came from `seg.src_mac`, another MAC than the connection's peer's,
    /// says the peer is there now: any segment of the handshake, after it only one whose sequence
    /// numbers fall in the receive window (`rx_capacity` from the next in-order byte), which a
    /// sender that cannot see the connection's segments can only guess (RFC 5961's reasoning).
    /// `nxt` as [`Slot::rcv_nxt_once`] takes it.
    pub(crate) fn peer_moved_to(&mut self, seg: &Segment, rx_capacity: usize, nxt: &mut Option<u32>) -> bool {
        self.in_handshake() || seg.in_window(self.rcv_nxt_once(nxt), rx_capacity)
    }
}
