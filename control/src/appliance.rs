//! The appliance: EAL, one mempool and port per configured port, one engine per port, and the
//! per-core loop, on the main lcore, until a stop is requested. Everything is released in reverse
//! order on the way out (devices, ports stopped and closed, mempools freed, EAL cleaned up; net_tap
//! removes its tap when the port closes).

use std::net::SocketAddrV4;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use dpdk::clock::TscClock;
use dpdk::launch::{self, LaunchError};
use dpdk::pcapng::CaptureHook;
use dpdk::{DpdkError, Eal, Mempool, MempoolConfig, Port, PortRequest, QueueId};
use engine::services::{HttpConfig, ServiceKind};
use engine::{EngineConfig, EngineError, EngineInstant, ListenerSpec};
use runtime::device::PortDevice;
use runtime::lcore::{self, Lane, LoopConfig, LoopStats, SnapshotRequests, StopOnPanic};
use runtime::steer::SteerCtx;

use runtime::bridge::Commands;
use runtime::{Attachment, Engine, Service};

use crate::config::{Resolved, ServiceSection};
use crate::ctl;
use crate::profile::Bus;
use crate::proxy::{Proxy, ProxyConfig};
use crate::switch::{FastPath, FastPort, Switch};

#[derive(Debug, thiserror::Error)]
pub enum ApplianceError {
    #[error(transparent)]
    Dpdk(#[from] DpdkError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("engine.cores = {cores} but EAL has {lcores} lcore(s) (eal.lcores = {given:?}): give eal.lcores at least {cores}, e.g. \"0-{last}\" or \"(0-{last})@(0-1)\"", last = cores - 1)]
    Lcores { cores: u16, lcores: usize, given: String },
    #[error("port {port}: {cores} cores need {cores} rx and tx queues, the device granted {rx} rx and {tx} tx: lower engine.cores")]
    Queues { port: usize, cores: u16, rx: u16, tx: u16 },
    #[error("port {port}: {error}")]
    Engine { port: usize, error: EngineError },
    #[error("reading a random seed from /dev/urandom: {0}")]
    Random(std::io::Error),
    #[error("starting the applications' thread: {0}")]
    Thread(std::io::Error),
    #[error("control socket {path}: {error}")]
    Control { path: String, error: std::io::Error },
    #[error("metrics.listen {addr}: {error} (pick another address, or \"\" for none)")]
    Metrics { addr: String, error: std::io::Error },
}

/// The EAL argument list for a configuration (program name first).
pub fn eal_args(r: &Resolved) -> Vec<String> {
    let e = &r.config.eal;
    let mut args = vec![
        "switchyard".to_owned(),
        format!("--lcores={}", e.lcores),
        "-m".to_owned(),
        e.memory_mb.to_string(),
        format!("--file-prefix={}", e.file_prefix),
    ];
    // Without shared config two DPDK processes never collide; memif needs the channel it disables.
    if !r.ports.iter().any(|p| p.profile.device.mp_channel) {
        args.push("--no-shconf".to_owned());
    }
    if e.no_huge {
        args.push("--no-huge".to_owned());
    }
    let any_pci = r.ports.iter().any(|p| p.profile.device.bus == Bus::Pci);
    if !any_pci {
        args.push("--no-pci".to_owned());
    }
    for (i, p) in r.ports.iter().enumerate() {
        let devargs: Vec<&str> =
            [p.profile.device.devargs.as_str(), p.devargs.as_str()].into_iter().filter(|s| !s.is_empty()).collect();
        match p.profile.device.bus {
            Bus::Vdev => {
                let mut v = format!("--vdev={}{i}", p.profile.device.driver);
                for d in devargs {
                    v.push(',');
                    v.push_str(d);
                }
                args.push(v);
            }
            Bus::Pci => {
                args.push("-a".to_owned());
                args.push(devargs.join(","));
            }
        }
    }
    args.extend(e.args.iter().cloned());
    args
}

fn random_seed() -> Result<u64, ApplianceError> {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).map_err(ApplianceError::Random)?;
    Ok(u64::from_ne_bytes(b))
}

