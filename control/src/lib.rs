//! Switchyard's control plane.
//!
//! - [`config`]: the appliance's TOML configuration, validated with errors that name the field.
//! - [`profile`]: NIC profiles (`nic-profiles/*.toml`), built in or from a file.
//! - [`appliance`]: brings up EAL, ports and engines from a configuration and runs them.
//! - [`loadgen`]: the load generator on the engine, over a configured port.
//! - [`ctl`]: live introspection over a Unix socket (`switchyard ctl`).
//! - [`proxy`]: the `proxy` service, a TCP proxy on the switch.
//! - [`switch`]: the socket switch, one API over the fast path and the kernel path.
//!
//! The `switchyard` binary (`src/main.rs`) is the command line over these.
#![deny(unsafe_code)]

pub mod appliance;
pub mod config;
pub mod ctl;
pub mod loadgen;
pub mod profile;
pub mod proxy;
pub mod switch;
