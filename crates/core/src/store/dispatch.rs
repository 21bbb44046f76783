//! What the dispatch service keeps on a ticket: its assignment and handling record, the
//! append-only audit trail and the per-unit inbox feed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::RoutingRecord;
use crate::bus::Message;
use crate::petition::TicketStatus;

/// The fine-grained handling state of a ticket (the dispatch service's state machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DispatchState {
    /// Sent to a lead unit, not yet accepted (签收).
    Dispatched,
    /// The lead unit accepted it and is handling it.
    Accepted,
    /// The lead unit returned it (退回): waiting for a dispatcher to re-dispatch.
    Returned,
    /// The lead unit completed it (办结) with a reply to the citizen.
    Completed,
    /// The citizen was called back (回访) and the rating recorded.
    CalledBack,
    /// Closed for good (归档).
    Archived,
    /// A hard ticket waiting for an arbitrator's ruling (快裁).
    Arbitration,
}

impl DispatchState {
    pub const ALL: [DispatchState; 7] = [
        DispatchState::Dispatched,
        DispatchState::Accepted,
        DispatchState::Returned,
        DispatchState::Completed,
        DispatchState::CalledBack,
        DispatchState::Archived,
        DispatchState::Arbitration,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DispatchState::Dispatched => "dispatched",
            DispatchState::Accepted => "accepted",
            DispatchState::Returned => "returned",
            DispatchState::Completed => "completed",
            DispatchState::CalledBack => "called_back",
            DispatchState::Archived => "archived",
            DispatchState::Arbitration => "arbitration",
        }
    }

    /// The coarse status the rest of the system (intake, Open311) shows.
    pub fn ticket_status(self) -> TicketStatus {
        match self {
            DispatchState::Dispatched => TicketStatus::Dispatched,
            DispatchState::Accepted => TicketStatus::Accepted,
            DispatchState::Returned => TicketStatus::NeedsDispatcher,
            DispatchState::Completed | DispatchState::CalledBack => TicketStatus::Completed,
            DispatchState::Archived => TicketStatus::Archived,
            DispatchState::Arbitration => TicketStatus::InArbitration,
        }
    }

    /// 1-based position, as in `minyi.dispatch.v1.DispatchState`.
    pub fn to_proto(self) -> i32 {
        DispatchState::ALL
            .iter()
            .position(|s| *s == self)
            .unwrap_or(0) as i32
            + 1
    }
}

