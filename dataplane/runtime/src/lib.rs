//! Switchyard's per-core runtime: what puts the engine on DPDK ports and in reach of application
//! threads.
//!
//! How the fast path is put together, bottom up (one crate each):
//! - `dpdk-sys`: bindings to the system DPDK; `dpdk`: the safe layer over them (EAL, mempools,
//!   mbufs, ports, telemetry, pcapng, Toeplitz).
//! - `engine`: the TCP engine of one core and its built-in services; pure logic over a frame
//!   device and a clock, no DPDK.
//! - this crate, the runtime:
//!   - [`device`]: the engine's devices over DPDK mbufs and port queues;
//!   - [`steer`]: software flow steering: which core owns a frame (Toeplitz, as RSS computes it),
//!     and the rings that hand frames to their owner;
//!   - [`lcore`]: the per-core loop that drives devices and engines, with idle back-off;
//!   - [`bridge`]: how application threads reach an engine: command queues, bridged listeners and
//!     connections over lock-free byte rings (the fast provider of the control plane's switch);
//!   - [`Service`] and [`Session`]: what runs on the runtime's engines, the built-in services
//!     and the bridge together; [`Engine`] is the engine that runs them.
//!
//! # Embedding the engine in a gateway that owns its DPDK loop
//!
//! A firewall, load balancer or router that already runs its own poll loop can terminate TCP for
//! some of the traffic it sees without giving its ports away. The engine owns no port, queue,
//! thread or clock: you hand it frames, it hands you frames. Per core, in your loop:
//!
//! 1. **Build** one [`engine::Engine`] per core with its own [`engine::EngineConfig`] (MAC,
//!    addresses, listeners, TIME_WAIT, buffer sizes) over an [`device::MbufDevice`], which
//!    allocates the frames it sends from a mempool of yours. If your port does IPv4 and TCP
//!    checksums, make it with [`device::MbufDevice::with_offloads`] and
//!    [`device::ChecksumOffload::from_grant`]: smoltcp then leaves that work to the port (send
//!    with [`dpdk::Port::tx_burst`], which prepares the frames).
//! 2. **Classify** each received frame with [`engine::Engine::classify`]: a few header reads and
//!    table lookups, nothing changed. [`engine::Verdict::is_ours`] holds for TCP to the engine's
//!    address (a connection, a listener, or a closed port it will answer with an RST), ARP for its
//!    address, and other IP for its address (ping is answered). Everything else is yours.
//! 3. **Hand** the engine's frames in with [`device::MbufDevice::handle`] (it gives an mbuf back when
//!    1024 wait: poll more often, or drop it).
//! 4. **Poll** with [`engine::Engine::poll`]`(now, &mut device)`, where `now` is your clock
//!    (microseconds, any origin, never going backwards). It processes what you handed in, runs
//!    timers and the connections that had something happen, and returns the next deadline: poll
//!    again by then even if no frame comes.
//! 5. **Collect** what it built with [`device::MbufDevice::take_tx`] or
//!    [`device::MbufDevice::pop_tx`] and put it on your own TX queue (the frames carry the peer's
//!    MAC: send them where that MAC lives).
//!
//! What runs on the connections is the same API the appliance uses:
//! - built-in services run inside `poll` on every listener of the config
//!   ([`engine::services::ServiceKind`]: echo, http, hold);
//! - outgoing connections come from [`engine::Engine::connect`] with a session;
//! - application threads use the [`bridge`]: run an engine of this crate's [`Service`] with a
//!   [`Attachment`] over its [`bridge::Commands`] queue, called before each poll (as
//!   [`lcore::Lane::poll`] does); the control plane's socket switch is built on it.
//!
//! Nothing is global beyond what DPDK itself imposes (EAL once per process); the engine starts
//! no thread. The appliance is itself such a loop: its [`device::PortDevice`] is the port glue around
//! an [`device::MbufDevice`], and `dataplane/runtime/examples/gateway.rs` is a complete two-port gateway
//! (`sudo make gateway-demo` runs it between two namespaces).
//!
//! ```no_run
//! use dpdk::{Burst, Eal, Mempool, MempoolConfig, Port, PortRequest, QueueId};
//! use engine::services::ServiceKind;
//! use engine::{BacklogPolicy, Engine, EngineConfig, EngineInstant, ListenerSpec, OnFull};
//! use runtime::device::MbufDevice;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Your program: EAL, a pool, a port (here one, forwarding back out of it what is not ours).
//! let eal = Eal::init(["gw", "--no-huge", "-m", "256", "--no-pci", "--vdev=net_tap0,iface=gw0", "-l", "0"])?;
//! let pool = Mempool::new(&eal, "gw", &MempoolConfig::default())?;
//! let port = Port::open(&eal, eal.require_ports(1)?[0], &PortRequest::default(), pool.clone())?;
//!
//! // The engine: its own config and a device over your mbufs.
//! let mut cfg: EngineConfig = EngineConfig::new(port.mac(), "198.18.0.2".parse()?, 24);
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
//! let mut engine: Engine = Engine::new(&cfg, &mut dev, now())?;
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

mod attachment;
pub mod bridge;
pub mod device;
pub mod lcore;
mod service;
pub mod steer;

pub use attachment::Attachment;
pub use service::{Service, Session};

/// The engine of the runtime's cores: the built-in services and the bridge on its listeners.
pub type Engine = engine::Engine<Service>;
