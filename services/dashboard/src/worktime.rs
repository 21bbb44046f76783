//! Working time on the official calendar, for figures.
//!
//! Figures must not fail because a date lies outside the loaded calendar years: such spans are
//! counted on weekdays alone (as dispatch estimates deadlines there), and the figure stays
//! honest to within the holidays of that year.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Utc, Weekday};
use minyi_calendar::Calendar;
use minyi_core::clock::shanghai;

#[derive(Debug, Clone)]
pub struct WorkTime {
    calendar: Calendar,
}

impl Default for WorkTime {
    fn default() -> Self {
        Self::new(Calendar::china())
    }
}

impl WorkTime {
    pub fn new(calendar: Calendar) -> Self {
        Self { calendar }
    }

    /// Working hours in one working day (7 by default).
    pub fn hours_per_day(&self) -> f64 {
        let h = self.calendar.working_hours().per_day().num_seconds() as f64 / 3600.0;
        if h > 0.0 { h } else { 7.0 }
    }

    /// Working time from `from` to `to` in hours (negative when `to` is earlier).
    pub fn hours_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
        match self.calendar.working_time_between(from, to) {
            Ok(d) => d.num_seconds() as f64 / 3600.0,
            Err(_) if to < from => -self.weekday_hours(to, from),
            Err(_) => self.weekday_hours(from, to),
        }
    }

    /// The moment `hours` working hours after `from` (as the deadline service computes the
    /// first-response deadline); `None` outside the loaded calendar years.
    pub fn add_hours(&self, from: DateTime<Utc>, hours: u32) -> Option<DateTime<Utc>> {
        self.calendar
            .add_working_hours(from, chrono::TimeDelta::hours(i64::from(hours)))
            .ok()
    }

    /// Working time from `from` to `to` in working days of [`WorkTime::hours_per_day`].
    pub fn days_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
        self.hours_between(from, to) / self.hours_per_day()
    }

    /// The estimate outside the loaded years: the working-hour windows of Monday to Friday.
    fn weekday_hours(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
        let (from, to) = (
            from.with_timezone(&shanghai()).naive_local(),
            to.with_timezone(&shanghai()).naive_local(),
        );
        let mut total = Duration::zero();
        let mut date: NaiveDate = from.date();
        while date <= to.date() {
            if !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
                let midnight = date.and_time(NaiveTime::MIN);
                for w in self.calendar.working_hours().windows() {
                    let (lo, hi) = (
                        (midnight + w.start()).max(from),
                        (midnight + w.end()).min(to),
                    );
                    if lo < hi {
                        total += hi - lo;
                    }
                }
            }
            let Some(next) = date.succ_opt() else { break };
            date = next;
        }
        total.num_seconds() as f64 / 3600.0
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        shanghai()
            .with_ymd_and_hms(y, m, d, h, 0, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn counts_working_windows_and_estimates_outside_loaded_years() {
        let w = WorkTime::default();
        // Monday 2026-11-23 09:00 → Tuesday 09:00: one working day of 7 hours.
        assert_eq!(
            w.hours_between(at(2026, 11, 23, 9), at(2026, 11, 24, 9)),
            7.0
        );
        assert_eq!(
            w.days_between(at(2026, 11, 23, 9), at(2026, 11, 24, 9)),
            1.0
        );
        assert_eq!(
            w.hours_between(at(2026, 11, 24, 9), at(2026, 11, 23, 9)),
            -7.0
        );
        // 2030 is not loaded: Friday 09:00 → Monday 09:00 counts Friday only.
        assert_eq!(w.hours_between(at(2030, 1, 4, 9), at(2030, 1, 7, 9)), 7.0);
    }
}
