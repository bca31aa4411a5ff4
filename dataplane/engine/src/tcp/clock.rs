//! The timestamp clock (RFC 7323 §5.4): milliseconds of engine time plus an offset per engine,
//! so TSvals do not reveal the engine's uptime.
//!
//! smoltcp takes the generator of the TSvals on its SYN and SYN-ACK as a plain function, with no
//! context; so the engine stores the clock's current value in a thread-local before each poll
//! ([`set`]), and the generator ([`tsval`]) reads it. An engine runs on one thread at a time, and
//! every engine on a thread sets the clock before it polls.

use std::cell::Cell;

use smoltcp::time::Instant;

thread_local! {
    static NOW: Cell<u32> = const { Cell::new(0) };
}

/// The TSval at `now` for an engine whose clock is offset by `offset`.
pub fn value(now: Instant, offset: u32) -> u32 {
    (now.total_millis() as u32).wrapping_add(offset)
}

/// Sets the clock of this thread's engine for the poll about to run; returns the value.
pub fn set(now: Instant, offset: u32) -> u32 {
    let v = value(now, offset);
    NOW.with(|c| c.set(v));
    v
}

/// The generator smoltcp calls for a TSval.
pub fn tsval() -> u32 {
    NOW.with(|c| c.get())
}
