//! The Linux calls the switch needs that std and socket2 do not offer: eventfd, epoll, timerfd,
//! poll(2) on one fd, the TCP options TCP_FASTOPEN_CONNECT and TCP_USER_TIMEOUT, and TCP_INFO (a
//! connection's connect time, SEMANTICS A5). The only module of the control crate with `unsafe`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A non-blocking eventfd: readable while its counter is non-zero.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd has no memory preconditions; the result is checked.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: fd was just returned by eventfd and is owned by nobody else.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes it readable (adds 1 to the counter).
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own. The only failure is EAGAIN
        // when the counter is saturated, in which case it is readable already.
        unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// Makes it unreadable (reads the counter back to 0).
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from an eventfd we own; EAGAIN (already 0) is fine.
        unsafe { libc::read(self.0.as_raw_fd(), (&raw mut v).cast(), 8) };
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A one-shot timerfd on CLOCK_MONOTONIC: readable once it has expired, until drained or re-armed.
#[derive(Debug)]
pub struct TimerFd(OwnedFd);

impl TimerFd {
    pub fn new() -> io::Result<TimerFd> {
        // SAFETY: no memory preconditions; the result is checked.
        let fd = check(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) })?;
        // SAFETY: fd was just returned by timerfd_create and is owned by nobody else.
        Ok(TimerFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Arms it to expire `after` from now (at least 1 ns), or disarms it with `None`; either way
    /// it is unreadable until then.
    pub fn set(&self, after: Option<Duration>) {
        let mut spec: libc::itimerspec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: 0, tv_nsec: 0 },
        };
        if let Some(d) = after {
            let d = d.max(Duration::from_nanos(1));
            spec.it_value.tv_sec = d.as_secs() as libc::time_t;
            spec.it_value.tv_nsec = libc::c_long::from(d.subsec_nanos() as i32);
        }
        // SAFETY: spec is a valid itimerspec; a null old value is allowed. Setting a timerfd we
        // own cannot fail with valid arguments.
        unsafe { libc::timerfd_settime(self.0.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }
}

impl AsFd for TimerFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// An epoll instance with level-triggered registrations: its own fd is readable while any
/// registered fd is ready, so it can itself be waited on by epoll, mio or tokio.
#[derive(Debug)]
pub struct Epoll(OwnedFd);

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: no memory preconditions; the result is checked.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fd was just returned by epoll_create1 and is owned by nobody else.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, writable: bool) -> io::Result<()> {
        let events = libc::EPOLLIN | libc::EPOLLRDHUP | if writable { libc::EPOLLOUT } else { 0 };
        self.ctl_events(op, fd, token, events)
    }

    fn ctl_events(&self, op: libc::c_int, fd: RawFd, token: u64, events: libc::c_int) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: events as u32, u64: token };
        // SAFETY: ev is a valid epoll_event for the duration of the call; fd validity is checked
        // by the kernel.
        check(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Watches `fd` for readability (and writability if asked), reporting `token`.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64, writable: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), token, writable)
    }

    /// Watches `fd` for readability, edge-triggered: `token` is reported once per wake-up of
    /// `fd` (a new connection on a listening socket, a write to an eventfd), not for as long as
    /// it stays readable.
    pub fn add_edge(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        self.ctl_events(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), token, libc::EPOLLIN | libc::EPOLLET)
    }

    pub fn delete(&self, fd: BorrowedFd<'_>) {
        // Failure means it was not registered: nothing to undo.
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, false);
    }

    /// The tokens of the fds ready now (does not block).
    pub fn ready(&self, out: &mut Vec<u64>) {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 64];
        loop {
            // SAFETY: evs is a live array of 64 epoll_events; a zero timeout never blocks.
            let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), evs.as_mut_ptr(), evs.len() as i32, 0) };
            if n <= 0 {
                return;
            }
            out.extend(evs[..n as usize].iter().map(|e| e.u64));
            if (n as usize) < evs.len() {
                return;
            }
        }
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Waits until `fd` is readable (or writable, if asked) or `timeout` passes; returns whether it is.
pub fn wait_fd(fd: BorrowedFd<'_>, writable: bool, timeout: Option<Duration>) -> io::Result<bool> {
    let events = if writable { libc::POLLIN | libc::POLLOUT } else { libc::POLLIN };
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 };
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
    loop {
        // SAFETY: p is one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        match check(r) {
            Ok(n) => return Ok(n > 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// poll(2) over several fds (their `revents` are filled); returns when one is ready or `timeout`
/// has passed.
pub fn poll_many(fds: &mut [libc::pollfd], timeout: Duration) {
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: fds is a live, writable array of pollfds for the duration of the call.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
}

fn setsockopt_int(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its exact size.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// TCP_FASTOPEN_CONNECT: the next connect() returns at once and the first write goes in the SYN
/// when the kernel holds a Fast Open cookie for the server (SEMANTICS C3).
pub fn set_fastopen_connect(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_FASTOPEN_CONNECT, 1)
}

/// TCP_FASTOPEN on a listening socket: accept up to `queue` Fast Open requests in flight.
pub fn set_fastopen_listen(fd: BorrowedFd<'_>, queue: i32) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_FASTOPEN, queue)
}

/// IP_BIND_ADDRESS_NO_PORT: a `bind` to an address with port 0 leaves the port to `connect`,
/// which picks one free for that destination (so one source port serves many destinations).
pub fn set_bind_address_no_port(fd: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)
}

/// TCP_USER_TIMEOUT: unacknowledged data (a SYN included) aborts the connection with ETIMEDOUT
/// after this long.
pub fn set_user_timeout(fd: BorrowedFd<'_>, t: Duration) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, t.as_millis().min(i32::MAX as u128) as i32)
}

/// Whether the kernel says the data sent with our SYN was acknowledged (TCP Fast Open used:
/// TCPI_OPT_SYN_DATA in TCP_INFO).
pub fn syn_data_acked(fd: BorrowedFd<'_>) -> bool {
    const TCPI_OPT_SYN_DATA: u8 = 32;
    // SAFETY: tcp_info is plain data; zeroed is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: info and len are live and len is info's size.
    let r = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &mut len)
    };
    r == 0 && info.tcpi_options & TCPI_OPT_SYN_DATA != 0
}

