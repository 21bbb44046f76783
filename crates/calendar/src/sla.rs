//! SLA clocks: deadlines and breach warnings for time limits counted in working time.
//!
//! Pure arithmetic over a [`Calendar`]; no I/O and no reading of the current time (the
//! caller passes every instant in).
//!
//! The model, from the platform's rules:
//! - The clock starts at dispatch ([`SlaClock::new`]), not at acceptance.
//! - A [`Limit`] is a number of working hours or working days. Working days mean "the same
//!   time of day on the N-th working day", as [`Calendar::add_working_days`] computes.
//! - The clock stops only during [`Pause`]s (waiting for the citizen). Working time inside a
//!   pause pushes the deadline back by the same working time; pauses outside working hours
//!   change nothing.
//! - Approved extensions add working time on top of the limit, in hours or days.
//! - A redo after a justified dissatisfied callback restarts the clock ([`SlaClock::redo`]).

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};

use crate::{Calendar, CalendarError};

/// Fractions of the allowed running time at which warnings fall due, unless configured.
pub const DEFAULT_WARNING_FRACTIONS: [f32; 2] = [0.75, 0.9];

/// A time limit, or an extension of one, in working time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Working hours, counted through working-hour windows only.
    Hours(u32),
    /// Working days: the same local time of day on the N-th working day after.
    Days(u32),
}

impl Limit {
    /// The instant this limit ends when counted from `from`, ignoring pauses.
    pub fn after(
        self,
        calendar: &Calendar,
        from: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, CalendarError> {
        match self {
            Limit::Hours(hours) => {
                calendar.add_working_hours(from, TimeDelta::hours(i64::from(hours)))
            }
            Limit::Days(days) => calendar.add_working_days(from, days),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Hours(1) => f.write_str("1 working hour"),
            Limit::Hours(hours) => write!(f, "{hours} working hours"),
            Limit::Days(1) => f.write_str("1 working day"),
            Limit::Days(days) => write!(f, "{days} working days"),
        }
    }
}

/// An interval `[start, end)` during which the clock is stopped (waiting for the citizen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// When a clock is due and when to warn before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Deadline {
    /// The instant the limit is breached.
    pub due: DateTime<Utc>,
    /// Working time the clock may run between its start and `due`, pauses excluded.
    pub allowed: TimeDelta,
    /// `(fraction, instant)`: when that fraction of `allowed` has run, in the order the
    /// fractions were given.
    pub warnings: Vec<(f32, DateTime<Utc>)>,
}

/// The SLA clock of one handling period of a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaClock {
    /// Dispatch instant (or the restart of a redo): the clock runs from here.
    start: DateTime<Utc>,
    limit: Limit,
    /// Validated (`start <= end`), in the order added; may overlap or precede `start`.
    pauses: Vec<Pause>,
    /// Approved extensions, applied in the order added.
    extensions: Vec<Limit>,
}

