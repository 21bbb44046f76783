//! The crate's one error type.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

/// Everything that can go wrong in calendar arithmetic, holiday loading, SLA clocks and the CLI.
///
/// Every message is one line and names what was wrong, so the CLI can print it as
/// `error: {e}` without further context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CalendarError {
    /// A computation needed a date whose year has no holiday data loaded.
    ///
    /// The calendar never guesses: without the State Council notice for a year, nobody knows
    /// which weekdays are holidays or which weekends are make-up working days.
    #[error(
        "{date} is outside the loaded calendar years ({loaded}); load that year's holiday data"
    )]
    OutOfRange {
        /// The first date that could not be classified.
        date: NaiveDate,
        /// The loaded years, e.g. `2025-2026` or `2020, 2024-2026` (`none` if empty).
        loaded: String,
    },

    /// A working-hours specification such as `09:00-12:00,14:00-18:00` was malformed.
    #[error("invalid working hours `{spec}`: {reason}")]
    InvalidWorkingHours { spec: String, reason: String },

    /// A year of holiday data (JSON) was malformed or inconsistent.
    #[error("invalid holiday data in {origin}: {reason}")]
    InvalidYearData {
        /// Where the data came from: a file path, or `JSON input`.
        origin: String,
        reason: String,
    },

    /// A holiday file could not be read.
    #[error("cannot read holiday file `{}`: {source}", path.display())]
    ReadYearFile {
        path: PathBuf,
        source: std::io::Error,
    },

    /// Working time to add was negative; the calendar only moves forward.
    #[error("working time to add must not be negative (got {0})")]
    NegativeDuration(TimeDelta),

    /// An SLA pause ends before it starts.
    #[error("pause ends at {end} before it starts at {start}")]
    InvalidPause {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },

    /// An SLA warning fraction was not strictly between 0 and 1.
    #[error("warning fraction {0} is not strictly between 0 and 1")]
    InvalidWarningFraction(f32),

    /// A command-line argument could not be parsed.
    #[error("invalid {argument} `{value}`: {reason}")]
    InvalidArgument {
        /// The argument's name as the user sees it, e.g. `INSTANT` or `--days`.
        argument: &'static str,
        value: String,
        reason: String,
    },

    /// Writing the CLI's output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}
