//! Switchyard's fast path.
//!
//! How it is put together, bottom up:
//! - [`dpdk`]: the safe layer over `dpdk-sys` (EAL, mempools, ports, mbufs); the only module with
//!   `unsafe` code.
//! - [`mem`]: per-engine arenas for connection buffers (hugepages when reserved) and socket
//!   storage; the only other module with `unsafe` code.
//! - [`phy`]: smoltcp devices: [`phy::MbufDevice`] over mbufs handed in and taken out (what an
//!   embedding gateway uses), [`phy::PortDevice`] (the same, glued to a DPDK port queue), and an
//!   in-memory link for deterministic tests.
//! - [`services`]: the built-in services (`echo`, `http`) as sans-I/O session state machines.
//! - [`engine`]: the TCP engine of one core: smoltcp interface, listeners, connections and the
//!   services that run on them. Pure logic over a device and a clock: it never touches DPDK.
//! - [`steer`]: software flow steering: which core owns a frame (Toeplitz, as RSS computes it),
//!   and the rings that hand frames to their owner.
//! - [`lcore`]: the per-core loop that drives a device and an engine, with idle back-off.
//! - [`bridge`]: how application threads reach an engine: command queues, bridged listeners and
//!   connections over lock-free byte rings (the fast provider of the control plane's switch).
//!
//! # Embedding the engine in a gateway that owns its DPDK loop
//!
//! A firewall, load balancer or router that already runs its own poll loop can terminate TCP for
//! some of the traffic it sees without giving its ports away. The engine owns no port, queue,
//! thread or clock: you hand it frames, it hands you frames. Per core, in your loop:
//!
//! 1. **Build** one [`engine::Engine`] per core with its own [`engine::EngineConfig`] (MAC,
//!    addresses, listeners, TIME_WAIT, buffer sizes) over an [`phy::MbufDevice`], which
//!    allocates the frames it sends from a mempool of yours. If your port does IPv4 and TCP
//!    checksums, make it with [`phy::MbufDevice::with_offloads`] and
//!    [`phy::ChecksumOffload::from_grant`]: smoltcp then leaves that work to the port (send
//!    with [`dpdk::Port::tx_burst`], which prepares the frames).
//! 2. **Classify** each received frame with [`engine::Engine::classify`]: a few header reads and
//!    table lookups, nothing changed. [`engine::Verdict::is_ours`] holds for TCP to the engine's
//!    address (a connection, a listener, or a closed port it will answer with an RST), ARP for its
//!    address, and other IP for its address (ping is answered). Everything else is yours.
//! 3. **Hand** the engine's frames in with [`phy::MbufDevice::handle`] (it gives an mbuf back when
//!    1024 wait: poll more often, or drop it).
//! 4. **Poll** with [`engine::Engine::poll`]`(now, &mut device)`, where `now` is your clock
//!    (microseconds, any origin, never going backwards). It processes what you handed in, runs
//!    timers and the connections that had something happen, and returns the next deadline: poll
//!    again by then even if no frame comes.
//! 5. **Collect** what it built with [`phy::MbufDevice::take_tx`] or
//!    [`phy::MbufDevice::pop_tx`] and put it on your own TX queue (the frames carry the peer's
//!    MAC: send them where that MAC lives).
//!
//! What runs on the connections is the same API the appliance uses:
//! - built-in services run inside `poll` on every listener of the config
//!   ([`services::ServiceKind`]: echo, http, hold);
//! - outgoing connections come from [`engine::Engine::connect`] with a session;
//! - application threads use the [`bridge`] (attach a [`bridge::Commands`] queue with
//!   [`engine::Engine::attach_commands`]; the control plane's socket switch is built on it).
//!
//! Nothing is global beyond what DPDK itself imposes (EAL once per process); the engine starts
//! no thread. The appliance is itself such a loop: its [`phy::PortDevice`] is the port glue around
//! an [`phy::MbufDevice`], and `dataplane/examples/gateway.rs` is a complete two-port gateway
//! (`sudo make gateway-demo` runs it between two namespaces).
//!
//! ```no_run
//! use dataplane::dpdk::{Burst, Eal, Mempool, MempoolConfig, Port, PortRequest, QueueId};
//! use dataplane::engine::{BacklogPolicy, Engine, EngineConfig, EngineInstant, ListenerSpec, OnFull};
//! use dataplane::phy::MbufDevice;
//! use dataplane::services::ServiceKind;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Your program: EAL, a pool, a port (here one, forwarding back out of it what is not ours).
//! let eal = Eal::init(["gw", "--no-huge", "-m", "256", "--no-pci", "--vdev=net_tap0,iface=gw0", "-l", "0"])?;
//! let pool = Mempool::new(&eal, "gw", &MempoolConfig::default())?;
//! let port = Port::open(&eal, eal.require_ports(1)?[0], &PortRequest::default(), pool.clone())?;
//!
//! // The engine: its own config and a device over your mbufs.
//! let mut cfg = EngineConfig::new(port.mac(), "198.18.0.2".parse()?, 24);
//! cfg.listeners.push(ListenerSpec {
//!     port: 7,
//!     service: ServiceKind::Echo,
//!     backlog: 128,
//!     policy: BacklogPolicy::Linux,
//!     on_full: OnFull::Refuse,
//! });
//! let start = std::time::Instant::now();
//! let now = || EngineInstant::from_micros(start.elapsed().as_micros() as i64);
//! let mut dev = MbufDevice::new(&pool);
//! let mut engine = Engine::new(&cfg, &mut dev, now())?;
//!
//! let (mut rx, mut tx) = (Burst::new(), Burst::new());
//! loop {
//!     port.rx_burst(QueueId(0), &mut rx);
//!     while let Some(m) = rx.pop() {
//!         if engine.classify(m.data()).is_ours() {
//!             let _ = dev.handle(m); // given back (and here dropped) only if 1024 wait
//!         } else {
//!             let _ = tx.push(m); // your own forwarding decision
//!         }
//!     }
//!     let _next_deadline = engine.poll(now(), &mut dev);
//!     while dev.take_tx(&mut tx) > 0 || !tx.is_empty() {
//!         if port.tx_burst(QueueId(0), &mut tx) == 0 {
//!             break; // the queue is full: what is left waits for the next turn
//!         }
//!     }
//! }
//! # }
//! ```
#![deny(unsafe_code)]

pub mod bridge;
pub mod dpdk;
pub mod engine;
pub mod lcore;
pub mod mem;
pub mod phy;
pub mod services;
pub mod steer;