impl SlaClock {
    /// A clock that starts at `start` with `limit` and no pauses or extensions.
    pub fn new(start: DateTime<Utc>, limit: Limit) -> Self {
        Self {
            start,
            limit,
            pauses: Vec::new(),
            extensions: Vec::new(),
        }
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn limit(&self) -> Limit {
        self.limit
    }

    pub fn pauses(&self) -> &[Pause] {
        &self.pauses
    }

    pub fn extensions(&self) -> &[Limit] {
        &self.extensions
    }

    /// Records that the clock was stopped from `start` to `end`. Parts before the clock's
    /// start are ignored; overlapping pauses count once.
    pub fn pause(&mut self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<(), CalendarError> {
        if end < start {
            return Err(CalendarError::InvalidPause { start, end });
        }
        self.pauses.push(Pause { start, end });
        Ok(())
    }

    /// Records an approved extension: `extra` working time on top of the limit.
    pub fn extend(&mut self, extra: Limit) {
        self.extensions.push(extra);
    }

    /// The clock of a redo: the same limit from `new_start`, without the old period's
    /// pauses and extensions (they were granted for the work being redone).
    pub fn redo(&self, new_start: DateTime<Utc>) -> Self {
        Self::new(new_start, self.limit)
    }

    /// The deadline, with warnings at [`DEFAULT_WARNING_FRACTIONS`].
    pub fn deadline(&self, calendar: &Calendar) -> Result<Deadline, CalendarError> {
        self.deadline_with_warnings(calendar, &DEFAULT_WARNING_FRACTIONS)
    }

    /// The deadline, with a warning for each fraction (strictly between 0 and 1) of the
    /// allowed running time.
    ///
    /// The limit and then each extension are applied from the start, as if nothing paused;
    /// the working time up to that instant is what the clock may run. The due instant is when
    /// the clock, stopped during pauses, has run that long; with no working time paused it
    /// is exactly the unpaused instant (so a days limit keeps its time of day).
    pub fn deadline_with_warnings(
        &self,
        calendar: &Calendar,
        fractions: &[f32],
    ) -> Result<Deadline, CalendarError> {
        if let Some(&bad) = fractions.iter().find(|f| !(**f > 0.0 && **f < 1.0)) {
            return Err(CalendarError::InvalidWarningFraction(bad));
        }
        let mut unpaused = self.limit.after(calendar, self.start)?;
        for extension in &self.extensions {
            unpaused = extension.after(calendar, unpaused)?;
        }
        let allowed = calendar.working_time_between(self.start, unpaused)?;
        let pauses = self.effective_pauses();
        let (run_out, paused) = run_until(calendar, self.start, &pauses, allowed)?;
        let due = if paused.is_zero() { unpaused } else { run_out };

        let warnings = fractions
            .iter()
            .map(|&fraction| {
                let (at, _) = run_until(
                    calendar,
                    self.start,
                    &pauses,
                    fraction_of(allowed, fraction),
                )?;
                Ok((fraction, at))
            })
            .collect::<Result<_, CalendarError>>()?;
        Ok(Deadline {
            due,
            allowed,
            warnings,
        })
    }

    /// Working time the clock has run by `now`, pauses excluded; zero before the start.
    pub fn elapsed(
        &self,
        calendar: &Calendar,
        now: DateTime<Utc>,
    ) -> Result<TimeDelta, CalendarError> {
        if now <= self.start {
            return Ok(TimeDelta::zero());
        }
        let mut elapsed = calendar.working_time_between(self.start, now)?;
        for pause in self.effective_pauses() {
            if pause.start >= now {
                break;
            }
            elapsed -= calendar.working_time_between(pause.start, pause.end.min(now))?;
        }
        Ok(elapsed)
    }

    /// The pauses clipped to the clock's start, sorted and merged, so that they are disjoint
    /// and none starts before the clock.
    fn effective_pauses(&self) -> Vec<Pause> {
        let mut clipped: Vec<Pause> = self
            .pauses
            .iter()
            .filter(|pause| pause.end > self.start)
            .map(|pause| Pause {
                start: pause.start.max(self.start),
                end: pause.end,
            })
            .collect();
        clipped.sort_by_key(|pause| pause.start);
        let mut merged: Vec<Pause> = Vec::with_capacity(clipped.len());
        for pause in clipped {
            match merged.last_mut() {
                Some(last) if pause.start <= last.end => last.end = last.end.max(pause.end),
                _ => merged.push(pause),
            }
        }
        merged
    }
}

/// Runs a clock from `start`, stopped during `pauses` (disjoint, sorted, none before
/// `start`), until it has run `budget`. Returns the earliest such instant and the working
/// time paused before it.
fn run_until(
    calendar: &Calendar,
    start: DateTime<Utc>,
    pauses: &[Pause],
    budget: TimeDelta,
) -> Result<(DateTime<Utc>, TimeDelta), CalendarError> {
    let mut cursor = start;
    let mut remaining = budget;
    let mut paused = TimeDelta::zero();
    for pause in pauses {
        let running = calendar.working_time_between(cursor, pause.start)?;
        if running >= remaining {
            break;
        }
        remaining -= running;
        paused += calendar.working_time_between(pause.start, pause.end)?;
        cursor = pause.end;
    }
    Ok((calendar.add_working_hours(cursor, remaining)?, paused))
}

/// `fraction` of `allowed`, to the whole second (warnings need no finer precision, and
/// whole seconds hide the binary inexactness of `f32` fractions such as 0.9).
fn fraction_of(allowed: TimeDelta, fraction: f32) -> TimeDelta {
    let seconds = (allowed.num_milliseconds() as f64 / 1000.0 * f64::from(fraction)).round();
    TimeDelta::seconds(seconds as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(local: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("{local}:00+08:00"))
            .unwrap()
            .to_utc()
    }

    #[test]
    fn hours_limit_without_pauses() {
        let calendar = Calendar::china();
        // Friday 2026-03-06 10:00, 8 working hours: 6 on Friday, 2 on Monday.
        let clock = SlaClock::new(at("2026-03-06T10:00"), Limit::Hours(8));
        let deadline = clock.deadline(&calendar).unwrap();
        assert_eq!(deadline.due, at("2026-03-09T11:00"));
        assert_eq!(deadline.allowed, TimeDelta::hours(8));
        // 6h and 7h12m of running time.
        assert_eq!(
            deadline.warnings,
            [
                (0.75, at("2026-03-06T18:00")),
                (0.9, at("2026-03-09T10:12"))
            ]
        );
    }

    #[test]
    fn days_limit_keeps_the_time_of_day_across_the_spring_festival() {
        let calendar = Calendar::china();
        // Dispatched Thursday evening 2026-02-12 20:00; 3 working days: 2/13, Sat 2/14, 2/24.
        let clock = SlaClock::new(at("2026-02-12T20:00"), Limit::Days(3));
        let deadline = clock.deadline(&calendar).unwrap();
        assert_eq!(deadline.due, at("2026-02-24T20:00"));
        assert_eq!(deadline.allowed, TimeDelta::hours(21));
        // 75% of 21h = 15h45m: 2/13 (7h), 2/14 (7h), then 1h45m on 2/24.
        assert_eq!(deadline.warnings[0], (0.75, at("2026-02-24T10:45")));
    }

    #[test]
    fn pauses_in_working_time_push_the_deadline_back() {
        let calendar = Calendar::china();
        let mut clock = SlaClock::new(at("2026-03-02T09:00"), Limit::Days(1));
        // Waiting for the citizen Monday 10:00-11:30, then from 17:00 to Tuesday 09:30.
        clock
            .pause(at("2026-03-02T10:00"), at("2026-03-02T11:30"))
            .unwrap();
        clock
            .pause(at("2026-03-02T17:00"), at("2026-03-03T09:30"))
            .unwrap();
        let deadline = clock.deadline(&calendar).unwrap();
        // 7h allowed, 3h of them paused: Tuesday 09:00 + 3h of working time.
        assert_eq!(deadline.allowed, TimeDelta::hours(7));
        assert_eq!(deadline.due, at("2026-03-03T12:00"));
        assert_eq!(
            clock.elapsed(&calendar, deadline.due).unwrap(),
            TimeDelta::hours(7)
        );
        assert_eq!(
            clock.elapsed(&calendar, at("2026-03-02T11:00")).unwrap(),
            TimeDelta::hours(1)
        );
    }

    #[test]
    fn pauses_outside_working_time_or_before_the_start_change_nothing() {
        let calendar = Calendar::china();
        let start = at("2026-03-02T20:00");
        let mut clock = SlaClock::new(start, Limit::Days(2));
        clock
            .pause(at("2026-03-02T08:00"), at("2026-03-02T21:00"))
            .unwrap();
        clock
            .pause(at("2026-03-03T12:00"), at("2026-03-03T14:00"))
            .unwrap();
        clock
            .pause(at("2026-03-07T09:00"), at("2026-03-08T18:00"))
            .unwrap();
        assert_eq!(
            clock.deadline(&calendar).unwrap().due,
            at("2026-03-04T20:00")
        );
    }

    #[test]
    fn overlapping_pauses_count_once() {
        let calendar = Calendar::china();
        let mut clock = SlaClock::new(at("2026-03-02T09:00"), Limit::Hours(2));
        clock
            .pause(at("2026-03-02T10:00"), at("2026-03-02T11:00"))
            .unwrap();
        clock
            .pause(at("2026-03-02T10:30"), at("2026-03-02T11:30"))
            .unwrap();
        clock
            .pause(at("2026-03-02T10:15"), at("2026-03-02T10:45"))
            .unwrap();
        assert_eq!(
            clock.deadline(&calendar).unwrap().due,
            at("2026-03-02T14:30")
        );
    }

    #[test]
    fn extensions_add_working_time_and_pauses_inside_them_still_count() {
        let calendar = Calendar::china();
        let mut clock = SlaClock::new(at("2026-03-05T15:00"), Limit::Days(1));
        clock.extend(Limit::Days(2));
        clock.extend(Limit::Hours(3));
        // 1 day → Fri 3/6 15:00; 2 days → Tue 3/10 15:00; 3 hours → Tue 3/10 18:00.
        assert_eq!(
            clock.deadline(&calendar).unwrap().due,
            at("2026-03-10T18:00")
        );
        // An hour paused inside the extension moves it to the next working hour.
        clock
            .pause(at("2026-03-10T09:00"), at("2026-03-10T10:00"))
            .unwrap();
        assert_eq!(
            clock.deadline(&calendar).unwrap().due,
            at("2026-03-11T10:00")
        );
    }

    #[test]
    fn redo_restarts_the_clock_with_the_same_limit() {
        let calendar = Calendar::china();
        let mut clock = SlaClock::new(at("2026-03-02T09:00"), Limit::Days(3));
        clock.extend(Limit::Days(5));
        clock
            .pause(at("2026-03-02T09:00"), at("2026-03-02T18:00"))
            .unwrap();
        let redo = clock.redo(at("2026-03-20T16:00"));
        assert_eq!(redo, SlaClock::new(at("2026-03-20T16:00"), Limit::Days(3)));
        assert_eq!(
            redo.deadline(&calendar).unwrap().due,
            at("2026-03-25T16:00")
        );
    }

    #[test]
    fn rejects_bad_pauses_and_fractions() {
        let calendar = Calendar::china();
        let mut clock = SlaClock::new(at("2026-03-02T09:00"), Limit::Hours(4));
        assert!(matches!(
            clock.pause(at("2026-03-02T11:00"), at("2026-03-02T10:00")),
            Err(CalendarError::InvalidPause { .. })
        ));
        for bad in [0.0, 1.0, -0.5, f32::NAN] {
            assert!(matches!(
                clock.deadline_with_warnings(&calendar, &[0.5, bad]),
                Err(CalendarError::InvalidWarningFraction(_))
            ));
        }
        let deadline = clock.deadline_with_warnings(&calendar, &[0.5]).unwrap();
        assert_eq!(deadline.warnings, [(0.5, at("2026-03-02T11:00"))]);
    }

    #[test]
    fn a_deadline_beyond_the_loaded_years_is_an_error() {
        let clock = SlaClock::new(at("2026-12-28T09:00"), Limit::Days(15));
        assert!(matches!(
            clock.deadline(&Calendar::china()),
            Err(CalendarError::OutOfRange { .. })
        ));
    }

    #[test]
    fn limits_display_in_words() {
        assert_eq!(Limit::Days(3).to_string(), "3 working days");
        assert_eq!(Limit::Hours(1).to_string(), "1 working hour");
    }
}
