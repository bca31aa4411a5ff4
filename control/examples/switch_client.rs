//! A client on the socket switch: binds, connects with its first message in the same call
//! (`connect_ex`, SEMANTICS C1), waits for the completion, then reads the echo and tells which
//! provider carried it and for how long it was connected (A5).
//!
//! It has no DPDK port of its own, so the switch routes it through the kernel path; against the
//! demo appliance (`sudo make run`):
//!     cargo build --release --example switch_client
//!     ip netns exec sy-demo target/release/examples/switch_client 198.18.0.2:7 "hello"
//! Errors print with their errno (ECONNREFUSED for a closed port, and so on: C4).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use control::switch::{errno, ConnectOptions, Switch};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switch_client: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(remote), message) = (args.next(), args.next()) else {
        bail!("usage: switch_client ADDRESS:PORT [MESSAGE]");
    };
    let remote: SocketAddr = remote.parse().with_context(|| format!("{remote:?} is not an ADDRESS:PORT"))?;
    let message = message.unwrap_or_else(|| "hello from the switch".to_owned());

    let switch = Switch::kernel_only();
    let mut s = switch.socket();
    s.bind(if remote.is_ipv4() { "0.0.0.0:0".parse()? } else { "[::]:0".parse()? })?;
    s.connect_ex(remote, message.as_bytes(), ConnectOptions { fast_open: true, ..Default::default() })?;
    let done = match s.wait_connect(Some(Duration::from_secs(10))) {
        Ok(d) => d,
        Err(e) => bail!("connect to {remote}: {e} (errno {:?})", errno(&e)),
    };
    println!(
        "connected {} -> {} through the {}: {} bytes sent with the connect (fast open: {:?})",
        done.local, done.remote, done.provider, done.bytes_sent, done.fast_open
    );
    let mut back = vec![0u8; message.len()];
    let mut got = 0;
    while got < back.len() {
        match s.read_blocking(&mut back[got..])? {
            0 => break,
            n => got += n,
        }
    }
    println!("echoed: {:?}", String::from_utf8_lossy(&back[..got]));
    println!("connected for {:?}", s.connect_time());
    s.disconnect()?;
    Ok(())
}