/// SEMANTICS A5 on the kernel path: how long ago the handshake of the TCP connection `fd`
/// completed, from TCP_INFO; `None` while it has not (SYN_SENT, SYN_RECV) or after it failed
/// (CLOSE).
///
/// Linux stamps both `lsndtime` (reported as `tcpi_last_data_sent`) and `lrcvtime`
/// (`tcpi_last_data_recv`) when the handshake completes: in `tcp_finish_connect` for an outgoing
/// connection, when the child socket is made for an incoming one. Each moves on only when data is
/// sent or received, so the larger of the two is the time since the handshake as long as one
/// direction has carried no data since: true of an accepted connection until the application
/// writes, and of an outgoing one until both directions have carried data. Precision: both
/// stamps are in jiffies, so the value is within one jiffy of the real time either way (1 to
/// 10 ms after CONFIG_HZ; 4 ms on the test machine), plus the truncation to milliseconds.
pub fn tcp_connected_for(fd: BorrowedFd<'_>) -> Option<Duration> {
    // SAFETY: tcp_info is plain data; zeroed is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: info and len are live and len is info's size.
    let r = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&raw mut info).cast(), &mut len)
    };
    // The times sit well inside the first 64 bytes, which every kernel with TCP_INFO fills.
    if r != 0 || (len as usize) < 64 {
        return None;
    }
    // Linux's TCP states (include/net/tcp_states.h): 1 ESTABLISHED, 2 SYN_SENT, 3 SYN_RECV,
    // 4 FIN_WAIT1, 5 FIN_WAIT2, 6 TIME_WAIT, 7 CLOSE, 8 CLOSE_WAIT, 9 LAST_ACK, 10 LISTEN,
    // 11 CLOSING.
    let established = matches!(info.tcpi_state, 1 | 4 | 5 | 6 | 8 | 9 | 11);
    established.then(|| Duration::from_millis(u64::from(info.tcpi_last_data_sent.max(info.tcpi_last_data_recv))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_is_readable_between_signal_and_drain() {
        let e = EventFd::new().unwrap();
        assert!(!wait_fd(e.as_fd(), false, Some(Duration::ZERO)).unwrap());
        e.signal();
        e.signal();
        assert!(wait_fd(e.as_fd(), false, Some(Duration::ZERO)).unwrap());
        e.drain();
        assert!(!wait_fd(e.as_fd(), false, Some(Duration::ZERO)).unwrap());
    }

    #[test]
    fn nested_epoll_is_readable_while_a_member_is() {
        let (a, b) = (EventFd::new().unwrap(), EventFd::new().unwrap());
        let ep = Epoll::new().unwrap();
        ep.add(a.as_fd(), 1, false).unwrap();
        ep.add(b.as_fd(), 2, false).unwrap();
        assert!(!wait_fd(ep.as_fd(), false, Some(Duration::ZERO)).unwrap());
        b.signal();
        assert!(wait_fd(ep.as_fd(), false, Some(Duration::ZERO)).unwrap());
        let mut ready = Vec::new();
        ep.ready(&mut ready);
        assert_eq!(ready, [2]);
        // Level-triggered: still ready until drained.
        assert!(wait_fd(ep.as_fd(), false, Some(Duration::ZERO)).unwrap());
        b.drain();
        assert!(!wait_fd(ep.as_fd(), false, Some(Duration::ZERO)).unwrap());
    }

    #[test]
    fn timerfd_fires_once_after_its_delay() {
        let t = TimerFd::new().unwrap();
        t.set(Some(Duration::from_millis(20)));
        assert!(!wait_fd(t.as_fd(), false, Some(Duration::ZERO)).unwrap());
        assert!(wait_fd(t.as_fd(), false, Some(Duration::from_secs(2))).unwrap());
        t.set(None);
        assert!(!wait_fd(t.as_fd(), false, Some(Duration::ZERO)).unwrap());
    }
}
