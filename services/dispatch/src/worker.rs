//! The dispatch consumer: `ticket.routed` in; the ticket assigned to its lead unit (and
//! co-handlers), their inboxes fed and `ticket.dispatched` queued, exactly once; then ack.
//! Also the reconciler that rebuilds the routing state after Redis lost it.

use std::time::Duration;

use minyi_core::bus::{Bus, ConsumeOptions, Message, Outcome, consume};
use minyi_core::event::decode;
use minyi_proto::events::event::Body;
use std::sync::Arc;
use tokio::sync::watch;
use uuid::Uuid;

use crate::engine::{Engine, EngineError};
use crate::machine::{Actor, Command, Refusal};
use crate::state::rebuild_if_lost;

/// The consumer name: its queue and its dedupe key.
pub const CONSUMER: &str = "dispatch";
/// Routed tickets to dispatch; citizens' follow-ups, which resume a paused clock.
pub const BINDINGS: &[&str] = &["ticket.routed", "ticket.follow_up_added"];

pub struct Worker {
    pub engine: Engine,
    pub bus: Arc<dyn Bus>,
    /// Tickets dispatched at once (one ticket's events stay in order).
    pub lanes: usize,
}

impl Worker {
    /// Consumes until `shutdown`; deliveries in hand are finished first.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let bus = self.bus.clone();
        let lanes = self.lanes;
        let me = Arc::new(self);
        consume(
            bus,
            ConsumeOptions {
                consumer: CONSUMER,
                routing_keys: BINDINGS,
                lanes,
                transient: false,
                span: |m| tracing::info_span!("dispatch.consume", routing_key = %m.routing_key, trace_id = tracing::field::Empty),
            },
            shutdown,
            move |m| {
                let me = me.clone();
                async move { me.handle(&m).await }
            },
        )
        .await;
    }

    #[tracing::instrument(skip_all, fields(ticket_id))]
    async fn handle(&self, message: &Message) -> Outcome {
        let Some(event) = decode(&message.payload) else {
            return Outcome::Poison("not a minyi.events.v1.Event");
        };
        let (Ok(event_id), Ok(ticket_id)) = (
            Uuid::parse_str(&event.event_id),
            Uuid::parse_str(&event.ticket_id),
        ) else {
            return Outcome::Poison("bad event or ticket id");
        };
        tracing::Span::current().record("ticket_id", tracing::field::display(ticket_id));
        let cmd = match event.body {
            Some(Body::Routed(_)) => Command::AutoDispatch,
            // The citizen sent what a paused ticket waits for: its clock runs again. (Refused
            // as illegal, and so ignored, when the ticket is not paused.)
            Some(Body::FollowUpAdded(_)) => Command::Resume {
                note: "the citizen added information".into(),
            },
            _ => return Outcome::Done,
        };
        match self
            .engine
            .apply(
                &ticket_id.to_string(),
                &cmd,
                &Actor::system(),
                0,
                Some((CONSUMER.to_owned(), event_id)),
            )
            .await
        {
            Ok(t) => {
                let lead = t.dispatch.map(|d| d.lead_unit).unwrap_or_default();
                tracing::info!(%lead, action = crate::engine::command_name(&cmd), "applied");
                Outcome::Done
            }
            // A redelivery after the commit, or a ticket a dispatcher already took over.
            Err(EngineError::AlreadyApplied) => Outcome::Done,
            Err(EngineError::Refused(Refusal::Illegal { state, message })) => {
                tracing::info!(%state, %message, action = crate::engine::command_name(&cmd), "not applied");
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
