//! The dispatch state machine: one pure function from (ticket, command, actor, now) to the
//! next handling record, or a refusal that says why. No I/O: the API and the worker load the
//! ticket, call [`step`], and commit the result as one store transition.
//!
//! ```text
//!  routed ──auto──▶ dispatched ──accept──▶ accepted ──complete──▶ completed ──callback──▶ called_back ──archive──▶ archived
//!  needs_dispatcher ─dispatch─┘   │  ▲                    ▲                  │ dissatisfied (unit's side)
//!                         return  │  └──── dispatch ───┐  └──── redo ────────┘
//!                                 ▼                    │
//!                              returned ───────────────┘
//! ```

use chrono::{DateTime, Utc};
use minyi_catalog::{Catalog, UnitKind};
use minyi_core::auth::Role;
use minyi_core::petition::TicketStatus;
use minyi_core::store::{
    CallbackRecord, CoHandler, DispatchRecord, DispatchState, ExtensionRecord, NoteRecord,
    PauseRecord, ReturnRecord, RoutingRecord, TicketRecord,
};

use minyi_core::store::ArbitrationRecord;
use minyi_proto::events::ArbitrationChanged;

use crate::deadlines::Deadlines;

/// Who asks.
#[derive(Debug, Clone)]
pub struct Actor {
    pub sub: String,
    pub role: Role,
    /// The handler's unit.
    pub unit: Option<String>,
}

impl Actor {
    /// The dispatch service itself (automatic dispatch).
    pub fn system() -> Self {
        Actor {
            sub: "minyi-dispatch".into(),
            role: Role::Admin,
            unit: None,
        }
    }
}

/// What someone asks the ticket to do.
#[derive(Debug, Clone)]
pub enum Command {
    /// Dispatch to the routing's lead unit (the service, on `ticket.routed`).
    AutoDispatch,
    /// A dispatcher's (re-)dispatch.
    Dispatch {
        lead_unit: String,
        co_units: Vec<String>,
        use_next_suggestion: bool,
        item_code: String,
        note: String,
    },
    Accept,
    Return {
        reason: String,
        catalog_rule: String,
    },
    AddCoHandlers {
        units: Vec<String>,
    },
    Whistle {
        units: Vec<String>,
        note: String,
    },
    Progress {
        note: String,
    },
    RequestExtension {
        working_days: u32,
        reason: String,
    },
    DecideExtension {
        approve: bool,
        note: String,
    },
    /// The lead unit waits for the citizen (补充材料): the completion clock stops.
    Pause {
        reason: String,
    },
    /// The wait is over (the lead unit, a dispatcher, or the citizen's follow-up): the
    /// completion deadline moves by the working time the pause lasted.
    Resume {
        note: String,
    },
    Complete {
        reply: String,
    },
    Callback {
        rating: String,
        cause: String,
        note: String,
    },
    Archive,
    /// The ticket is hard: to the arbitration queue (a disputed return, a unit's request,
    /// no acceptance within the limit).
    Escalate {
        reason: String,
    },
    /// An arbitrator's ruling: the owner handles it under 先办后议 (no return).
    Arbitrate {
        owner_unit: String,
        co_units: Vec<String>,
        ruling: String,
        /// The catalog version the ruling's clarification created (already stored).
        catalog_version: String,
    },
}

/// Longest free text a command carries (a note, reason, reply or ruling), in characters: as
/// long as a petition may be (government replies run to a few thousand).
pub const MAX_TEXT_CHARS: usize = 20_000;
/// Progress notes one ticket takes, and their characters together: a ticket travels whole in
/// one gRPC message, which clients accept up to 4 MiB by default.
pub const MAX_PROGRESS_NOTES: usize = 100;
pub const MAX_PROGRESS_CHARS: usize = 200_000;
/// Extension requests and waits for the citizen one handling takes (each keeps its reason).
pub const MAX_EXTENSION_REQUESTS: usize = 10;
pub const MAX_PAUSES: usize = 20;

impl Command {
    /// The command's free texts, named by their request fields.
    fn texts(&self) -> Vec<(&'static str, &str)> {
        match self {
            Command::Dispatch { note, .. }
            | Command::Whistle { note, .. }
            | Command::Progress { note }
            | Command::DecideExtension { note, .. }
            | Command::Resume { note }
            | Command::Callback { note, .. } => vec![("note", note)],
            Command::Return {
                reason,
                catalog_rule,
            } => vec![("reason", reason), ("catalog_rule", catalog_rule)],
            Command::RequestExtension { reason, .. }
            | Command::Pause { reason }
            | Command::Escalate { reason } => vec![("reason", reason)],
            Command::Complete { reply } => vec![("reply", reply)],
            Command::Arbitrate { ruling, .. } => vec![("ruling", ruling)],
            Command::AutoDispatch
            | Command::Accept
            | Command::AddCoHandlers { .. }
            | Command::Archive => vec![],
        }
    }
}

/// `(field, description)` of every text in `texts` longer than [`MAX_TEXT_CHARS`].
fn too_long<'a>(texts: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    texts
        .into_iter()
        .filter(|(_, text)| text.chars().count() > MAX_TEXT_CHARS)
        .map(|(field, _)| {
            (
                field.to_owned(),
                format!("longer than {MAX_TEXT_CHARS} characters"),
            )
        })
        .collect()
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Not this caller's ticket or not this role's action (PermissionDenied; audited).
    Denied(String),
    /// Not in this state (FailedPrecondition).
    Illegal { state: String, message: String },
    /// Bad fields (InvalidArgument): `(field, description)`.
    Invalid(Vec<(String, String)>),
}

/// An accepted command: what to commit.
#[derive(Debug, Clone)]
pub struct Step {
    /// The event action (`dispatched`, `accepted`, …).
    pub action: &'static str,
    pub from: String,
    pub dispatch: DispatchRecord,
    pub status: TicketStatus,
    /// Changed routing (a dispatcher reclassified the ticket).
    pub routing: Option<RoutingRecord>,
    /// `(unit, kind)` inbox entries.
    pub inbox: Vec<(String, String)>,
    pub reason: String,
    /// An arbitration event published instead of the dispatch step event.
    pub arbitration_event: Option<ArbitrationChanged>,
}

/// Configurable rules.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Longest extension one request may ask for.
    pub max_extension_days: u32,
    /// A ticket returned this many times is hard: it goes to arbitration.
    pub hard_after_returns: usize,
    /// The arbitration's own time limit, in working days.
    pub arbitration_days: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            max_extension_days: 15,
            hard_after_returns: 2,
            arbitration_days: 1,
        }
    }
}

pub const RATINGS: [&str; 3] = ["satisfied", "basically_satisfied", "dissatisfied"];
pub const CAUSES: [&str; 3] = ["unit", "citizen", "policy"];

