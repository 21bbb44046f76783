//! Deadlines of a handling period, in working time from the catalog item's limits.

use chrono::{DateTime, Datelike, Duration, Utc, Weekday};
use minyi_calendar::Calendar;
use minyi_calendar::sla::Limit;

/// Computes accept and completion deadlines on the official calendar.
#[derive(Debug, Clone)]
pub struct Deadlines {
    calendar: Calendar,
}

/// The deadlines of one handling period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Due {
    pub accept_by: Option<DateTime<Utc>>,
    pub complete_by: Option<DateTime<Utc>>,
    /// Past the loaded calendar years: counted on weekdays alone, to be corrected when the
    /// year's holidays are loaded.
    pub estimated: bool,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self::new(Calendar::china())
    }
}

impl Deadlines {
    pub fn new(calendar: Calendar) -> Self {
        Self { calendar }
    }

    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// Deadlines for a period starting at `from` (zero limits mean "none").
    pub fn due(&self, from: DateTime<Utc>, accept_hours: u32, complete_days: u32) -> Due {
        let mut estimated = false;
        let mut at = |limit: Limit, n: u32| {
            if n == 0 {
                return None;
            }
            Some(self.after(from, limit, &mut estimated))
        };
        let accept_by = at(Limit::Hours(accept_hours), accept_hours);
        let complete_by = at(Limit::Days(complete_days), complete_days);
        Due {
            accept_by,
            complete_by,
            estimated,
        }
    }

    /// `from` plus `days` working days (an approved extension).
    pub fn add_days(&self, from: DateTime<Utc>, days: u32) -> (DateTime<Utc>, bool) {
        let mut estimated = false;
        let t = self.after(from, Limit::Days(days), &mut estimated);
        (t, estimated)
    }

    /// Working time from `from` to `to` (how long a pause lasted); wall-clock time past the
    /// loaded calendar years.
    pub fn working_time(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        self.calendar
            .working_time_between(from, to)
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "pause past the loaded calendar; counting wall-clock time");
                to - from
            })
    }

    /// `from` plus `working` working time (a pause added to a deadline); estimated (wall-clock)
    /// past the loaded calendar years.
    pub fn add_working_time(
        &self,
        from: DateTime<Utc>,
        working: Duration,
    ) -> (DateTime<Utc>, bool) {
        match self.calendar.add_working_hours(from, working) {
            Ok(t) => (t, false),
            Err(e) => {
                tracing::warn!(error = %e, "deadline past the loaded calendar; estimating");
                (from + working, true)
            }
        }
    }

    /// `limit` counted from `from`. A limit in working days that starts on a day off counts
    /// from the next working day's opening, so the unit gets the working days in full
    /// (see [`Calendar::working_day_start`]); working hours start there anyway.
    fn after(&self, from: DateTime<Utc>, limit: Limit, estimated: &mut bool) -> DateTime<Utc> {
        let counted = match limit {
            Limit::Days(_) => self
                .calendar
                .working_day_start(from)
                .and_then(|start| limit.after(&self.calendar, start)),
            Limit::Hours(_) => limit.after(&self.calendar, from),
        };
        match counted {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "deadline past the loaded calendar; estimating on weekdays");
                *estimated = true;
                let days = match limit {
                    // A working day has 7 working hours by default.
                    Limit::Hours(h) => h.div_ceil(7),
                    Limit::Days(d) => d,
                };
                weekdays_after(from, days)
            }
        }
    }
}

fn weekdays_after(from: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    let mut t = from;
    let mut left = days;
    while left > 0 {
        t += Duration::days(1);
        if !matches!(t.weekday(), Weekday::Sat | Weekday::Sun) {
            left -= 1;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn deadlines_count_working_time_and_estimate_past_the_calendar() {
        let d = Deadlines::default();
        // Thursday 2026-09-24 10:00 Beijing; 2 working days later skips 中秋 (Friday 25 to
        // Sunday 27): Tuesday 10:00.
        let from = Utc.with_ymd_and_hms(2026, 9, 24, 2, 0, 0).unwrap();
        let due = d.due(from, 4, 2);
        assert!(!due.estimated);
        assert_eq!(
            due.complete_by,
            Some(Utc.with_ymd_and_hms(2026, 9, 29, 2, 0, 0).unwrap())
        );
        assert!(due.accept_by.unwrap() > from);
        // Dispatched on Saturday 2026-09-26 (中秋) at 03:04: the two working days are Monday
        // and Tuesday in full (not Monday 03:04 + 1), the accept hours start Monday 09:00.
        let saturday = Utc.with_ymd_and_hms(2026, 9, 25, 19, 4, 0).unwrap();
        let due = d.due(saturday, 4, 2);
        assert_eq!(
            due.complete_by,
            Some(Utc.with_ymd_and_hms(2026, 9, 30, 1, 0, 0).unwrap())
        );
        assert_eq!(
            due.accept_by,
            Some(Utc.with_ymd_and_hms(2026, 9, 28, 7, 0, 0).unwrap())
        );
        assert_eq!(
            d.add_days(saturday, 1).0,
            Utc.with_ymd_and_hms(2026, 9, 29, 1, 0, 0).unwrap()
        );
        // Past 2026 there is no calendar: weekdays only, flagged.
        let late = Utc.with_ymd_and_hms(2026, 12, 30, 2, 0, 0).unwrap();
        let due = d.due(late, 0, 5);
        assert!(due.estimated);
        assert_eq!(due.accept_by, None);
        assert_eq!(
            due.complete_by,
            Some(Utc.with_ymd_and_hms(2027, 1, 6, 2, 0, 0).unwrap())
        );
    }
}
