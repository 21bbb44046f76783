//! What the dashboard keeps of one ticket: the facts figures need, and no personal data.
//!
//! A [`Fact`] is built from the stored ticket (and, when the ticket may have been dispatched
//! more than once, its audit trail). Caller fields are never read; the text is kept only with
//! its number runs masked and cut short, so nothing the dashboard holds can leak a phone or ID
//! number.

use chrono::{DateTime, Utc};
use minyi_catalog::Catalog;
use minyi_core::petition::{Channel, TicketStatus};
use minyi_core::pii::mask_numbers;
use minyi_core::store::{AuditRecord, DispatchState, TicketRecord};
use serde::Serialize;
use uuid::Uuid;

use crate::worktime::WorkTime;

/// Characters of (masked) text kept per ticket: enough for similarity and a readable excerpt.
pub const TEXT_CHARS: usize = 300;

/// One ticket as the dashboard sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fact {
    pub id: Uuid,
    pub tracking_number: String,
    /// The store's version: a fact is only ever replaced by a newer one.
    pub version: i64,
    pub status: TicketStatus,
    pub channel: Channel,
    pub received_at: DateTime<Utc>,
    /// The petition text, number runs masked, at most [`TEXT_CHARS`] characters.
    pub text: String,
    pub item_code: String,
    pub item_name: String,
    /// The major category (first element of the catalog item's path).
    pub category: String,
    /// Street and community unit codes from routing ("" when unresolved).
    pub street: String,
    pub community: String,
    /// Classification dispatched it by itself.
    pub auto_routed: bool,
    /// The ticket this one repeats (linked duplicates).
    pub duplicate_of: Option<Uuid>,
    pub handling: Option<Handling>,
}

/// The handling record, reduced to what figures use.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Handling {
    pub state: DispatchState,
    pub lead_unit: String,
    pub co_units: Vec<String>,
    /// The first dispatch: the end of "time to dispatch" and the start of the handling clock.
    pub first_dispatched_at: DateTime<Utc>,
    /// The current dispatch (a re-dispatch restarts the unit's clock).
    pub dispatched_at: DateTime<Utc>,
    /// How many times the ticket was dispatched (1 unless re-dispatched).
    pub dispatches: u32,
    pub accept_by: Option<DateTime<Utc>>,
    /// The first-response deadline (响应), while the lead unit has not written a progress note
    /// since this dispatch; `None` once it has, or when the item sets no response time.
    pub respond_by: Option<DateTime<Utc>>,
    pub complete_by: Option<DateTime<Utc>>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// `(unit, at)` of every return (退回).
    pub returns: Vec<(String, DateTime<Utc>)>,
    /// Extension requests and how many were approved.
    pub extensions_requested: u32,
    pub extensions_approved: u32,
    /// The latest callback rating and, for dissatisfaction, its cause.
    pub rating: Option<String>,
    pub cause: String,
    pub redo_count: u32,
    /// When the running completion clock started: the dispatch, or the redo after a
    /// dissatisfied callback.
    pub completion_clock_from: DateTime<Utc>,
    /// Working days from the first dispatch to completion, once completed.
    pub completion_working_days: Option<f64>,
    /// The deadline service raised an overdue alert (督办 started).
    pub supervised: bool,
    /// The fast-arbitration case (快裁), once the ticket was found hard.
    pub arbitration: Option<ArbitrationCase>,
}

/// A hard ticket's arbitration case, as stored by dispatch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArbitrationCase {
    pub reason: String,
    pub escalated_at: DateTime<Utc>,
    pub due: Option<DateTime<Utc>>,
    /// Units that could own it.
    pub candidates: Vec<String>,
    pub ruling: String,
    pub decided_at: Option<DateTime<Utc>>,
    /// The catalog version the ruling's clarification created, if any.
    pub catalog_version: String,
}

impl Handling {
    /// Still with a unit: dispatched or accepted, not completed.
    pub fn is_open(&self) -> bool {
        matches!(
            self.state,
            DispatchState::Dispatched | DispatchState::Accepted
        )
    }

    /// Ever completed and not sent back for redo since.
    pub fn is_completed(&self) -> bool {
        self.completed_at.is_some()
            && matches!(
                self.state,
                DispatchState::Completed | DispatchState::CalledBack | DispatchState::Archived
            )
    }