impl std::fmt::Display for DispatchState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A unit handling a ticket beside the lead (协办), or summoned by a street (吹哨报到).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoHandler {
    pub unit: String,
    /// Summoned by the lead street's whistle: it must report in by accepting.
    #[serde(default)]
    pub whistled: bool,
    pub added_at: DateTime<Utc>,
    #[serde(default)]
    pub accepted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReturnRecord {
    pub unit: String,
    pub reason: String,
    /// The catalog rule (item code) the unit relies on.
    pub catalog_rule: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteRecord {
    pub unit: String,
    pub author: String,
    pub text: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtensionRecord {
    pub working_days: u32,
    pub reason: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    /// `None` while pending; then approved or refused.
    #[serde(default)]
    pub approved: Option<bool>,
    #[serde(default)]
    pub decided_by: String,
    #[serde(default)]
    pub decided_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackRecord {
    /// `satisfied`, `basically_satisfied` or `dissatisfied`.
    pub rating: String,
    /// For dissatisfaction: `unit` (the unit's side: redo), `citizen` or `policy`.
    #[serde(default)]
    pub cause: String,
    pub note: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// The dispatch service's record of a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchRecord {
    pub state: DispatchState,
    pub lead_unit: String,
    #[serde(default)]
    pub co_handlers: Vec<CoHandler>,
    /// Dispatched by a dispatcher rather than automatically.
    #[serde(default)]
    pub manual: bool,
    #[serde(default)]
    pub dispatched_by: String,
    pub dispatched_at: DateTime<Utc>,
    /// Deadlines of the current handling period (working time from the catalog item).
    #[serde(default)]
    pub accept_by: Option<DateTime<Utc>>,
    #[serde(default)]
    pub complete_by: Option<DateTime<Utc>>,
    /// True when a deadline lies past the loaded calendar years and was estimated from
    /// weekends alone.
    #[serde(default)]
    pub deadline_estimated: bool,
    #[serde(default)]
    pub accepted_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reply: String,
    #[serde(default)]
    pub returns: Vec<ReturnRecord>,
    #[serde(default)]
    pub progress: Vec<NoteRecord>,
    #[serde(default)]
    pub extensions: Vec<ExtensionRecord>,
    #[serde(default)]
    pub callback: Option<CallbackRecord>,
    #[serde(default)]
    pub redo_count: u32,
    /// Assigned by an arbitration ruling under 先办后议: the owner cannot return it.
    #[serde(default)]
    pub no_return: bool,
    /// The arbitration case, once the ticket was found hard.
    #[serde(default)]
    pub arbitration: Option<ArbitrationRecord>,
    /// SLA warnings and breaches already raised.
    #[serde(default)]
    pub alerts: Vec<AlertRecord>,
    /// Waits for the citizen (补充材料): the completion clock stops while the last one is open.
    #[serde(default)]
    pub pauses: Vec<PauseRecord>,
}

/// The completion clock stopped while the unit waits for the citizen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PauseRecord {
    pub reason: String,
    pub by: String,
    pub from: DateTime<Utc>,
    /// `None` while paused.
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
    /// Working seconds the pause lasted, added to the completion deadline when it ended.
    #[serde(default)]
    pub working_secs: i64,
}

/// A hard ticket's arbitration case (快裁).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArbitrationRecord {
    pub reason: String,
    pub escalated_at: DateTime<Utc>,
    /// The arbitration's own time limit.
    #[serde(default)]
    pub due: Option<DateTime<Utc>>,
    /// Units that could own it: those that returned it and those suggested.
    #[serde(default)]
    pub candidates: Vec<String>,
    #[serde(default)]
    pub ruling: String,
    #[serde(default)]
    pub decided_by: String,
    #[serde(default)]
    pub decided_at: Option<DateTime<Utc>>,
    /// The catalog version the ruling's clarification created.
    #[serde(default)]
    pub catalog_version: String,
}

/// An SLA warning or breach raised on a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// `accept`, `complete` or `arbitration`.
    pub clock: String,
    /// `warning` or `overdue`.
    pub level: String,
    pub fraction: f64,
    /// The deadline the alert is about.
    pub due: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

impl DispatchRecord {
    /// The open pause, while the unit waits for the citizen.
    pub fn paused(&self) -> Option<&PauseRecord> {
        self.pauses.last().filter(|p| p.to.is_none())
    }

    /// Units that may see and act on the ticket: the lead and every co-handler.
    pub fn units(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.lead_unit.as_str())
            .chain(self.co_handlers.iter().map(|c| c.unit.as_str()))
    }

    pub fn involves(&self, unit: &str) -> bool {
        self.units().any(|u| u == unit)
    }

    pub fn pending_extension(&self) -> Option<&ExtensionRecord> {
        self.extensions.last().filter(|e| e.approved.is_none())
    }
}

/// One line of a ticket's append-only audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub ticket_id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub role: String,
    #[serde(default)]
    pub unit: String,
    pub action: String,
    pub from_state: String,
    pub to_state: String,
    pub reason: String,
    /// False for refused attempts (permission denied).
    pub allowed: bool,
}

/// A stretch of a ticket's audit trail ([`super::TicketStore::audit_page`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditPage {
    /// Oldest first.
    pub entries: Vec<AuditRecord>,
    /// Line number of the first entry in the whole trail (0 is the first line).
    pub first: u64,
    /// Lines in the whole trail.
    pub total: u64,
}

/// At most this many audit lines travel with a ticket ([`AuditPage::newest`]): the whole
/// trail of a ticket refused thousands of times must not make the ticket unreadable.
pub const AUDIT_LINES_IN_VIEW: usize = 200;
/// At most this many bytes of audit text travel in one message (a line's reason alone may be
/// 20,000 characters); one line always does.
pub const AUDIT_BYTES_IN_VIEW: usize = 1 << 20;

