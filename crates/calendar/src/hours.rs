//! Daily working hours: the windows of local (Asia/Shanghai) time in which SLA clocks run.

use std::fmt;
use std::str::FromStr;

use chrono::TimeDelta;

use crate::CalendarError;

/// The working-hours specification used when none is configured: 7 working hours a day.
pub const DEFAULT_WORKING_HOURS: &str = "09:00-12:00,14:00-18:00";

const MINUTES_PER_DAY: u32 = 24 * 60;

/// One window of working time, `[start, end)`, as minutes after local midnight.
///
/// Minute precision is all an office timetable needs, and `end` may be `24:00`,
/// which a `NaiveTime` cannot express.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start: u32,
    end: u32,
}

impl Window {
    /// Offset of the window's opening from local midnight.
    pub fn start(&self) -> TimeDelta {
        TimeDelta::minutes(i64::from(self.start))
    }

    /// Offset of the window's closing from local midnight (at most 24 hours).
    pub fn end(&self) -> TimeDelta {
        TimeDelta::minutes(i64::from(self.end))
    }

    /// The window's length.
    pub fn length(&self) -> TimeDelta {
        self.end() - self.start()
    }
}

/// The working-hour windows of every working day, in local time.
///
/// Invariant: at least one window, each non-empty, in ascending order and not overlapping
/// (windows may touch). Parsed from a specification such as `09:00-12:00,14:00-18:00`;
/// [`Default`] is [`DEFAULT_WORKING_HOURS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingHours {
    windows: Vec<Window>,
}

impl WorkingHours {
    /// The windows, in ascending order.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// Working time in one full working day (7 hours for the default).
    pub fn per_day(&self) -> TimeDelta {
        self.windows.iter().map(Window::length).sum()
    }
}

impl Default for WorkingHours {
    fn default() -> Self {
        Self {
            windows: vec![
                Window {
                    start: 9 * 60,
                    end: 12 * 60,
                },
                Window {
                    start: 14 * 60,
                    end: 18 * 60,
                },
            ],
        }
    }
}

impl FromStr for WorkingHours {
    type Err = CalendarError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| CalendarError::InvalidWorkingHours {
            spec: spec.to_owned(),
            reason,
        };
        let mut windows: Vec<Window> = Vec::new();
        for part in spec.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(invalid(
                    "expected comma-separated windows such as 09:00-12:00".to_owned(),
                ));
            }
            let (start, end) = part
                .split_once('-')
                .ok_or_else(|| invalid(format!("window `{part}` is not HH:MM-HH:MM")))?;
            let start = parse_clock(start.trim()).ok_or_else(|| {
                invalid(format!("`{}` is not a time of day (HH:MM)", start.trim()))
            })?;
            let end = parse_clock(end.trim())
                .ok_or_else(|| invalid(format!("`{}` is not a time of day (HH:MM)", end.trim())))?;
            if start >= end {
                return Err(invalid(format!(
                    "window `{part}` does not end after it starts"
                )));
            }
            if windows.last().is_some_and(|previous| previous.end > start) {
                return Err(invalid(format!(
                    "window `{part}` overlaps or precedes the one before it; list windows in order"
                )));
            }
            windows.push(Window { start, end });
        }
        Ok(Self { windows })
    }
}

/// Parses `H:MM` or `HH:MM` (00:00 to 24:00) into minutes after midnight.
fn parse_clock(text: &str) -> Option<u32> {
    let (hours, minutes) = text.split_once(':')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(hours) || hours.len() > 2 || !all_digits(minutes) || minutes.len() != 2 {
        return None;
    }
    let hours: u32 = hours.parse().ok()?;
    let minutes: u32 = minutes.parse().ok()?;
    let total = hours * 60 + minutes;
    (minutes < 60 && total <= MINUTES_PER_DAY).then_some(total)
}

impl fmt::Display for WorkingHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, window) in self.windows.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(
                f,
                "{:02}:{:02}-{:02}:{:02}",
                window.start / 60,
                window.start % 60,
                window.end / 60,
                window.end % 60
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(spec: &str) -> String {
        match spec.parse::<WorkingHours>() {
            Err(CalendarError::InvalidWorkingHours { reason, .. }) => reason,
            other => panic!("expected InvalidWorkingHours for {spec:?}, got {other:?}"),
        }
    }

    #[test]
    fn default_is_seven_hours_in_two_windows() {
        let hours = WorkingHours::default();
        assert_eq!(hours.to_string(), DEFAULT_WORKING_HOURS);
        assert_eq!(hours.per_day(), TimeDelta::hours(7));
        assert_eq!(
            DEFAULT_WORKING_HOURS.parse::<WorkingHours>().unwrap(),
            hours
        );
    }

    #[test]
    fn parses_and_round_trips_specs() {
        for spec in [
            "08:30-12:00,13:30-17:30",
            "00:00-24:00",
            "9:00-17:00",
            " 09:00-12:00 , 12:00-13:00 ",
        ] {
            let hours: WorkingHours = spec.parse().unwrap();
            let again: WorkingHours = hours.to_string().parse().unwrap();
            assert_eq!(hours, again, "{spec}");
        }
        assert_eq!(
            "00:00-24:00".parse::<WorkingHours>().unwrap().per_day(),
            TimeDelta::hours(24)
        );
        assert_eq!(
            "9:00-17:00".parse::<WorkingHours>().unwrap().to_string(),
            "09:00-17:00"
        );
    }

    #[test]
    fn rejects_malformed_specs_with_a_reason() {
        assert!(reason("").contains("comma-separated"));
        assert!(reason("09:00-12:00,").contains("comma-separated"));
        assert!(reason("0900-1200").contains("is not a time of day"));
        assert!(reason("09:00").contains("HH:MM-HH:MM"));
        assert!(reason("09:00-24:01").contains("`24:01`"));
        assert!(reason("09:60-12:00").contains("`09:60`"));
        assert!(reason("+9:00-12:00").contains("`+9:00`"));
        assert!(reason("12:00-09:00").contains("does not end after it starts"));
        assert!(reason("09:00-09:00").contains("does not end after it starts"));
        assert!(reason("14:00-18:00,09:00-12:00").contains("in order"));
        assert!(reason("09:00-13:00,12:00-18:00").contains("overlaps"));
    }

    #[test]
    fn error_message_names_the_spec() {
        let err = "9-5".parse::<WorkingHours>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid working hours `9-5`: `9` is not a time of day (HH:MM)"
        );
    }
}