/// The built-in services that run inside the engines (the proxy runs on the switch instead).
fn listeners(r: &Resolved) -> Vec<ListenerSpec> {
    r.config
        .services
        .iter()
        .filter_map(|s| {
            let service = match s {
                ServiceSection::Echo { .. } => ServiceKind::Echo,
                ServiceSection::Http { body, content_type, header_timeout_secs, .. } => {
                    let mut http = HttpConfig::new(body.as_bytes(), content_type);
                    if *header_timeout_secs > 0 {
                        http = http.with_header_timeout(Duration::from_secs(*header_timeout_secs));
                    }
                    ServiceKind::Http(Arc::new(http))
                }
                ServiceSection::Hold { .. } => ServiceKind::Hold,
                ServiceSection::Proxy { .. } => return None,
            };
            let l = s.listen();
            Some(ListenerSpec {
                port: l.port,
                service,
                backlog: l.backlog,
                // validated when the config was parsed
                policy: l.policy.parse().expect("validated policy"),
                on_full: l.on_full.parse().expect("validated on_full"),
            })
        })
        .collect()
}

/// The proxies of the config, on the first port's address.
fn proxies(r: &Resolved) -> Vec<ProxyConfig> {
    let address = r.ports[0].address;
    r.config
        .services
        .iter()
        .filter_map(|s| match s {
            ServiceSection::Proxy {
                port,
                backlog,
                policy,
                on_full,
                upstreams,
                retry_secs,
                silent_secs,
                first_data,
            } => Some(ProxyConfig {
                listen: (address, *port).into(),
                backlog: *backlog,
                policy: policy.parse().expect("validated policy"),
                on_full: on_full.parse().expect("validated on_full"),
                upstreams: upstreams.iter().map(|u| u.parse().expect("validated upstream")).collect(),
                retry: Duration::from_secs(*retry_secs),
                silent: Duration::from_secs(*silent_secs),
                first_data: *first_data,
                connect_timeout: Duration::from_secs(r.config.switch.connect_timeout_secs.min(10)),
            }),
            _ => None,
        })
        .collect()
}

/// Runs the appliance until `stop` is set.
pub fn run(r: &Resolved, stop: &AtomicBool) -> Result<(), ApplianceError> {
    run_with_switch(r, stop, |_| {})
}

/// Command queue slots per engine (requests from application threads through the switch).
const COMMAND_QUEUE: usize = 4096;

