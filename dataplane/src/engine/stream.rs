//! A smoltcp TCP socket as a service [`Stream`].

use smoltcp::socket::tcp;

use crate::services::Stream;

pub(super) struct TcpStream<'a, 's>(pub &'a mut tcp::Socket<'s>);

impl Stream for TcpStream<'_, '_> {
    fn recv_into(&mut self, buf: &mut [u8]) -> usize {
        self.0.recv_slice(buf).unwrap_or(0)
    }

    fn send_from(&mut self, data: &[u8]) -> usize {
        self.0.send_slice(data).unwrap_or(0)
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
