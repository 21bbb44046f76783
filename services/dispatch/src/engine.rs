//! Loads a ticket, runs the state machine, commits the step as one store transition (status,
//! record, audit, inbox, event) and retries on a concurrent change when the caller did not
//! pin a version.

use std::sync::Arc;

use minyi_catalog::LiveCatalog;
use minyi_core::clock::Clock;
use minyi_core::event::{new_event, timestamp};
use minyi_core::store::{
    AuditRecord, StoreError, TicketRecord, TicketStore, Transition, TransitionOutcome,
};
use minyi_proto::events::DispatchChanged;
use minyi_proto::events::event::Body;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::deadlines::Deadlines;
use crate::machine::{Actor, Command, Refusal, Rules, Step, state_name, step};
use crate::state::RoutingState;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0:?}")]
    Refused(Refusal),
    #[error("the ticket changed since it was read (version {expected}, now {current})")]
    Conflict { expected: i64, current: i64 },
    #[error("event already applied")]
    AlreadyApplied,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `(consumer, event id)` of a consumer's command: applied at most once.
pub type Dedupe = Option<(String, Uuid)>;

/// The dispatch service's core, shared by the gRPC API and the routing consumer.
#[derive(Clone)]
pub struct Engine {
    pub store: Arc<dyn TicketStore>,
    pub catalog: LiveCatalog,
    pub deadlines: Arc<Deadlines>,
    pub rules: Rules,
    pub clock: Arc<dyn Clock>,
    /// Wakes this process's outbox relay after a commit.
    pub outbox_written: Arc<Notify>,
    /// Wakes this process's inbox streams after a commit.
    pub inbox_written: Arc<Notify>,
    /// Redis (or in-memory) routing state, kept up to date after commits.
    pub routing_state: Arc<dyn RoutingState>,
}

