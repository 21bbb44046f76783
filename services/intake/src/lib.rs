//! Intake (受理): the first service a petition meets.
//!
//! - [`api`]: `IntakeService` over gRPC — validate, seal personal data, store the ticket and
//!   its `ticket.received` event in one transaction.
//! - [`relay`]: publishes the outbox to the bus with confirms, then deletes what was
//!   confirmed. A crash between commit and publish only delays the event.
//! - [`view`]: tickets as callers see them, masked by role.

pub mod api;
pub mod open311;
pub mod relay;
pub mod view;

pub use api::IntakeApi;
pub use relay::Relay;
