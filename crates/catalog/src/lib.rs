//! minyi-catalog: the versioned responsibility catalog (民生诉求分级分类标准清单) of 光明区,
//! its unit directory, and location resolution.
//!
//! A pure library: no database, only file I/O in [`store`] and [`cli`].
//!
//! # Layout
//! - [`model`]: [`Unit`], [`UnitDirectory`], [`CatalogItem`] and [`Catalog`] (lookup by code,
//!   content hash).
//! - [`units`]: the unit directory of 光明区 (departments, utilities, 6 streets, communities,
//!   grids).
//! - [`demo`]: the generated 3,469-item demo catalog and a synthetic petition history for
//!   training and evaluating classifiers.
//! - [`format`](mod@format): CSV / JSON / YAML import and export.
//! - [`validate`]: problems with location and field, all of them at once.
//! - [`diff`](mod@diff): what changed between two versions.
//! - [`store`]: [`CatalogDir`], the versioned catalog directory (embedded mode; production
//!   keeps versions in PostgreSQL, `minyi_core::store::PgCatalogStore`, in the same stored
//!   form), [`TrainingExample`]s and arbitration [`Clarification`]s.
//! - [`live`]: [`LiveCatalog`], the version in force in a running process.
//! - [`gazetteer`]: address text / coordinates → street and community, or unresolved.
//! - [`cli`]: `minyi catalog …`, on a directory or (from the `minyi` binary) the database.

pub mod cli;
pub mod demo;
pub mod diff;
pub mod error;
pub mod format;
pub mod gazetteer;
pub mod live;
pub mod model;
pub mod store;
pub mod units;
pub mod validate;

pub use demo::{DEMO_ITEM_COUNT, demo_history, demo_slice};
pub use diff::{CatalogDiff, diff};
pub use error::CatalogError;
pub use format::Format;
pub use gazetteer::{Gazetteer, Resolution, UnresolvedReason, Via};
pub use live::LiveCatalog;
pub use model::{
    Catalog, CatalogItem, Grade, Limits, Responsibility, STREET_OWNER, Unit, UnitDirectory,
    UnitKind,
};
pub use store::{
    CatalogDir, Clarification, ClarificationChange, RULINGS_FILE, TrainingExample, read_stored,
    stored_form, version_number,
};
pub use validate::{Location, Problem};