/// The state a ticket is in, as people read it.
pub fn state_name(t: &TicketRecord) -> String {
    match &t.dispatch {
        Some(d) => d.state.as_str().to_owned(),
        None => t.status.as_str().to_owned(),
    }
}

fn illegal(t: &TicketRecord, message: impl Into<String>) -> Refusal {
    Refusal::Illegal {
        state: state_name(t),
        message: message.into(),
    }
}

fn invalid(field: &str, description: impl Into<String>) -> Refusal {
    Refusal::Invalid(vec![(field.to_owned(), description.into())])
}

fn unit_name(catalog: &Catalog, code: &str) -> String {
    catalog
        .units()
        .get(code)
        .map_or_else(|| code.to_owned(), |u| format!("{} ({code})", u.name))
}

/// Computes the next state of `t` under `cmd`.
pub fn step(
    t: &TicketRecord,
    cmd: &Command,
    actor: &Actor,
    now: DateTime<Utc>,
    catalog: &Catalog,
    deadlines: &Deadlines,
    rules: &Rules,
) -> Result<Step, Refusal> {
    let from = state_name(t);
    let long = too_long(cmd.texts());
    if !long.is_empty() {
        return Err(Refusal::Invalid(long));
    }
    match cmd {
        Command::AutoDispatch => auto_dispatch(t, from, now, deadlines),
        Command::Dispatch {
            lead_unit,
            co_units,
            use_next_suggestion,
            item_code,
            note,
        } => {
            dispatcher_only(actor, "dispatch tickets")?;
            manual_dispatch(
                t,
                from,
                actor,
                now,
                catalog,
                deadlines,
                ManualDispatch {
                    lead_unit,
                    co_units,
                    use_next_suggestion: *use_next_suggestion,
                    item_code,
                    note,
                },
            )
        }
        Command::DecideExtension { approve, note } => {
            dispatcher_only(actor, "decide extensions")?;
            let mut d = dispatched(t)?.clone();
            let Some(pending) = d.extensions.last_mut().filter(|e| e.approved.is_none()) else {
                return Err(illegal(t, "there is no pending extension request"));
            };
            pending.approved = Some(*approve);
            pending.decided_by = actor.sub.clone();
            pending.decided_at = Some(now);
            pending.note = note.clone();
            let days = pending.working_days;
            if *approve {
                let base = d.complete_by.unwrap_or(now);
                let (due, estimated) = deadlines.add_days(base, days);
                d.complete_by = Some(due);
                d.deadline_estimated |= estimated;
            }
            let verdict = if *approve { "approved" } else { "refused" };
            Ok(Step {
                action: "extension_decided",
                from,
                status: d.state.ticket_status(),
                inbox: vec![(d.lead_unit.clone(), "extension_decided".into())],
                dispatch: d,
                routing: None,
                reason: format!("{days} working days {verdict}: {note}"),
                arbitration_event: None,
            })
        }
        Command::Callback {
            rating,
            cause,
            note,
        } => {
            dispatcher_only(actor, "record callbacks")?;
            if !RATINGS.contains(&rating.as_str()) {
                return Err(invalid(
                    "rating",
                    format!("must be one of {}", RATINGS.join(", ")),
                ));
            }
            let dissatisfied = rating == "dissatisfied";
            if dissatisfied && !CAUSES.contains(&cause.as_str()) {
                return Err(invalid(
                    "cause",
                    format!(
                        "a dissatisfied rating needs a cause: one of {}",
                        CAUSES.join(", ")
                    ),
                ));
            }
            let mut d = in_state(t, &[DispatchState::Completed], "record a callback")?;
            d.callback = Some(CallbackRecord {
                rating: rating.clone(),
                cause: if dissatisfied {
                    cause.clone()
                } else {
                    String::new()
                },
                note: note.clone(),
                by: actor.sub.clone(),
                at: now,
            });
            if dissatisfied && cause == "unit" {
                // Redo: the lead handles it again, with a fresh completion clock.
                d.state = DispatchState::Accepted;
                d.redo_count += 1;
                d.completed_at = None;
                let complete_days = t.routing.as_ref().map_or(0, |r| r.complete_days);
                let due = deadlines.due(now, 0, complete_days);
                d.complete_by = due.complete_by;
                d.deadline_estimated = due.estimated;
                return Ok(Step {
                    action: "reopened",
                    from,
                    status: d.state.ticket_status(),
                    inbox: vec![(d.lead_unit.clone(), "redo".into())],
                    dispatch: d,
                    routing: None,
                    reason: format!("dissatisfied (the unit's side): {note}"),
                    arbitration_event: None,
                });
            }
            d.state = DispatchState::CalledBack;
            Ok(Step {
                action: "called_back",
                from,
                status: d.state.ticket_status(),
                inbox: vec![],
                dispatch: d,
                routing: None,
                reason: format!("{rating} {cause} {note}").trim().to_owned(),
                arbitration_event: None,
            })
        }
        Command::Archive => {
            dispatcher_only(actor, "archive tickets")?;
            let mut d = in_state(
                t,
                &[DispatchState::CalledBack, DispatchState::Completed],
                "archive",
            )?;
            d.state = DispatchState::Archived;
            Ok(Step {
                action: "archived",
                from,
                status: d.state.ticket_status(),
                inbox: vec![],
                dispatch: d,
                routing: None,
                reason: String::new(),
                arbitration_event: None,
            })
        }
        Command::Escalate { reason } => {
            if reason.trim().is_empty() {
                return Err(invalid("reason", "say why the ticket is hard"));
            }
            let allowed: &[DispatchState] = match actor.role {
                Role::Dispatcher | Role::Admin => &[
                    DispatchState::Returned,
                    DispatchState::Dispatched,
                    DispatchState::Accepted,
                ],
                Role::Handler => {
                    lead_handler(t, actor, catalog, "ask for arbitration")?;
                    &[DispatchState::Dispatched, DispatchState::Accepted]
                }
                _ => {
                    return Err(Refusal::Denied(format!(
                        "role `{}` may not escalate tickets",
                        actor.role
                    )));
                }
            };
            let d = in_state(t, allowed, "escalate")?;
            Ok(escalate(t, from, d, reason.trim(), now, deadlines, rules))
        }
        Command::Arbitrate {
            owner_unit,
            co_units,
            ruling,
            catalog_version,
        } => {
            if !matches!(actor.role, Role::Arbitrator | Role::Admin) {
                return Err(Refusal::Denied(format!(
                    "role `{}` may not rule on hard tickets; allowed: arbitrator, admin",
                    actor.role
                )));
            }
            let mut problems = Vec::new();
            if !catalog.units().contains(owner_unit) {
                problems.push((
                    "owner_unit".to_owned(),
                    format!("unknown unit {owner_unit}"),
                ));
            }
            for (i, u) in co_units.iter().enumerate() {
                if !catalog.units().contains(u) || u == owner_unit {
                    problems.push((
                        format!("co_units[{i}]"),
                        format!("{u} is not a valid co-handler"),
                    ));
                }
            }
            if ruling.trim().is_empty() {
                problems.push(("ruling".to_owned(), "write the ruling".into()));
            }
            if !problems.is_empty() {
                return Err(Refusal::Invalid(problems));
            }
            let old = in_state(t, &[DispatchState::Arbitration], "rule on it")?;
            let mut routing = t.routing.clone().unwrap_or_default();
            routing.lead_unit = owner_unit.clone();
            routing.co_units = co_units.clone();
            let due = deadlines.due(now, routing.accept_hours, routing.complete_days);
            let mut d = new_record(owner_unit.clone(), co_units, true, &actor.sub, now, due);
            d.returns = old.returns;
            d.progress = old.progress;
            d.no_return = true;
            let mut case = old.arbitration.unwrap_or(ArbitrationRecord {
                reason: String::new(),
                escalated_at: now,
                due: None,
                candidates: vec![],
                ruling: String::new(),
                decided_by: String::new(),
                decided_at: None,
                catalog_version: String::new(),
            });
            case.ruling = ruling.trim().to_owned();
            case.decided_by = actor.sub.clone();
            case.decided_at = Some(now);
            case.catalog_version = catalog_version.clone();
            d.arbitration = Some(case);
            Ok(Step {
                action: "arbitrated",
                from,
                status: d.state.ticket_status(),
                inbox: inbox_for_new(&d),
                arbitration_event: Some(ArbitrationChanged {
                    action: "arbitrated".into(),
                    reason: ruling.trim().to_owned(),
                    owner_unit: owner_unit.clone(),
                    co_units: co_units.clone(),
                    catalog_version: catalog_version.clone(),
                    candidate_units: vec![],
                }),
                dispatch: d,
                routing: Some(routing),
                reason: ruling.trim().to_owned(),
            })
        }
        Command::Accept => {
            let unit = involved_handler(t, actor, catalog)?;
            let mut d = dispatched(t)?.clone();
            if unit == d.lead_unit {
                let mut d = in_state(t, &[DispatchState::Dispatched], "accept")?;
                d.state = DispatchState::Accepted;
                d.accepted_at = Some(now);
                return Ok(Step {
                    action: "accepted",
                    from,
                    status: d.state.ticket_status(),
                    inbox: vec![],
                    dispatch: d,
                    routing: None,
                    reason: String::new(),
                    arbitration_event: None,
                });
            }
            if !matches!(d.state, DispatchState::Dispatched | DispatchState::Accepted) {
                return Err(illegal(t, "only an open ticket can be accepted"));
            }
            let co = d
                .co_handlers
                .iter_mut()
                .find(|c| c.unit == unit)
                .ok_or_else(|| Refusal::Denied("not a co-handler".into()))?;
            if co.accepted_at.is_some() {
                return Err(illegal(t, format!("{unit} has already accepted")));
            }
            co.accepted_at = Some(now);
            let whistled = co.whistled;
            Ok(Step {
                action: "accepted",
                from: from.clone(),
                status: d.state.ticket_status(),
                inbox: vec![],
                dispatch: d,
                routing: None,
                reason: if whistled {
                    "reported in (吹哨报到)".into()
                } else {
                    "co-handler accepted".into()
                },
                arbitration_event: None,
            })
        }
        Command::Return {
            reason,
            catalog_rule,
        } => {
            let unit = lead_handler(t, actor, catalog, "return")?;
            let mut problems = Vec::new();
            if reason.trim().is_empty() {
                problems.push((
                    "reason".to_owned(),
                    "say why the ticket is not yours".into(),
                ));
            }
            if catalog_rule.trim().is_empty() {
                problems.push((
                    "catalog_rule".to_owned(),
                    "name the catalog item code the return relies on".into(),
                ));
            } else if catalog.get(catalog_rule.trim()).is_none() {
                problems.push((
                    "catalog_rule".to_owned(),
                    format!("{catalog_rule} is not in the active catalog"),
                ));
            }
            if !problems.is_empty() {
                return Err(Refusal::Invalid(problems));
            }
            let mut d = in_state(t, &[DispatchState::Dispatched], "return")?;
            if d.no_return {
                return Err(illegal(
                    t,
                    "assigned by an arbitration ruling (先办后议): handle it first; it cannot be returned",
                ));
            }
            if let Some(limit) = d.accept_by
                && now > limit
            {
                return Err(illegal(
                    t,
                    format!(
                        "the acceptance limit passed at {}: a ticket can only be returned before it",
                        limit.with_timezone(&minyi_core::clock::shanghai())
                    ),
                ));
            }
            d.state = DispatchState::Returned;
            d.returns.push(ReturnRecord {
                unit,
                reason: reason.trim().to_owned(),
                catalog_rule: catalog_rule.trim().to_owned(),
                at: now,
            });
            if d.returns.len() >= rules.hard_after_returns {
                let why = format!("returned {} times", d.returns.len());
                return Ok(escalate(t, from, d, &why, now, deadlines, rules));
            }
            Ok(Step {
                action: "returned",
                from,
                status: d.state.ticket_status(),
                inbox: vec![],
                dispatch: d,
                routing: None,
                reason: format!("{} (rule {})", reason.trim(), catalog_rule.trim()),
                arbitration_event: None,
            })
        }
        Command::AddCoHandlers { units } | Command::Whistle { units, .. } => {
            let whistle = matches!(cmd, Command::Whistle { .. });
            let unit = lead_handler(
                t,
                actor,
                catalog,
                if whistle {
                    "whistle"
                } else {
                    "add co-handlers"
                },
            )?;
            if whistle && catalog.units().get(&unit).map(|u| u.kind) != Some(UnitKind::Street) {
                return Err(Refusal::Denied(format!(
                    "only a street office can whistle (吹哨); {} is not one",
                    unit_name(catalog, &unit)
                )));
            }
            let mut d = in_state(
                t,
                &[DispatchState::Dispatched, DispatchState::Accepted],
                if whistle {
                    "whistle"
                } else {
                    "add co-handlers"
                },
            )?;
            let problems = check_new_units(units, &d, catalog);
            if !problems.is_empty() {
                return Err(Refusal::Invalid(problems));
            }
            let kind = if whistle { "whistled" } else { "co_handler" };
            let mut inbox = Vec::new();
            for u in units {
                d.co_handlers.push(CoHandler {
                    unit: u.clone(),
                    whistled: whistle,
                    added_at: now,
                    accepted_at: None,
                });
                inbox.push((u.clone(), kind.to_owned()));
            }
            let note = match cmd {
                Command::Whistle { note, .. } => note.clone(),
                _ => String::new(),
            };
            Ok(Step {
                action: if whistle {
                    "whistled"
                } else {
                    "co_handlers_added"
                },
                from,
                status: d.state.ticket_status(),
                inbox,
                dispatch: d,
                routing: None,
                reason: format!("{} {note}", units.join(",")).trim().to_owned(),
                arbitration_event: None,
            })
        }
        Command::Progress { note } => {
            let unit = involved_handler(t, actor, catalog)?;
            if note.trim().is_empty() {
                return Err(invalid("note", "must not be empty"));
            }
            let mut d = in_state(t, &[DispatchState::Accepted], "take progress notes")?;
            let held: usize = d.progress.iter().map(|n| n.text.chars().count()).sum();
            if d.progress.len() >= MAX_PROGRESS_NOTES
                || held + note.trim().chars().count() > MAX_PROGRESS_CHARS
            {
                return Err(illegal(
                    t,
                    format!(
                        "the ticket is full: it holds {} progress notes of {held} characters \
                         and takes at most {MAX_PROGRESS_NOTES} of {MAX_PROGRESS_CHARS} in all; \
                         write the rest in the reply when completing",
                        d.progress.len()
                    ),
                ));
            }
            d.progress.push(NoteRecord {
                unit,
                author: actor.sub.clone(),
                text: note.trim().to_owned(),
                at: now,
            });
            Ok(Step {
                action: "progress",
                from,
                status: d.state.ticket_status(),
                inbox: vec![],
                dispatch: d,
                routing: None,
                reason: String::new(),
                arbitration_event: None,
            })
        }
        Command::RequestExtension {
            working_days,
            reason,
        } => {
            lead_handler(t, actor, catalog, "request an extension")?;
            let mut problems = Vec::new();
            if *working_days == 0 || *working_days > rules.max_extension_days {
                problems.push((
                    "working_days".to_owned(),
                    format!("must be 1 to {}", rules.max_extension_days),
                ));
            }
            if reason.trim().is_empty() {
                problems.push(("reason".to_owned(), "say why more time is needed".into()));
            }
            if !problems.is_empty() {
                return Err(Refusal::Invalid(problems));
            }
            let mut d = in_state(t, &[DispatchState::Accepted], "request an extension")?;
            if d.pending_extension().is_some() {
                return Err(illegal(t, "an extension request is already pending"));
            }
            if d.extensions.len() >= MAX_EXTENSION_REQUESTS {
                return Err(illegal(
                    t,
                    format!(
                        "{MAX_EXTENSION_REQUESTS} extensions were already asked for, the most one \
                         handling takes: ask for arbitration if the ticket cannot be done in time"
                    ),
                ));
            }
            if let Some(due) = d.complete_by
                && now >= due
            {
                return Err(illegal(
                    t,
                    "the completion deadline has passed: extensions must be asked for before it",
                ));
            }
            d.extensions.push(ExtensionRecord {
                working_days: *working_days,
                reason: reason.trim().to_owned(),
                requested_by: actor.sub.clone(),
                requested_at: now,
                approved: None,
                decided_by: String::new(),
                decided_at: None,
                note: String::new(),
            });
            Ok(Step {
                action: "extension_requested",
                from,
                status: d.state.ticket_status(),
                inbox: vec![],
                dispatch: d,
                routing: None,
                reason: format!("{working_days} working days: {}", reason.trim()),
                arbitration_event: None,
            })
        }
        Command::Pause { reason } => {
            lead_handler(t, actor, catalog, "pause the clock")?;
            if reason.trim().is_empty() {
                return Err(invalid(
                    "reason",
                    "say what the unit is waiting for from the citizen",
                ));
            }
            let mut d = in_state(t, &[DispatchState::Accepted], "pause the clock")?;
            if d.paused().is_some() {
                return Err(illegal(t, "the clock is already paused"));
            }
            if d.pauses.len() >= MAX_PAUSES {
                return Err(illegal(
                    t,
                    format!(
                        "the clock was already paused {MAX_PAUSES} times, the most one handling \
                         takes: ask for an extension instead"
                    ),
                ));
            }
            if let Some(due) = d.complete_by
                && now >= due
            {
                return Err(illegal(
                    t,
                    "the completion deadline has passed: the clock can no longer be paused",
                ));
            }
            d.pauses.push(PauseRecord {
                reason: reason.trim().to_owned(),
                by: actor.sub.clone(),
                from: now,
                to: None,
                working_secs: 0,
            });
            Ok(Step {
                action: "paused",
                from,
                status: d.state.ticket_status(),
                inbox: vec![],
                dispatch: d,
                routing: None,
                reason: reason.trim().to_owned(),
                arbitration_event: None,
            })
        }
        Command::Resume { note } => {
            if !matches!(actor.role, Role::Dispatcher | Role::Admin) {
                lead_handler(t, actor, catalog, "resume the clock")?;
            }
            let mut d = in_state(t, &[DispatchState::Accepted], "resume")?;
            let Some(elapsed) = end_pause(&mut d, now, deadlines) else {
                return Err(illegal(t, "the clock is not paused"));
            };
            if let Some(due) = d.complete_by {
                let (moved, estimated) = deadlines.add_working_time(due, elapsed);
                d.complete_by = Some(moved);
                d.deadline_estimated |= estimated;
            }
            let hours = elapsed.num_minutes() as f64 / 60.0;
            Ok(Step {
                action: "resumed",
                from,
                status: d.state.ticket_status(),
                inbox: vec![(d.lead_unit.clone(), "resumed".into())],
                dispatch: d,
                routing: None,
                reason: format!("paused {hours:.1} working hours; {}", note.trim())
                    .trim_end_matches("; ")
                    .to_owned(),
                arbitration_event: None,
            })
        }
        Command::Complete { reply } => {
            lead_handler(t, actor, catalog, "complete")?;
            if reply.trim().is_empty() {
                return Err(invalid(
                    "reply",
                    "the reply to the citizen must not be empty",
                ));
            }
            let mut d = in_state(t, &[DispatchState::Accepted], "complete")?;
            // Completing ends a wait for the citizen; the deadline no longer matters.
            end_pause(&mut d, now, deadlines);
            d.state = DispatchState::Completed;
            d.completed_at = Some(now);
            d.reply = reply.trim().to_owned();
            Ok(Step {
                action: "completed",
                from,
                status: d.state.ticket_status(),
                inbox: vec![],
                dispatch: d,
                routing: None,
                reason: String::new(),
                arbitration_event: None,
            })
        }
    }
}

