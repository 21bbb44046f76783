//! Deadlines (时限): every open ticket's SLA clocks as durable timers.
//!
//! - For each clock of a ticket (accept while dispatched, complete while dispatched or
//!   accepted, arbitration while in arbitration) a timer per warning fraction (default 75%
//!   and 90% of the allowed working time) and one at the deadline. Timer ids are stable
//!   (`sla:{ticket}:{clock}:{percent}`), so planning is idempotent: [`Deadlines::ensure`]
//!   schedules what the ticket needs now and cancels the rest.
//! - Timers are claimed atomically by any number of workers ([`Deadlines::tick`]) and fire at
//!   least once; each effect (an alert on the ticket, an inbox entry for the unit, an
//!   `SlaAlert` event, or an escalation to arbitration when nobody accepted in time) commits
//!   exactly once, deduplicated by an id derived from the timer and its due time.
//! - PostgreSQL is the source of truth: when the timer store lost its data (FLUSHALL, a new
//!   Redis), [`Deadlines::reconcile`] rebuilds every pending timer from the tickets.
//! - Time comes from the injected [`Clock`]: tests move a clock instead of sleeping.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use minyi_calendar::Calendar;
use minyi_core::bus::{BatchItem, BatchOptions, Bus, Outcome, consume_batches};
use minyi_core::clock::Clock;
use minyi_core::event::{decode, new_event, timestamp};
use minyi_core::store::{
    AlertRecord, AuditRecord, DispatchState, StoreError, TicketQuery, TicketRecord, TicketStore,
    Transition, TransitionOutcome,
};
use minyi_core::timers::{Timer, TimerStore};
use minyi_dispatch::Engine;
use minyi_dispatch::engine::EngineError;
use minyi_dispatch::machine::{Actor, Command};
use minyi_proto::events::SlaAlert;
use minyi_proto::events::event::Body;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio::sync::watch;
use uuid::Uuid;

/// The consumer name: its queue and its dedupe key.
pub const CONSUMER: &str = "deadline";

/// Events after which a ticket's clocks may have changed (the queue's bindings, see
/// `minyi_core::bus::TOPOLOGY`).
pub fn watched_keys() -> Vec<&'static str> {
    minyi_core::bus::TOPOLOGY
        .iter()
        .find(|(q, _)| *q == CONSUMER)
        .map(|(_, k)| k.to_vec())
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
pub struct DeadlineConfig {
    /// Fractions of the allowed working time at which the unit is warned.
    pub warning_fractions: Vec<f64>,
    /// How long a claimed timer is leased before another worker may take it.
    pub lease: Duration,
    /// Timers claimed per round.
    pub batch: usize,
    /// How often to look for due timers when none were due.
    pub poll: Duration,
    /// How often to check whether the timer store lost its data.
    pub reconcile_every: Duration,
}

impl Default for DeadlineConfig {
    fn default() -> Self {
        Self {
            warning_fractions: vec![0.75, 0.9],
            lease: Duration::from_secs(30),
            batch: 200,
            poll: Duration::from_millis(200),
            reconcile_every: Duration::from_secs(30),
        }
    }
}

/// What a timer carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub ticket_id: Uuid,
    pub clock: String,
    pub level: String,
    pub fraction: f64,
    /// The deadline the timer is about.
    pub due: DateTime<Utc>,
    pub unit: String,
}

const CLOCKS: [&str; 4] = ["accept", "respond", "complete", "arbitration"];

/// The deadline service.
#[derive(Clone)]
pub struct Deadlines {
    pub store: Arc<dyn TicketStore>,
    pub timers: Arc<dyn TimerStore>,
    /// Applies escalations through the dispatch state machine.
    pub engine: Engine,
    pub clock: Arc<dyn Clock>,
    pub calendar: Arc<Calendar>,
    pub config: DeadlineConfig,
}

impl Deadlines {
    fn percent(f: f64) -> u32 {
        (f * 100.0).round() as u32
    }

    fn timer_id(ticket: Uuid, clock: &str, fraction: f64) -> String {
        format!("sla:{ticket}:{clock}:{}", Self::percent(fraction))
    }

