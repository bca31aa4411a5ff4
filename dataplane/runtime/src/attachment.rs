//! The engine's side of the [bridge](crate::bridge): what an engine's own core runs, before each
//! poll, for the application threads that reach it.

use std::sync::Arc;

use engine::EngineInstant as Instant;

use crate::bridge::{conn_of, fail, Command, Commands, ConnShared, ConnectRequest};
use crate::{Engine, Service, Session};

/// Connects waiting for their 4-tuple to leave TIME_WAIT, at most, per engine: one more fails at
/// once with EADDRINUSE (the error a reconnect gets when it may not wait, C4).
pub const MAX_DEFERRED: usize = 4096;

/// An engine's command queue and what its core keeps for it: wakes that overflowed the queue, and
/// connects that wait for their 4-tuple to leave TIME_WAIT (SEMANTICS C6). Run it before each
/// [`Engine::poll`](engine::Engine::poll) with [`Attachment::run`]; the per-core loop
/// ([`crate::lcore::Lane`]) does.
pub struct Attachment {
    commands: Arc<Commands>,
    /// Connects waiting for their 4-tuple to leave TIME_WAIT, with when it does; at most
    /// [`MAX_DEFERRED`].
    deferred: Vec<(Instant, ConnectRequest)>,
    /// Connects failed because `deferred` was full.
    pub deferred_rejected: u64,
    /// Kept between turns to reuse its allocation.
    wakes: Vec<Arc<ConnShared>>,
}

impl Attachment {
    pub fn new(commands: Arc<Commands>) -> Attachment {
        Attachment { commands, deferred: Vec::new(), wakes: Vec::new(), deferred_rejected: 0 }
    }

    /// The queue other threads push to.
    pub fn commands(&self) -> &Arc<Commands> {
        &self.commands
    }

    /// Runs the queued commands, and the deferred connects whose time has come.
    pub fn run(&mut self, engine: &mut Engine, now: Instant) {
        let q = &self.commands;
        q.take_overflow(&mut self.wakes);
        for shared in self.wakes.drain(..) {
            wake(engine, &shared);
        }
        while let Some(c) = q.pop() {
            match c {
                Command::Wake(shared) => wake(engine, &shared),
                Command::Listen(shared, reply) => {
                    let (port, backlog, policy, on_full) = (shared.port, shared.backlog, shared.policy, shared.on_full);
                    let service = Service::Bridge { listener: shared, commands: q.clone() };
                    let res = engine.listen(port, service, backlog, policy, on_full);
                    let _ = reply.send(res.map(|_| ()));
                }
                Command::Unlisten(port) => engine.unlisten(port),
                Command::Connect(req) => {
                    if !connect(engine, &mut self.deferred, now, req) {
                        self.deferred_rejected += 1;
                    }
                }
            }
        }
        if self.deferred.iter().any(|d| d.0 <= now) {
            let (due, later): (Vec<_>, Vec<_>) = self.deferred.drain(..).partition(|d| d.0 <= now);
            self.deferred = later;
            for (_, req) in due {
                if !connect(engine, &mut self.deferred, now, req) {
                    self.deferred_rejected += 1;
                }
            }
        }
    }

    /// When a deferred connect is next due, if one waits.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deferred.iter().map(|d| d.0).min()
    }
}

/// An application touched a bridged connection: drive it on this turn, if the engine's connection
/// with that id is still this one.
fn wake(engine: &mut Engine, shared: &Arc<ConnShared>) {
    let conn = conn_of(shared);
    let ours = matches!(engine.session(conn), Some(Session::Bridge(end)) if Arc::ptr_eq(end.shared(), shared));
    if ours {
        engine.wake(conn);
    }
}

/// Opens a bridged connection; failures end it at once with the reason the application sees.
/// Returns `false` if it had to wait for TIME_WAIT and the waiting list was full (it failed with
/// EADDRINUSE).
fn connect(
    engine: &mut Engine,
    deferred: &mut Vec<(Instant, ConnectRequest)>,
    now: Instant,
    req: ConnectRequest,
) -> bool {
    // SEMANTICS C6: a reconnect from a bound port to the same remote waits out the previous
    // 4-tuple's TIME_WAIT.
    if let Some(l) = req.local.filter(|l| l.port() != 0) {
        if let Some(until) = engine.time_wait_expiry(l, req.remote, now) {
            if deferred.len() >= MAX_DEFERRED {
                let local = std::net::SocketAddrV4::new(*l.ip(), l.port());
                fail(req.end.shared(), &engine::ConnectError::TimeWait { local, remote: req.remote, until });
                return false;
            }
            deferred.push((until, req));
            return true;
        }
    }
    let ConnectRequest { end, local, remote, timeout } = req;
    let shared = end.shared().clone();
    if let Err(e) = engine.connect_from(now, local, remote, timeout, Session::Bridge(end)) {
        fail(&shared, &e);
    }
    true
}
