//! `minyi calendar`: the working-day calendar from the command line.
//!
//! ```text
//! minyi calendar [--calendar-file PATH]... [--working-hours SPEC] <COMMAND>
//!   is-working DATE            true/false: working day (DATE) or working time (instant)
//!   add INSTANT --days N       same time of day on the N-th working day after
//!   add INSTANT --hours N      N working hours later (decimals allowed)
//!   between A B [--json]       working hours from A to B, e.g. 10.5
//! ```
//!
//! Instants are RFC 3339 with any offset, or naive `YYYY-MM-DDTHH:MM[:SS]` /
//! `YYYY-MM-DD HH:MM[:SS]` read as Asia/Shanghai time; results are printed in +08:00.
//! [`run`] parses every value itself so that each mistake comes back as one
//! [`CalendarError`] line naming the argument.

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeDelta, Utc};

use crate::{Calendar, CalendarError, SHANGHAI, WorkingHours};

/// Arguments of `minyi calendar`.
#[derive(Debug, Clone, clap::Args)]
pub struct CalendarArgs {
    /// Extra year of holidays: JSON {year, papers, days: [{name, date, isOffDay}]}; repeatable;
    /// replaces a built-in year (2025, 2026) of the same number
    #[arg(long = "calendar-file", value_name = "PATH", global = true)]
    pub calendar_files: Vec<PathBuf>,

    /// Daily working hours in Asia/Shanghai time [default: 09:00-12:00,14:00-18:00]
    #[arg(long, value_name = "SPEC", global = true)]
    pub working_hours: Option<String>,

    #[command(subcommand)]
    pub command: CalendarCommand,
}

/// The subcommands of `minyi calendar`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CalendarCommand {
    /// Print `true` if DATE is a working day (given an instant: if it is working time), else `false`
    IsWorking {
        /// YYYY-MM-DD, or an instant in the same forms as INSTANT of `add`
        #[arg(value_name = "DATE")]
        date: String,
    },
    /// Add working days or working hours to INSTANT; prints RFC 3339 in +08:00
    Add {
        /// RFC 3339 with any offset, or YYYY-MM-DDTHH:MM(:SS) / "YYYY-MM-DD HH:MM(:SS)" read as
        /// Asia/Shanghai time
        #[arg(value_name = "INSTANT")]
        instant: String,
        #[command(flatten)]
        amount: Amount,
    },
    /// Print the working hours elapsed from A to B (negative if B is before A)
    Between {
        /// Start instant, in the same forms as INSTANT
        #[arg(value_name = "A")]
        from: String,
        /// End instant, in the same forms as INSTANT
        #[arg(value_name = "B")]
        to: String,
        /// Print a JSON object ({from, to, working_hours, working_seconds}) instead of a number
        #[arg(long)]
        json: bool,
    },
}

/// What `add` adds: exactly one of `--days` and `--hours`.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Amount {
    /// Same local time of day on the N-th working day after INSTANT's date
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub days: Option<String>,
    /// N working hours, counted only inside working hours (e.g. 4 or 1.5)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub hours: Option<String>,
}

impl CalendarArgs {
    /// The calendar these options describe: the built-in years, the extra files, and the
    /// working hours.
    pub fn calendar(&self) -> Result<Calendar, CalendarError> {
        let mut calendar = Calendar::china();
        if let Some(spec) = &self.working_hours {
            let hours: WorkingHours = spec.parse().map_err(|e| match e {
                CalendarError::InvalidWorkingHours { spec, reason } => {
                    invalid("--working-hours", &spec, reason)
                }
                other => other,
            })?;
            calendar = calendar.with_working_hours(hours);
        }
        for path in &self.calendar_files {
            calendar.load_year_file(path)?;
        }
        Ok(calendar)
    }
}

/// Runs one `minyi calendar` command, writing its result to `out`.
pub fn run(args: &CalendarArgs, out: &mut dyn Write) -> Result<(), CalendarError> {
    let calendar = args.calendar()?;
    match &args.command {
        CalendarCommand::IsWorking { date } => {
            let working = match parse_date_or_instant(date)? {
                When::Date(date) => calendar.is_working_day(date)?,
                When::Instant(instant) => calendar.is_working_time(instant)?,
            };
            writeln!(out, "{working}")?;
        }
        CalendarCommand::Add { instant, amount } => {
            let start = parse_instant("INSTANT", instant)?;
            let result = match (&amount.days, &amount.hours) {
                (Some(days), None) => calendar.add_working_days(start, parse_days(days)?)?,
                (None, Some(hours)) => calendar.add_working_hours(start, parse_hours(hours)?)?,
                (days, _) => {
                    let given = if days.is_some() { "both" } else { "neither" };
                    let reason = "give exactly one of --days N or --hours N".to_owned();
                    return Err(invalid("--days/--hours", given, reason));
                }
            };
            writeln!(out, "{}", format_instant(result))?;
        }
        CalendarCommand::Between { from, to, json } => {
            let (from, to) = (parse_instant("A", from)?, parse_instant("B", to)?);
            let elapsed = calendar.working_time_between(from, to)?;
            let hours = hours_of(elapsed);
            if *json {
                let value = serde_json::json!({
                    "from": format_instant(from),
                    "to": format_instant(to),
                    "working_hours": hours,
                    "working_seconds": elapsed.num_seconds(),
                });
                writeln!(out, "{value}")?;
            } else {
                writeln!(out, "{hours}")?;
            }
        }
    }
    Ok(())
}