fn dispatcher_only(actor: &Actor, what: &str) -> Result<(), Refusal> {
    if matches!(actor.role, Role::Dispatcher | Role::Admin) {
        Ok(())
    } else {
        Err(Refusal::Denied(format!(
            "role `{}` may not {what}; allowed: dispatcher, admin",
            actor.role
        )))
    }
}

fn dispatched(t: &TicketRecord) -> Result<&DispatchRecord, Refusal> {
    t.dispatch
        .as_ref()
        .ok_or_else(|| illegal(t, "the ticket has not been dispatched"))
}

fn in_state(
    t: &TicketRecord,
    allowed: &[DispatchState],
    what: &str,
) -> Result<DispatchRecord, Refusal> {
    let d = dispatched(t)?;
    if allowed.contains(&d.state) {
        return Ok(d.clone());
    }
    // The refusal reads "ticket is <state>: cannot <what> (only when …)".
    let hint = if d.state == DispatchState::Dispatched && allowed.contains(&DispatchState::Accepted)
    {
        ": accept it first"
    } else {
        ""
    };
    Err(illegal(
        t,
        format!(
            "cannot {what} (only when {}{hint})",
            allowed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    ))
}

/// The caller's unit, if it is a handler whose unit leads or co-handles the ticket.
fn involved_handler(t: &TicketRecord, actor: &Actor, catalog: &Catalog) -> Result<String, Refusal> {
    if actor.role != Role::Handler {
        return Err(Refusal::Denied(format!(
            "role `{}` may not act on a ticket as its handler",
            actor.role
        )));
    }
    let Some(unit) = actor.unit.clone() else {
        return Err(Refusal::Denied("this handler token names no unit".into()));
    };
    match &t.dispatch {
        Some(d) if d.involves(&unit) => Ok(unit),
        Some(d) => Err(Refusal::Denied(format!(
            "this ticket is assigned to {}, not to you ({})",
            unit_name(catalog, &d.lead_unit),
            unit_name(catalog, &unit)
        ))),
        None => Err(Refusal::Denied(format!(
            "this ticket is not assigned to you ({})",
            unit_name(catalog, &unit)
        ))),
    }
}

fn lead_handler(
    t: &TicketRecord,
    actor: &Actor,
    catalog: &Catalog,
    what: &str,
) -> Result<String, Refusal> {
    let unit = involved_handler(t, actor, catalog)?;
    let lead = &dispatched(t)?.lead_unit;
    if &unit == lead {
        Ok(unit)
    } else {
        Err(Refusal::Denied(format!(
            "only the lead unit {} may {what}; you ({}) co-handle it",
            unit_name(catalog, lead),
            unit_name(catalog, &unit)
        )))
    }
}

fn check_new_units(
    units: &[String],
    d: &DispatchRecord,
    catalog: &Catalog,
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if units.is_empty() {
        problems.push(("units".to_owned(), "name at least one unit".into()));
    }
    for (i, u) in units.iter().enumerate() {
        let field = format!("units[{i}]");
        if !catalog.units().contains(u) {
            problems.push((field, format!("unknown unit {u}")));
        } else if d.involves(u) || units[..i].contains(u) {
            problems.push((field, format!("{u} already handles this ticket")));
        }
    }
    problems
}

fn auto_dispatch(
    t: &TicketRecord,
    from: String,
    now: DateTime<Utc>,
    deadlines: &Deadlines,
) -> Result<Step, Refusal> {
    if t.dispatch.is_some() || t.status != TicketStatus::Routed {
        return Err(illegal(
            t,
            "only a routed, undispatched ticket is auto-dispatched",
        ));
    }
    let Some(routing) = t.routing.as_ref().filter(|r| !r.lead_unit.is_empty()) else {
        return Err(illegal(t, "the routing names no lead unit"));
    };
    let due = deadlines.due(now, routing.accept_hours, routing.complete_days);
    let d = new_record(
        routing.lead_unit.clone(),
        &routing.co_units,
        false,
        "",
        now,
        due,
    );
    Ok(Step {
        action: "dispatched",
        from,
        status: d.state.ticket_status(),
        inbox: inbox_for_new(&d),
        dispatch: d,
        routing: None,
        // The routing's reason: why the unit is sure when the item is not (unit-level), or
        // where the location came from.
        reason: if routing.reason.is_empty() {
            format!(
                "auto: {} {} (confidence {:.2})",
                routing.item_code, routing.item_name, routing.confidence
            )
        } else {
            format!(
                "auto: {} {} (confidence {:.2}; {})",
                routing.item_code, routing.item_name, routing.confidence, routing.reason
            )
        },
        arbitration_event: None,
    })
}

struct ManualDispatch<'a> {
    lead_unit: &'a str,
    co_units: &'a [String],
    use_next_suggestion: bool,
    item_code: &'a str,
    note: &'a str,
}