    /// Completed by its deadline (no deadline counts as on time).
    pub fn completed_on_time(&self) -> bool {
        match (self.completed_at, self.complete_by) {
            (Some(done), Some(due)) => done <= due,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// Open with its completion deadline passed at `now`.
    pub fn completion_overdue(&self, now: DateTime<Utc>) -> bool {
        self.is_open() && self.complete_by.is_some_and(|due| due < now)
    }

    /// Open with no first response and the response deadline passed at `now`.
    pub fn response_overdue(&self, now: DateTime<Utc>) -> bool {
        self.is_open() && self.respond_by.is_some_and(|due| due < now)
    }

    /// Waiting for the lead's acceptance with the acceptance deadline passed at `now`.
    pub fn acceptance_overdue(&self, now: DateTime<Utc>) -> bool {
        self.state == DispatchState::Dispatched && self.accept_by.is_some_and(|due| due < now)
    }

    /// The unit that has the ticket now: none while it waits for a dispatcher or an arbitrator.
    pub fn current_lead(&self) -> Option<&str> {
        (!matches!(
            self.state,
            DispatchState::Returned | DispatchState::Arbitration
        ))
        .then_some(self.lead_unit.as_str())
    }

    /// Waiting for an arbitrator's ruling.
    pub fn in_arbitration(&self) -> bool {
        self.state == DispatchState::Arbitration
    }

    /// The first dispatch stood: never returned, never re-dispatched.
    pub fn first_dispatch_accurate(&self) -> bool {
        self.returns.is_empty() && self.dispatches <= 1
    }

    /// The citizen was dissatisfied: a dissatisfied rating now, or a redo before.
    pub fn dissatisfied(&self) -> bool {
        self.redo_count > 0 || self.rating.as_deref() == Some("dissatisfied")
    }

    /// Units involved now or before: lead, co-handlers and every unit that returned it.
    pub fn involves(&self, unit: &str) -> bool {
        self.lead_unit == unit
            || self.co_units.iter().any(|u| u == unit)
            || self.returns.iter().any(|(u, _)| u == unit)
    }
}

/// Whether the fact of `record` needs its audit trail: only a manual dispatch or a return can
/// hide an earlier dispatch (the record keeps the latest one).
pub fn needs_audit(record: &TicketRecord) -> bool {
    record
        .dispatch
        .as_ref()
        .is_some_and(|d| d.manual || !d.returns.is_empty())
}

impl Fact {
    /// The fact of a stored ticket. `audit` is its trail when [`needs_audit`] said so.
    pub fn from_record(
        t: &TicketRecord,
        audit: Option<&[AuditRecord]>,
        catalog: &Catalog,
        work: &WorkTime,
    ) -> Fact {
        let routing = t.routing.as_ref();
        let item_code = routing.map(|r| r.item_code.clone()).unwrap_or_default();
        let category = catalog
            .get(&item_code)
            .map(|i| i.path[0].clone())
            .or_else(|| {
                routing
                    .and_then(|r| r.suggestions.iter().find(|s| s.item_code == item_code))
                    .and_then(|s| s.path.first().cloned())
            })
            .unwrap_or_default();
        let handling = t.dispatch.as_ref().map(|d| {
            let dispatches: Vec<DateTime<Utc>> = audit
                .unwrap_or_default()
                .iter()
                .filter(|a| a.allowed && matches!(a.action.as_str(), "dispatched" | "arbitrated"))
                .map(|a| a.at)
                .collect();
            let first_dispatched_at = dispatches
                .iter()
                .copied()
                .min()
                .unwrap_or(d.dispatched_at)
                .min(d.dispatched_at);
            let redo_from = d
                .callback
                .as_ref()
                .filter(|_| d.redo_count > 0 && d.completed_at.is_none())
                .map(|c| c.at);
            let mut h = Handling {
                state: d.state,
                lead_unit: d.lead_unit.clone(),
                co_units: d.co_handlers.iter().map(|c| c.unit.clone()).collect(),
                first_dispatched_at,
                dispatched_at: d.dispatched_at,
                dispatches: (dispatches.len() as u32).max(1),
                accept_by: d.accept_by,
                respond_by: routing
                    .map(|r| r.respond_hours)
                    .filter(|h| *h > 0 && d.progress.is_empty())
                    .and_then(|h| work.add_hours(d.dispatched_at, h)),
                complete_by: d.complete_by,
                accepted_at: d.accepted_at,
                completed_at: d.completed_at,
                returns: d.returns.iter().map(|r| (r.unit.clone(), r.at)).collect(),
                extensions_requested: d.extensions.len() as u32,
                extensions_approved: d
                    .extensions
                    .iter()
                    .filter(|e| e.approved == Some(true))
                    .count() as u32,
                rating: d.callback.as_ref().map(|c| c.rating.clone()),
                cause: d
                    .callback
                    .as_ref()
                    .map(|c| c.cause.clone())
                    .unwrap_or_default(),
                redo_count: d.redo_count,
                completion_clock_from: redo_from.unwrap_or(d.dispatched_at),
                completion_working_days: None,
                supervised: d.alerts.iter().any(|a| a.level == "overdue"),
                arbitration: d.arbitration.as_ref().map(|a| ArbitrationCase {
                    reason: a.reason.clone(),
                    escalated_at: a.escalated_at,
                    due: a.due,
                    candidates: a.candidates.clone(),
                    ruling: a.ruling.clone(),
                    decided_at: a.decided_at,
                    catalog_version: a.catalog_version.clone(),
                }),
            };
            if h.is_completed()
                && let Some(done) = h.completed_at
            {
                h.completion_working_days = Some(work.days_between(h.first_dispatched_at, done));
            }
            h
        });
        Fact {
            id: t.id,
            tracking_number: t.tracking_number.clone(),
            version: t.version,
            status: t.status,
            channel: t.channel,
            received_at: t.received_at,
            text: mask_text(&t.text, TEXT_CHARS),
            item_name: routing.map(|r| r.item_name.clone()).unwrap_or_default(),
            item_code,
            category,
            street: routing.map(|r| r.street.clone()).unwrap_or_default(),
            community: routing.map(|r| r.community.clone()).unwrap_or_default(),
            auto_routed: routing.is_some_and(|r| r.decision == "auto"),
            duplicate_of: routing.and_then(|r| Uuid::parse_str(&r.duplicate_of).ok()),
            handling,
        }
    }

    /// The first `chars` characters of the (already masked) text, with an ellipsis when cut.
    pub fn excerpt(&self, chars: usize) -> String {
        let mut out: String = self.text.chars().take(chars).collect();
        if self.text.chars().count() > chars {
            out.push('…');
        }
        out
    }

    /// Whether `unit` leads, co-handles or returned this ticket.
    pub fn involves(&self, unit: &str) -> bool {
        self.handling.as_ref().is_some_and(|h| h.involves(unit))
    }
}

/// Masks number runs, also those written with spaces or hyphens between digit groups
/// (`138 0013 8000`, `0755-2345-6789`), then cuts to `chars` characters. Masking happens
/// before cutting, so a number cut in half is never left readable.
pub fn mask_text(text: &str, chars: usize) -> String {
    let masked = mask_numbers(&mask_grouped_numbers(text));
    masked.chars().take(chars).collect()
}

/// Groups of 3 or more digits joined by single spaces or hyphens that together hold 11 or more
/// digits (how people write phone and ID numbers): each digit except the first 3 and last 4
/// becomes `*`. Dates (`2026-11-26`) have shorter groups and stay readable.
fn mask_grouped_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let group_end = |from: usize| {
        let mut end = from;
        while end < chars.len() && chars[end].is_ascii_digit() {
            end += 1;
        }
        end
    };
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        let mut end = group_end(i);
        let mut groups = 1;
        if end - start >= 3 {
            while end + 1 < chars.len() && matches!(chars[end], ' ' | '-') {
                let next = group_end(end + 1);
                if next - (end + 1) < 3 {
                    break;
                }
                end = next;
                groups += 1;
            }
        }
        let span = &chars[start..end];
        let digits = span.iter().filter(|c| c.is_ascii_digit()).count();
        if groups > 1 && digits >= 11 {
            let mut seen = 0;
            for &c in span {
                if c.is_ascii_digit() {
                    seen += 1;
                    out.push(if seen > 3 && seen <= digits - 4 {
                        '*'
                    } else {
                        c
                    });
                } else {
                    out.push(c);
                }
            }
        } else {
            out.extend(span);
        }
        i = end;
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_masked_in_every_spelling() {
        assert_eq!(mask_text("电话13800138000", 100), "电话138****8000");
        assert_eq!(
            mask_text("电话 138 0013 8000 谢谢", 100),
            "电话 138 **** 8000 谢谢"
        );
        assert_eq!(mask_text("0755-2345-6789", 100), "075*-****-6789");
        assert_eq!(
            mask_text("身份证11010519491231002X", 100),
            "身份证110***********002X"
        );
        // Dates, house numbers and short numbers stay.
        assert_eq!(
            mask_text("3号楼 2026-11-26 12345", 100),
            "3号楼 2026-11-26 12345"
        );
        // Masked before cutting: a cut never reveals the middle of a number.
        assert_eq!(mask_text("13800138000", 6), "138***");
    }
}
