//! Minyi's domain core, shared by every service.
//!
//! Layout:
//! - [`petition`]: what a petition is, and the validation of a submission (field-level errors).
//! - [`pii`]: personal data: AEAD sealing at rest with key ids for rotation, and masking.
//! - [`auth`]: bearer tokens (JWT) and the roles that use the system.
//! - [`clock`]: time as an injected dependency, so deadline tests move a clock.
//! - [`store`]: the ticket store port, with PostgreSQL, SQLite (embedded mode) and memory adapters.
//! - [`bus`]: the message bus port, with RabbitMQ and in-process adapters.
//! - [`timers`]: the timer port (due-time ordered), with Redis and in-memory adapters.
//! - [`event`]: building and reading bus events.
//! - [`trace_context`]: one trace per ticket across services (W3C `traceparent` in headers).
//! - [`metrics`]: Prometheus metrics (`/metrics`).

pub mod auth;
pub mod bus;
pub mod clock;
pub mod event;
pub mod grpc;
pub mod metrics;
pub mod petition;
pub mod pii;
pub mod store;
pub mod testing;
pub mod timers;
pub mod trace_context;
