//! The crate's error type. Every message is one line, fit for a CLI's stderr.

use std::path::PathBuf;

use crate::validate::Problem;

/// Errors of catalog import, export, storage and clarification.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not well-formed CSV/JSON/YAML, or could not be serialised.
    #[error("{what}: {message}")]
    Parse {
        /// What was being read (a path or a format name).
        what: String,
        /// The parser's message, flattened to one line.
        message: String,
    },
    /// The catalog is well-formed but has problems; all of them are listed.
    #[error("{}", invalid_summary(.problems))]
    Invalid {
        /// Every problem found, in file order.
        problems: Vec<Problem>,
    },
    /// No such version in the catalog directory.
    #[error("unknown catalog version {0:?}")]
    UnknownVersion(String),
    /// The catalog directory has no active version yet.
    #[error(
        "no active catalog version in {} (import one with --activate, or name another catalog \
         directory with --dir or MINYI_CATALOG_DIR: `make run` keeps its catalog in \
         data/dev/catalog)",
        .0.display()
    )]
    NoActiveVersion(PathBuf),
    /// The catalog database has no active version yet.
    #[error("no active catalog version in {0} (import one with --activate)")]
    NoActiveVersionIn(String),
    /// The catalog database failed or could not be reached.
    #[error("catalog store: {0}")]
    Backend(String),
    /// No item with this code.
    #[error("unknown catalog item {0:?}")]
    UnknownItem(String),
    /// An item with this code already exists.
    #[error("catalog item {0:?} already exists")]
    DuplicateItem(String),
    /// Unsupported file format.
    #[error("unsupported format {0:?} (expected csv, json or yaml)")]
    Format(String),
}

impl CatalogError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CatalogError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        let message = message.to_string().replace(['\n', '\r'], " ");
        CatalogError::Parse {
            what: what.into(),
            message,
        }
    }
}

fn invalid_summary(problems: &[Problem]) -> String {
    match problems {
        [] => "invalid catalog".to_string(),
        [p] => format!("1 problem: {p}"),
        [p, ..] => format!("{} problems, first: {p}", problems.len()),
    }
}
