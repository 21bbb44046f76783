//! Every figure of the dashboard, computed from the read model on request. Pure: the caller
//! passes the model, the filter, "now", the catalog and the calendar. The formulas are written
//! out in `docs/METRICS.md`; keep the two in step.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use minyi_catalog::{Catalog, UnitKind};
use minyi_core::petition::TicketStatus;
use minyi_core::store::DispatchState;
use serde::Serialize;
use uuid::Uuid;

use crate::facts::{Fact, Handling};
use crate::filter::{Filter, categories, local_date};
use crate::model::ReadModel;
use crate::worktime::WorkTime;

/// Characters of text shown per ticket in lists.
pub const EXCERPT_CHARS: usize = 60;
/// The share of the allowed working time from which an open ticket is "at risk".
pub const AT_RISK_FRACTION: f64 = 0.75;
/// Days in the trend charts.
pub const TREND_DAYS: i64 = 30;

/// A share: `numerator / denominator`, `null` when nothing was counted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    pub value: Option<f64>,
    pub numerator: u64,
    pub denominator: u64,
}

impl Rate {
    pub fn new(numerator: u64, denominator: u64) -> Rate {
        Rate {
            value: (denominator > 0).then(|| numerator as f64 / denominator as f64),
            numerator,
            denominator,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    n: u64,
    d: u64,
}

impl Tally {
    fn count(&mut self, counted: bool, hit: bool) {
        if counted {
            self.d += 1;
            if hit {
                self.n += 1;
            }
        }
    }

    fn rate(self) -> Rate {
        Rate::new(self.n, self.d)
    }
}

/// An average: `null` when there was nothing to average.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Mean {
    pub value: Option<f64>,
    pub count: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    total: f64,
    count: u64,
}

impl Sum {
    fn add(&mut self, v: f64) {
        self.total += v;
        self.count += 1;
    }

    fn mean(self) -> Mean {
        Mean {
            value: (self.count > 0).then(|| self.total / self.count as f64),
            count: self.count,
        }
    }
}

/// Petitions received, whatever the date range (the other filters apply).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Volume {
    pub today: u64,
    /// Since Monday.
    pub this_week: u64,
    /// Since the 1st.
    pub this_month: u64,
    /// In the filter's date range.
    pub in_range: u64,
}

/// The headline figures over the tickets received in the range (see `docs/METRICS.md`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub received: u64,
    pub dispatched: u64,
    pub completed: u64,
    /// With a unit now (dispatched or accepted).
    pub open: u64,
    /// Open with a deadline passed.
    pub overdue: u64,
    pub linked_duplicates: u64,
    pub waiting_for_dispatcher: u64,
    /// 一次分拨准确率.
    pub first_dispatch_accuracy: Rate,
    /// Receipt → first dispatch, wall-clock hours.
    pub avg_dispatch_hours: Mean,
    /// Receipt → acceptance by the lead unit, wall-clock hours.
    pub avg_accept_hours: Mean,
    /// 按时办结率.
    pub on_time_completion: Rate,
    /// First dispatch → completion, working days.
    pub avg_completion_working_days: Mean,
    /// 响应率.
    pub response_rate: Rate,
    /// 解决率.
    pub resolution_rate: Rate,
    /// 满意率.
    pub satisfaction_rate: Rate,
}

