//! The working-day calendar and its arithmetic on instants.
//!
//! All arithmetic happens on local (Asia/Shanghai) wall-clock time, which is a fixed
//! UTC+08:00 for every supported year, so converting between UTC and local time is exact
//! and no time-zone database is needed.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc, Weekday,
};

use crate::holidays::{self, YearData};
use crate::{CalendarError, WorkingHours};

/// Asia/Shanghai: UTC+08:00, without daylight saving since 1992.
pub const SHANGHAI: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+08:00 is a valid offset"),
};

/// What kind of day a date is on the official calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayKind<'a> {
    /// Monday to Friday with no notice about it.
    Workday,
    /// Saturday or Sunday with no notice about it.
    Weekend,
    /// A statutory holiday or a day off of its span (放假), named after the festival.
    Holiday(&'a str),
    /// A day listed as a working day (调休上班), normally a weekend day, named after the
    /// festival it pays for.
    MakeUpWorkday(&'a str),
}

impl DayKind<'_> {
    /// Whether SLA clocks run on this day.
    pub fn is_working(self) -> bool {
        matches!(self, DayKind::Workday | DayKind::MakeUpWorkday(_))
    }
}

/// The official working-day calendar of mainland China for the loaded years, with the
/// working hours in which SLA clocks run.
///
/// Every date the arithmetic touches must lie in a loaded year; otherwise the operation
/// fails with [`CalendarError::OutOfRange`] instead of guessing.
#[derive(Debug, Clone)]
pub struct Calendar {
    /// Holiday data by year; a year is loaded exactly when it has an entry here.
    years: BTreeMap<i32, YearData>,
    hours: WorkingHours,
}

impl Default for Calendar {
    /// Same as [`Calendar::china`].
    fn default() -> Self {
        Self::china()
    }
}

impl Calendar {
    /// The built-in years (2025 and 2026) with the default working hours.
    pub fn china() -> Self {
        let mut calendar = Self::empty();
        for year in holidays::builtin() {
            calendar.load_year(year);
        }
        calendar
    }

    /// A calendar with no year loaded and the default working hours.
    pub fn empty() -> Self {
        Self {
            years: BTreeMap::new(),
            hours: WorkingHours::default(),
        }
    }

    /// Replaces the working hours.
    pub fn with_working_hours(mut self, hours: WorkingHours) -> Self {
        self.hours = hours;
        self
    }

    /// The working hours in which SLA clocks run.
    pub fn working_hours(&self) -> &WorkingHours {
        &self.hours
    }

    /// Loads one year, replacing any data already loaded for that year (a built-in year
    /// can be corrected this way). Returns the year.
    pub fn load_year(&mut self, data: YearData) -> i32 {
        let year = data.year();
        self.years.insert(year, data);
        year
    }

    /// Parses one year in the holiday-cn JSON format (see [`crate::holidays`]) and loads it
    /// as [`Calendar::load_year`] does. Returns the year.
    pub fn load_year_json(&mut self, json: &str) -> Result<i32, CalendarError> {
        Ok(self.load_year(YearData::from_json(json, "JSON input")?))
    }

    /// Reads one year from a file in the holiday-cn JSON format and loads it. Returns the year.
    pub fn load_year_file(&mut self, path: impl AsRef<Path>) -> Result<i32, CalendarError> {
        let path = path.as_ref();
        let json = std::fs::read_to_string(path).map_err(|source| CalendarError::ReadYearFile {
            path: path.to_owned(),
            source,
        })?;
        let origin = format!("`{}`", path.display());
        Ok(self.load_year(YearData::from_json(&json, &origin)?))
    }

    /// The data of a loaded year.
    pub fn year(&self, year: i32) -> Option<&YearData> {
        self.years.get(&year)
    }

