//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading data, training, saving, loading or running the CLI.
///
/// Each variant renders as one line naming the offending file, line or argument.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {message}")]
    Csv {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{path}: not a minyi classifier model: {message}")]
    ModelFormat { path: PathBuf, message: String },
    #[error("invalid argument {name}: {message}")]
    InvalidArgument { name: &'static str, message: String },
    #[error("cannot train: {0}")]
    Training(String),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = ClassifyError> = std::result::Result<T, E>;