/// An open ticket past or near a deadline. No personal data: the text is masked and short.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TicketRow {
    pub id: Uuid,
    pub tracking_number: String,
    pub excerpt: String,
    pub category: String,
    pub item_name: String,
    pub street: String,
    pub street_name: String,
    pub community_name: String,
    pub lead_unit: String,
    pub lead_unit_name: String,
    pub state: String,
    /// Which deadline: `accept` or `complete`.
    pub clock: String,
    pub due: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub dispatched_at: DateTime<Utc>,
    /// Share of the allowed working time used (above 1 when overdue).
    pub used: f64,
    /// Working hours past the deadline (negative: still left).
    pub overdue_working_hours: f64,
    /// An overdue alert was raised: under supervision (督办).
    pub supervised: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArbitrationRow {
    pub id: Uuid,
    pub tracking_number: String,
    pub excerpt: String,
    pub category: String,
    pub street_name: String,
    pub returns: u64,
    /// Why it is listed: `escalated` (waiting for a ruling), `returned_twice` (hard by rule,
    /// returned and not escalated yet) or `arbitrated` (an outcome).
    pub source: String,
    pub reason: String,
    pub candidate_units: Vec<String>,
    pub escalated_at: Option<DateTime<Utc>>,
    /// The arbitration's own time limit.
    pub due: Option<DateTime<Utc>>,
    pub owner_unit: String,
    pub owner_unit_name: String,
    pub ruling: String,
    pub catalog_version: String,
    pub arbitrated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArbitrationView {
    pub queue: Vec<ArbitrationRow>,
    pub outcomes: Vec<ArbitrationRow>,
}

/// One unit's record over the range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeagueRow {
    pub rank: u32,
    pub unit: String,
    pub unit_name: String,
    pub kind: String,
    /// Tickets it leads now.
    pub led: u64,
    pub returns: u64,
    pub late: u64,
    pub extensions: u64,
    pub dissatisfied: u64,
    /// returns + late + extensions + dissatisfied.
    pub problems: u64,
    pub on_time_completion: Rate,
    pub satisfaction_rate: Rate,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakdownRow {
    pub key: String,
    pub name: String,
    pub received: u64,
    pub dispatched: u64,
    pub completed: u64,
    pub open: u64,
    pub overdue: u64,
    pub first_dispatch_accuracy: Rate,
    pub on_time_completion: Rate,
    pub satisfaction_rate: Rate,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdowns {
    pub category: Vec<BreakdownRow>,
    pub street: Vec<BreakdownRow>,
    pub unit: Vec<BreakdownRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendPoint {
    pub date: NaiveDate,
    pub received: u64,
    pub dispatched: u64,
    pub completed: u64,
    /// Of the tickets received that day and dispatched since.
    pub first_dispatch_accuracy: Option<f64>,
    /// Of the tickets completed that day.
    pub on_time_completion: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    pub code: String,
    pub name: String,
}

/// What the filter drop-downs offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Options {
    pub streets: Vec<Choice>,
    pub units: Vec<Choice>,
    pub categories: Vec<String>,
}

/// Names of units from the catalog.
pub struct Names<'a>(pub &'a Catalog);

impl Names<'_> {
    pub fn unit(&self, code: &str) -> String {
        self.0
            .units()
            .get(code)
            .map_or_else(|| code.to_owned(), |u| u.name.clone())
    }

    fn kind(&self, code: &str) -> String {
        self.0
            .units()
            .get(code)
            .map(|u| u.kind.as_str().to_owned())
            .unwrap_or_default()
    }
}

/// Everything one page shows (hotspots aside, see [`crate::hotspots`]).
pub struct Context<'a> {
    pub model: &'a ReadModel,
    pub filter: &'a Filter,
    pub now: DateTime<Utc>,
    pub catalog: &'a Catalog,
    pub work: &'a WorkTime,
}

