//! What runs on the runtime's engines: the engine's built-in services, and listeners and
//! connections bridged to application threads ([`crate::bridge`]).

use std::net::SocketAddrV4;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use engine::services::{self, ServiceKind};
use engine::{Accept, ConnId, End, EngineInstant as Instant, ListenerStats, OnFull, Progress, Stream};

use crate::bridge::{self, Commands, EngineEnd, Incoming, ListenerShared};

/// A listener's service: a built-in one, or an accept queue that application threads take
/// connections from (they count as queued until an application takes them, SEMANTICS B1).
#[derive(Clone, Debug)]
pub enum Service {
    Builtin(ServiceKind),
    /// A bridged listener, on the engine whose command queue is `commands` (its connections'
    /// applications wake that engine through it).
    Bridge {
        listener: Arc<ListenerShared>,
        commands: Arc<Commands>,
    },
}

impl From<ServiceKind> for Service {
    fn from(k: ServiceKind) -> Service {
        Service::Builtin(k)
    }
}

/// A connection's session: a built-in one, or the engine's end of a bridged connection.
#[derive(Debug)]
pub enum Session {
    Builtin(services::Session),
    Bridge(EngineEnd),
}

impl From<services::Session> for Session {
    fn from(s: services::Session) -> Session {
        Session::Builtin(s)
    }
}

impl engine::Session for Session {
    #[inline]
    fn drive(&mut self, now: Instant, s: &mut dyn Stream) -> Progress {
        match self {
            Session::Builtin(b) => b.drive(now, s),
            Session::Bridge(end) => end.drive(s),
        }
    }

    #[inline]
    fn deadline(&self) -> Option<Instant> {
        match self {
            Session::Builtin(b) => b.deadline(),
            Session::Bridge(_) => None,
        }
    }

    fn attached(&mut self, conn: ConnId, local: SocketAddrV4, remote: SocketAddrV4) {
        if let Session::Bridge(end) = self {
            end.attach(conn, local, remote);
        }
    }

    fn established(&mut self, _now: Instant) {
        if let Session::Bridge(end) = self {
            end.established();
        }
    }

    #[inline]
    fn abort_requested(&self) -> bool {
        match self {
            Session::Builtin(_) => false,
            Session::Bridge(end) => end.abort_requested(),
        }
    }

    fn closed(&mut self, established: bool, end: End) {
        match self {
            Session::Builtin(b) => b.closed(established, end),
            Session::Bridge(e) => e.ended(end),
        }
    }
}

impl engine::Service for Service {
    type Session = Session;

    fn name(&self) -> &'static str {
        match self {
            Service::Builtin(k) => k.name(),
            Service::Bridge { .. } => "switch",
        }
    }

    fn accept(&mut self, conn: ConnId, local: SocketAddrV4, remote: SocketAddrV4, _now: Instant) -> Accept<Session> {
        let (shared, commands) = match self {
            Service::Builtin(k) => {
                return match k.session() {
                    Some(s) => Accept::Session(Session::Builtin(s)),
                    None => Accept::Queue,
                }
            }
            Service::Bridge { listener, commands } => (listener, commands),
        };
        let (end, app) = bridge::pair(shared.ring_bytes, shared.ring_bytes, commands.clone());
        end.attach(conn, local, remote);
        end.established();
        match shared.push(Incoming { end: app, local, remote }) {
            Ok(()) => Accept::Session(Session::Bridge(end)),
            // Other cores filled the shared queue first.
            Err(_) => Accept::Refuse(Session::Bridge(end)),
        }
    }

    fn queued(&self) -> Option<usize> {
        match self {
            Service::Builtin(_) => None,
            Service::Bridge { listener, .. } => Some(listener.queued()),
        }
    }

    fn rejected(&self, how: OnFull) {
        if let Service::Bridge { listener: shared, .. } = self {
            let counter = match how {
                OnFull::Refuse => &shared.refused,
                OnFull::Drop => &shared.dropped,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn report(&self, stats: &mut ListenerStats) {
        if let Service::Bridge { listener: shared, .. } = self {
            stats.queued = shared.queued();
            stats.silent_closed = shared.silent_closed.load(Ordering::Relaxed);
        }
    }

    fn stopped(&mut self) {
        if let Service::Bridge { listener: shared, .. } = self {
            while let Some(incoming) = shared.pop() {
                incoming.end.abort();
            }
        }
    }
}
