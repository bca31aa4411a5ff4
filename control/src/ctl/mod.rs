//! Live introspection: the appliance answers on a Unix socket, `switchyard ctl` asks; the same
//! counters go to Prometheus (`GET /metrics`) and to DPDK's telemetry socket.
//!
//! The engines are never touched from outside their core. The appliance's control threads share
//! one [`Context`], whose queries ask each core's loop for a snapshot (answered between two turns)
//! and merge the answers into the rows that [`protocol`] defines. [`server`] answers the control
//! socket's requests with those rows as JSON, [`metrics`] encodes them for Prometheus,
//! [`telemetry`] answers DPDK's telemetry commands, and [`client`], in `switchyard ctl`, sends a
//! request and renders the answer.
//!
//! - [`protocol`]: the wire format, one JSON line each way: requests, responses and their data.
//! - [`context`]: what the control threads know of the running appliance, and the core queries.
//! - [`server`]: the Unix socket server.
//! - [`metrics`]: Prometheus exposition (`prometheus-client`) and its HTTP endpoint.
//! - [`telemetry`]: Switchyard's commands in DPDK's telemetry.
//! - [`client`]: the `switchyard ctl` client: a request, its errors, tables of the answer.

pub mod client;
pub mod context;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod telemetry;

pub use client::{render, request, table, CtlError};
pub use context::{Context, QueryError};
pub use metrics::serve_metrics;
pub use protocol::{CaptureRequest, Request};
pub use server::{bind, serve};
pub use telemetry::{serve_telemetry, TELEMETRY_COMMANDS};
