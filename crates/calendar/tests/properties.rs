//! Property tests of the calendar arithmetic and the SLA clock on the built-in years.

use chrono::{DateTime, Datelike, DurationRound, NaiveDate, TimeDelta, Utc, Weekday};
use minyi_calendar::sla::{Limit, SlaClock};
use minyi_calendar::{Calendar, SHANGHAI, WorkingHours};
use proptest::prelude::*;

/// Days off of 2025 and 2026, written out day by day from the State Council notices,
/// independently of the crate's span table.
const DAYS_OFF: &[&str] = &[
    "2025-01-01",
    "2025-01-28",
    "2025-01-29",
    "2025-01-30",
    "2025-01-31",
    "2025-02-01",
    "2025-02-02",
    "2025-02-03",
    "2025-02-04",
    "2025-04-04",
    "2025-04-05",
    "2025-04-06",
    "2025-05-01",
    "2025-05-02",
    "2025-05-03",
    "2025-05-04",
    "2025-05-05",
    "2025-05-31",
    "2025-06-01",
    "2025-06-02",
    "2025-10-01",
    "2025-10-02",
    "2025-10-03",
    "2025-10-04",
    "2025-10-05",
    "2025-10-06",
    "2025-10-07",
    "2025-10-08",
    "2026-01-01",
    "2026-01-02",
    "2026-01-03",
    "2026-02-15",
    "2026-02-16",
    "2026-02-17",
    "2026-02-18",
    "2026-02-19",
    "2026-02-20",
    "2026-02-21",
    "2026-02-22",
    "2026-02-23",
    "2026-04-04",
    "2026-04-05",
    "2026-04-06",
    "2026-05-01",
    "2026-05-02",
    "2026-05-03",
    "2026-05-04",
    "2026-05-05",
    "2026-06-19",
    "2026-06-20",
    "2026-06-21",
    "2026-09-25",
    "2026-09-26",
    "2026-09-27",
    "2026-10-01",
    "2026-10-02",
    "2026-10-03",
    "2026-10-04",
    "2026-10-05",
    "2026-10-06",
    "2026-10-07",
];

/// Make-up working days (调休上班) of 2025 and 2026.
const MAKE_UP_DAYS: &[&str] = &[
    "2025-01-26",
    "2025-02-08",
    "2025-04-27",
    "2025-09-28",
    "2025-10-11",
    "2026-01-04",
    "2026-02-14",
    "2026-02-28",
    "2026-05-09",
    "2026-09-20",
    "2026-10-10",
];

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn local(instant: DateTime<Utc>) -> chrono::NaiveDateTime {
    instant.with_timezone(&SHANGHAI).naive_local()
}

/// Instants from 2025-01-01 00:00 to 2026-10-31 in Shanghai, to the second, leaving room
/// for the arithmetic to stay inside the loaded years.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let first: DateTime<Utc> = "2025-01-01T00:00:00+08:00".parse().unwrap();
    (0i64..669 * 86_400).prop_map(move |seconds| first + TimeDelta::seconds(seconds))
}

/// Instants and durations on a quarter-hour grid often meet window edges exactly, which
/// second-precision ones almost never do.
fn instant_or_quarter_hour() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        instant(),
        instant().prop_map(|t| t.duration_trunc(TimeDelta::minutes(15)).unwrap())
    ]
}

fn working_duration() -> impl Strategy<Value = TimeDelta> {
    prop_oneof![
        (0i64..=120 * 3600).prop_map(TimeDelta::seconds),
        (0i64..=120 * 4).prop_map(|quarters| TimeDelta::minutes(15 * quarters)),
    ]
}

fn loaded_date() -> impl Strategy<Value = NaiveDate> {
    (0u64..730).prop_map(|offset| date("2025-01-01") + chrono::Days::new(offset))
}

fn working_hours() -> impl Strategy<Value = WorkingHours> {
    prop::sample::select(vec![
        "09:00-12:00,14:00-18:00",
        "08:30-12:00,13:30-17:30",
        "09:00-17:00",
        "00:00-24:00",
        "07:15-07:45,12:00-12:01,22:00-24:00",
    ])
    .prop_map(|spec| spec.parse().unwrap())
}