/// Runs the appliance until `stop` is set, with applications on the socket switch: once the
/// engines are built, `apps` runs on a thread of its own with a [`Switch`] over the first port's
/// engines (the fast path) and the kernel path. The thread is not joined: applications end when
/// they see fit (after `stop`, the fast path no longer answers).
///
/// ```no_run
/// # let r = control::config::Config::demo();
/// # let stop = std::sync::atomic::AtomicBool::new(false);
/// control::appliance::run_with_switch(&r, &stop, |switch| {
///     let listener = switch.listen("0.0.0.0:7007".parse().unwrap(), Default::default()).unwrap();
///     // accept from both providers...
/// })?;
/// # Ok::<(), control::appliance::ApplianceError>(())
/// ```
///
/// With `engine.cores = N`, every port gets N rx/tx queue pairs; core `c` runs one engine per port
/// on queue `c`, on the `c`-th EAL lcore (the first on the calling thread). Frames a queue receives
/// for a flow another core owns are handed to that core (`runtime::steer`).
pub fn run_with_switch(
    r: &Resolved,
    stop: &AtomicBool,
    apps: impl FnOnce(Switch) + Send + 'static,
) -> Result<(), ApplianceError> {
    let args = eal_args(r);
    let eal = Eal::init(&args)?;
    let ids = eal.require_ports(r.ports.len())?;
    let cores = r.config.engine.cores;
    let lcores = launch::lcores(&eal).len();
    if lcores < usize::from(cores) {
        return Err(ApplianceError::Lcores { cores, lcores, given: r.config.eal.lcores.clone() });
    }

    let mut pools = Vec::new();
    let mut ports = Vec::new();
    for (i, (p, id)) in r.ports.iter().zip(&ids).enumerate() {
        let pool = Mempool::new(
            &eal,
            &format!("sy_rx_{i}"),
            &MempoolConfig { mbufs: p.profile.mempool.mbufs, cache: p.profile.mempool.cache, ..Default::default() },
        )?;
        let req = PortRequest {
            rx_queues: cores,
            tx_queues: cores,
            rx_desc: p.profile.queues.rx_desc,
            tx_desc: p.profile.queues.tx_desc,
            rx_offloads: p.profile.offloads.rx.clone(),
            tx_offloads: p.profile.offloads.tx.clone(),
            promiscuous: p.profile.promiscuous,
            rss: p.profile.rss.as_ref().map(|r| r.request()),
        };
        let port = Port::open(&eal, *id, &req, pool.clone())?;
        let g = port.grant();
        if g.rx_queues < cores || g.tx_queues < cores {
            return Err(ApplianceError::Queues { port: i, cores, rx: g.rx_queues, tx: g.tx_queues });
        }
        ports.push(port);
        pools.push(pool);
    }
    // Per port, one steering context per core (none with one core).
    // The software Toeplitz uses the key the NIC's RSS was given, so both agree on a flow's core.
    let steering: Vec<Vec<SteerCtx>> = r
        .ports
        .iter()
        .map(|p| match (cores > 1, &p.profile.rss) {
            (false, _) => Vec::new(),
            (true, Some(rss)) => SteerCtx::for_cores_keyed(cores, STEER_RING, rss.steering_key()),
            (true, None) => SteerCtx::for_cores(cores, STEER_RING),
        })
        .collect();

    let specs = listeners(r);
    let loop_cfg = LoopConfig {
        busy_poll: r.config.engine.busy_poll,
        idle_polls: r.config.engine.idle_polls,
        max_idle_sleep: r.config.engine.idle_sleep_max(),
    };
    let now = EngineInstant::from_millis(0); // each loop's clock starts at zero too
    let mut per_core: Vec<Vec<Lane<PortDevice>>> = Vec::new();
    // `ctl capture`: a hook on every core's device of every port.
    let mut captures: Vec<Vec<Arc<CaptureHook>>> = r.ports.iter().map(|_| Vec::new()).collect();
    let mut commands = Vec::new();
    let mut checksums = Vec::new();
    for core in 0..cores {
        let mut lanes = Vec::new();
        for (i, ((p, port), pool)) in r.ports.iter().zip(&ports).zip(&pools).enumerate() {
            let queue = QueueId(core);
            let hook = Arc::new(CaptureHook::default());
            captures[i].push(hook.clone());
            let mut device = match steering[i].get(usize::from(core)) {
                Some(ctx) => PortDevice::with_steering(port, queue, pool, ctx.clone()),
                None => PortDevice::new(port, queue, pool),
            }
            .with_capture(hook);
            if p.unchecked {
                device = device.unchecked();
            }
            if let Some((plan, seed)) = p.faults {
                // Each core's queue and each direction draws from a stream of its own.
                device = device.with_faults(plan, plan, seed.wrapping_add(2 * u64::from(core)));
                if core == 0 {
                    tracing::warn!(port = i, ?plan, seed, "a faulty wire on this port (tests and benchmarks only)");
                }
            }
            if core == 0 {
                checksums.push(device.checksum_mode().to_string()); // the same on every core
            }
            let g = &r.config.engine;
            let cfg = EngineConfig {
                mac: port.mac(),
                address: p.address,
                prefix_len: p.prefix_len,
                extra_addresses: Vec::new(),
                gateway: p.gateway,
                listeners: specs.clone(),
                tcp_rx_buffer: g.tcp_rx_buffer,
                tcp_tx_buffer: g.tcp_tx_buffer,
                random_seed: random_seed()?,
                time_wait: Duration::from_secs(g.time_wait_secs),
                max_backlog: g.max_backlog,
                max_connections: g.max_connections,
                syn_backlog: g.syn_backlog,
                max_time_wait: g.max_time_wait,
                tcp_timeout: Duration::from_secs(g.tcp_timeout_secs),
                buffer_idle: g.buffer_idle(),
                engine_tcp: !g.smoltcp_established,
                tcp: g.tcp(),
                syn_cookies: g.syn_cookies(),
            }
            .map_services(Service::from);
            let mut engine =
                Engine::new(&cfg, &mut device, now).map_err(|error| ApplianceError::Engine { port: i, error })?;
            let mut bridge = None;
            if i == 0 {
                let q = Arc::new(Commands::new(COMMAND_QUEUE));
                bridge = Some(Attachment::new(q.clone()));
                commands.push(q);
            }
            if let Some(ctx) = steering[i].get(usize::from(core)) {
                // Flow affinity: outgoing connections use source ports whose replies this core
                // receives (the same Toeplitz hash and table that steer incoming frames).
                let (steer, me) = (ctx.steering.clone(), ctx.me);
                // Every core sees every ARP frame and learns from it; core 0 alone answers.
                engine.set_arp_replies(me == 0);
                engine.set_affinity(move |t| {
                    steer.owner_of_reply(
                        SocketAddrV4::new(t.remote_ip, t.remote_port),
                        SocketAddrV4::new(t.local_ip, t.local_port),
                    ) == me
                });
            }
            tracing::info!(
                core,
                port = i,
                device = port.name(),
                mac = %dpdk::format_mac(&port.mac()),
                address = %format!("{}/{}", p.address, p.prefix_len),
                link_up = port.link_up(),
                "engine up"
            );
            lanes.push(Lane { engine, device, bridge });
        }
        per_core.push(lanes);
    }
    tracing::info!(
        services = %r.config.services.iter().map(|s| format!("{}:{}", s.kind(), s.port())).collect::<Vec<_>>().join(" "),
        cores,
        busy_poll = loop_cfg.busy_poll,
        "switchyard ready"
    );

    let p0 = &r.ports[0];
    let mut fast =
        FastPath::new(FastPort { address: p0.address, prefix_len: p0.prefix_len, gateway: p0.gateway }, commands);
    if let Some(ctx) = steering[0].first() {
        // A connect from a bound port goes to the core that receives its replies.
        let steer = ctx.steering.clone();
        fast = fast.with_reply_owner(Arc::new(move |local, remote| usize::from(steer.owner_of_reply(remote, local))));
    }
    let switch = Switch::new(Some(fast), r.switch_config());
    let proxy_switch = switch.clone();
    std::thread::Builder::new()
        .name("switch-apps".into())
        .spawn(move || apps(switch))
        .map_err(ApplianceError::Thread)?;

    // `switchyard ctl`: a control thread answers on a Unix socket, asking each core's loop for a
    // snapshot between its turns.
    let socket = &r.control_socket;
    let control =
        ctl::bind(socket).map_err(|error| ApplianceError::Control { path: socket.display().to_string(), error })?;
    tracing::info!(socket = %socket.display(), "control socket");
    let metrics = match r.metrics {
        Some(a) => {
            let l = std::net::TcpListener::bind(a)
                .map_err(|error| ApplianceError::Metrics { addr: a.to_string(), error })?;
            tracing::info!(address = %a, "Prometheus metrics at /metrics");
            Some(l)
        }
        None => None,
    };
    let requests: Vec<SnapshotRequests> = (0..cores).map(|_| SnapshotRequests::new(16)).collect();
    // A stop request (SIGTERM) starts a drain; `halt` ends the cores' loops after it.
    let (drain, halt) = (AtomicBool::new(false), AtomicBool::new(false));

    // One clock for every core: engines' times must never go backwards.
    let tsc = TscClock::new(&eal);
    let tasks: Vec<Box<dyn FnOnce() + Send + '_>> = per_core
        .into_iter()
        .enumerate()
        .map(|(core, mut lanes)| {
            let cfg = loop_cfg.clone();
            let requests = &requests[core];
            let (halt, drain) = (&halt, &drain);
            Box::new(move || {
                let stats = lcore::run_answering(&mut lanes, &cfg, halt, &tsc, Some((requests, core)), Some(drain));
                log_totals(core, &lanes, &stats);
            }) as Box<dyn FnOnce() + Send + '_>
        })
        .collect();
    let steer_rings: Vec<Vec<Arc<dyn Fn() -> usize + Send + Sync>>> = steering
        .iter()
        .map(|per_core| {
            per_core
                .iter()
                .map(|ctx| {
                    let (inboxes, me) = (ctx.inboxes.clone(), usize::from(ctx.me));
                    Arc::new(move || inboxes[me].len()) as Arc<dyn Fn() -> usize + Send + Sync>
                })
                .collect()
        })
        .collect();
    let ctx = ctl::Context {
        started: std::time::Instant::now(),
        config: r.origin.clone(),
        ports: &ports,
        pools: &pools,
        addresses: r
            .ports
            .iter()
            .map(|p| (format!("{}/{}", p.address, p.prefix_len), p.gateway.map(|g| g.to_string())))
            .collect(),
        checksums,
        cores,
        requests: &requests,
        steer_rings,
        eal: &eal,
        captures,
    };
    let done = AtomicBool::new(false);
    let drain_for = Duration::from_secs(r.config.engine.drain_secs);
    let launched = std::thread::scope(|scope| {
        // Each thread beside the cores stops them if it panics (the scope then re-raises it):
        // the appliance ends rather than running on without its control socket or a proxy.
        spawn_halting(scope, &halt, "the control socket's thread", || {
            ctl::serve(control, socket.clone(), &ctx, &[&halt, &done])
        });
        if let Some(l) = metrics {
            spawn_halting(scope, &halt, "the metrics thread", || ctl::serve_metrics(l, &ctx, &[&halt, &done]));
        }
        // DPDK telemetry: our commands beside /ethdev/... (dpdk-telemetry.py -f <file_prefix>).
        match dpdk::telemetry::register(&eal, ctl::TELEMETRY_COMMANDS) {
            Ok(()) => {
                let (tx, rx) = std::sync::mpsc::channel();
                dpdk::telemetry::connect(tx);
                spawn_halting(scope, &halt, "the telemetry thread", || ctl::serve_telemetry(rx, &ctx, &[&halt, &done]));
            }
            Err(e) => tracing::warn!(error = %e, "telemetry commands not registered"),
        }
        spawn_halting(scope, &halt, "the drain thread", || {
            drain_then_halt(&ctx, stop, &done, &drain, &halt, drain_for)
        });
        // The proxies: applications of the switch, on threads of their own.
        for cfg in proxies(r) {
            let (switch, halt, done) = (proxy_switch.clone(), &halt, &done);
            spawn_halting(scope, halt, "a proxy's thread", move || {
                let listen = cfg.listen;
                match Proxy::new(switch, cfg) {
                    Ok(p) => p.run_until(&[halt, done]),
                    Err(e) => tracing::error!(%listen, error = %e, "proxy could not listen"),
                }
            });
        }
        // Set also while a core's panic unwinds (re-raised here once every core has stopped), so
        // the threads above end and the process exits instead of waiting on them.
        let _done = SetOnDrop(&done);
        launch::run_on_lcores(&eal, tasks)
    });
    drop(ctx);
    drop(steering); // rings still holding frames free them here, before the pools go
    drop(ports);
    drop(pools);
    drop(eal);
    launched?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Spawns `f` on `scope` holding a [`StopOnPanic`] on `halt`: if `f` panics, the cores stop.
fn spawn_halting<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    halt: &'env AtomicBool,
    what: &'static str,
    f: impl FnOnce() + Send + 'scope,
) {
    scope.spawn(move || {
        let _stop_on_panic = StopOnPanic::new(halt, what);
        f()
    });
}

