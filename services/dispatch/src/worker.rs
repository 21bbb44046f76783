//! The dispatch consumer: `ticket.routed` in; the ticket assigned to its lead unit (and
//! co-handlers), their inboxes fed and `ticket.dispatched` queued, exactly once; then ack.
//! Also the reconciler that rebuilds the routing state after Redis lost it.

use std::time::Duration;

use minyi_core::bus::{BatchItem, BatchOptions, Bus, Message, Outcome, consume_batches};
use minyi_core::event::decode;
use minyi_proto::events::event::Body;
use std::sync::Arc;
use tokio::sync::watch;
use uuid::Uuid;

use crate::engine::{Engine, EngineError};
use crate::machine::{Actor, Command, Refusal};
use crate::state::rebuild_if_lost;
use minyi_core::store::TicketRecord;

/// The consumer name: its queue and its dedupe key.
pub const CONSUMER: &str = "dispatch";
/// Routed tickets to dispatch; citizens' follow-ups, which resume a paused clock.
pub const BINDINGS: &[&str] = &["ticket.routed", "ticket.follow_up_added"];

pub struct Worker {
    pub engine: Engine,
    pub bus: Arc<dyn Bus>,
    /// Most events applied in one store call (one ticket's events stay in order).
    pub max_batch: usize,
}

impl Worker {
    /// Consumes until `shutdown`; the batch in hand is finished first.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let bus = self.bus.clone();
        let max_batch = self.max_batch;
        let me = Arc::new(self);
        consume_batches(
            bus,
            BatchOptions {
                consumer: CONSUMER,
                routing_keys: BINDINGS,
                max_batch,
                span: |m| tracing::info_span!("dispatch.consume", routing_key = %m.routing_key, ticket_id = tracing::field::Empty, trace_id = tracing::field::Empty),
            },
            shutdown,
            move |items| {
                let me = me.clone();
                async move { me.handle_batch(items).await }
            },
        )
        .await;
    }

    /// Applies a batch of events (different tickets) in one store call: each one's outcome
    /// settles its own delivery.
    async fn handle_batch(&self, items: Vec<BatchItem>) -> Vec<Outcome> {
        let mut outcomes = vec![Outcome::Done; items.len()];
        let mut cmds = Vec::with_capacity(items.len());
        let mut positions = Vec::with_capacity(items.len());
        for (n, item) in items.iter().enumerate() {
            match command(&item.message) {
                Ok(Some((event_id, ticket_id, cmd))) => {
                    item.span
                        .record("ticket_id", tracing::field::display(ticket_id));
                    cmds.push((ticket_id, cmd, Some((CONSUMER.to_owned(), event_id))));
                    positions.push(n);
                }
                Ok(None) => {}
                Err(why) => outcomes[n] = Outcome::Poison(why),
            }
        }
        if cmds.is_empty() {
            return outcomes;
        }
        let names: Vec<&'static str> = cmds
            .iter()
            .map(|(_, cmd, _)| crate::engine::command_name(cmd))
            .collect();
        let results = self.engine.apply_batch(cmds, &Actor::system()).await;
        for ((n, action), result) in positions.into_iter().zip(names).zip(results) {
            outcomes[n] = items[n].span.in_scope(|| outcome(action, result));
        }
        outcomes
    }
}

/// The event's id, ticket and the command it means; `None` for events this consumer ignores.
fn command(message: &Message) -> Result<Option<(Uuid, Uuid, Command)>, &'static str> {
    let Some(event) = decode(&message.payload) else {
        return Err("not a minyi.events.v1.Event");
    };
    let (Ok(event_id), Ok(ticket_id)) = (
        Uuid::parse_str(&event.event_id),
        Uuid::parse_str(&event.ticket_id),
    ) else {
        return Err("bad event or ticket id");
    };
    let cmd = match event.body {
        Some(Body::Routed(_)) => Command::AutoDispatch,
        // The citizen sent what a paused ticket waits for: its clock runs again. (Refused
        // as illegal, and so ignored, when the ticket is not paused.)
        Some(Body::FollowUpAdded(_)) => Command::Resume {
            note: "the citizen added information".into(),
        },
        _ => return Ok(None),
    };
    Ok(Some((event_id, ticket_id, cmd)))
}

/// How a delivery is settled after its command was applied (or not).
fn outcome(action: &'static str, result: Result<TicketRecord, EngineError>) -> Outcome {
    match result {
        Ok(t) => {
            let lead = t.dispatch.map(|d| d.lead_unit).unwrap_or_default();
            tracing::info!(%lead, action, "applied");
            Outcome::Done
        }
        // A redelivery after the commit, or a ticket a dispatcher already took over.
        Err(EngineError::AlreadyApplied) => Outcome::Done,
        Err(EngineError::Refused(Refusal::Illegal { state, message })) => {
            tracing::info!(%state, %message, action, "not applied");
            Outcome::Done
        }
        Err(EngineError::Refused(r)) => {
            tracing::error!(refusal = ?r, "refused");
            Outcome::Poison("refused")
        }
        Err(EngineError::Store(minyi_core::store::StoreError::NotFound(_))) => {
            Outcome::Poison("ticket not in the store")
        }
        Err(e) => {
            tracing::warn!(error = %e, "dispatch failed; will retry");
            Outcome::Retry
        }
    }
}

/// Rebuilds the routing state whenever it was lost, at start and every `every`.
pub async fn reconcile(engine: Engine, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(e) = rebuild_if_lost(engine.routing_state.as_ref(), engine.store.as_ref()).await
        {
            tracing::warn!(error = %e, "routing state reconciliation failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