proptest! {
    #[test]
    fn every_date_matches_the_notices(day in loaded_date()) {
        let listed_off = DAYS_OFF.contains(&day.to_string().as_str());
        let listed_make_up = MAKE_UP_DAYS.contains(&day.to_string().as_str());
        let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        let expected = listed_make_up || (!listed_off && !weekend);
        prop_assert_eq!(Calendar::china().is_working_day(day).unwrap(), expected);
    }

    #[test]
    fn a_make_up_weekend_day_counts_as_a_working_day(
        index in 0..MAKE_UP_DAYS.len(),
        minutes in 0i64..7 * 60,
    ) {
        let calendar = Calendar::china();
        let make_up = date(MAKE_UP_DAYS[index]);
        prop_assert!(matches!(make_up.weekday(), Weekday::Sat | Weekday::Sun));
        prop_assert!(calendar.is_working_day(make_up).unwrap());
        // Any minute of its default working hours is working time.
        let minute = if minutes < 180 { 9 * 60 + minutes } else { 14 * 60 + minutes - 180 };
        let at = make_up.and_hms_opt(0, 0, 0).unwrap() + TimeDelta::minutes(minute);
        let at = at.and_local_timezone(SHANGHAI).unwrap().to_utc();
        prop_assert!(calendar.is_working_time(at).unwrap());
        // It is the next working day after the working day before it.
        let mut before = make_up.pred_opt().unwrap();
        while !calendar.is_working_day(before).unwrap() {
            before = before.pred_opt().unwrap();
        }
        let from = before.and_hms_opt(16, 20, 0).unwrap().and_local_timezone(SHANGHAI).unwrap();
        let next = calendar.add_working_days(from.to_utc(), 1).unwrap();
        prop_assert_eq!(local(next).date(), make_up);
    }

    #[test]
    fn adding_working_days_measures_back(start in instant(), days in 1u32..=40) {
        let calendar = Calendar::china();
        let result = calendar.add_working_days(start, days).unwrap();
        let (from, to) = (local(start), local(result));
        prop_assert_eq!(
            calendar.working_days_between(from.date(), to.date()).unwrap(),
            i64::from(days)
        );
        prop_assert_eq!(
            calendar.working_days_between(to.date(), from.date()).unwrap(),
            -i64::from(days)
        );
        prop_assert_eq!(to.time(), from.time());
        prop_assert!(calendar.is_working_day(to.date()).unwrap(), "landed on a day off: {}", to);
    }

    #[test]
    fn zero_working_days_never_lands_on_a_day_off(start in instant()) {
        let calendar = Calendar::china();
        let result = calendar.add_working_days(start, 0).unwrap();
        prop_assert!(calendar.is_working_day(local(result).date()).unwrap());
        prop_assert_eq!(result == start, calendar.is_working_day(local(start).date()).unwrap());
    }

    #[test]
    fn adding_working_hours_measures_back(
        // 120 working hours of the sparsest schedule below (2.5 h a day) span about 48 working
        // days: start early enough to end inside the loaded years.
        start in instant_or_quarter_hour().prop_filter("ends inside 2026", |t| {
            *t < "2026-09-01T00:00:00+08:00".parse::<DateTime<Utc>>().unwrap()
        }),
        duration in working_duration(),
        hours in working_hours(),
    ) {
        let calendar = Calendar::china().with_working_hours(hours);
        let result = calendar.add_working_hours(start, duration).unwrap();
        prop_assert!(result >= start);
        prop_assert_eq!(calendar.working_time_between(start, result).unwrap(), duration);
        prop_assert_eq!(calendar.working_time_between(result, start).unwrap(), -duration);
        if duration > TimeDelta::zero() {
            // The earliest such instant: the second before it was working time.
            prop_assert!(calendar.is_working_time(result - TimeDelta::seconds(1)).unwrap());
        }
    }

    #[test]
    fn working_hours_never_end_on_a_day_off(
        start in instant_or_quarter_hour(),
        duration in working_duration().prop_filter("positive", |d| *d > TimeDelta::zero()),
    ) {
        let calendar = Calendar::china();
        let result = calendar.add_working_hours(start, duration).unwrap();
        prop_assert!(calendar.is_working_day(local(result).date()).unwrap(), "landed on a day off: {}", local(result));
    }

    #[test]
    fn working_time_is_additive(a in instant(), b in instant(), c in instant()) {
        let calendar = Calendar::china();
        let whole = calendar.working_time_between(a, c).unwrap();
        let parts = calendar.working_time_between(a, b).unwrap() + calendar.working_time_between(b, c).unwrap();
        prop_assert_eq!(whole, parts);
    }

    #[test]
    fn sla_clock_runs_exactly_its_allowance(
        start in instant(),
        limit in prop_oneof![(0u32..=60).prop_map(Limit::Hours), (0u32..=10).prop_map(Limit::Days)],
        pauses in prop::collection::vec((-48i64..240, 0i64..=72), 0..4),
    ) {
        let calendar = Calendar::china();
        let mut clock = SlaClock::new(start, limit);
        for (offset_hours, length_hours) in pauses {
            let from = start + TimeDelta::hours(offset_hours);
            clock.pause(from, from + TimeDelta::hours(length_hours)).unwrap();
        }
        let deadline = clock.deadline(&calendar).unwrap();
        let unpaused = limit.after(&calendar, start).unwrap();
        prop_assert_eq!(deadline.allowed, calendar.working_time_between(start, unpaused).unwrap());
        if let Limit::Hours(hours) = limit {
            prop_assert_eq!(deadline.allowed, TimeDelta::hours(i64::from(hours)));
        }
        prop_assert!(deadline.due >= unpaused);
        prop_assert_eq!(clock.elapsed(&calendar, deadline.due).unwrap(), deadline.allowed);
        let mut previous = start;
        for (fraction, at) in &deadline.warnings {
            let expected = (deadline.allowed.num_seconds() as f64 * f64::from(*fraction)).round() as i64;
            prop_assert_eq!(clock.elapsed(&calendar, *at).unwrap(), TimeDelta::seconds(expected));
            prop_assert!(previous <= *at && *at <= deadline.due);
            previous = *at;
        }
        if clock.pauses().is_empty() {
            prop_assert_eq!(deadline.due, unpaused);
        }
    }
}