fn manual_dispatch(
    t: &TicketRecord,
    from: String,
    actor: &Actor,
    now: DateTime<Utc>,
    catalog: &Catalog,
    deadlines: &Deadlines,
    m: ManualDispatch<'_>,
) -> Result<Step, Refusal> {
    let open_for_dispatch = match &t.dispatch {
        None => t.status == TicketStatus::NeedsDispatcher,
        Some(d) => matches!(d.state, DispatchState::Returned | DispatchState::Dispatched),
    };
    if !open_for_dispatch {
        return Err(illegal(
            t,
            "only a ticket waiting for a dispatcher, returned, or dispatched and not yet accepted can be dispatched",
        ));
    }
    let mut routing = t.routing.clone().unwrap_or_default();
    let mut problems = Vec::new();
    let returned: Vec<&str> = t
        .dispatch
        .iter()
        .flat_map(|d| d.returns.iter().map(|r| r.unit.as_str()))
        .collect();
    let mut next_item = None;
    let lead = if m.use_next_suggestion {
        if !m.lead_unit.is_empty() {
            problems.push((
                "lead_unit".to_owned(),
                "give a lead unit or use_next_suggestion, not both".into(),
            ));
        }
        let current = t.dispatch.as_ref().map(|d| d.lead_unit.as_str());
        let next = routing.suggestions.iter().find(|s| {
            !s.unit.is_empty()
                && !returned.contains(&s.unit.as_str())
                && Some(s.unit.as_str()) != current
        });
        // The ticket is now handled as the suggestion's matter, unless the dispatcher names one.
        if let Some(s) = next
            && m.item_code.is_empty()
            && let Some(item) = catalog.get(&s.item_code)
        {
            next_item = Some(item);
        }
        next.map(|s| s.unit.clone())
            .or_else(|| {
                problems.push((
                    "use_next_suggestion".to_owned(),
                    "no remaining suggestion names a unit that has not returned this ticket; choose a lead unit".into(),
                ));
                None
            })
    } else if m.lead_unit.is_empty() {
        problems.push((
            "lead_unit".to_owned(),
            "choose a lead unit (or use_next_suggestion)".into(),
        ));
        None
    } else if !catalog.units().contains(m.lead_unit) {
        problems.push((
            "lead_unit".to_owned(),
            format!("unknown unit {}", m.lead_unit),
        ));
        None
    } else {
        Some(m.lead_unit.to_owned())
    };
    for (i, u) in m.co_units.iter().enumerate() {
        if !catalog.units().contains(u) {
            problems.push((format!("co_units[{i}]"), format!("unknown unit {u}")));
        } else if Some(u) == lead.as_ref() {
            problems.push((format!("co_units[{i}]"), format!("{u} is the lead unit")));
        }
    }
    let item = if m.item_code.is_empty() {
        next_item
    } else {
        catalog.get(m.item_code).or_else(|| {
            problems.push((
                "item_code".to_owned(),
                format!("{} is not in the active catalog", m.item_code),
            ));
            None
        })
    };
    if let Some(item) = item {
        routing.item_code = item.code.clone();
        routing.item_name = item.name.clone();
        routing.grade = item.grade.as_str().to_owned();
        routing.accept_hours = item.limits.accept_hours;
        routing.respond_hours = item.limits.respond_hours;
        routing.complete_days = item.limits.complete_days;
    }
    if !problems.is_empty() {
        return Err(Refusal::Invalid(problems));
    }
    let lead = lead.unwrap_or_default();
    routing.lead_unit = lead.clone();
    routing.co_units = m.co_units.to_vec();
    let due = deadlines.due(now, routing.accept_hours, routing.complete_days);
    let mut d = new_record(lead, m.co_units, true, &actor.sub, now, due);
    // A re-dispatch keeps the ticket's history.
    if let Some(old) = &t.dispatch {
        d.returns = old.returns.clone();
        d.progress = old.progress.clone();
    }
    Ok(Step {
        action: "dispatched",
        from,
        status: d.state.ticket_status(),
        inbox: inbox_for_new(&d),
        dispatch: d,
        routing: Some(routing),
        reason: match m.note.trim() {
            "" => "manual".to_owned(),
            note => format!("manual: {note}"),
        },
        arbitration_event: None,
    })
}

