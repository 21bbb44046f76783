//! The Minyi binaries' library: everything `minyi` and `minyi-handler` wire together.
//!
//! - [`config`]: one configuration struct, from defaults, a file and `MINYI_*` variables.
//! - [`app`]: builds backends and services and runs them until shutdown (used by tests too).
//! - [`client`]: the agent commands (`minyi petition …`) over gRPC.
//! - [`arbitrate`]: the arbitrators' commands (`minyi arbitrate …`).
//! - [`dispatcher`]: the dispatchers' commands (`minyi dispatch …`).
//! - [`demo`]: `minyi dev --demo`, a replay of realistic petitions.
//! - [`bench`]: `minyi bench intake|pipeline`, gRPC load generators with HDR histograms.
//! - [`bench_timers`]: `minyi bench timers`, the SLA timer store under a million timers.
//! - [`tls`]: the listeners' certificates, and the one way clients dial (`https://`).
//! - [`health`]: `minyi health`, the gRPC health check (the image's HEALTHCHECK).
//! - [`telemetry`]: logging setup.
//! - [`signal`]: SIGTERM/SIGINT handling.
//!

pub mod app;
pub mod arbitrate;
pub mod bench;
pub mod bench_timers;
pub mod catalog_db;
pub mod client;
pub mod config;
pub mod demo;
pub mod dispatcher;
pub mod handler;
pub mod health;
pub mod signal;
pub mod telemetry;
pub mod tls;
