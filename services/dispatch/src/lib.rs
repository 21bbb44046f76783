//! Dispatch (派单): everything between "routed" and "archived".
//!
//! - [`machine`]: the explicit state machine (pure).
//! - [`engine`]: applies a command as one store transition (status, record, audit, inbox,
//!   event) with optimistic concurrency.
//! - [`worker`]: consumes `ticket.routed` and auto-dispatches; reconciles routing state.
//! - [`api`]: `DispatchService` over gRPC.
//! - [`state`]: routing state (Redis / memory), rebuilt from PostgreSQL when lost.
//! - [`training`]: rulings and dispatchers' reclassifications as the classifier's examples.

pub mod api;
pub mod arbitration;
pub mod deadlines;
pub mod engine;
pub mod machine;
pub mod state;
pub mod training;
pub mod view;
pub mod worker;

pub use api::DispatchApi;
pub use engine::Engine;
