//! A load-generating client session: sends a request of `size` bytes, reads a response of the
//! same size (an echo server's), and then closes (short connections) or sends the next request
//! (persistent connections). One request in flight per connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Progress, Stream};

/// The largest request a load generator sends.
pub const MAX_REQUEST: usize = 4096;
const PAYLOAD: [u8; MAX_REQUEST] = [0x5a; MAX_REQUEST];

/// Short connections (connect, request, response, close) or persistent ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadMode {
    Short,
    Persistent,
}

/// Counters shared by every session of one load generator (relaxed atomics: read by the driver
/// while the engine's core runs the sessions).
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Connections whose handshake completed.
    pub connected: AtomicU64,
    /// Responses received in full.
    pub completed: AtomicU64,
    /// Connections that ended before their handshake completed.
    pub failed: AtomicU64,
    /// Connections that ended, whatever the way.
    pub ended: AtomicU64,
    /// Established connections that ended before their response was complete.
    pub cut: AtomicU64,
    /// Set to wind down: each connection closes once its response in flight has arrived.
    pub stop: std::sync::atomic::AtomicBool,
}

impl LoadStats {
    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// What a load generator asks of each connection.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub size: usize,
    pub mode: LoadMode,
    pub stats: Arc<LoadStats>,
}

#[derive(Debug)]
pub struct LoadGen {
    spec: LoadSpec,
    /// Bytes of the current request queued.
    sent: usize,
    /// Bytes of the current response received.
    got: usize,
    counted: bool,
}

impl LoadGen {
    pub fn new(spec: LoadSpec) -> Self {
        assert!((1..=MAX_REQUEST).contains(&spec.size), "request size 1..={MAX_REQUEST}");
        LoadGen { spec, sent: 0, got: 0, counted: false }
    }

    pub fn drive(&mut self, s: &mut dyn Stream) -> Progress {
        let stats = &self.spec.stats;
        if !self.counted {
            self.counted = true;
            stats.connected.fetch_add(1, Ordering::Relaxed);
        }
        let size = self.spec.size;
        loop {
            if self.sent < size {
                self.sent += s.send_from(&PAYLOAD[self.sent..size]);
                if self.sent < size {
                    return Progress::Open;
                }
            }
            // The response's bytes are counted, not read: an echo of our own payload.
            self.got += s.discard(usize::MAX);
            if self.got < size {
                return if s.peer_finished() { Progress::Close } else { Progress::Open };
            }
            stats.completed.fetch_add(1, Ordering::Relaxed);
            self.got -= size;
            self.sent = 0;
            if self.spec.mode == LoadMode::Short || stats.stop.load(Ordering::Relaxed) {
                return Progress::Close;
            }
        }
    }

    pub fn closed(&mut self, established: bool) {
        let stats = &self.spec.stats;
        stats.ended.fetch_add(1, Ordering::Relaxed);
        if !established {
            stats.failed.fetch_add(1, Ordering::Relaxed);
        } else if self.sent > 0 && self.got < self.spec.size {
            stats.cut.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::test_stream::VecStream;

    #[test]
    fn persistent_sends_the_next_request_after_each_response() {
        let stats = Arc::new(LoadStats::default());
        let mut g = LoadGen::new(LoadSpec { size: 64, mode: LoadMode::Persistent, stats: stats.clone() });
        let mut s = VecStream::new(&[0u8; 64 * 3], 1 << 16);
        assert_eq!(g.drive(&mut s), Progress::Open);
        assert_eq!(stats.get(&stats.completed), 3);
        assert_eq!(s.output.len(), 64 * 4, "three answered and one more in flight");
    }

    #[test]
    fn stop_closes_a_persistent_connection_after_its_response() {
        let stats = Arc::new(LoadStats::default());
        let mut g = LoadGen::new(LoadSpec { size: 64, mode: LoadMode::Persistent, stats: stats.clone() });
        let mut s = VecStream::new(&[], 1 << 16);
        assert_eq!(g.drive(&mut s), Progress::Open);
        stats.stop.store(true, Ordering::Relaxed);
        s.input.extend_from_slice(&[0u8; 64]);
        assert_eq!(g.drive(&mut s), Progress::Close);
        assert_eq!(stats.get(&stats.completed), 1);
    }

    #[test]
    fn short_closes_after_the_response() {
        let stats = Arc::new(LoadStats::default());
        let mut g = LoadGen::new(LoadSpec { size: 64, mode: LoadMode::Short, stats: stats.clone() });
        let mut s = VecStream::new(&[0u8; 10], 1 << 16);
        assert_eq!(g.drive(&mut s), Progress::Open);
        s.input.extend_from_slice(&[0u8; 54]);
        assert_eq!(g.drive(&mut s), Progress::Close);
        g.closed(true);
        assert_eq!((stats.get(&stats.completed), stats.get(&stats.cut), stats.get(&stats.failed)), (1, 0, 0));
    }
}
