//! `loadgen first-rtx`: a TCP client of its own on a raw AF_PACKET socket, which connects, sends a
//! request and never acknowledges the reply, to time the server's first retransmission (the loss
//! benchmark's RTO figure).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A raw AF_PACKET socket on one interface: whole Ethernet frames out, every frame seen on the
/// interface in (with a short read timeout).
struct RawPort {
    fd: std::os::fd::OwnedFd,
}

impl RawPort {
    fn open(iface: &str) -> anyhow::Result<RawPort> {
        use std::os::fd::FromRawFd;
        let name = std::ffi::CString::new(iface)?;
        // SAFETY: if_nametoindex reads the NUL-terminated string it is given.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            bail!("no interface {iface} here: {}", std::io::Error::last_os_error());
        }
        let all = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: socket(2) takes no pointer; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(all)) };
        if fd < 0 {
            bail!("an AF_PACKET socket (root): {}", std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket(2) and nothing else owns it.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let port = RawPort { fd };
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = all;
        sll.sll_ifindex = index as i32;
        // SAFETY: sll is a valid sockaddr_ll and the length passed is its size.
        let r = unsafe {
            libc::bind(
                port.raw(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r != 0 {
            bail!("binding the AF_PACKET socket to {iface}: {}", std::io::Error::last_os_error());
        }
        let tv = libc::timeval { tv_sec: 0, tv_usec: 2000 };
        // SAFETY: tv is a valid timeval and the length passed is its size.
        let r = unsafe {
            libc::setsockopt(
                port.raw(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r != 0 {
            bail!("SO_RCVTIMEO: {}", std::io::Error::last_os_error());
        }
        Ok(port)
    }

    fn raw(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    fn send(&self, frame: &[u8]) -> anyhow::Result<()> {
        // SAFETY: frame is a valid buffer of frame.len() bytes for the call's duration.
        let n = unsafe { libc::send(self.raw(), frame.as_ptr().cast(), frame.len(), 0) };
        if n != frame.len() as isize {
            bail!("sending a frame: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next frame that came in (not one sent from this host), or `None` after the read
    /// timeout.
    fn recv<'a>(&self, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: buf is valid for buf.len() bytes, `from` for `len` bytes, for the call.
        let n = unsafe {
            libc::recvfrom(
                self.raw(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
            return None;
        }
        Some(&buf[..n as usize])
    }
}

/// What [`first_rtx`] reads from a frame.
enum Seen {
    /// Someone asks who has this address (the sender's MAC and address).
    ArpRequest {
        target: Ipv4Addr,
        mac: [u8; 6],
        ip: Ipv4Addr,
    },
    ArpReply {
        ip: Ipv4Addr,
        mac: [u8; 6],
    },
    Tcp {
        src: SocketAddrV4,
        dst: SocketAddrV4,
        syn: bool,
        ack: bool,
        rst: bool,
        seq: u32,
        ack_number: u32,
        len: usize,
    },
    Other,
}

fn parse(frame: &[u8]) -> Seen {
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket,
    };
    let Ok(eth) = EthernetFrame::new_checked(frame) else { return Seen::Other };
    match eth.ethertype() {
        EthernetProtocol::Arp => {
            let Ok(Ok(ArpRepr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_protocol_addr,
                ..
            })) = ArpPacket::new_checked(eth.payload()).map(|p| ArpRepr::parse(&p))
            else {
                return Seen::Other;
            };
            match operation {
                ArpOperation::Request => Seen::ArpRequest {
                    target: target_protocol_addr,
                    mac: source_hardware_addr.0,
                    ip: source_protocol_addr,
                },
                ArpOperation::Reply => Seen::ArpReply { ip: source_protocol_addr, mac: source_hardware_addr.0 },
                _ => Seen::Other,
            }
        }
        EthernetProtocol::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { return Seen::Other };
            if ip.next_header() != IpProtocol::Tcp {
                return Seen::Other;
            }
            let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else { return Seen::Other };
            Seen::Tcp {
                src: SocketAddrV4::new(ip.src_addr(), tcp.src_port()),
                dst: SocketAddrV4::new(ip.dst_addr(), tcp.dst_port()),
                syn: tcp.syn(),
                ack: tcp.ack(),
                rst: tcp.rst(),
                seq: tcp.seq_number().0 as u32,
                ack_number: tcp.ack_number().0 as u32,
                len: tcp.payload().len(),
            }
        }
        _ => Seen::Other,
    }
}

/// An ARP frame from `(mac, ip)`: a request for `target`, or a reply to `to`.
fn arp_frame(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr, to: Option<[u8; 6]>) -> Vec<u8> {
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr,
    };
    let arp = ArpRepr::EthernetIpv4 {
        operation: if to.is_some() { ArpOperation::Reply } else { ArpOperation::Request },
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress(to.unwrap_or([0; 6])),
        target_protocol_addr: target,
    };
    let mut buf = vec![0u8; 14 + arp.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: EthernetAddress(to.unwrap_or([0xff; 6])),
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut eth);
    arp.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    buf
}

/// A client of its own on a raw socket: its MAC and address, and its server's.
struct RawClient {
    port: RawPort,
    mac: [u8; 6],
    ip: Ipv4Addr,
    server: Ipv4Addr,
    server_mac: Option<[u8; 6]>,
    buf: Vec<u8>,
}

impl RawClient {
    /// The next frame that came in, parsed, with when it came (`None` after the read timeout).
    /// Answers ARP requests for the client's address, and learns the server's MAC.
    fn poll(&mut self) -> anyhow::Result<Option<(Seen, Instant)>> {
        let Some(frame) = self.port.recv(&mut self.buf) else { return Ok(None) };
        let at = Instant::now();
        let seen = parse(frame);
        match seen {
            Seen::ArpRequest { target, mac, ip } if target == self.ip => {
                self.port.send(&arp_frame(self.mac, self.ip, ip, Some(mac)))?;
            }
            Seen::ArpReply { ip, mac } if ip == self.server => self.server_mac = Some(mac),
            _ => {}
        }
        Ok(Some((seen, at)))
    }
}

/// The first retransmission of an unacknowledged segment: a client of its own on a raw socket on
/// `iface`, from `from` (an address no host in the namespace owns, so that the kernel there
/// neither answers for it nor resets its connection; this client answers ARP for it), connects
/// to the echo service at `addr`, sends a 64-byte request, and never acknowledges the reply.
/// Returns the milliseconds from the reply's arrival to the arrival of the reply sent again
/// (`None`: not within `limit`), then resets the connection. Meant for a wire without faults,
/// where a second copy of the reply is the server's retransmission, not the wire's.
pub fn first_rtx(iface: &str, from: Ipv4Addr, addr: SocketAddrV4, limit: Duration) -> anyhow::Result<Option<f64>> {
    use engine::flow::{plain_tcp, tcp_frame_len, write_tcp_frame};
    use smoltcp::wire::TcpControl;
    let o = from.octets();
    let mut c = RawClient {
        port: RawPort::open(iface)?,
        mac: [0x02, 0x00, o[0], o[1], o[2], o[3]],
        ip: from,
        server: *addr.ip(),
        server_mac: None,
        buf: vec![0u8; 65536],
    };
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos() ^ std::process::id();
    let (sport, iss) = (20000 + (seed % 40000) as u16, seed.wrapping_mul(2654435761));
    let me = SocketAddrV4::new(from, sport);
    let segment = |c: &RawClient, control, seq: u32, ack: Option<u32>, payload: &[u8]| -> anyhow::Result<()> {
        let mut repr = plain_tcp((sport, addr.port()), control, seq, ack, 64240, payload);
        if control == TcpControl::Syn {
            repr.max_seg_size = Some(1460);
        }
        let mut frame = vec![0u8; tcp_frame_len(&repr)];
        let server_mac = c.server_mac.context("the server's MAC")?;
        write_tcp_frame(&mut frame, (c.mac, from), (server_mac, *addr.ip()), &repr);
        c.port.send(&frame)
    };
    let late = |what: &str| anyhow::anyhow!("first-rtx {addr}: no {what} within {} s", limit.as_secs());

    // The server's MAC (ARP asked again every half second).
    let t = Instant::now();
    let mut asked = None::<Instant>;
    while c.server_mac.is_none() {
        if t.elapsed() > limit {
            return Err(late("ARP reply"));
        }
        if asked.is_none_or(|a| a.elapsed() > Duration::from_millis(500)) {
            c.port.send(&arp_frame(c.mac, from, *addr.ip(), None))?;
            asked = Some(Instant::now());
        }
        c.poll()?;
    }
    // The handshake (the SYN sent again every half second).
    let t = Instant::now();
    let mut sent = None::<Instant>;
    let irs = loop {
        if t.elapsed() > limit {
            return Err(late("SYN-ACK"));
        }
        if sent.is_none_or(|a| a.elapsed() > Duration::from_millis(500)) {
            segment(&c, TcpControl::Syn, iss, None, &[])?;
            sent = Some(Instant::now());
        }
        if let Some((Seen::Tcp { src, dst, syn, ack, rst, seq, ack_number, .. }, _)) = c.poll()? {
            if src == addr && dst == me {
                if rst {
                    bail!("first-rtx {addr}: the connection was refused (RST)");
                }
                if syn && ack && ack_number == iss.wrapping_add(1) {
                    break seq;
                }
            }
        }
    };
    // The handshake's last ACK with the request; then the reply, never acknowledged.
    let request = [0x5a; 64];
    segment(&c, TcpControl::Psh, iss.wrapping_add(1), Some(irs.wrapping_add(1)), &request)?;
    let reply_seq = irs.wrapping_add(1);
    let mut first = None::<Instant>;
    let t = Instant::now();
    let result = loop {
        if t.elapsed() > limit {
            if first.is_none() {
                return Err(late("reply"));
            }
            break None;
        }
        let Some((Seen::Tcp { src, dst, seq, len, rst, .. }, at)) = c.poll()? else { continue };
        if src != addr || dst != me {
            continue;
        }
        if rst {
            bail!("first-rtx {addr}: the server reset the connection");
        }
        if len > 0 && seq == reply_seq {
            match first {
                None => first = Some(at),
                Some(f) => break Some(at.duration_since(f).as_secs_f64() * 1e3),
            }
        }
    };
    // Done with it: a reset, so that the server does not keep retransmitting.
    segment(&c, TcpControl::Rst, iss.wrapping_add(1 + request.len() as u32), None, &[])?;
    Ok(result)
}