/// Sets its flag when dropped, by a return or by a panic unwinding.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Waits for a stop request; then drains (listeners refuse, open connections go on) until none is
/// left or `drain_for` has passed, and halts the cores, which reset what is still open.
fn drain_then_halt(
    ctx: &ctl::Context<'_>,
    stop: &AtomicBool,
    done: &AtomicBool,
    drain: &AtomicBool,
    halt: &AtomicBool,
    drain_for: Duration,
) {
    use std::sync::atomic::Ordering::Relaxed;
    while !stop.load(Relaxed) {
        if done.load(Relaxed) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !drain_for.is_zero() {
        drain.store(true, Relaxed);
        let deadline = std::time::Instant::now() + drain_for;
        tracing::info!(secs = drain_for.as_secs(), "draining: listeners refuse new connections; open ones may finish");
        loop {
            match ctx.open_connections() {
                Ok(0) => {
                    tracing::info!("drained: no connection left");
                    break;
                }
                Ok(open) if std::time::Instant::now() >= deadline => {
                    tracing::info!(open, "drain deadline: resetting what is left");
                    break;
                }
                Err(e) if std::time::Instant::now() >= deadline => {
                    tracing::warn!(error = %e, "drain deadline");
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
            if done.load(Relaxed) {
                return;
            }
        }
    }
    halt.store(true, Relaxed);
}

/// Frames a core's ring holds for it from the other cores of a port.
const STEER_RING: usize = 4096;

fn log_totals(core: usize, lanes: &[Lane<PortDevice>], stats: &LoopStats) {
    for (i, lane) in lanes.iter().enumerate() {
        let d = lane.device.stats();
        let e = lane.engine.stats();
        let p = lane.device.port().stats();
        tracing::info!(
            core,
            port = i,
            rx_frames = d.rx_frames,
            tx_frames = d.tx_frames,
            steered_out = d.steered_out,
            steered_in = d.steered_in,
            steer_dropped = d.steer_dropped,
            tx_nombuf = d.tx_nombuf,
            tx_queue_full = d.tx_queue_full,
            rx_multiseg_dropped = d.rx_multiseg_dropped,
            rx_bad_checksum = d.rx_bad_checksum,
            port_rx_missed = p.rx_missed,
            established = e.established,
            closed = e.closed,
            open = e.open,
            no_listener = e.no_listener,
            arp_requests = e.arp_requests,
            arp_replies = e.arp_replies,
            neighbors = e.neighbors,
            "port totals"
        );
    }
    tracing::info!(core, turns = stats.turns, idle_sleeps = stats.idle_sleeps, "core stopping");
}
