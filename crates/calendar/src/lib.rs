//! The official working-day calendar of mainland China and SLA clock arithmetic on it.
//!
//! Petition time limits are counted in working days and working hours. Working days are not
//! simply Monday to Friday: each year the State Council announces statutory holidays and
//! make-up working days at weekends (调休), so a Saturday may be a working day and a Tuesday a
//! day off. This crate knows the announced years, refuses to guess about the others, and
//! does the arithmetic in Asia/Shanghai time (a fixed UTC+08:00 for every supported year).
//!
//! # Layout
//!
//! - [`calendar`]: [`Calendar`], the loaded years plus the working hours, and its operations:
//!   [`Calendar::is_working_day`], [`Calendar::is_working_time`],
//!   [`Calendar::add_working_days`], [`Calendar::add_working_hours`],
//!   [`Calendar::working_time_between`]. Instants are `DateTime<Utc>`; any date outside the
//!   loaded years is a [`CalendarError::OutOfRange`].
//! - [`holidays`]: [`YearData`], one year's exception days; the built-in table for 2025 and
//!   2026, transcribed from the State Council notices, and the JSON format (that of the
//!   holiday-cn project) in which operators load further years.
//! - [`hours`]: [`WorkingHours`], the daily working windows, parsed from a specification such
//!   as `09:00-12:00,14:00-18:00` (the default: 7 working hours a day).
//! - [`sla`]: [`SlaClock`](sla::SlaClock), pure deadline arithmetic: a [`Limit`](sla::Limit)
//!   in working hours or days from dispatch, pauses while waiting for the citizen, approved
//!   extensions, warnings at fractions of the allowed time, and redo.
//! - [`cli`]: the `minyi calendar` subcommand ([`cli::CalendarArgs`], [`cli::run`]).
//! - [`CalendarError`]: the crate's one error type; every message is a single line.
//!
//! ```
//! use chrono::{DateTime, Utc};
//! use minyi_calendar::Calendar;
//!
//! let calendar = Calendar::china();
//! // Friday before the 2026 Spring Festival; Saturday 2026-02-14 is a make-up working day.
//! let friday: DateTime<Utc> = "2026-02-13T10:00:00+08:00".parse()?;
//! let next = calendar.add_working_days(friday, 1)?;
//! assert_eq!(next, "2026-02-14T10:00:00+08:00".parse::<DateTime<Utc>>()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod calendar;
pub mod cli;
mod error;
pub mod holidays;
pub mod hours;
pub mod sla;

pub use calendar::{Calendar, DayKind, SHANGHAI};
pub use error::CalendarError;
pub use holidays::{SpecialDay, YearData};
pub use hours::{DEFAULT_WORKING_HOURS, WorkingHours};
