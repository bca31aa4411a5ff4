//! RFC 862 echo: every byte received is sent back; the peer's FIN is answered with ours once all
//! its bytes are echoed.

use super::{Progress, Stream};

#[derive(Debug, Default)]
pub struct Echo {
    /// Bytes echoed so far.
    pub echoed: u64,
}

impl Echo {
    pub fn new() -> Self {
        Echo::default()
    }

    pub fn drive(&mut self, s: &mut dyn Stream) -> Progress {
        // Back-pressure: what does not fit in the send buffer stays in the receive buffer.
        self.echoed += s.loop_back(usize::MAX) as u64;
        if s.peer_finished() {
            Progress::Close
        } else {
            Progress::Open
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::test_stream::VecStream;

    #[test]
    fn echoes_everything_across_a_small_send_buffer() {
        let input: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let mut s = VecStream::new(&input, 3000);
        let mut e = Echo::new();
        let mut out = Vec::new();
        for _ in 0..20 {
            assert_eq!(e.drive(&mut s), Progress::Open);
            out.extend(s.take_output());
        }
        assert_eq!(out, input);
        assert_eq!(e.echoed, input.len() as u64);
    }

    #[test]
    fn closes_after_peer_fin_once_drained() {
        let mut s = VecStream::new(b"bye", 2);
        s.peer_fin = true;
        let mut e = Echo::new();
        assert_eq!(e.drive(&mut s), Progress::Open, "one byte still unread");
        s.take_output();
        assert_eq!(e.drive(&mut s), Progress::Close);
        assert_eq!(s.take_output(), b"e");
    }
}