impl Engine {
    /// Applies `cmd` to the ticket `ticket_ref` (id or tracking number). `expected_version`
    /// 0 means "whatever is current"; otherwise a stale version is a conflict.
    pub async fn apply(
        &self,
        ticket_ref: &str,
        cmd: &Command,
        actor: &Actor,
        expected_version: i64,
        dedupe: Option<(String, Uuid)>,
    ) -> Result<TicketRecord, EngineError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let t = self.store.get_ticket(ticket_ref).await?;
            if expected_version != 0 && expected_version != t.version {
                return Err(EngineError::Conflict {
                    expected: expected_version,
                    current: t.version,
                });
            }
            let now = self.clock.now();
            let s = self.step(&t, cmd, actor, now).await?;
            let transition = self.transition(&t, &s, actor, now, dedupe.clone());
            match self.store.transition(transition).await? {
                TransitionOutcome::Applied { version } => {
                    self.outbox_written.notify_one();
                    if !s.inbox.is_empty() {
                        self.inbox_written.notify_waiters();
                    }
                    let t = after(t, s, version);
                    if let Err(e) = self.routing_state.record(&t).await {
                        tracing::warn!(error = %e, "routing state not updated; it is rebuilt on the next reconciliation");
                    }
                    return Ok(t);
                }
                TransitionOutcome::AlreadyApplied => return Err(EngineError::AlreadyApplied),
                TransitionOutcome::NotFound => {
                    return Err(StoreError::NotFound(ticket_ref.to_owned()).into());
                }
                TransitionOutcome::Conflict { current_version } => {
                    if expected_version != 0 || attempts >= 5 {
                        return Err(EngineError::Conflict {
                            expected: t.version,
                            current: current_version,
                        });
                    }
                }
            }
        }
    }

    /// Whether `cmd` would be accepted on `t` as it is now, changing nothing (a refusal for
    /// lack of permission is audited, as by [`Engine::apply`]).
    pub async fn check(
        &self,
        t: &TicketRecord,
        cmd: &Command,
        actor: &Actor,
    ) -> Result<(), EngineError> {
        self.step(t, cmd, actor, self.clock.now()).await.map(|_| ())
    }

    /// [`Engine::apply`] of a consumer's commands to different tickets (by id, current
    /// version, `actor`), committed together in one store call; one result per command, in
    /// order. A ticket that changed in the meantime is applied again on its own.
    pub async fn apply_batch(
        &self,
        cmds: Vec<(Uuid, Command, Dedupe)>,
        actor: &Actor,
    ) -> Vec<Result<TicketRecord, EngineError>> {
        let ids: Vec<Uuid> = cmds.iter().map(|(id, ..)| *id).collect();
        let mut tickets: std::collections::HashMap<Uuid, TicketRecord> =
            match self.store.get_tickets(&ids).await {
                Ok(ts) => ts.into_iter().map(|t| (t.id, t)).collect(),
                Err(e) => return cmds.iter().map(|_| Err(same_error(&e).into())).collect(),
            };
        let now = self.clock.now();
        let mut results: Vec<Option<Result<TicketRecord, EngineError>>> = Vec::new();
        // (position, ticket, step) of the commands that make a transition.
        let mut pending = Vec::new();
        let mut transitions = Vec::new();
        for (n, (id, cmd, dedupe)) in cmds.iter().enumerate() {
            results.push(None);
            let Some(t) = tickets.remove(id) else {
                results[n] = Some(Err(StoreError::NotFound(id.to_string()).into()));
                continue;
            };
            match self.step(&t, cmd, actor, now).await {
                Ok(s) => {
                    transitions.push(self.transition(&t, &s, actor, now, dedupe.clone()));
                    pending.push((n, t, s));
                }
                Err(e) => results[n] = Some(Err(e)),
            }
        }
        let outcomes = if transitions.is_empty() {
            Ok(Vec::new())
        } else {
            self.store.transitions(transitions).await
        };
        match outcomes {
            Ok(outcomes) => {
                let mut applied = Vec::new();
                for ((n, t, s), outcome) in pending.into_iter().zip(outcomes) {
                    results[n] = Some(match outcome {
                        TransitionOutcome::Applied { version } => {
                            let inbox = !s.inbox.is_empty();
                            let t = after(t, s, version);
                            applied.push((t.clone(), inbox));
                            Ok(t)
                        }
                        TransitionOutcome::AlreadyApplied => Err(EngineError::AlreadyApplied),
                        TransitionOutcome::NotFound => {
                            Err(StoreError::NotFound(t.id.to_string()).into())
                        }
                        TransitionOutcome::Conflict { .. } => {
                            let (_, cmd, dedupe) = &cmds[n];
                            self.apply(&t.id.to_string(), cmd, actor, 0, dedupe.clone())
                                .await
                        }
                    });
                }
                if !applied.is_empty() {
                    self.outbox_written.notify_one();
                    if applied.iter().any(|(_, inbox)| *inbox) {
                        self.inbox_written.notify_waiters();
                    }
                    let records = applied.iter().map(|(t, _)| self.routing_state.record(t));
                    for r in futures::future::join_all(records).await {
                        if let Err(e) = r {
                            tracing::warn!(error = %e, "routing state not updated; it is rebuilt on the next reconciliation");
                        }
                    }
                }
            }
            Err(e) => {
                for (n, ..) in pending {
                    results[n] = Some(Err(same_error(&e).into()));
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Internal("no outcome".into()).into())))
            .collect()
    }

    /// Runs the state machine; a denied attempt is audited.
    async fn step(
        &self,
        t: &TicketRecord,
        cmd: &Command,
        actor: &Actor,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Step, EngineError> {
        let stepped = step(
            t,
            cmd,
            actor,
            now,
            &self.catalog.current(),
            &self.deadlines,
            &self.rules,
        );
        if let Err(Refusal::Denied(why)) = &stepped {
            self.audit_refusal(t, command_name(cmd), actor, why).await;
        }
        stepped.map_err(EngineError::Refused)
    }

    fn transition(
        &self,
        t: &TicketRecord,
        s: &Step,
        actor: &Actor,
        now: chrono::DateTime<chrono::Utc>,
        dedupe: Option<(String, Uuid)>,
    ) -> Transition {
        let d = &s.dispatch;
        let body = match &s.arbitration_event {
            Some(a) => Body::ArbitrationChanged(a.clone()),
            None => Body::DispatchChanged(DispatchChanged {
                action: s.action.to_owned(),
                from_state: s.from.clone(),
                to_state: d.state.as_str().to_owned(),
                lead_unit: d.lead_unit.clone(),
                co_units: d.co_handlers.iter().map(|c| c.unit.clone()).collect(),
                unit: actor.unit.clone().unwrap_or_default(),
                actor_role: actor.role.as_str().to_owned(),
                manual: d.manual,
                accept_by: d.accept_by.map(timestamp),
                complete_by: d.complete_by.map(timestamp),
                return_count: d.returns.len() as u32,
                rating: d
                    .callback
                    .as_ref()
                    .map(|c| c.rating.clone())
                    .unwrap_or_default(),
                cause: d
                    .callback
                    .as_ref()
                    .map(|c| c.cause.clone())
                    .unwrap_or_default(),
                redo_count: d.redo_count,
            }),
        };
        Transition {
            ticket_id: t.id,
            expected_version: t.version,
            status: s.status,
            dispatch: s.dispatch.clone(),
            routing: s.routing.clone(),
            audit: AuditRecord {
                ticket_id: t.id,
                at: now,
                actor: actor.sub.clone(),
                role: actor_role(actor),
                unit: actor.unit.clone().unwrap_or_default(),
                action: s.action.to_owned(),
                from_state: s.from.clone(),
                to_state: d.state.as_str().to_owned(),
                reason: s.reason.clone(),
                allowed: true,
            },
            inbox: s.inbox.clone(),
            events: vec![new_event(t.id, now, body)],
            dedupe,
        }
    }

    /// Records a refused attempt in the ticket's audit trail; `action` is a command's name
    /// ([`command_name`]) or `read`.
    pub async fn audit_refusal(&self, t: &TicketRecord, action: &str, actor: &Actor, why: &str) {
        let state = state_name(t);
        let record = AuditRecord {
            ticket_id: t.id,
            at: self.clock.now(),
            actor: actor.sub.clone(),
            role: actor_role(actor),
            unit: actor.unit.clone().unwrap_or_default(),
            action: action.to_owned(),
            from_state: state.clone(),
            to_state: state,
            reason: format!("refused: {why}"),
            allowed: false,
        };
        if let Err(e) = self.store.append_audit(record).await {
            tracing::warn!(error = %e, "could not audit a refusal");
        }
    }
}