impl AuditPage {
    /// The page of `trail` that [`super::TicketStore::audit_page`] returns (in-memory
    /// adapters, and the contract the database adapters follow).
    pub fn of(trail: &[AuditRecord], from: Option<u64>, limit: usize) -> Self {
        let lines = match from {
            Some(f) => {
                let skip = usize::try_from(f).unwrap_or(usize::MAX);
                trail.iter().skip(skip).take(limit).cloned().collect()
            }
            None => trail.iter().rev().take(limit).cloned().collect(),
        };
        Self::from_query(lines, trail.len() as u64, from)
    }

    /// A page from what a database returned for `from`: the lines from `from` on, oldest
    /// first, or with `from` = `None` the last lines newest first (`ORDER BY seq DESC
    /// LIMIT n`); `total` is the trail's length.
    pub fn from_query(mut entries: Vec<AuditRecord>, total: u64, from: Option<u64>) -> Self {
        let first = match from {
            Some(f) => f.min(total),
            None => {
                entries.reverse();
                total.saturating_sub(entries.len() as u64)
            }
        };
        AuditPage {
            entries,
            first,
            total,
        }
    }

    /// The newest lines of a ticket's trail that fit in a message: at most
    /// [`AUDIT_LINES_IN_VIEW`] lines and [`AUDIT_BYTES_IN_VIEW`] bytes of text.
    pub async fn newest(
        store: &dyn super::TicketStore,
        ticket_id: Uuid,
    ) -> Result<Self, super::StoreError> {
        let mut page = store
            .audit_page(ticket_id, None, AUDIT_LINES_IN_VIEW)
            .await?;
        let fit = lines_that_fit(page.entries.iter().rev());
        let dropped = page.entries.len() - fit;
        page.entries.drain(..dropped);
        page.first += dropped as u64;
        Ok(page)
    }

    /// The first lines of this page that fit in [`AUDIT_BYTES_IN_VIEW`] bytes (at least one).
    pub fn fit(mut self) -> Self {
        let fit = lines_that_fit(self.entries.iter());
        self.entries.truncate(fit);
        self
    }
}

/// How many of `lines`, taken in order, fit in [`AUDIT_BYTES_IN_VIEW`] bytes: at least one,
/// if there is one.
fn lines_that_fit<'a>(lines: impl ExactSizeIterator<Item = &'a AuditRecord>) -> usize {
    let n = lines.len();
    let mut bytes = 0;
    lines
        .take_while(|a| {
            bytes += a.text_bytes();
            bytes <= AUDIT_BYTES_IN_VIEW
        })
        .count()
        .max(1)
        .min(n)
}

impl AuditRecord {
    /// Bytes of text this line carries (its encoded size, give or take a few bytes).
    fn text_bytes(&self) -> usize {
        32 + self.actor.len()
            + self.role.len()
            + self.unit.len()
            + self.action.len()
            + self.from_state.len()
            + self.to_state.len()
            + self.reason.len()
    }
}

/// One entry of a unit's inbox feed; `seq` is the resumable cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxRecord {
    pub seq: i64,
    pub unit: String,
    pub ticket_id: Uuid,
    /// What happened: `dispatched`, `co_handler`, `whistled`, `redo`, `extension_decided`.
    pub kind: String,
    pub at: DateTime<Utc>,
}

/// An atomic change of a ticket's handling, applied only if the ticket is still at
/// `expected_version` (optimistic concurrency).
#[derive(Debug, Clone)]
pub struct Transition {
    pub ticket_id: Uuid,
    pub expected_version: i64,
    pub status: TicketStatus,
    pub dispatch: DispatchRecord,
    /// A re-dispatch may change the routing (another item or unit).
    pub routing: Option<RoutingRecord>,
    pub audit: AuditRecord,
    /// `(unit, kind)` entries for the units' inbox feeds.
    pub inbox: Vec<(String, String)>,
    pub events: Vec<Message>,
    /// `(consumer, event_id)` when the transition is a consumer's effect of an event:
    /// applied at most once.
    pub dedupe: Option<(String, Uuid)>,
}

/// What happened to a [`Transition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionOutcome {
    /// Applied; the ticket's new version.
    Applied { version: i64 },
    /// The ticket moved on since it was read; nothing changed.
    Conflict { current_version: i64 },
    /// The consumer had already applied this event; nothing changed.
    AlreadyApplied,
    /// No such ticket (only from [`super::TicketStore::transitions`];
    /// [`super::TicketStore::transition`] reports it as [`super::StoreError::NotFound`]).
    NotFound,
}