/// Moves a ticket to the arbitration queue with its candidates and the arbitration clock.
fn escalate(
    t: &TicketRecord,
    from: String,
    mut d: DispatchRecord,
    reason: &str,
    now: DateTime<Utc>,
    deadlines: &Deadlines,
    rules: &Rules,
) -> Step {
    let mut candidates: Vec<String> = d.returns.iter().map(|r| r.unit.clone()).collect();
    candidates.push(d.lead_unit.clone());
    for s in t.routing.iter().flat_map(|r| r.suggestions.iter()) {
        candidates.push(s.unit.clone());
    }
    candidates.retain(|u| !u.is_empty());
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|u| seen.insert(u.clone()));
    let (due, estimated) = deadlines.add_days(now, rules.arbitration_days);
    d.deadline_estimated |= estimated;
    d.state = DispatchState::Arbitration;
    d.arbitration = Some(ArbitrationRecord {
        reason: reason.to_owned(),
        escalated_at: now,
        due: Some(due),
        candidates: candidates.clone(),
        ruling: String::new(),
        decided_by: String::new(),
        decided_at: None,
        catalog_version: String::new(),
    });
    Step {
        action: "escalated",
        from,
        status: d.state.ticket_status(),
        dispatch: d,
        routing: None,
        inbox: vec![],
        reason: reason.to_owned(),
        arbitration_event: Some(ArbitrationChanged {
            action: "escalated".into(),
            reason: reason.to_owned(),
            owner_unit: String::new(),
            co_units: vec![],
            catalog_version: String::new(),
            candidate_units: candidates,
        }),
    }
}