impl Context<'_> {
    fn names(&self) -> Names<'_> {
        Names(self.catalog)
    }

    /// Tickets received in the range matching the filters.
    fn selected(&self) -> impl Iterator<Item = &Fact> {
        self.model.facts().filter(|f| self.filter.matches(f))
    }

    pub fn volume(&self) -> Volume {
        let today = local_date(self.now);
        let week_start = today - Duration::days(today.weekday().num_days_from_monday() as i64);
        let month_start = today.with_day(1).unwrap_or(today);
        let mut v = Volume {
            today: 0,
            this_week: 0,
            this_month: 0,
            in_range: 0,
        };
        for f in self.model.facts().filter(|f| self.filter.matches_dims(f)) {
            let d = local_date(f.received_at);
            if d > today {
                continue;
            }
            v.today += u64::from(d == today);
            v.this_week += u64::from(d >= week_start);
            v.this_month += u64::from(d >= month_start);
            v.in_range += u64::from(self.filter.in_range(f.received_at));
        }
        v
    }

    pub fn figures(&self) -> Figures {
        let mut acc = Acc::default();
        let mut received = 0;
        let mut linked_duplicates = 0;
        let mut waiting = 0;
        for f in self.selected() {
            received += 1;
            linked_duplicates += u64::from(f.status == TicketStatus::LinkedDuplicate);
            // Undispatched, or returned and waiting to be dispatched again.
            waiting += u64::from(f.status == TicketStatus::NeedsDispatcher);
            if let Some(h) = &f.handling {
                acc.add(f, h, self.now);
            }
        }
        Figures {
            received,
            dispatched: acc.dispatched,
            completed: acc.completed,
            open: acc.open,
            overdue: acc.overdue,
            linked_duplicates,
            waiting_for_dispatcher: waiting,
            first_dispatch_accuracy: acc.accuracy.rate(),
            avg_dispatch_hours: acc.dispatch_hours.mean(),
            avg_accept_hours: acc.accept_hours.mean(),
            on_time_completion: acc.on_time.rate(),
            avg_completion_working_days: acc.completion_days.mean(),
            response_rate: acc.response.rate(),
            resolution_rate: acc.resolution.rate(),
            satisfaction_rate: acc.satisfaction.rate(),
        }
    }

    fn row(
        &self,
        f: &Fact,
        h: &Handling,
        clock: &str,
        due: Option<DateTime<Utc>>,
        used: f64,
    ) -> TicketRow {
        let names = self.names();
        TicketRow {
            id: f.id,
            tracking_number: f.tracking_number.clone(),
            excerpt: f.excerpt(EXCERPT_CHARS),
            category: f.category.clone(),
            item_name: f.item_name.clone(),
            street: f.street.clone(),
            street_name: names.unit(&f.street),
            community_name: names.unit(&f.community),
            lead_unit: h.lead_unit.clone(),
            lead_unit_name: names.unit(&h.lead_unit),
            state: h.state.as_str().to_owned(),
            clock: clock.to_owned(),
            due,
            received_at: f.received_at,
            dispatched_at: h.dispatched_at,
            used,
            overdue_working_hours: due.map_or(0.0, |d| self.work.hours_between(d, self.now)),
            supervised: h.supervised,
        }
    }

    /// The share of the allowed working time used on each running clock of an open ticket:
    /// `(clock, due, used)`.
    fn clocks(&self, h: &Handling) -> Vec<(&'static str, DateTime<Utc>, f64)> {
        let mut out = Vec::new();
        let mut used = |name, from: DateTime<Utc>, due: Option<DateTime<Utc>>| {
            if let Some(due) = due {
                let allowed = self.work.hours_between(from, due);
                let spent = self.work.hours_between(from, self.now);
                let share = if allowed > 0.0 {
                    spent / allowed
                } else if self.now > due {
                    f64::INFINITY
                } else {
                    0.0
                };
                out.push((name, due, share));
            }
        };
        if h.state == DispatchState::Dispatched {
            used("accept", h.dispatched_at, h.accept_by);
        }
        if h.is_open() {
            used("respond", h.dispatched_at, h.respond_by);
        }
        if h.is_open() {
            used("complete", h.completion_clock_from, h.complete_by);
        }
        out
    }

    /// Open tickets past a deadline (the date range does not apply: they are late now; the
    /// completion clock outranks acceptance, which outranks first response), most overdue
    /// first; and open tickets that used at least [`AT_RISK_FRACTION`] of a clock,
    /// fullest first.
    pub fn overdue_and_at_risk(&self) -> (Vec<TicketRow>, Vec<TicketRow>) {
        let mut overdue = Vec::new();
        let mut at_risk = Vec::new();
        for f in self.model.facts().filter(|f| self.filter.matches_dims(f)) {
            let Some(h) = f.handling.as_ref().filter(|h| h.is_open()) else {
                continue;
            };
            // The completion clock outranks the acceptance clock when both ran out.
            if h.completion_overdue(self.now) {
                let used = self
                    .clocks(h)
                    .iter()
                    .find(|c| c.0 == "complete")
                    .map_or(1.0, |c| c.2);
                overdue.push(self.row(f, h, "complete", h.complete_by, used));
            } else if h.acceptance_overdue(self.now) {
                let used = self
                    .clocks(h)
                    .iter()
                    .find(|c| c.0 == "accept")
                    .map_or(1.0, |c| c.2);
                overdue.push(self.row(f, h, "accept", h.accept_by, used));
            } else if h.response_overdue(self.now) {
                let used = self
                    .clocks(h)
                    .iter()
                    .find(|c| c.0 == "respond")
                    .map_or(1.0, |c| c.2);
                overdue.push(self.row(f, h, "respond", h.respond_by, used));
            } else if let Some((clock, due, used)) = self
                .clocks(h)
                .into_iter()
                .filter(|c| c.2 >= AT_RISK_FRACTION)
                .max_by(|a, b| a.2.total_cmp(&b.2))
            {
                at_risk.push(self.row(f, h, clock, Some(due), used));
            }
        }
        overdue.sort_by(|a, b| {
            a.due
                .cmp(&b.due)
                .then(a.tracking_number.cmp(&b.tracking_number))
        });
        at_risk.sort_by(|a, b| {
            b.used
                .total_cmp(&a.used)
                .then(a.tracking_number.cmp(&b.tracking_number))
        });
        (overdue, at_risk)
    }

    /// The arbitration queue (now, date range aside) and the rulings made in the range.
    pub fn arbitration(&self) -> ArbitrationView {
        let names = self.names();
        let mut queue = Vec::new();
        let mut outcomes = Vec::new();
        for f in self.model.facts().filter(|f| self.filter.matches_dims(f)) {
            let Some(h) = &f.handling else { continue };
            let case = h.arbitration.as_ref();
            let source = if h.in_arbitration() || f.status == TicketStatus::InArbitration {
                Some("escalated")
            } else if h.state == DispatchState::Returned && h.returns.len() >= 2 && case.is_none() {
                Some("returned_twice")
            } else {
                None
            };
            let row = |source: &str| {
                let ruled = case.is_some_and(|c| c.decided_at.is_some());
                ArbitrationRow {
                    id: f.id,
                    tracking_number: f.tracking_number.clone(),
                    excerpt: f.excerpt(EXCERPT_CHARS),
                    category: f.category.clone(),
                    street_name: names.unit(&f.street),
                    returns: h.returns.len() as u64,
                    source: source.to_owned(),
                    reason: case.map(|c| c.reason.clone()).unwrap_or_default(),
                    candidate_units: case.map(|c| c.candidates.clone()).unwrap_or_default(),
                    escalated_at: case.map(|c| c.escalated_at),
                    due: case.and_then(|c| c.due),
                    owner_unit: if ruled {
                        h.lead_unit.clone()
                    } else {
                        String::new()
                    },
                    owner_unit_name: if ruled {
                        names.unit(&h.lead_unit)
                    } else {
                        String::new()
                    },
                    ruling: case.map(|c| c.ruling.clone()).unwrap_or_default(),
                    catalog_version: case.map(|c| c.catalog_version.clone()).unwrap_or_default(),
                    arbitrated_at: case.and_then(|c| c.decided_at),
                }
            };
            if let Some(source) = source {
                queue.push(row(source));
            } else if let Some(at) = case.and_then(|c| c.decided_at)
                && self.filter.in_range(at)
            {
                outcomes.push(row("arbitrated"));
            }
        }
        queue.sort_by(|a, b| {
            a.escalated_at
                .cmp(&b.escalated_at)
                .then(a.tracking_number.cmp(&b.tracking_number))
        });
        outcomes.sort_by(|a, b| {
            b.arbitrated_at
                .cmp(&a.arbitrated_at)
                .then(a.tracking_number.cmp(&b.tracking_number))
        });
        ArbitrationView { queue, outcomes }
    }

    /// Units by problems (returns, late tickets, extensions, dissatisfaction), worst first.
    pub fn league(&self) -> Vec<LeagueRow> {
        #[derive(Default)]
        struct U {
            led: u64,
            returns: u64,
            late: u64,
            extensions: u64,
            dissatisfied: u64,
            on_time: Tally,
            satisfaction: Tally,
        }
        let mut units: HashMap<String, U> = HashMap::new();
        for f in self.selected() {
            let Some(h) = &f.handling else { continue };
            for (unit, _) in &h.returns {
                units.entry(unit.clone()).or_default().returns += 1;
            }
            let Some(lead) = h.current_lead() else {
                continue;
            };
            let u = units.entry(lead.to_owned()).or_default();
            u.led += 1;
            let late =
                (h.is_completed() && !h.completed_on_time()) || h.completion_overdue(self.now);
            u.late += u64::from(late);
            u.extensions += u64::from(h.extensions_requested);
            u.dissatisfied += u64::from(h.dissatisfied());
            u.on_time.count(
                h.is_completed() || h.completion_overdue(self.now),
                h.is_completed() && h.completed_on_time(),
            );
            u.satisfaction.count(h.rating.is_some(), satisfied(h));
        }
        let names = self.names();
        let mut rows: Vec<LeagueRow> = units
            .into_iter()
            .map(|(unit, u)| LeagueRow {
                rank: 0,
                unit_name: names.unit(&unit),
                kind: names.kind(&unit),
                led: u.led,
                returns: u.returns,
                late: u.late,
                extensions: u.extensions,
                dissatisfied: u.dissatisfied,
                problems: u.returns + u.late + u.extensions + u.dissatisfied,
                on_time_completion: u.on_time.rate(),
                satisfaction_rate: u.satisfaction.rate(),
                unit,
            })
            .collect();
        rows.sort_by(|a, b| {
            b.problems
                .cmp(&a.problems)
                .then(b.led.cmp(&a.led))
                .then(a.unit.cmp(&b.unit))
        });
        for (i, r) in rows.iter_mut().enumerate() {
            r.rank = i as u32 + 1;
        }
        rows
    }

    /// By major category, street and lead unit, largest first.
    pub fn breakdowns(&self) -> Breakdowns {
        let mut category: BTreeMap<String, Acc> = BTreeMap::new();
        let mut street: BTreeMap<String, Acc> = BTreeMap::new();
        let mut unit: BTreeMap<String, Acc> = BTreeMap::new();
        for f in self.selected() {
            let lead = f
                .handling
                .as_ref()
                .and_then(|h| h.current_lead())
                .unwrap_or_default()
                .to_owned();
            for (map, key) in [
                (&mut category, f.category.clone()),
                (&mut street, f.street.clone()),
                (&mut unit, lead),
            ] {
                let a = map.entry(key).or_default();
                a.received += 1;
                if let Some(h) = &f.handling {
                    a.add(f, h, self.now);
                }
            }
        }
        let names = self.names();
        let rows = |map: BTreeMap<String, Acc>, name: &dyn Fn(&str) -> String| {
            let mut rows: Vec<BreakdownRow> = map
                .into_iter()
                .map(|(key, a)| BreakdownRow {
                    name: name(&key),
                    received: a.received,
                    dispatched: a.dispatched,
                    completed: a.completed,
                    open: a.open,
                    overdue: a.overdue,
                    first_dispatch_accuracy: a.accuracy.rate(),
                    on_time_completion: a.on_time.rate(),
                    satisfaction_rate: a.satisfaction.rate(),
                    key,
                })
                .collect();
            rows.sort_by(|a, b| b.received.cmp(&a.received).then(a.key.cmp(&b.key)));
            rows
        };
        Breakdowns {
            category: rows(category, &|k| k.to_owned()),
            street: rows(street, &|k| names.unit(k)),
            unit: rows(unit, &|k| names.unit(k)),
        }
    }

    /// The [`TREND_DAYS`] days ending on the filter's last day (the range itself aside).
    pub fn trend(&self) -> Vec<TrendPoint> {
        let last = self.filter.to;
        let first = last - Duration::days(TREND_DAYS - 1);
        #[derive(Default, Clone, Copy)]
        struct Day {
            received: u64,
            dispatched: u64,
            completed: u64,
            accuracy: Tally,
            on_time: Tally,
        }
        let mut days = vec![Day::default(); TREND_DAYS as usize];
        let slot = |t: DateTime<Utc>| {
            let d = local_date(t);
            (d >= first && d <= last).then(|| (d - first).num_days() as usize)
        };
        for f in self.model.facts().filter(|f| self.filter.matches_dims(f)) {
            if let Some(i) = slot(f.received_at) {
                days[i].received += 1;
                if let Some(h) = &f.handling {
                    days[i].accuracy.count(true, h.first_dispatch_accurate());
                }
            }
            let Some(h) = &f.handling else { continue };
            if let Some(i) = slot(h.first_dispatched_at) {
                days[i].dispatched += 1;
            }
            if h.is_completed()
                && let Some(i) = h.completed_at.and_then(slot)
            {
                days[i].completed += 1;
                days[i].on_time.count(true, h.completed_on_time());
            }
        }
        days.into_iter()
            .enumerate()
            .map(|(i, d)| TrendPoint {
                date: first + Duration::days(i as i64),
                received: d.received,
                dispatched: d.dispatched,
                completed: d.completed,
                first_dispatch_accuracy: d.accuracy.rate().value,
                on_time_completion: d.on_time.rate().value,
            })
            .collect()
    }

    pub fn options(&self) -> Options {
        let units = self.catalog.units();
        let choice = |u: &minyi_catalog::Unit| Choice {
            code: u.code.clone(),
            name: u.name.clone(),
        };
        Options {
            streets: units.of_kind(UnitKind::Street).map(choice).collect(),
            units: units
                .units()
                .iter()
                .filter(|u| {
                    matches!(
                        u.kind,
                        UnitKind::Department | UnitKind::Street | UnitKind::Utility
                    )
                })
                .map(choice)
                .collect(),
            categories: categories(self.catalog),
        }
    }
}

