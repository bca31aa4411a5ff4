//! The listener's pump: what both the application's calls and the listener's worker thread run
//! under the listener's lock: taking arrivals from both providers, matching them to posted
//! accepts (A1), completing accepts on first data (A2), resetting silent clients (A4) and moving
//! the automatic mode's target (A3).

use super::*;

impl Shared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The worker (see [`Listener`]): sleeps on its epoll, then runs a round of [`Shared::pump`].
    pub(super) fn work_loop(&self) {
        loop {
            if sys::wait_fd(self.work.as_fd(), false, None).is_err() {
                // poll(2) on the listener's own epoll fd fails only for want of memory: try again soon.
                std::thread::sleep(Duration::from_millis(10));
            }
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            let mut st = self.lock();
            self.pump(&mut st);
        }
    }

    /// Once accepts are posted, arrivals are the worker's: the provider's listeners leave the
    /// application's epoll for the worker's (edge-triggered: one wake-up per arrival, not one per
    /// look while a connection waits). The application's fd then shows only `event`.
    pub(super) fn enter_worker_mode(&self, st: &mut State) {
        if st.worker_mode {
            return;
        }
        st.worker_mode = true;
        let mut moved = vec![(self.kernel.as_fd(), TOKEN_KERNEL)];
        if let Some(n) = &self.fast_event {
            moved.push((n.fd(), TOKEN_FAST));
        }
        for (fd, token) in moved {
            self.epoll.delete(fd);
            if let Err(e) = self.work.add_edge(fd, token) {
                // Arrivals are then matched only when the application calls in.
                tracing::warn!(local = %self.local, error = %e, "listener: the worker cannot watch for arrivals");
            }
        }
    }

    /// The next connection from either provider that the accept condition lets in.
    pub(super) fn take_incoming(&self, st: &mut State) -> Option<Socket> {
        loop {
            st.fast_first = !st.fast_first;
            let (socket, peer) = if st.fast_first {
                self.take_fast(st).or_else(|| self.take_kernel(st))?
            } else {
                self.take_kernel(st).or_else(|| self.take_fast(st))?
            };
            let condition = self.condition.lock().unwrap_or_else(|p| p.into_inner());
            if condition.as_ref().is_none_or(|f| f(&peer)) {
                return Some(socket);
            }
            st.counters.rejected += 1;
            socket.abort();
        }
    }

    pub(super) fn take_kernel(&self, st: &mut State) -> Option<(Socket, Peer)> {
        loop {
            match self.kernel.accept() {
                Ok((s, addr)) => {
                    let Some(remote) = addr.as_socket() else { continue };
                    if s.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = s.set_tcp_nodelay(true);
                    let local = s.local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(self.local);
                    st.counters.accepted_kernel += 1;
                    let peer = Peer { remote, local, provider: Provider::Kernel };
                    return Some((Socket::accepted(self.switch.clone(), Conn::Kernel(s), local, remote), peer));
                }
                // A connection reset while queued, say: the next one.
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(_) => return None,
            }
        }
    }

    pub(super) fn take_fast(&self, st: &mut State) -> Option<(Socket, Peer)> {
        let f = self.fast.as_ref()?;
        let c = f.pop()?;
        let (local, remote) = (SocketAddr::V4(c.local), SocketAddr::V4(c.remote));
        let conn = fast_conn(c.end).ok()?;
        st.counters.accepted_fast += 1;
        Some((
            Socket::accepted(self.switch.clone(), conn, local, remote),
            Peer { remote, local, provider: Provider::Fast },
        ))
    }

    /// One round: completes matched accepts whose first data came, gives waiting connections to
    /// posted accepts (growing the automatic mode's target when they run out), resets silent
    /// clients, ends the automatic mode's period, tops up or gives back posted accepts, re-arms
    /// the timer and sets the application's event. Run by the worker when it wakes and by every
    /// call of the application.
    pub(super) fn pump(&self, st: &mut State) {
        let now = Instant::now();
        // First data for matched connections (A2), and whether the timer went off.
        let mut ready = std::mem::take(&mut st.ready);
        self.work.ready(&mut ready);
        let mut timer_fired = false;
        for token in ready.drain(..) {
            match token {
                TOKEN_TIMER => timer_fired = true,
                t if t >= FIRST_CONN_TOKEN => self.try_first_data(st, t),
                _ => {}
            }
        }
        st.ready = ready;
        // Waiting connections into posted accepts (A1), then silent clients (A4), counted from
        // their handshake: a reset re-posts its accept, which may take a connection that waits.
        loop {
            self.match_waiting(st);
            if self.silent_limit.is_none() || !self.reap(st, now) {
                break;
            }
        }
        // A3: the end of a period.
        let mut new_period = false;
        if let Some(a) = st.auto.as_mut() {
            if now >= a.period_end {
                if !a.starved && a.low_water > 0 && a.low_water != usize::MAX {
                    a.target = a.target.saturating_sub(a.low_water.div_ceil(2)).max(a.cfg.min);
                }
                a.starved = false;
                a.period_end = now + a.cfg.shrink_after;
                new_period = true;
            }
        }
        self.fit_to_target(st);
        if new_period {
            let left = st.posted.len();
            if let Some(a) = st.auto.as_mut() {
                a.low_water = left;
            }
        }
        self.arm_timer(st, now, timer_fired);
        self.update_event(st);
    }

    /// Gives waiting connections to posted accepts (A1) until either runs out. In automatic mode an
    /// arrival that finds none grows the target (A3) and takes one of the accepts that makes.
    pub(super) fn match_waiting(&self, st: &mut State) {
        loop {
            if st.posted.is_empty() {
                let Some(max) = st.auto.as_ref().map(|a| a.cfg.max) else { break };
                if st.matched.len() >= max {
                    break; // at the bound: it waits in the provider's queue, and the event says so
                }
                let Some(socket) = self.take_incoming(st) else { break };
                if let Some(a) = st.auto.as_mut() {
                    a.target = (a.target * 2).clamp(1, a.cfg.max);
                    a.starved = true;
                    a.low_water = 0;
                }
                self.fit_to_target(st);
                if st.posted.is_empty() {
                    self.post_auto(st); // not reached (matched < max leaves room), but never lose it
                }
                self.match_one(st, socket);
                continue;
            }
            let Some(socket) = self.take_incoming(st) else { break };
            self.match_one(st, socket);
        }
        if let Some(a) = st.auto.as_mut() {
            a.low_water = a.low_water.min(st.posted.len());
        }
    }

    /// A3: gives back the newest auto-posted accepts over the target (counted), then posts up to
    /// the target within the bound on outstanding accepts.
    pub(super) fn fit_to_target(&self, st: &mut State) {
        let Some((target, max)) = st.auto.as_ref().map(|a| (a.target, a.cfg.max)) else { return };
        while st.posted.len() > target {
            let Some(i) = st.posted.iter().rposition(|p| p.auto) else { break };
            st.posted.remove(i);
            st.counters.auto_released += 1;
        }
        while st.posted.len() < target && st.posted.len() + st.matched.len() < max {
            self.post_auto(st);
        }
    }

    pub(super) fn post_auto(&self, st: &mut State) {
        let receive_len = st.auto.as_ref().map_or(0, |a| a.cfg.receive_len);
        let id = st.next_id;
        st.next_id += 1;
        st.posted.push_back(Posted { id, receive_len, auto: true });
        st.counters.auto_posted += 1;
    }

    /// Gives a connection to the first posted accept (the caller made sure there is one).
    pub(super) fn match_one(&self, st: &mut State, socket: Socket) {
        let Some(posted) = st.posted.pop_front() else {
            // Not reached: every caller checks. A connection with no accept is reset, not lost.
            socket.abort();
            return;
        };
        if posted.receive_len == 0 {
            st.counters.completed += 1;
            st.done.push_back(AcceptCompletion { id: posted.id, socket, data: Vec::new() });
            return;
        }
        let token = st.next_token;
        st.next_token += 1;
        if let Some(fd) = socket.event_fd() {
            // Cannot fail for a fresh fd; if it did, the first-data check below still runs now.
            let _ = self.work.add(fd, token, false);
        }
        // A4: the silent-client clock is the connect time (A5): it runs from the handshake, not
        // from now.
        let deadline = self.silent_limit.map(|limit| socket.established_at().unwrap_or_else(Instant::now) + limit);
        st.matched.insert(token, Matched { posted, socket, deadline });
        self.try_first_data(st, token);
    }

    /// Completes a matched accept if its first data is there (A2).
    pub(super) fn try_first_data(&self, st: &mut State, token: u64) {
        let Some(m) = st.matched.get_mut(&token) else { return };
        m.socket.clear_event();
        let mut buf = vec![0u8; m.posted.receive_len];
        let outcome = m.socket.read(&mut buf);
        let gone = match outcome {
            Ok(0) => true,
            Ok(n) => {
                buf.truncate(n);
                let m = st.matched.remove(&token).expect("present");
                if let Some(fd) = m.socket.event_fd() {
                    self.work.delete(fd);
                }
                st.counters.completed += 1;
                st.done.push_back(AcceptCompletion { id: m.posted.id, socket: m.socket, data: buf });
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                m.socket.arm();
                if m.socket.has_data() {
                    return self.try_first_data(st, token);
                }
                false
            }
            Err(_) => true,
        };
        if gone {
            // Closed or reset before sending anything: the accept waits for another client.
            let m = st.matched.remove(&token).expect("present");
            if let Some(fd) = m.socket.event_fd() {
                self.work.delete(fd);
            }
            st.counters.abandoned += 1;
            st.posted.push_front(m.posted);
        }
    }

    /// A4: resets matched connections whose deadline has passed without data; their accepts stay
    /// posted. Returns whether it reset any.
    pub(super) fn reap(&self, st: &mut State, now: Instant) -> bool {
        let due: Vec<u64> =
            st.matched.iter().filter(|(_, m)| m.deadline.is_some_and(|d| d <= now)).map(|(&t, _)| t).collect();
        let mut any = false;
        for token in due {
            // A last look: data that came since the last wake-up completes the accept instead.
            self.try_first_data(st, token);
            let Some(m) = st.matched.remove(&token) else { continue };
            if let Some(fd) = m.socket.event_fd() {
                self.work.delete(fd);
            }
            m.socket.abort();
            st.counters.silent_closed += 1;
            if let Some(f) = &self.fast {
                f.silent_closed.fetch_add(1, Ordering::Relaxed);
            }
            st.posted.push_front(m.posted);
            any = true;
        }
        any
    }

    /// Arms the worker's timer for the next silent deadline (A4) or the automatic mode's period
    /// end (A3, only while the target is above its floor: below nothing can shrink).
    pub(super) fn arm_timer(&self, st: &mut State, now: Instant, fired: bool) {
        let silent = st.matched.values().filter_map(|m| m.deadline).min();
        let period = st.auto.as_ref().filter(|a| a.target > a.cfg.min).map(|a| a.period_end);
        let next = match (silent, period) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if fired || next != st.timer_at {
            self.timer.set(next.map(|d| d.saturating_duration_since(now)));
            st.timer_at = next;
        }
    }

    /// Sets the application's event: up while a completion waits, or (in worker mode) while a
    /// connection waits with no posted accept for it (A3, L5).
    pub(super) fn update_event(&self, st: &mut State) {
        if let Some(f) = &self.fast {
            f.settle();
        }
        let up = !st.done.is_empty() || (st.worker_mode && st.posted.is_empty() && self.waiting());
        if up != st.event_up {
            if up {
                self.event.signal();
            } else {
                self.event.drain();
            }
            st.event_up = up;
        }
    }

    /// Whether a connection waits in either provider's queue.
    pub(super) fn waiting(&self) -> bool {
        self.fast.as_ref().is_some_and(|f| f.queued() > 0)
            || sys::wait_fd(self.kernel.as_fd(), false, Some(Duration::ZERO)).unwrap_or(false)
    }
}
