//! A connection as a service [`Stream`]: a smoltcp TCP socket, or the engine's own control
//! block.

use smoltcp::socket::tcp;

use crate::tcp::conn::Tcb;
use crate::upper::Stream;

/// The socket, and the connection's byte counters (received by the session, queued by it).
pub(super) struct TcpStream<'a, 's>(pub &'a mut tcp::Socket<'s>, pub &'a mut [u64; 2]);

impl Stream for TcpStream<'_, '_> {
    fn recv_into(&mut self, buf: &mut [u8]) -> usize {
        let n = self.0.recv_slice(buf).unwrap_or(0);
        self.1[0] += n as u64;
        n
    }

    fn recv_waiting(&self) -> usize {
        self.0.recv_queue()
    }

    fn discard(&mut self, max: usize) -> usize {
        let mut n = 0;
        // Twice at most: the received bytes may wrap around the end of the ring.
        while n < max {
            let step = self.0.recv(|b| {
                let k = b.len().min(max - n);
                (k, k)
            });
            match step {
                Ok(k) if k > 0 => n += k,
                _ => break,
            }
        }
        self.1[0] += n as u64;
        n
    }

    fn send_from(&mut self, data: &[u8]) -> usize {
        let n = self.0.send_slice(data).unwrap_or(0);
        self.1[1] += n as u64;
        n
    }

    fn send_room(&self) -> usize {
        if self.0.may_send() {
            self.0.send_capacity() - self.0.send_queue()
        } else {
            0
        }
    }

    fn peer_finished(&self) -> bool {
        // Only asked once the handshake has completed: then "cannot receive" means the peer's FIN
        // arrived (or the connection ended).
        !self.0.may_recv() && self.0.recv_queue() == 0
    }

    fn close(&mut self) {
        self.0.close();
    }
}

/// The engine's control block, and the connection's byte counters (as [`TcpStream`]'s).
pub(super) struct TcbStream<'a>(pub &'a mut Tcb, pub &'a mut [u64; 2]);

impl Stream for TcbStream<'_> {
    fn recv_into(&mut self, buf: &mut [u8]) -> usize {
        let n = self.0.recv(buf);
        self.1[0] += n as u64;
        n
    }

    fn recv_waiting(&self) -> usize {
        self.0.rx.len()
    }

    fn discard(&mut self, max: usize) -> usize {
        let n = self.0.discard(max);
        self.1[0] += n as u64;
        n
    }

    fn send_from(&mut self, data: &[u8]) -> usize {
        let n = self.0.send(data);
        self.1[1] += n as u64;
        n
    }

    fn send_room(&self) -> usize {
        self.0.send_room()
    }

    fn loop_back(&mut self, max: usize) -> usize {
        let n = self.0.loop_back(max);
        self.1[0] += n as u64;
        self.1[1] += n as u64;
        n
    }

    fn peer_finished(&self) -> bool {
        self.0.peer_finished()
    }

    fn close(&mut self) {
        self.0.close();
    }
}
