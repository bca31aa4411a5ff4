//! An echo server on the socket switch: the appliance (the demo's default config, or `--config`)
//! with an application thread that listens on `0.0.0.0:PORT` through the switch, so connections
//! come from the fast path (to the appliance's address) and from the kernel path (to any of the
//! host's addresses) into one listener (SEMANTICS L1–L3). It waits on the listener's accept event
//! (L5) and echoes each connection on a thread of its own.
//!
//! Runs where the demo runs, in place of the appliance:
//!     cargo build --release --example switch_echo
//!     sudo control/scripts/demo.sh target/release/examples/switch_echo
//!     ip netns exec sy-demo nc 198.18.0.2 7007      # fast path
//!     ip netns exec sy-demo nc 127.0.0.1 7007       # kernel path
//! (`run --port N` listens elsewhere.)

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use control::config::Config;
use control::switch::{ListenOptions, Socket, Switch};

#[derive(Parser)]
enum Cli {
    /// Runs the appliance with the echo application until SIGINT or SIGTERM.
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The port to listen on, on both providers.
        #[arg(long, default_value_t = 7007)]
        port: u16,
    },
}

fn serve(switch: Switch, port: u16) {
    let listener = match switch.listen(([0, 0, 0, 0], port).into(), ListenOptions::default()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("switch_echo: listen on port {port}: {e}");
            return;
        }
    };
    tracing::info!(port, providers = ?listener.providers(), "echo application listening");
    loop {
        if let Err(e) = listener.wait(None) {
            eprintln!("switch_echo: waiting on the accept event: {e}");
            return;
        }
        while let Ok(conn) = listener.accept() {
            tracing::info!(peer = ?conn.peer_addr(), provider = ?conn.provider(), "accepted");
            std::thread::spawn(move || echo(conn));
        }
    }
}

fn echo(mut conn: Socket) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match conn.read_blocking(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if conn.write_all_blocking(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = conn.shutdown_write();
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let Cli::Run { config, port } = Cli::parse();
    let r = match config {
        Some(p) => Config::load(&p)?,
        None => Config::demo(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    control::appliance::run_with_switch(&r, &stop, move |switch| serve(switch, port))?;
    Ok(())
}