/// Closes the open pause, if any, and returns the working time it lasted.
fn end_pause(
    d: &mut DispatchRecord,
    now: DateTime<Utc>,
    deadlines: &Deadlines,
) -> Option<chrono::Duration> {
    let open = d.pauses.last_mut().filter(|p| p.to.is_none())?;
    let elapsed = deadlines.working_time(open.from, now);
    open.to = Some(now);
    open.working_secs = elapsed.num_seconds();
    Some(elapsed)
}

fn new_record(
    lead: String,
    co_units: &[String],
    manual: bool,
    by: &str,
    now: DateTime<Utc>,
    due: crate::deadlines::Due,
) -> DispatchRecord {
    DispatchRecord {
        state: DispatchState::Dispatched,
        co_handlers: co_units
            .iter()
            .filter(|u| **u != lead)
            .map(|u| CoHandler {
                unit: u.clone(),
                whistled: false,
                added_at: now,
                accepted_at: None,
            })
            .collect(),
        lead_unit: lead,
        manual,
        dispatched_by: by.to_owned(),
        dispatched_at: now,
        accept_by: due.accept_by,
        complete_by: due.complete_by,
        deadline_estimated: due.estimated,
        accepted_at: None,
        completed_at: None,
        reply: String::new(),
        returns: vec![],
        progress: vec![],
        extensions: vec![],
        callback: None,
        redo_count: 0,
        no_return: false,
        arbitration: None,
        alerts: vec![],
        pauses: vec![],
    }
}

