//! `switchyard`: the appliance's command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use control::config::{Config, Resolved};

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
    /// Prints the EAL arguments a configuration starts DPDK with.
    EalArgs {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn load(config: Option<PathBuf>) -> anyhow::Result<Resolved> {
    match config {
        Some(p) => Ok(Config::load(&p)?),
        None => Ok(Config::demo()),
    }
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
        Command::Check { config } => {
            let r = Config::load(&config)?;
            println!("{}: ok ({} port(s), {} service(s))", r.origin, r.ports.len(), r.config.services.len());
            Ok(())
        }
        Command::EalArgs { config } => {
            let r = load(config)?;
            println!("{}", control::appliance::eal_args(&r).join(" "));
            Ok(())
        }
    }
}