    /// The instant `fraction` of the working time between `start` and `due` has run
    /// (wall-clock proportion past the loaded calendar years).
    fn at_fraction(
        &self,
        start: DateTime<Utc>,
        due: DateTime<Utc>,
        fraction: f64,
    ) -> DateTime<Utc> {
        let working = self
            .calendar
            .working_time_between(start, due)
            .ok()
            .filter(|w| *w > TimeDelta::zero())
            .and_then(|w| {
                let part = TimeDelta::milliseconds((w.num_milliseconds() as f64 * fraction) as i64);
                self.calendar.add_working_hours(start, part).ok()
            });
        working.unwrap_or_else(|| {
            start
                + TimeDelta::milliseconds(
                    ((due - start).num_milliseconds() as f64 * fraction) as i64,
                )
        })
    }

    /// The timers the ticket needs now, minus alerts already raised.
    pub fn plan(&self, t: &TicketRecord) -> Vec<Timer> {
        let Some(d) = &t.dispatch else {
            return Vec::new();
        };
        let mut clocks: Vec<(&str, String, DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        // First response (响应): from dispatch until the lead unit's first progress note, within
        // the item's `respond_hours` working hours.
        if matches!(d.state, DispatchState::Dispatched | DispatchState::Accepted)
            && d.progress.is_empty()
            && let Some(hours) = t
                .routing
                .as_ref()
                .map(|r| r.respond_hours)
                .filter(|h| *h > 0)
            && let Ok(due) = self
                .calendar
                .add_working_hours(d.dispatched_at, TimeDelta::hours(i64::from(hours)))
        {
            clocks.push(("respond", d.lead_unit.clone(), d.dispatched_at, due));
        }
        // A redo restarts the completion clock at the callback.
        let complete_start = match (&d.callback, d.redo_count) {
            (Some(c), n) if n > 0 => c.at,
            _ => d.dispatched_at,
        };
        match d.state {
            DispatchState::Dispatched => {
                if let Some(due) = d.accept_by {
                    clocks.push(("accept", d.lead_unit.clone(), d.dispatched_at, due));
                }
                if let Some(due) = d.complete_by {
                    clocks.push(("complete", d.lead_unit.clone(), complete_start, due));
                }
            }
            // While the unit waits for the citizen the completion clock stands still; resuming
            // moves `complete_by` by the paused working time and the timers follow.
            DispatchState::Accepted if d.paused().is_some() => {}
            DispatchState::Accepted => {
                if let Some(due) = d.complete_by {
                    clocks.push(("complete", d.lead_unit.clone(), complete_start, due));
                }
            }
            DispatchState::Arbitration => {
                if let Some(a) = &d.arbitration
                    && let Some(due) = a.due
                {
                    clocks.push(("arbitration", String::new(), a.escalated_at, due));
                }
            }
            _ => {}
        }
        let mut out = Vec::new();
        for (clock, unit, start, due) in clocks {
            let levels = self
                .config
                .warning_fractions
                .iter()
                .map(|f| (*f, "warning"))
                .chain([(1.0, "overdue")]);
            for (fraction, level) in levels {
                let raised = d.alerts.iter().any(|a| {
                    a.clock == clock
                        && a.due == due
                        && Self::percent(a.fraction) == Self::percent(fraction)
                });
                if raised {
                    continue;
                }
                let at = if fraction >= 1.0 {
                    due
                } else {
                    self.at_fraction(start, due, fraction)
                };
                let payload = Payload {
                    ticket_id: t.id,
                    clock: clock.to_owned(),
                    level: level.to_owned(),
                    fraction,
                    due,
                    unit: unit.clone(),
                };
                out.push(Timer {
                    id: Self::timer_id(t.id, clock, fraction),
                    due: at,
                    payload: serde_json::to_string(&payload).unwrap_or_default(),
                });
            }
        }
        out
    }

    /// Schedules the timers the ticket needs and cancels the others (idempotent).
    pub async fn ensure(&self, t: &TicketRecord) -> Result<(), String> {
        self.ensure_all(std::slice::from_ref(t)).await
    }

    /// [`Deadlines::ensure`] for several tickets, in one timer-store update.
    pub async fn ensure_all(&self, tickets: &[TicketRecord]) -> Result<(), String> {
        let mut schedule = Vec::new();
        let mut cancel = Vec::new();
        let fractions: Vec<f64> = self
            .config
            .warning_fractions
            .iter()
            .copied()
            .chain([1.0])
            .collect();
        for t in tickets {
            let planned = self.plan(t);
            for &fraction in &fractions {
                for clock in CLOCKS {
                    let id = Self::timer_id(t.id, clock, fraction);
                    if !planned.iter().any(|p| p.id == id) {
                        cancel.push(id);
                    }
                }
            }
            schedule.extend(planned);
        }
        self.timers
            .update(&schedule, &cancel)
            .await
            .map_err(|e| e.to_string())
    }

    /// Rebuilds every timer from the ticket store if the timer store lost its data. Returns
    /// the number of tickets planned, or `None` when nothing was lost.
    pub async fn reconcile(&self) -> Result<Option<usize>, String> {
        if self.timers.is_built().await.map_err(|e| e.to_string())? {
            return Ok(None);
        }
        let mut query = TicketQuery {
            limit: 500,
            ..TicketQuery::default()
        };
        let mut n = 0;
        loop {
            let page = self
                .store
                .list_tickets(&query)
                .await
                .map_err(|e| e.to_string())?;
            for t in page.iter().filter(|t| t.dispatch.is_some()) {
                self.ensure(t).await?;
                n += 1;
            }
            match page.last() {
                Some(last) if page.len() == query.limit => {
                    query.after = Some((last.received_at, last.id))
                }
                _ => break,
            }
        }
        self.timers.mark_built().await.map_err(|e| e.to_string())?;
        tracing::info!(tickets = n, "SLA timers rebuilt from the ticket store");
        Ok(Some(n))
    }

    /// Claims and fires the timers due now. Returns how many effects were committed.
    pub async fn tick(&self) -> Result<usize, String> {
        let now = self.clock.now();
        let due = self
            .timers
            .claim_due(now, self.config.batch, self.config.lease)
            .await
            .map_err(|e| e.to_string())?;
        let mut fired = 0;
        for timer in due {
            match self.fire(&timer).await {
                Ok(true) => fired += 1,
                Ok(false) => {}
                // Left leased: it comes due again when the lease runs out.
                Err(e) => {
                    tracing::warn!(timer = %timer.id, error = %e, "timer effect failed; will retry")
                }
            }
        }
        Ok(fired)
    }

    /// The deterministic id of a timer's effect: the same timer for the same deadline
    /// commits once, however many workers fire it.
    fn effect_id(p: &Payload) -> Uuid {
        let digest = sha2::Sha256::digest(format!(
            "{}:{}:{}:{}",
            p.ticket_id,
            p.clock,
            Self::percent(p.fraction),
            p.due.timestamp_millis()
        ));
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }

    async fn fire(&self, timer: &Timer) -> Result<bool, String> {
        let Ok(p) = serde_json::from_str::<Payload>(&timer.payload) else {
            tracing::error!(timer = %timer.id, "unreadable timer payload; dropped");
            self.timers
                .complete(&timer.id)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(false);
        };
        let t = match self.store.get_ticket(&p.ticket_id.to_string()).await {
            Ok(t) => t,
            Err(StoreError::NotFound(_)) => {
                self.timers
                    .complete(&timer.id)
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(false);
            }
            Err(e) => return Err(e.to_string()),
        };
        // Still wanted? (The ticket may have moved on, or its deadline moved.)
        let current = self.plan(&t);
        if !current
            .iter()
            .any(|c| c.id == timer.id && c.payload == timer.payload)
        {
            self.timers
                .complete(&timer.id)
                .await
                .map_err(|e| e.to_string())?;
            self.ensure(&t).await?;
            return Ok(false);
        }
        let now = self.clock.now();
        let effect = Self::effect_id(&p);
        let fired = if p.clock == "accept" && p.level == "overdue" {
            // Nobody accepted within the limit: the ticket is hard.
            let cmd = Command::Escalate {
                reason: format!("not accepted within the limit (due {})", p.due),
            };
            let system = Actor {
                sub: "minyi-deadline".into(),
                ..Actor::system()
            };
            match self
                .engine
                .apply(
                    &t.id.to_string(),
                    &cmd,
                    &system,
                    t.version,
                    Some((CONSUMER.into(), effect)),
                )
                .await
            {
                Ok(_) => true,
                Err(EngineError::AlreadyApplied) => false,
                Err(EngineError::Conflict { .. }) => return Err("ticket changed; retrying".into()),
                Err(e) => return Err(e.to_string()),
            }
        } else {
            match self.alert(&t, &p, now, effect).await? {
                TransitionOutcome::Applied { .. } => true,
                TransitionOutcome::AlreadyApplied => false,
                TransitionOutcome::Conflict { .. } => return Err("ticket changed; retrying".into()),
                TransitionOutcome::NotFound => return Err(format!("ticket {} not found", t.id)),
            }
        };
        self.timers
            .complete(&timer.id)
            .await
            .map_err(|e| e.to_string())?;
        if let Ok(t) = self.store.get_ticket(&t.id.to_string()).await {
            self.ensure(&t).await?;
        }
        if fired {
            self.engine.outbox_written.notify_one();
            tracing::info!(ticket_id = %t.id, clock = %p.clock, level = %p.level, "SLA alert raised");
        }
        Ok(fired)
    }

    async fn alert(
        &self,
        t: &TicketRecord,
        p: &Payload,
        now: DateTime<Utc>,
        effect: Uuid,
    ) -> Result<TransitionOutcome, String> {
        let Some(mut d) = t.dispatch.clone() else {
            return Err("ticket has no dispatch record".into());
        };
        d.alerts.push(AlertRecord {
            clock: p.clock.clone(),
            level: p.level.clone(),
            fraction: p.fraction,
            due: p.due,
            at: now,
        });
        let action = if p.level == "overdue" {
            "overdue"
        } else {
            "sla_warning"
        };
        let state = d.state.as_str().to_owned();
        let body = Body::SlaAlert(SlaAlert {
            clock: p.clock.clone(),
            level: p.level.clone(),
            fraction: p.fraction,
            due: Some(timestamp(p.due)),
            unit: p.unit.clone(),
        });
        let inbox = if p.unit.is_empty() {
            vec![]
        } else {
            vec![(p.unit.clone(), action.to_owned())]
        };
        self.store
            .transition(Transition {
                ticket_id: t.id,
                expected_version: t.version,
                status: t.status,
                dispatch: d,
                routing: None,
                audit: AuditRecord {
                    ticket_id: t.id,
                    at: now,
                    actor: "minyi-deadline".into(),
                    role: "system".into(),
                    unit: String::new(),
                    action: action.into(),
                    from_state: state.clone(),
                    to_state: state,
                    reason: format!(
                        "{} clock at {}% (due {})",
                        p.clock,
                        Self::percent(p.fraction),
                        p.due.with_timezone(&minyi_core::clock::shanghai())
                    ),
                    allowed: true,
                },
                inbox,
                events: vec![new_event(t.id, now, body)],
                dedupe: Some((CONSUMER.into(), effect)),
            })
            .await
            .map_err(|e| e.to_string())
    }

    /// Fires due timers until `shutdown`.
    pub async fn run_timers(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let fired = match self.tick().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "timer round failed");
                    0
                }
            };
            if fired == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.poll) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
            } else if *shutdown.borrow() {
                break;
            }
        }
        tracing::info!("deadline timers stopped");
    }

    /// Rebuilds lost timers at start and every `reconcile_every` until `shutdown`.
    pub async fn run_reconciler(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %e, "timer reconciliation failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.reconcile_every) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
    }

    /// Follows dispatch events and re-plans their tickets' timers, until `shutdown`: whatever
    /// has arrived (up to `max_batch` events, one per ticket, so a ticket's events stay in
    /// order) is re-planned with one ticket read and one timer-store update.
    pub async fn run_consumer(
        self,
        bus: Arc<dyn Bus>,
        max_batch: usize,
        shutdown: watch::Receiver<bool>,
    ) {
        let routing_keys = minyi_core::bus::TOPOLOGY
            .iter()
            .find(|(q, _)| *q == CONSUMER)
            .map(|(_, k)| *k)
            .unwrap_or_default();
        let me = Arc::new(self);
        consume_batches(
            bus,
            BatchOptions {
                consumer: CONSUMER,
                routing_keys,
                max_batch,
                span: |m| tracing::info_span!("deadline.consume", routing_key = %m.routing_key, trace_id = tracing::field::Empty),
            },
            shutdown,
            move |items| {
                let me = me.clone();
                async move {
                    let outcome = match me.on_events(&items).await {
                        Ok(()) => Outcome::Done,
                        Err(e) => {
                            tracing::warn!(error = %e, "re-planning failed; will retry");
                            Outcome::Retry
                        }
                    };
                    vec![outcome; items.len()]
                }
            },
        )
        .await;
    }

    /// Re-plans the tickets of `items` from their current state (an unknown ticket or an
    /// unreadable event has nothing to plan).
    async fn on_events(&self, items: &[BatchItem]) -> Result<(), String> {
        let ids: Vec<Uuid> = items
            .iter()
            .filter_map(|i| decode(&i.message.payload))
            .filter_map(|e| Uuid::parse_str(&e.ticket_id).ok())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let tickets = match self.store.get_tickets(&ids).await {
            Ok(t) => t,
            Err(StoreError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e.to_string()),
        };
        self.ensure_all(&tickets).await
    }
}
