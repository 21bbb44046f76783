//! The supervisor dashboard (监管大屏): read models built from the bus, figures on request.
//!
//! Layout:
//! - [`facts`]: what the dashboard keeps of a ticket ([`facts::Fact`]), with no personal data.
//! - [`model`]: the read model, updated idempotently and in any order.
//! - [`consumer`]: loads the model from the store, then re-reads a ticket on every `ticket.#`
//!   event; a periodic reload repairs anything missed.
//! - [`filter`]: date range, street, unit and category.
//! - [`figures`]: volumes, 一次分拨准确率, dispatch and acceptance times, 按时办结率, working-day
//!   completion, 响应率 / 解决率 / 满意率, overdue and at-risk lists, arbitration, the unit
//!   league table, breakdowns and trends. Formulas: `docs/METRICS.md`.
//! - [`hotspots`]: 热点, clusters of similar petitions in one community within a few days.
//! - [`export`]: every table as CSV.
//! - [`http`]: the page, its assets, JSON, CSV and the live stream.
//! - [`api`]: `SupervisorService` over gRPC, the same figures.
//! - [`error`]: the crate's error, mapped to HTTP responses and gRPC statuses.
//! - [`worktime`]: working time on the official calendar, estimated outside loaded years.
//! - [`dashboard`]: the shared state ([`Dashboard`]).

pub mod api;
pub mod consumer;
pub mod dashboard;
pub mod error;
pub mod export;
pub mod facts;
pub mod figures;
pub mod filter;
pub mod hotspots;
pub mod http;
pub mod model;
pub mod worktime;

pub use api::SupervisorApi;
pub use consumer::Consumer;
pub use dashboard::{Dashboard, Overview};