fn inbox_for_new(d: &DispatchRecord) -> Vec<(String, String)> {
    d.units()
        .map(|u| {
            let kind = if u == d.lead_unit {
                "dispatched"
            } else {
                "co_handler"
            };
            (u.to_owned(), kind.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use minyi_core::petition::Channel;
    use minyi_core::store::SuggestionRecord;

    use super::*;

    fn catalog() -> Catalog {
        minyi_catalog::demo_slice()
    }

    fn routed() -> TicketRecord {
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0).unwrap();
        let suggestion = |unit: &str| SuggestionRecord {
            item_code: "X".into(),
            item_name: "x".into(),
            path: vec![],
            unit: unit.into(),
            confidence: 0.5,
        };
        TicketRecord {
            id: uuid::Uuid::now_v7(),
            tracking_number: "MY-1".into(),
            status: TicketStatus::Routed,
            channel: Channel::Hotline,
            title: String::new(),
            text: "t".into(),
            anonymous: true,
            caller_name: None,
            caller_phone: None,
            caller_id_number: None,
            address: String::new(),
            latitude: None,
            longitude: None,
            event_time: None,
            attachment_urls: vec![],
            idempotency_key: None,
            received_at: at,
            received_by: "a".into(),
            follow_ups: vec![],
            routing: Some(RoutingRecord {
                decision: "auto".into(),
                lead_unit: "DEP-ZJ".into(),
                accept_hours: 2,
                complete_days: 5,
                suggestions: vec![
                    suggestion("DEP-ZJ"),
                    suggestion("DEP-CG"),
                    suggestion("ST-GM"),
                ],
                ..RoutingRecord::default()
            }),
            dispatch: None,
            version: 1,
        }
    }

    fn handler(unit: &str) -> Actor {
        Actor {
            sub: format!("h-{unit}"),
            role: Role::Handler,
            unit: Some(unit.into()),
        }
    }

    fn dispatcher() -> Actor {
        Actor {
            sub: "d".into(),
            role: Role::Dispatcher,
            unit: None,
        }
    }

    fn run(
        t: &TicketRecord,
        cmd: Command,
        who: &Actor,
        now: DateTime<Utc>,
    ) -> Result<TicketRecord, Refusal> {
        let s = step(
            t,
            &cmd,
            who,
            now,
            &catalog(),
            &Deadlines::default(),
            &Rules::default(),
        )?;
        Ok(TicketRecord {
            status: s.status,
            dispatch: Some(s.dispatch),
            routing: s.routing.or(t.routing.clone()),
            ..t.clone()
        })
    }

    #[test]
    fn the_audit_line_of_an_automatic_dispatch_says_why_it_was_automatic() {
        let reason = |t: &TicketRecord| {
            let s = step(
                t,
                &Command::AutoDispatch,
                &Actor::system(),
                t.received_at,
                &catalog(),
                &Deadlines::default(),
                &Rules::default(),
            )
            .unwrap();
            s.reason
        };
        let mut t = routed();
        let r = t.routing.clone().unwrap();
        assert_eq!(
            reason(&t),
            format!(
                "auto: {} {} (confidence {:.2})",
                r.item_code, r.item_name, r.confidence
            )
        );
        // Unit-level: the item is a best guess; the line must not read as a confident item.
        t.routing.as_mut().unwrap().reason =
            "unit-level: DEP-ZJ at confidence 0.99 (threshold 0.64)".into();
        assert_eq!(
            reason(&t),
            format!(
                "auto: {} {} (confidence {:.2}; unit-level: DEP-ZJ at confidence 0.99 (threshold \
                 0.64))",
                r.item_code, r.item_name, r.confidence
            )
        );
    }

    #[test]
    fn a_return_is_only_possible_within_the_acceptance_limit() {
        let t = routed();
        let now = t.received_at;
        let d = run(&t, Command::AutoDispatch, &Actor::system(), now).unwrap();
        let accept_by = d.dispatch.as_ref().unwrap().accept_by.unwrap();
        assert!(accept_by > now);
        let ret = Command::Return {
            reason: "不是我们的".into(),
            catalog_rule: catalog().items()[0].code.clone(),
        };
        let late = run(
            &d,
            ret.clone(),
            &handler("DEP-ZJ"),
            accept_by + Duration::minutes(1),
        );
        assert!(matches!(late, Err(Refusal::Illegal { .. })), "{late:?}");
        let back = run(&d, ret, &handler("DEP-ZJ"), now + Duration::minutes(5)).unwrap();
        assert_eq!(back.status, TicketStatus::NeedsDispatcher);
        // The next suggestion skips the unit that returned it.
        let again = run(
            &back,
            Command::Dispatch {
                lead_unit: String::new(),
                co_units: vec![],
                use_next_suggestion: true,
                item_code: String::new(),
                note: String::new(),
            },
            &dispatcher(),
            now + Duration::minutes(10),
        )
        .unwrap();
        let d = again.dispatch.unwrap();
        assert_eq!(d.lead_unit, "DEP-CG");
        assert_eq!(d.returns.len(), 1);
        assert!(d.manual);

        // The audit reason: "manual", with the dispatcher's note when there is one.
        let reason = |note: &str| {
            let cmd = Command::Dispatch {
                lead_unit: String::new(),
                co_units: vec![],
                use_next_suggestion: true,
                item_code: String::new(),
                note: note.into(),
            };
            let at = now + Duration::minutes(10);
            let rules = (catalog(), Deadlines::default(), Rules::default());
            step(&back, &cmd, &dispatcher(), at, &rules.0, &rules.1, &rules.2)
                .unwrap()
                .reason
        };
        assert_eq!(reason(""), "manual");
        assert_eq!(reason("  "), "manual");
        assert_eq!(reason("街道确认属地"), "manual: 街道确认属地");
    }

    #[test]
    fn only_a_street_whistles_and_extensions_come_before_the_deadline() {
        let t = routed();
        let now = t.received_at;
        let d = run(&t, Command::AutoDispatch, &Actor::system(), now).unwrap();
        let whistle = Command::Whistle {
            units: vec!["DEP-CG".into()],
            note: String::new(),
        };
        assert!(matches!(
            run(&d, whistle, &handler("DEP-ZJ"), now),
            Err(Refusal::Denied(m)) if m.contains("street")
        ));
        let a = run(&d, Command::Accept, &handler("DEP-ZJ"), now).unwrap();
        let due = a.dispatch.as_ref().unwrap().complete_by.unwrap();
        let ext = Command::RequestExtension {
            working_days: 3,
            reason: "r".into(),
        };
        assert!(matches!(
            run(
                &a,
                ext.clone(),
                &handler("DEP-ZJ"),
                due + Duration::hours(1)
            ),
            Err(Refusal::Illegal { .. })
        ));
        assert!(matches!(
            run(&a, ext.clone(), &dispatcher(), now),
            Err(Refusal::Denied(_))
        ));
        run(&a, ext, &handler("DEP-ZJ"), now).unwrap();
    }

    #[test]
    fn long_texts_are_refused_naming_the_field_and_progress_notes_are_bounded() {
        let t = routed();
        let now = t.received_at;
        let dispatched = run(&t, Command::AutoDispatch, &Actor::system(), now).unwrap();
        let x = run(&dispatched, Command::Accept, &handler("DEP-ZJ"), now).unwrap();
        let long = "长".repeat(MAX_TEXT_CHARS + 1);
        let refused = run(
            &x,
            Command::Complete {
                reply: long.clone(),
            },
            &handler("DEP-ZJ"),
            now,
        );
        assert!(
            matches!(&refused, Err(Refusal::Invalid(f)) if f.len() == 1 && f[0].0 == "reply"),
            "{refused:?}"
        );
        let both = Command::Return {
            reason: long.clone(),
            catalog_rule: long,
        };
        assert!(matches!(
            run(&x, both, &handler("DEP-ZJ"), now),
            Err(Refusal::Invalid(f)) if f.len() == 2
        ));

        // Notes up to the characters all notes may hold; then the ticket is full.
        let note = |text: String| Command::Progress { note: text };
        let mut full = x.clone();
        for _ in 0..MAX_PROGRESS_CHARS / MAX_TEXT_CHARS {
            let text = "进".repeat(MAX_TEXT_CHARS);
            full = run(&full, note(text), &handler("DEP-ZJ"), now).unwrap();
        }
        let refused = run(&full, note("再记一句".into()), &handler("DEP-ZJ"), now);
        assert!(
            matches!(&refused, Err(Refusal::Illegal { message, .. }) if message.contains("full")),
            "{refused:?}"
        );
        // And up to the number of notes.
        let mut many = x.clone();
        for i in 0..MAX_PROGRESS_NOTES {
            many = run(&many, note(format!("第{i}次")), &handler("DEP-ZJ"), now).unwrap();
        }
        assert!(matches!(
            run(&many, note("再记一句".into()), &handler("DEP-ZJ"), now),
            Err(Refusal::Illegal { .. })
        ));
        // Waits for the citizen and extension requests, each with its reason, are bounded too.
        let lead = handler("DEP-ZJ");
        let mut paused = x.clone();
        for _ in 0..MAX_PAUSES {
            let pause = Command::Pause {
                reason: "请补充材料".into(),
            };
            paused = run(&paused, pause, &lead, now).unwrap();
            let resume = Command::Resume {
                note: String::new(),
            };
            paused = run(&paused, resume, &lead, now).unwrap();
        }
        let pause = Command::Pause {
            reason: "再等一次".into(),
        };
        assert!(matches!(
            run(&paused, pause, &lead, now),
            Err(Refusal::Illegal { message, .. }) if message.contains("paused 20 times")
        ));
        let mut extended = x.clone();
        for _ in 0..MAX_EXTENSION_REQUESTS {
            let ask = Command::RequestExtension {
                working_days: 2,
                reason: "需协调".into(),
            };
            extended = run(&extended, ask, &lead, now).unwrap();
            let refuse = Command::DecideExtension {
                approve: false,
                note: String::new(),
            };
            extended = run(&extended, refuse, &dispatcher(), now).unwrap();
        }
        let ask = Command::RequestExtension {
            working_days: 2,
            reason: "再申请".into(),
        };
        assert!(matches!(
            run(&extended, ask, &lead, now),
            Err(Refusal::Illegal { message, .. }) if message.contains("10 extensions")
        ));

        // Completing still works on a full ticket.
        let done = run(
            &many,
            Command::Complete {
                reply: "已处理".into(),
            },
            &handler("DEP-ZJ"),
            now,
        )
        .unwrap();
        // Refusals in the wrong state say when the step is possible.
        let late = run(&done, note("补记".into()), &handler("DEP-ZJ"), now);
        assert_eq!(
            late.unwrap_err(),
            Refusal::Illegal {
                state: "completed".into(),
                message: "cannot take progress notes (only when accepted)".into()
            }
        );
        let early = run(&dispatched, note("先记".into()), &handler("DEP-ZJ"), now);
        assert_eq!(
            early.unwrap_err(),
            Refusal::Illegal {
                state: "dispatched".into(),
                message: "cannot take progress notes (only when accepted: accept it first)".into()
            }
        );
    }

    #[test]
    fn a_satisfied_callback_closes_and_a_citizen_side_dissatisfaction_does_not_reopen() {
        let t = routed();
        let now = t.received_at;
        let mut x = run(&t, Command::AutoDispatch, &Actor::system(), now).unwrap();
        x = run(&x, Command::Accept, &handler("DEP-ZJ"), now).unwrap();
        x = run(
            &x,
            Command::Complete { reply: "ok".into() },
            &handler("DEP-ZJ"),
            now,
        )
        .unwrap();
        let cb = |cause: &str| Command::Callback {
            rating: "dissatisfied".into(),
            cause: cause.into(),
            note: String::new(),
        };
        let closed = run(&x, cb("citizen"), &dispatcher(), now).unwrap();
        assert_eq!(closed.dispatch.unwrap().state, DispatchState::CalledBack);
        let redo = run(&x, cb("unit"), &dispatcher(), now).unwrap();
        assert_eq!(
            redo.dispatch.as_ref().unwrap().state,
            DispatchState::Accepted
        );
        assert_eq!(redo.dispatch.unwrap().redo_count, 1);
        // Handlers cannot record callbacks; a bad rating names the field.
        assert!(matches!(
            run(&x, cb("unit"), &handler("DEP-ZJ"), now),
            Err(Refusal::Denied(_))
        ));
        let bad = Command::Callback {
            rating: "meh".into(),
            cause: String::new(),
            note: String::new(),
        };
        assert!(matches!(
            run(&x, bad, &dispatcher(), now),
            Err(Refusal::Invalid(f)) if f[0].0 == "rating"
        ));
    }

    #[test]
    fn a_wait_for_the_citizen_stops_the_clock_and_moves_the_deadline_by_its_working_time() {
        let mut t = routed();
        // Monday 2026-11-23 09:00 Beijing.
        t.received_at = Utc.with_ymd_and_hms(2026, 11, 23, 1, 0, 0).unwrap();
        let now = t.received_at;
        let d = run(&t, Command::AutoDispatch, &Actor::system(), now).unwrap();
        let pause = |reason: &str| Command::Pause {
            reason: reason.into(),
        };
        assert!(
            matches!(
                run(&d, pause("照片"), &handler("DEP-ZJ"), now),
                Err(Refusal::Illegal { .. })
            ),
            "accept first"
        );
        let a = run(&d, Command::Accept, &handler("DEP-ZJ"), now).unwrap();
        let due = a.dispatch.as_ref().unwrap().complete_by.unwrap();
        assert!(matches!(
            run(&a, pause(" "), &handler("DEP-ZJ"), now),
            Err(Refusal::Invalid(f)) if f[0].0 == "reason"
        ));
        assert!(matches!(
            run(&a, pause("照片"), &handler("DEP-CG"), now),
            Err(Refusal::Denied(_))
        ));
        // Paused Monday 14:00, resumed Tuesday 14:00: 7 working hours (one working day).
        let at = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, 11, d, h - 8, 0, 0).unwrap();
        let p = run(&a, pause("请提供现场照片"), &handler("DEP-ZJ"), at(23, 14)).unwrap();
        assert!(p.dispatch.as_ref().unwrap().paused().is_some());
        assert!(matches!(
            run(&p, pause("again"), &handler("DEP-ZJ"), at(23, 15)),
            Err(Refusal::Illegal { message, .. }) if message.contains("already paused")
        ));
        let resume = Command::Resume {
            note: String::new(),
        };
        assert!(matches!(
            run(&p, resume.clone(), &handler("DEP-CG"), at(24, 14)),
            Err(Refusal::Denied(_))
        ));
        let r = run(&p, resume.clone(), &Actor::system(), at(24, 14)).unwrap();
        let rd = r.dispatch.as_ref().unwrap();
        assert!(rd.paused().is_none());
        assert_eq!(rd.pauses[0].working_secs, 7 * 3600);
        assert_eq!(
            rd.complete_by.unwrap(),
            Deadlines::default()
                .add_working_time(due, Duration::hours(7))
                .0
        );
        assert!(rd.complete_by.unwrap() > due);
        assert!(matches!(
            run(&r, resume, &handler("DEP-ZJ"), at(24, 15)),
            Err(Refusal::Illegal { message, .. }) if message.contains("not paused")
        ));
        // Completing while paused closes the pause.
        let p2 = run(&r, pause("再补充"), &handler("DEP-ZJ"), at(24, 15)).unwrap();
        let c = run(
            &p2,
            Command::Complete { reply: "ok".into() },
            &handler("DEP-ZJ"),
            at(24, 16),
        )
        .unwrap();
        assert!(c.dispatch.unwrap().paused().is_none());
    }
}
