//! A smoltcp TCP socket as a service [`Stream`].

use smoltcp::socket::tcp;

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