const INSTANT_FORMS: &str = "an RFC 3339 instant such as 2026-03-02T09:00:00+08:00, \
                             or YYYY-MM-DDTHH:MM[:SS] / YYYY-MM-DD HH:MM[:SS] in Asia/Shanghai time";

enum When {
    Date(NaiveDate),
    Instant(DateTime<Utc>),
}

fn parse_date_or_instant(value: &str) -> Result<When, CalendarError> {
    if let Ok(date) = NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d") {
        return Ok(When::Date(date));
    }
    parse_instant_text(value).map(When::Instant).ok_or_else(|| {
        invalid(
            "DATE",
            value,
            format!("expected YYYY-MM-DD or {INSTANT_FORMS}"),
        )
    })
}

fn parse_instant(argument: &'static str, value: &str) -> Result<DateTime<Utc>, CalendarError> {
    parse_instant_text(value)
        .ok_or_else(|| invalid(argument, value, format!("expected {INSTANT_FORMS}")))
}

fn parse_instant_text(value: &str) -> Option<DateTime<Utc>> {
    const NAIVE_FORMS: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ];
    let text = value.trim();
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.to_utc());
    }
    NAIVE_FORMS
        .iter()
        .find_map(|form| NaiveDateTime::parse_from_str(text, form).ok())
        .and_then(|local| local.and_local_timezone(SHANGHAI).single())
        .map(|instant| instant.to_utc())
}

fn parse_days(value: &str) -> Result<u32, CalendarError> {
    value.trim().parse().map_err(|_| {
        invalid(
            "--days",
            value,
            "expected a whole number of working days, 0 or more".to_owned(),
        )
    })
}

/// Working hours as a decimal number, to the millisecond.
fn parse_hours(value: &str) -> Result<TimeDelta, CalendarError> {
    // About 400 years of 7-hour working days: far beyond any loadable calendar.
    const MAX_HOURS: f64 = 1_000_000.0;
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|hours| hours.is_finite() && (0.0..=MAX_HOURS).contains(hours))
        .and_then(|hours| TimeDelta::try_milliseconds((hours * 3_600_000.0).round() as i64))
        .ok_or_else(|| {
            invalid(
                "--hours",
                value,
                "expected a number of working hours, 0 or more (e.g. 4 or 1.5)".to_owned(),
            )
        })
}

/// Hours as a number for people: at most six decimals, and never `-0`.
fn hours_of(elapsed: TimeDelta) -> f64 {
    let hours = elapsed.num_milliseconds() as f64 / 3_600_000.0;
    (hours * 1e6).round() / 1e6 + 0.0
}

fn format_instant(instant: DateTime<Utc>) -> String {
    instant
        .with_timezone(&SHANGHAI)
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

fn invalid(argument: &'static str, value: &str, reason: String) -> CalendarError {
    CalendarError::InvalidArgument {
        argument,
        value: value.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn instants_in_every_accepted_form() {
        let nine = utc("2026-03-02T09:00:00+08:00");
        for text in [
            "2026-03-02T09:00:00+08:00",
            "2026-03-02T01:00:00Z",
            "2026-03-02T02:00:00+01:00",
            "2026-03-02 09:00:00+08:00",
            "2026-03-02T09:00",
            "2026-03-02T09:00:00",
            "2026-03-02 09:00",
            " 2026-03-02 09:00:00 ",
        ] {
            assert_eq!(parse_instant("INSTANT", text).unwrap(), nine, "{text}");
        }
        assert_eq!(
            parse_instant("INSTANT", "2026-03-02T09:00:00.250").unwrap(),
            nine + TimeDelta::milliseconds(250)
        );
        for bad in [
            "2026-03-02",
            "2026-03-02T25:00",
            "tomorrow",
            "",
            "2026-02-30T09:00",
        ] {
            assert!(parse_instant("INSTANT", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hours_and_days_values() {
        assert_eq!(parse_hours("1.5").unwrap(), TimeDelta::minutes(90));
        assert_eq!(parse_hours("0.1").unwrap(), TimeDelta::minutes(6));
        assert_eq!(parse_hours("7").unwrap(), TimeDelta::hours(7));
        for bad in ["-1", "NaN", "inf", "1e9", "abc", ""] {
            assert!(parse_hours(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_days("3").unwrap(), 3);
        for bad in ["-1", "1.5", "x"] {
            assert!(parse_days(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hours_print_plainly() {
        assert_eq!(hours_of(TimeDelta::minutes(630)).to_string(), "10.5");
        assert_eq!(hours_of(TimeDelta::hours(7)).to_string(), "7");
        assert_eq!(hours_of(TimeDelta::minutes(20)).to_string(), "0.333333");
        assert_eq!(hours_of(-TimeDelta::minutes(90)).to_string(), "-1.5");
        assert_eq!(hours_of(-TimeDelta::milliseconds(1)).to_string(), "0");
    }
}
