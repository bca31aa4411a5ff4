//! `switchyard`: the appliance's command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use control::config::{Config, Resolved};
use control::ctl::{CaptureRequest, Request};
use engine::services::LoadMode;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Kernel-bypass TCP data plane: DPDK ports, a smoltcp engine per core, built-in services"
)]
struct Cli {
    /// Log filter, as RUST_LOG takes it (e.g. info, debug, dataplane=trace).
    #[arg(long, global = true, default_value = "info", env = "SWITCHYARD_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the appliance until SIGINT or SIGTERM.
    Run {
        /// Configuration file; without it, the built-in default (one net_tap port `sy0`,
        /// 198.18.0.2/24, echo on 7 and HTTP on 80).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validates a configuration file (and the NIC profiles it names) without starting anything.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Generates TCP load with the engine over the config's first port (e.g. net_memif to an
    /// appliance): short connections or persistent requests to an echo service; prints the rate.
    Loadgen {
        #[arg(long, short)]
        config: PathBuf,
        /// The echo service to load, e.g. 198.18.0.2:7.
        #[arg(long)]
        target: std::net::SocketAddrV4,
        /// short (connect, request, response, close) or persistent (one request in flight each).
        #[arg(long, default_value = "short", value_parser = ["short", "persistent"])]
        mode: String,
        /// Connections kept going at once.
        #[arg(long, default_value_t = 64)]
        conns: usize,
        /// Seconds measured, after 0.5 s of warm-up.
        #[arg(long, default_value_t = 5)]
        secs: u64,
        /// Request (and response) size in bytes, 1 to 4096.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
        size: u16,
        /// Source addresses: the port's and the ones after it, 1 to 8.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=8))]
        sources: u8,
        /// Print the result as one line of JSON.
        #[arg(long)]
        json: bool,
    },
    /// Shows the running appliance's state (from its control socket): status, listeners, conns,
    /// stats. `--json` prints the answer as JSON.
    Ctl {
        /// The appliance's control socket (default: the one --config names, else
        /// /run/switchyard/switchyard.sock, the built-in default's).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// The appliance's configuration, to find its control socket.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print the answer as JSON.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        what: CtlCommand,
    },
    /// NIC profiles: `list` the built-in ones, `check FILE...` validates profile files.
    Profiles {
        #[command(subcommand)]
        what: ProfilesCommand,
    },
    /// Prints the EAL arguments a configuration starts DPDK with.
    EalArgs {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ProfilesCommand {
    /// The built-in profiles, with their device and queues.
    List,
    /// Validates profile files against the schema (fields, ranges, offload and RSS names).
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CtlCommand {
    /// Ports, cores, uptime and versions.
    Status,
    /// Listeners: address, service, backlog policy and limit, queued now, accepted, refused,
    /// dropped, silent clients closed.
    Listeners,
    /// Connections, like netstat: 4-tuple, state, core, connect time, bytes.
    Conns {
        /// At most this many per core and port.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Per core and port: frames, drops, connections, steering ring; per port: NIC counters and
    /// mbufs in use.
    Stats,
    /// Captures frames of a port, both directions, into a pcapng file (tshark, Wireshark).
    Capture {
        /// The port (its index in the config).
        #[arg(long, default_value_t = 0)]
        port: usize,
        /// Frames to capture.
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// The pcapng file to write (the appliance writes it).
        #[arg(long)]
        out: PathBuf,
        /// Bytes kept of each frame, 64 to 9000.
        #[arg(long, default_value_t = 1518, value_parser = clap::value_parser!(u32).range(64..=9000))]
        snaplen: u32,
        /// Stop after this many seconds even if fewer frames came.
        #[arg(long, default_value_t = 30)]
        secs: u64,
    },
}

fn load(config: Option<PathBuf>) -> anyhow::Result<Resolved> {
    match config {
        Some(p) => Ok(Config::load(&p)?),
        None => Ok(Config::demo()),
    }
}

/// `println!` for `run`: a write error is an error of the command, not a panic. A reader that went
/// away (`switchyard ctl stats | head -2`) ends the command quietly, in `main`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).context("writing to standard output")?
    }};
}

/// Whether `e` comes from a closed standard output (the reader of a pipe exited).
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|e| {
        eprintln!("switchyard: bad --log filter {:?} ({e}); using \"info\"", cli.log);
        tracing_subscriber::EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // As a command killed by SIGPIPE (128 + 13), without a message: scripts with pipefail
        // see what they see of `head` on any other tool.
        Err(e) if broken_pipe(&e) => ExitCode::from(141),
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config } => {
            let r = load(config)?;
            tracing::info!(config = %r.origin, "starting");
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                // A second signal while stopping exits at once.
                signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
                    .context("installing signal handlers")?;
                signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
            }
            control::appliance::run(&r, &stop)?;
            Ok(())
        }
        Command::Loadgen { config, target, mode, conns, secs, size, sources, json } => {
            let r = Config::load(&config)?;
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
            }
            let mode = if mode == "short" { LoadMode::Short } else { LoadMode::Persistent };
            let args = control::loadgen::LoadgenArgs { target, mode, conns, secs, size: size.into(), sources };
            let rep = control::loadgen::run(&r, &args, &stop)?;
            let unit = if mode == LoadMode::Short { "conns/s" } else { "req/s" };
            if json {
                let line = serde_json::json!({
                    "target": target,
                    "mode": if mode == LoadMode::Short { "short" } else { "persistent" },
                    "rate": rep.rate,
                    "unit": unit,
                    "conns": conns,
                    "size": size,
                    "secs": secs,
                    "completed": rep.completed,
                    "connected": rep.connected,
                    "failed": rep.failed,
                    "cut": rep.cut,
                    "busy": rep.busy,
                });
                out!("{line}");
                return Ok(());
            }
            out!(
                "loadgen {target}: {:.0} {unit} ({conns} at a time, {size} B, {secs} s); completed {} connected {} failed {} cut {} busy {:.1}%",
                rep.rate,
                rep.completed,
                rep.connected,
                rep.failed,
                rep.cut,
                100.0 * rep.busy
            );
            Ok(())
        }
        Command::Check { config } => {
            let r = Config::load(&config)?;
            out!("{}: ok ({} port(s), {} service(s))", r.origin, r.ports.len(), r.config.services.len());
            Ok(())
        }
        Command::Ctl { socket, config, json, what } => {
            let socket = match (socket, config) {
                (Some(s), _) => s,
                (None, Some(c)) => Config::load(&c)?.control_socket,
                (None, None) => Config::demo().control_socket,
            };
            let req = match what {
                CtlCommand::Status => Request::Status,
                CtlCommand::Listeners => Request::Listeners,
                CtlCommand::Conns { limit } => Request::Conns { limit },
                CtlCommand::Stats => Request::Stats,
                CtlCommand::Capture { port, count, out, snaplen, secs } => {
                    let out = std::path::absolute(&out).with_context(|| format!("--out {}", out.display()))?;
                    let out = out.to_string_lossy().into_owned();
                    Request::Capture { capture: CaptureRequest { port, count, out, snaplen, secs } }
                }
            };
            let data = control::ctl::request(&socket, &req)?;
            if json {
                out!("{}", serde_json::to_string_pretty(&data)?);
            } else {
                out!("{}", control::ctl::render(&req, data)?);
            }
            Ok(())
        }
        Command::Profiles { what: ProfilesCommand::List } => {
            let rows: Vec<Vec<String>> = control::profile::BUILT_IN
                .iter()
                .map(|(name, _)| {
                    let p = control::profile::NicProfile::resolve(name, None)
                        .expect("built-in profiles are valid (tested)");
                    vec![
                        p.name.clone(),
                        p.device.driver.clone(),
                        format!("{:?}", p.device.bus).to_lowercase(),
                        format!("{}x{}", p.queues.rx, p.queues.rx_desc),
                        p.rss.as_ref().map_or_else(|| "-".into(), |r| r.hash.join(",")),
                        p.description.clone(),
                    ]
                })
                .collect();
            out!("{}", control::ctl::table(&["PROFILE", "DRIVER", "BUS", "QUEUES", "RSS", "DESCRIPTION"], &rows));
            Ok(())
        }
        Command::Profiles { what: ProfilesCommand::Check { files } } => {
            let mut failed = 0;
            for f in &files {
                match control::profile::NicProfile::resolve(&f.to_string_lossy(), None) {
                    Ok(p) => out!("{}: ok (profile {}, driver {})", f.display(), p.name, p.device.driver),
                    Err(e) => {
                        eprintln!("{e}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} profile(s) invalid", files.len());
            }
            Ok(())
        }
        Command::EalArgs { config } => {
            let r = load(config)?;
            out!("{}", control::appliance::eal_args(&r).join(" "));
            Ok(())
        }
    }
}