    /// The loaded years, ascending.
    pub fn loaded_years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.keys().copied()
    }

    /// Classifies a date.
    pub fn day_kind(&self, date: NaiveDate) -> Result<DayKind<'_>, CalendarError> {
        let year = date.year();
        let own = self
            .years
            .get(&year)
            .ok_or_else(|| self.out_of_range(date))?;
        // A span crossing New Year may be listed only in the adjacent year's notice.
        let listed = own.get(date).or_else(|| {
            [year - 1, year + 1]
                .iter()
                .filter_map(|adjacent| self.years.get(adjacent))
                .find_map(|data| data.get(date))
        });
        Ok(match listed {
            Some(day) if day.is_off_day => DayKind::Holiday(&day.name),
            Some(day) => DayKind::MakeUpWorkday(&day.name),
            None if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) => DayKind::Weekend,
            None => DayKind::Workday,
        })
    }

    /// Whether `date` is a working day: a weekday that is not a holiday, or a make-up
    /// working day at a weekend.
    pub fn is_working_day(&self, date: NaiveDate) -> Result<bool, CalendarError> {
        Ok(self.day_kind(date)?.is_working())
    }

    /// Whether `instant` falls inside a working-hour window of a working day. Windows are
    /// half-open: 09:00 is working time, 12:00 is not.
    pub fn is_working_time(&self, instant: DateTime<Utc>) -> Result<bool, CalendarError> {
        let local = self.local(instant)?;
        if !self.is_working_day(local.date())? {
            return Ok(false);
        }
        Ok(self
            .windows_on(local.date())
            .any(|(open, close)| open <= local && local < close))
    }

    /// The same local time of day on the `days`-th working day after the local date of
    /// `instant` (working days strictly after that date are counted, so from a Saturday one
    /// working day is normally the Monday).
    ///
    /// With `days == 0` the instant itself is returned if its date is a working day;
    /// otherwise the same time of day on the next working day, so that the result never
    /// lands on a day off. The time of day is kept even when it is outside working hours.
    pub fn add_working_days(
        &self,
        instant: DateTime<Utc>,
        days: u32,
    ) -> Result<DateTime<Utc>, CalendarError> {
        let start = self.local(instant)?;
        let mut date = start.date();
        if days == 0 {
            if self.is_working_day(date)? {
                return Ok(instant);
            }
            date = self.next_working_day(date)?;
        }
        for _ in 0..days {
            date = self.next_working_day(date)?;
        }
        self.utc(date.and_time(start.time()))
    }

    /// Where a clock counted in working days starts for something that arrives at `instant`:
    /// the instant itself on a working day; on a day off, the opening of the first
    /// working-hour window of the next working day. (From Saturday 03:00, one working day
    /// counted with [`Calendar::add_working_days`] ends Monday 03:00, before Monday's office
    /// hours; counted from this start it ends Tuesday at opening: a full working day.)
    pub fn working_day_start(
        &self,
        instant: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, CalendarError> {
        let local = self.local(instant)?;
        if self.is_working_day(local.date())? {
            return Ok(instant);
        }
        let day = self.next_working_day(local.date())?;
        let open = self
            .windows_on(day)
            .next()
            .map_or_else(|| day.and_time(NaiveTime::MIN), |(open, _)| open);
        self.utc(open)
    }

    /// The number of working days in `(from, to]`, so that
    /// `working_days_between(d, add_working_days(d, n).date) == n` for `n >= 1`.
    /// Negative when `to` is before `from` (the count of `(to, from]`, negated).
    pub fn working_days_between(
        &self,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<i64, CalendarError> {
        if to < from {
            return self.working_days_between(to, from).map(|count| -count);
        }
        self.ensure_loaded(from)?;
        let mut count = 0;
        let mut date = from;
        while date < to {
            date = self.next_day(date)?;
            if self.is_working_day(date)? {
                count += 1;
            }
        }
        Ok(count)
    }

    /// The earliest instant at which `duration` of working time has elapsed since `instant`,
    /// counting only working-hour windows of working days.
    ///
    /// An instant outside working time starts counting at the next window opening. A result
    /// that completes a window is that window's closing (12:00, not 14:00). A zero duration
    /// returns `instant` unchanged; a negative one is an error.
    pub fn add_working_hours(
        &self,
        instant: DateTime<Utc>,
        duration: TimeDelta,
    ) -> Result<DateTime<Utc>, CalendarError> {
        if duration < TimeDelta::zero() {
            return Err(CalendarError::NegativeDuration(duration));
        }
        let start = self.local(instant)?;
        let mut date = start.date();
        self.ensure_loaded(date)?;
        if duration.is_zero() {
            return Ok(instant);
        }
        let mut remaining = duration;
        loop {
            if self.is_working_day(date)? {
                for (open, close) in self.windows_on(date) {
                    let from = open.max(start);
                    if from >= close {
                        continue;
                    }
                    let available = close - from;
                    if remaining <= available {
                        return self.utc(from + remaining);
                    }
                    remaining -= available;
                }
            }
            date = self.next_day(date)?;
        }
    }

    /// Working time elapsed from `from` to `to`: the overlap of `[from, to]` with the
    /// working-hour windows of working days.
    ///
    /// Antisymmetric: when `to` is before `from` the result is negative, which reads as
    /// "how much working time ago". Every date from `from` to `to` must be in a loaded year.
    pub fn working_time_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<TimeDelta, CalendarError> {
        if to < from {
            return self.working_time_between(to, from).map(|elapsed| -elapsed);
        }
        let (from, to) = (self.local(from)?, self.local(to)?);
        let mut total = TimeDelta::zero();
        let mut date = from.date();
        loop {
            if self.is_working_day(date)? {
                for (open, close) in self.windows_on(date) {
                    let (lo, hi) = (open.max(from), close.min(to));
                    if lo < hi {
                        total += hi - lo;
                    }
                }
            }
            if date >= to.date() {
                return Ok(total);
            }
            date = self.next_day(date)?;
        }
    }

    /// The working-hour windows of `date` as local date-times. The caller has checked that
    /// `date` is in a loaded year, so adding at most 24 hours cannot overflow.
    fn windows_on(
        &self,
        date: NaiveDate,
    ) -> impl Iterator<Item = (NaiveDateTime, NaiveDateTime)> + '_ {
        let midnight = date.and_time(NaiveTime::MIN);
        self.hours
            .windows()
            .iter()
            .map(move |window| (midnight + window.start(), midnight + window.end()))
    }

    fn ensure_loaded(&self, date: NaiveDate) -> Result<(), CalendarError> {
        self.day_kind(date).map(|_| ())
    }

    fn next_working_day(&self, mut date: NaiveDate) -> Result<NaiveDate, CalendarError> {
        loop {
            date = self.next_day(date)?;
            if self.is_working_day(date)? {
                return Ok(date);
            }
        }
    }

    fn next_day(&self, date: NaiveDate) -> Result<NaiveDate, CalendarError> {
        date.succ_opt().ok_or_else(|| self.out_of_range(date))
    }

    fn local(&self, instant: DateTime<Utc>) -> Result<NaiveDateTime, CalendarError> {
        instant
            .naive_utc()
            .checked_add_offset(SHANGHAI)
            .ok_or_else(|| self.out_of_range(instant.date_naive()))
    }

    fn utc(&self, local: NaiveDateTime) -> Result<DateTime<Utc>, CalendarError> {
        local
            .checked_sub_offset(SHANGHAI)
            .map(|naive| naive.and_utc())
            .ok_or_else(|| self.out_of_range(local.date()))
    }

    fn out_of_range(&self, date: NaiveDate) -> CalendarError {
        CalendarError::OutOfRange {
            date,
            loaded: self.loaded_description(),
        }
    }

    /// The loaded years as runs, e.g. `2025-2026` or `2020, 2024-2026`.
    fn loaded_description(&self) -> String {
        let mut runs: Vec<(i32, i32)> = Vec::new();
        for year in self.loaded_years() {
            match runs.last_mut() {
                Some((_, last)) if *last + 1 == year => *last = year,
                _ => runs.push((year, year)),
            }
        }
        if runs.is_empty() {
            return "none".to_owned();
        }
        runs.iter()
            .map(|&(first, last)| {
                if first == last {
                    first.to_string()
                } else {
                    format!("{first}-{last}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    /// An instant from local Asia/Shanghai wall-clock time, `YYYY-MM-DDTHH:MM`.
    fn at(local: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("{local}:00+08:00"))
            .unwrap()
            .to_utc()
    }

    fn hours(h: i64) -> TimeDelta {
        TimeDelta::hours(h)
    }

    fn working(calendar: &Calendar, dates: &[&str]) -> Vec<bool> {
        dates
            .iter()
            .map(|d| calendar.is_working_day(date(d)).unwrap())
            .collect()
    }

    /// An excerpt of the 2024 notice (国庆节), enough for arithmetic across New Year.
    const EXCERPT_2024: &str = r#"{"year": 2024, "papers": [], "days": [
        {"name": "国庆节", "date": "2024-09-29", "isOffDay": false},
        {"name": "国庆节", "date": "2024-10-01", "isOffDay": true},
        {"name": "国庆节", "date": "2024-10-02", "isOffDay": true},
        {"name": "国庆节", "date": "2024-10-03", "isOffDay": true},
        {"name": "国庆节", "date": "2024-10-04", "isOffDay": true},
        {"name": "国庆节", "date": "2024-10-05", "isOffDay": true},
        {"name": "国庆节", "date": "2024-10-06", "isOffDay": true},
        {"name": "国庆节", "date": "2024-10-07", "isOffDay": true},
        {"name": "国庆节", "date": "2024-10-12", "isOffDay": false}]}"#;

    #[test]
    fn spring_festival_2026() {
        let calendar = Calendar::china();
        // Fri 2/13 normal, Sat 2/14 make-up, 2/15-2/23 off, Tue 2/24 back, Sat 2/28 make-up, Sun 3/1 off.
        let days = [
            "2026-02-13",
            "2026-02-14",
            "2026-02-15",
            "2026-02-16",
            "2026-02-17",
            "2026-02-18",
            "2026-02-19",
            "2026-02-20",
            "2026-02-21",
            "2026-02-22",
            "2026-02-23",
            "2026-02-24",
            "2026-02-27",
            "2026-02-28",
            "2026-03-01",
        ];
        let expected = [
            true, true, false, false, false, false, false, false, false, false, false, true, true,
            true, false,
        ];
        assert_eq!(working(&calendar, &days), expected);
        assert_eq!(
            calendar.day_kind(date("2026-02-14")).unwrap(),
            DayKind::MakeUpWorkday("春节")
        );
        assert_eq!(
            calendar.day_kind(date("2026-02-16")).unwrap(),
            DayKind::Holiday("春节")
        );

        let friday = at("2026-02-13T10:00");
        assert_eq!(
            calendar.add_working_days(friday, 1).unwrap(),
            at("2026-02-14T10:00")
        );
        assert_eq!(
            calendar.add_working_days(friday, 2).unwrap(),
            at("2026-02-24T10:00")
        );
        assert_eq!(
            calendar.add_working_days(friday, 5).unwrap(),
            at("2026-02-27T10:00")
        );
        assert_eq!(
            calendar.add_working_days(friday, 6).unwrap(),
            at("2026-02-28T10:00")
        );
        assert_eq!(
            calendar.add_working_days(friday, 7).unwrap(),
            at("2026-03-02T10:00")
        );
        // One working hour left on the make-up Saturday, the second after the holiday.
        assert_eq!(
            calendar
                .add_working_hours(at("2026-02-14T17:00"), hours(2))
                .unwrap(),
            at("2026-02-24T10:00")
        );
        assert_eq!(
            calendar
                .working_time_between(at("2026-02-13T09:00"), at("2026-02-24T18:00"))
                .unwrap(),
            hours(21)
        );
    }

    #[test]
    fn national_day_2026() {
        let calendar = Calendar::china();
        // Sun 9/20 make-up; 9/25-9/27 中秋节; 10/1-10/7 off; Sat 10/10 make-up; Sun 10/11 off.
        let days = [
            "2026-09-19",
            "2026-09-20",
            "2026-09-24",
            "2026-09-25",
            "2026-09-28",
            "2026-09-30",
            "2026-10-01",
            "2026-10-04",
            "2026-10-07",
            "2026-10-08",
            "2026-10-10",
            "2026-10-11",
        ];
        let expected = [
            false, true, true, false, true, true, false, false, false, true, true, false,
        ];
        assert_eq!(working(&calendar, &days), expected);
        assert_eq!(
            calendar.day_kind(date("2026-09-20")).unwrap(),
            DayKind::MakeUpWorkday("国庆节")
        );
        assert_eq!(
            calendar.day_kind(date("2026-09-26")).unwrap(),
            DayKind::Holiday("中秋节")
        );

        let eve = at("2026-09-30T15:00");
        assert_eq!(
            calendar.add_working_days(eve, 1).unwrap(),
            at("2026-10-08T15:00")
        );
        assert_eq!(
            calendar.add_working_days(eve, 3).unwrap(),
            at("2026-10-10T15:00")
        );
        assert_eq!(
            calendar.add_working_days(eve, 4).unwrap(),
            at("2026-10-12T15:00")
        );
        assert_eq!(
            calendar
                .working_time_between(at("2026-09-30T09:00"), at("2026-10-08T12:00"))
                .unwrap(),
            hours(10)
        );
        assert_eq!(
            calendar
                .add_working_hours(at("2026-09-19T10:00"), hours(3))
                .unwrap(),
            at("2026-09-20T12:00")
        );
    }

    #[test]
    fn holidays_2025() {
        let calendar = Calendar::china();
        let days = [
            "2025-01-01",
            "2025-01-26",
            "2025-01-27",
            "2025-01-28",
            "2025-02-04",
            "2025-02-05",
            "2025-02-08",
            "2025-04-04",
            "2025-04-07",
            "2025-04-27",
            "2025-05-02",
            "2025-05-05",
            "2025-05-06",
            "2025-06-02",
            "2025-09-28",
            "2025-10-08",
            "2025-10-09",
            "2025-10-11",
            "2025-10-12",
        ];
        let expected = [
            false, true, true, false, false, true, true, false, true, true, false, false, true,
            false, true, false, true, true, false,
        ];
        assert_eq!(working(&calendar, &days), expected);
        assert_eq!(
            calendar
                .add_working_days(at("2025-01-27T20:00"), 1)
                .unwrap(),
            at("2025-02-05T20:00")
        );
        assert_eq!(
            calendar
                .add_working_days(at("2025-04-30T09:30"), 1)
                .unwrap(),
            at("2025-05-06T09:30")
        );
        // 元旦 2026: 1/1-1/3 off and Sunday 1/4 is a make-up working day.
        assert_eq!(
            calendar
                .add_working_days(at("2025-12-31T16:00"), 1)
                .unwrap(),
            at("2026-01-04T16:00")
        );
        // Thu 10/9, Fri 10/10 and the make-up Saturday 10/11.
        assert_eq!(
            calendar
                .working_days_between(date("2025-09-30"), date("2025-10-11"))
                .unwrap(),
            3
        );
    }

    #[test]
    fn a_day_counted_clock_starts_at_the_next_opening_on_a_day_off() {
        let calendar = Calendar::china();
        // Saturday 2026-09-26 03:04: Monday 09:00.
        assert_eq!(
            calendar.working_day_start(at("2026-09-26T03:04")).unwrap(),
            at("2026-09-28T09:00")
        );
        // A working day keeps its instant, even before opening or after closing.
        for t in ["2026-09-28T03:04", "2026-09-28T20:00"] {
            assert_eq!(calendar.working_day_start(at(t)).unwrap(), at(t));
        }
        // National Day: from Thursday 10-01 to Thursday 10-08; the make-up Saturday 10-10
        // is a working day.
        assert_eq!(
            calendar.working_day_start(at("2026-10-01T15:00")).unwrap(),
            at("2026-10-08T09:00")
        );
        assert_eq!(
            calendar.working_day_start(at("2026-10-10T15:00")).unwrap(),
            at("2026-10-10T15:00")
        );
    }

    #[test]
    fn zero_days_keeps_a_working_day_and_rolls_forward_from_a_day_off() {
        let calendar = Calendar::china();
        let monday = at("2026-03-02T20:30");
        assert_eq!(calendar.add_working_days(monday, 0).unwrap(), monday);
        assert_eq!(
            calendar
                .add_working_days(at("2026-02-16T08:00"), 0)
                .unwrap(),
            at("2026-02-24T08:00")
        );
    }

    #[test]
    fn working_hours_skip_lunch_nights_and_weekends() {
        let calendar = Calendar::china();
        // Friday 2026-03-06.
        assert_eq!(
            calendar
                .add_working_hours(at("2026-03-06T11:00"), hours(1))
                .unwrap(),
            at("2026-03-06T12:00"),
            "the earliest instant: the window's closing, not the next opening"
        );
        assert_eq!(
            calendar
                .add_working_hours(at("2026-03-06T11:00"), hours(2))
                .unwrap(),
            at("2026-03-06T15:00")
        );
        assert_eq!(
            calendar
                .add_working_hours(at("2026-03-06T12:30"), TimeDelta::minutes(30))
                .unwrap(),
            at("2026-03-06T14:30")
        );
        assert_eq!(
            calendar
                .add_working_hours(at("2026-03-06T17:00"), hours(2))
                .unwrap(),
            at("2026-03-09T10:00")
        );
        assert_eq!(
            calendar
                .add_working_hours(at("2026-03-07T03:00"), hours(7))
                .unwrap(),
            at("2026-03-09T18:00")
        );
        let night = at("2026-03-07T03:00");
        assert_eq!(
            calendar
                .add_working_hours(night, TimeDelta::zero())
                .unwrap(),
            night
        );
        assert!(matches!(
            calendar.add_working_hours(night, hours(-1)),
            Err(CalendarError::NegativeDuration(_))
        ));
    }

    #[test]
    fn working_time_between_is_antisymmetric_and_clipped_to_windows() {
        let calendar = Calendar::china();
        let (a, b) = (at("2026-03-06T10:30"), at("2026-03-09T09:15"));
        assert_eq!(
            calendar.working_time_between(a, b).unwrap(),
            TimeDelta::minutes(90 + 240 + 15)
        );
        assert_eq!(
            calendar.working_time_between(b, a).unwrap(),
            -TimeDelta::minutes(90 + 240 + 15)
        );
        assert_eq!(
            calendar.working_time_between(a, a).unwrap(),
            TimeDelta::zero()
        );
        assert_eq!(
            calendar
                .working_time_between(at("2026-03-06T12:00"), at("2026-03-06T14:00"))
                .unwrap(),
            TimeDelta::zero()
        );
    }

    #[test]
    fn working_time_boundaries_are_half_open() {
        let calendar = Calendar::china();
        assert!(!calendar.is_working_time(at("2026-03-06T08:59")).unwrap());
        assert!(calendar.is_working_time(at("2026-03-06T09:00")).unwrap());
        assert!(calendar.is_working_time(at("2026-03-06T11:59")).unwrap());
        assert!(!calendar.is_working_time(at("2026-03-06T12:00")).unwrap());
        assert!(
            calendar.is_working_time(at("2026-02-28T14:00")).unwrap(),
            "make-up Saturday"
        );
        assert!(
            !calendar.is_working_time(at("2026-02-23T10:00")).unwrap(),
            "holiday Monday"
        );
        // 01:30 UTC on 2026-03-06 is 09:30 in Shanghai.
        let utc: DateTime<Utc> = "2026-03-06T01:30:00Z".parse().unwrap();
        assert!(calendar.is_working_time(utc).unwrap());
    }

    #[test]
    fn custom_working_hours() {
        let calendar =
            Calendar::china().with_working_hours("08:30-12:00,13:30-17:30".parse().unwrap());
        assert_eq!(
            calendar
                .add_working_hours(at("2026-03-06T12:00"), hours(1))
                .unwrap(),
            at("2026-03-06T14:30")
        );
        let around_the_clock = Calendar::china().with_working_hours("00:00-24:00".parse().unwrap());
        assert_eq!(
            around_the_clock
                .add_working_hours(at("2026-03-06T23:00"), hours(2))
                .unwrap(),
            at("2026-03-09T01:00")
        );
        assert_eq!(
            around_the_clock
                .working_time_between(at("2026-03-06T00:00"), at("2026-03-07T00:00"))
                .unwrap(),
            hours(24)
        );
    }

    #[test]
    fn refuses_dates_outside_the_loaded_years() {
        let calendar = Calendar::china();
        let out_of_range = |result: Result<bool, CalendarError>| match result {
            Err(CalendarError::OutOfRange { date, loaded }) => (date, loaded),
            other => panic!("expected OutOfRange, got {other:?}"),
        };
        assert_eq!(
            out_of_range(calendar.is_working_day(date("2024-12-31"))),
            (date("2024-12-31"), "2025-2026".to_owned())
        );
        assert_eq!(
            out_of_range(calendar.is_working_day(date("2027-01-04"))),
            (date("2027-01-04"), "2025-2026".to_owned())
        );
        let err = calendar
            .add_working_days(at("2026-12-30T10:00"), 5)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "2027-01-01 is outside the loaded calendar years (2025-2026); load that year's holiday data"
        );
        assert!(
            calendar
                .add_working_hours(at("2026-12-31T17:00"), hours(2))
                .is_err()
        );
        assert!(
            calendar
                .working_time_between(at("2026-12-31T17:00"), at("2027-01-04T10:00"))
                .is_err()
        );
        assert!(
            calendar
                .add_working_hours(at("2024-06-01T10:00"), TimeDelta::zero())
                .is_err()
        );
        assert!(calendar.is_working_time(DateTime::<Utc>::MAX_UTC).is_err());
        assert!(matches!(
            Calendar::empty().is_working_day(date("2026-03-02")),
            Err(CalendarError::OutOfRange { loaded, .. }) if loaded == "none"
        ));
    }

    #[test]
    fn loading_a_year_extends_the_range() {
        let mut calendar = Calendar::china();
        assert_eq!(calendar.load_year_json(EXCERPT_2024).unwrap(), 2024);
        assert_eq!(
            calendar.loaded_years().collect::<Vec<_>>(),
            [2024, 2025, 2026]
        );
        assert!(calendar.is_working_day(date("2024-10-12")).unwrap());
        assert!(!calendar.is_working_day(date("2024-10-07")).unwrap());
        // 2025-01-01 is a holiday.
        assert_eq!(
            calendar
                .add_working_days(at("2024-12-31T10:00"), 1)
                .unwrap(),
            at("2025-01-02T10:00")
        );
        assert!(matches!(
            calendar.is_working_day(date("2023-12-29")),
            Err(CalendarError::OutOfRange { loaded, .. }) if loaded == "2024-2026"
        ));
        calendar
            .load_year_json(r#"{"year": 2028, "days": [{"name": "元旦", "date": "2028-01-01", "isOffDay": true}]}"#)
            .unwrap();
        assert!(matches!(
            calendar.is_working_day(date("2027-06-01")),
            Err(CalendarError::OutOfRange { loaded, .. }) if loaded == "2024-2026, 2028"
        ));
    }

    #[test]
    fn a_span_listed_in_the_adjacent_year_applies_once_both_years_are_loaded() {
        let mut calendar = Calendar::china();
        // A fictitious 2027 notice whose New Year span starts on Thursday 2026-12-31.
        calendar
            .load_year_json(r#"{"year": 2027, "days": [{"name": "元旦", "date": "2026-12-31", "isOffDay": true},
                                                      {"name": "元旦", "date": "2027-01-01", "isOffDay": true}]}"#)
            .unwrap();
        assert_eq!(
            calendar.day_kind(date("2026-12-31")).unwrap(),
            DayKind::Holiday("元旦")
        );
        assert_eq!(
            calendar.day_kind(date("2027-01-04")).unwrap(),
            DayKind::Workday
        );
    }

    #[test]
    fn a_loaded_year_replaces_the_builtin_one() {
        let mut calendar = Calendar::china();
        calendar
            .load_year_json(r#"{"year": 2026, "days": [{"name": "测试", "date": "2026-03-02", "isOffDay": true}]}"#)
            .unwrap();
        assert!(!calendar.is_working_day(date("2026-03-02")).unwrap());
        assert!(!calendar.is_working_day(date("2026-02-14")).unwrap());
    }

    #[test]
    fn load_year_file_names_the_path() {
        let err = Calendar::china()
            .load_year_file("/nonexistent/2027.json")
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read holiday file `/nonexistent/2027.json`: ")
        );
    }
}