/// The ticket as a transition applied at `version` left it.
fn after(t: TicketRecord, s: Step, version: i64) -> TicketRecord {
    TicketRecord {
        status: s.status,
        dispatch: Some(s.dispatch),
        routing: s.routing.or(t.routing),
        version,
        ..t
    }
}

/// A store error for each command of a batch that failed as a whole.
fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotFound(id) => StoreError::NotFound(id.clone()),
        StoreError::Closed { id, status } => StoreError::Closed {
            id: id.clone(),
            status,
        },
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Internal(m) => StoreError::Internal(m.clone()),
    }
}

fn actor_role(actor: &Actor) -> String {
    if actor.sub == Actor::system().sub {
        "system".into()
    } else {
        actor.role.as_str().into()
    }
}

/// The name of a command, for the audit trail.
pub fn command_name(cmd: &Command) -> &'static str {
    match cmd {
        Command::AutoDispatch | Command::Dispatch { .. } => "dispatch",
        Command::Accept => "accept",
        Command::Return { .. } => "return",
        Command::AddCoHandlers { .. } => "add_co_handlers",
        Command::Whistle { .. } => "whistle",
        Command::Progress { .. } => "progress",
        Command::RequestExtension { .. } => "request_extension",
        Command::DecideExtension { .. } => "decide_extension",
        Command::Pause { .. } => "pause",
        Command::Resume { .. } => "resume",
        Command::Complete { .. } => "complete",
        Command::Callback { .. } => "callback",
        Command::Archive => "archive",
        Command::Escalate { .. } => "escalate",
        Command::Arbitrate { .. } => "arbitrate",
    }
}
