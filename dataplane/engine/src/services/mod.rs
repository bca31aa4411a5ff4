//! The built-in services, as session state machines over a [`Stream`].
//!
//! A session never does I/O itself: the engine calls [`Session::drive`] when its connection may
//! have data or room, and the session moves bytes between the stream's receive and send buffers.
//! That keeps the services testable over a plain in-memory stream (see the tests) and lets the
//! engine run them inside its loop (run-to-completion). [`ServiceKind`] and [`Session`] implement
//! the engine's [`crate::Service`] and [`crate::Session`]; the runtime composes them with its
//! bridge to application threads.

pub mod echo;
pub mod http;
pub mod loadgen;

pub use crate::upper::{Progress, Stream};
pub use echo::Echo;
pub use http::{Http, HttpConfig};
pub use loadgen::{LoadGen, LoadMode, LoadSpec, LoadStats};

use std::net::SocketAddrV4;

use smoltcp::time::Instant;

use crate::upper::{Accept, ConnId, End};

/// Which service a listener runs, with its settings.
#[derive(Clone, Debug)]
pub enum ServiceKind {
    /// RFC 862 echo.
    Echo,
    /// HTTP/1.1 with a fixed body.
    Http(std::sync::Arc<HttpConfig>),
    /// Listens, never accepts: completed connections stay queued, so the listener's backlog
    /// (SEMANTICS B, L4) can be seen from outside with an ordinary client. A queued connection
    /// whose peer closes is closed and leaves the queue.
    Hold,
}

impl ServiceKind {
    pub fn name(&self) -> &'static str {
        match self {
            ServiceKind::Echo => "echo",
            ServiceKind::Http(_) => "http",
            ServiceKind::Hold => "hold",
        }
    }

    /// The session that accepts a connection whose handshake completed, or `None` for a service
    /// that does not accept (the connection stays queued).
    pub fn session(&self) -> Option<Session> {
        match self {
            ServiceKind::Echo => Some(Session::Echo(Echo::new())),
            ServiceKind::Http(cfg) => Some(Session::Http(Http::new(cfg.clone()))),
            ServiceKind::Hold => None,
        }
    }
}

/// One connection's service state.
#[derive(Debug)]
pub enum Session {
    Echo(Echo),
    Http(Http),
    /// A load-generating client (outgoing connections).
    LoadGen(LoadGen),
}

impl Session {
    /// Moves what can be moved at `now`.
    pub fn drive(&mut self, now: Instant, s: &mut dyn Stream) -> Progress {
        match self {
            Session::Echo(e) => e.drive(s),
            Session::Http(h) => h.drive(now, s),
            Session::LoadGen(g) => g.drive(s),
        }
    }

    /// When the session must be driven again without I/O: an HTTP request head's timeout.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Session::Http(h) => h.deadline(),
            Session::Echo(_) | Session::LoadGen(_) => None,
        }
    }

    /// The connection ended, this way; `established` says whether its handshake had completed.
    pub fn closed(&mut self, established: bool, _end: End) {
        match self {
            Session::LoadGen(g) => g.closed(established),
            Session::Echo(_) | Session::Http(_) => {}
        }
    }
}

impl crate::Session for Session {
    #[inline]
    fn drive(&mut self, now: Instant, s: &mut dyn Stream) -> Progress {
        Session::drive(self, now, s)
    }

    #[inline]
    fn deadline(&self) -> Option<Instant> {
        Session::deadline(self)
    }

    fn closed(&mut self, established: bool, end: End) {
        Session::closed(self, established, end)
    }
}

impl crate::Service for ServiceKind {
    type Session = Session;

    fn name(&self) -> &'static str {
        ServiceKind::name(self)
    }

    fn accept(&mut self, _: ConnId, _: SocketAddrV4, _: SocketAddrV4, _: Instant) -> Accept<Session> {
        match self.session() {
            Some(s) => Accept::Session(s),
            None => Accept::Queue,
        }
    }
}

#[cfg(test)]
pub(crate) mod test_stream {
    use super::Stream;

    /// A stream over two vectors, with a bounded send buffer.
    #[derive(Default)]
    pub struct VecStream {
        pub input: Vec<u8>,
        pub read: usize,
        pub output: Vec<u8>,
        pub send_cap: usize,
        pub peer_fin: bool,
        pub closed: bool,
    }

    impl VecStream {
        pub fn new(input: &[u8], send_cap: usize) -> Self {
            VecStream { input: input.to_vec(), send_cap, ..Default::default() }
        }
        /// Frees the send buffer as if the peer had read everything.
        pub fn take_output(&mut self) -> Vec<u8> {
            std::mem::take(&mut self.output)
        }
    }

    impl Stream for VecStream {
        fn recv_into(&mut self, buf: &mut [u8]) -> usize {
            let n = buf.len().min(self.input.len() - self.read);
            buf[..n].copy_from_slice(&self.input[self.read..self.read + n]);
            self.read += n;
            n
        }
        fn recv_waiting(&self) -> usize {
            self.input.len() - self.read
        }
        fn discard(&mut self, max: usize) -> usize {
            let n = max.min(self.recv_waiting());
            self.read += n;
            n
        }
        fn send_from(&mut self, data: &[u8]) -> usize {
            let n = data.len().min(self.send_room());
            self.output.extend_from_slice(&data[..n]);
            n
        }
        fn send_room(&self) -> usize {
            if self.closed {
                0
            } else {
                self.send_cap - self.output.len()
            }
        }
        fn peer_finished(&self) -> bool {
            self.peer_fin && self.read == self.input.len()
        }
        fn close(&mut self) {
            self.closed = true;
        }
    }
}