fn satisfied(h: &Handling) -> bool {
    matches!(
        h.rating.as_deref(),
        Some("satisfied" | "basically_satisfied")
    )
}

/// The counters behind [`Figures`] and each breakdown row.
#[derive(Debug, Default, Clone, Copy)]
struct Acc {
    received: u64,
    dispatched: u64,
    completed: u64,
    open: u64,
    overdue: u64,
    accuracy: Tally,
    dispatch_hours: Sum,
    accept_hours: Sum,
    on_time: Tally,
    completion_days: Sum,
    response: Tally,
    resolution: Tally,
    satisfaction: Tally,
}

impl Acc {
    /// Counts one dispatched ticket.
    fn add(&mut self, f: &Fact, h: &Handling, now: DateTime<Utc>) {
        let hours = |a: DateTime<Utc>, b: DateTime<Utc>| (b - a).num_seconds() as f64 / 3600.0;
        self.dispatched += 1;
        let completed = h.is_completed();
        self.completed += u64::from(completed);
        self.open += u64::from(h.is_open());
        self.overdue += u64::from(
            h.completion_overdue(now) || h.acceptance_overdue(now) || h.response_overdue(now),
        );
        self.accuracy.count(true, h.first_dispatch_accurate());
        self.dispatch_hours
            .add(hours(f.received_at, h.first_dispatched_at));
        if let Some(at) = h.accepted_at {
            self.accept_hours.add(hours(f.received_at, at));
        }
        self.on_time.count(
            completed || h.completion_overdue(now),
            completed && h.completed_on_time(),
        );
        if let Some(days) = h.completion_working_days.filter(|_| completed) {
            self.completion_days.add(days);
        }
        let accepted_in_time = match (h.accepted_at, h.accept_by) {
            (Some(at), Some(due)) => at <= due,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let settled = h.accepted_at.is_some() || h.accept_by.is_some_and(|due| due < now);
        self.response.count(settled, accepted_in_time);
        self.resolution.count(true, completed);
        self.satisfaction.count(h.rating.is_some(), satisfied(h));
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use minyi_core::petition::Channel;

    use super::*;
    use crate::facts::Handling;

    fn bj(d: u32, h: u32) -> DateTime<Utc> {
        minyi_core::clock::shanghai()
            .with_ymd_and_hms(2026, 11, d, h, 0, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn handling(state: DispatchState, dispatched: DateTime<Utc>) -> Handling {
        Handling {
            state,
            lead_unit: "DEP-CG".into(),
            co_units: vec![],
            first_dispatched_at: dispatched,
            dispatched_at: dispatched,
            dispatches: 1,
            accept_by: None,
            respond_by: None,
            complete_by: None,
            accepted_at: None,
            completed_at: None,
            returns: vec![],
            extensions_requested: 0,
            extensions_approved: 0,
            rating: None,
            cause: String::new(),
            redo_count: 0,
            completion_clock_from: dispatched,
            completion_working_days: None,
            supervised: false,
            arbitration: None,
        }
    }

    fn fact(n: u128, h: Handling) -> Fact {
        Fact {
            id: Uuid::from_u128(n),
            tracking_number: format!("MY-{n}"),
            version: 1,
            status: h.state.ticket_status(),
            channel: Channel::Hotline,
            received_at: h.dispatched_at,
            text: "text".into(),
            item_code: String::new(),
            item_name: String::new(),
            category: String::new(),
            street: "ST-GM".into(),
            community: String::new(),
            auto_routed: true,
            duplicate_of: None,
            handling: Some(h),
        }
    }

    /// Monday 2026-11-23 .. Friday 11-27, now Thursday 11-26 12:00.
    #[test]
    fn overdue_and_at_risk_follow_the_working_clock() {
        let now = bj(26, 12);
        let mut m = ReadModel::default();
        // Waiting for acceptance since Monday 09:00, limit Monday 13:00: overdue (accept).
        let mut a = handling(DispatchState::Dispatched, bj(23, 9));
        a.accept_by = Some(bj(23, 13));
        a.complete_by = Some(bj(30, 18));
        m.upsert(fact(1, a));
        // Accepted; completion due Thursday 10:00: overdue (complete). Listed by deadline, so
        // after the Monday one.
        let mut b = handling(DispatchState::Accepted, bj(23, 9));
        b.accepted_at = Some(bj(23, 10));
        b.complete_by = Some(bj(26, 10));
        m.upsert(fact(2, b));
        // Dispatched Monday 09:00, due Friday 09:00 (28 working hours): by Thursday 12:00
        // 3 days and 3 hours = 24 of 28 hours used (86 %): at risk.
        let mut c = handling(DispatchState::Accepted, bj(23, 9));
        c.accepted_at = Some(bj(23, 10));
        c.complete_by = Some(bj(27, 9));
        m.upsert(fact(3, c));
        // Due next Monday: 24 of 35 hours (69 %): neither.
        let mut d = handling(DispatchState::Accepted, bj(23, 9));
        d.complete_by = Some(bj(30, 9));
        m.upsert(fact(4, d));
        // Completed: never listed.
        let mut e = handling(DispatchState::Completed, bj(23, 9));
        e.complete_by = Some(bj(24, 9));
        e.completed_at = Some(bj(25, 9));
        m.upsert(fact(5, e));
        // Accepted, completion far off, but no first response by Wednesday 09:00: overdue
        // (respond), listed by deadline after the other two.
        let mut g = handling(DispatchState::Accepted, bj(25, 9));
        g.accepted_at = Some(bj(25, 9));
        g.respond_by = Some(bj(26, 9));
        g.complete_by = Some(bj(30, 18));
        m.upsert(fact(6, g));
        // First response due Thursday 15:00 (11 working hours from Wednesday 09:00): 10 of 11
        // used by Thursday 12:00, at risk on that clock.
        let mut h = handling(DispatchState::Dispatched, bj(25, 9));
        h.accept_by = Some(bj(27, 18));
        h.respond_by = Some(bj(26, 15));
        h.complete_by = Some(bj(30, 18));
        m.upsert(fact(7, h));
        let catalog = minyi_catalog::demo_slice();
        let work = WorkTime::default();
        let filter = Filter::default_at(now);
        let cx = Context {
            model: &m,
            filter: &filter,
            now,
            catalog: &catalog,
            work: &work,
        };
        let (overdue, at_risk) = cx.overdue_and_at_risk();
        let ids = |rows: &[TicketRow]| {
            rows.iter()
                .map(|r| (r.tracking_number.clone(), r.clock.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&overdue),
            [
                ("MY-1".into(), "accept".into()),
                ("MY-6".into(), "respond".into()),
                ("MY-2".into(), "complete".into())
            ]
        );
        // Monday 13:00 → Thursday 12:00: 4 hours Monday afternoon, 7 Tuesday, 7 Wednesday and
        // 3 Thursday morning.
        assert_eq!(overdue[0].overdue_working_hours, 21.0);
        assert_eq!(
            ids(&at_risk),
            [
                ("MY-7".into(), "respond".into()),
                ("MY-3".into(), "complete".into())
            ]
        );
        assert!((at_risk[0].used - 10.0 / 11.0).abs() < 1e-9);
        assert!((at_risk[1].used - 24.0 / 28.0).abs() < 1e-9);
        // The late completion counts against on-time completion, with the open overdue one.
        let f = cx.figures();
        assert_eq!(
            (
                f.on_time_completion.numerator,
                f.on_time_completion.denominator
            ),
            (0, 2)
        );
        assert_eq!(f.overdue, 3);
        assert_eq!(f.open, 6);
    }
}
