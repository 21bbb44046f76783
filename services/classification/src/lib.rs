//! Classification (分类/分拨): decides what a petition is and who owns it.
//!
//! - [`router`]: the pure decision — classifier top-k + catalog + gazetteer → an automatic
//!   routing or a "needs dispatcher" decision with suggestions. Never guesses a location.
//! - [`duplicates`]: text similarity for linking repeats of an open ticket at the same place.
//! - [`worker`]: consumes `ticket.received`, commits the decision and its event exactly once.
//! - [`api`]: `ClassificationService.Suggest` for agents typing a petition.
//! - [`catalog_api`]: `CatalogService`, the versioned catalog for operators.
//! - [`model`]: building the router's model (load a file, or train from the catalog).
//! - [`watch`]: a new router, without a restart, when the catalog or the rulings change.

pub mod api;
pub mod catalog_api;
pub mod duplicates;
pub mod model;
pub mod router;
pub mod watch;
pub mod worker;

pub use router::{Router, RouterHandle};
