//! The dispatch consumer: `ticket.routed` in; the ticket assigned to its lead unit (and
//! co-handlers), their inboxes fed and `ticket.dispatched` queued, exactly once; then ack.
//! Also the reconciler that rebuilds the routing state after Redis lost it.

use std::time::Duration;

use minyi_core::bus::{Bus, Delivery};
use minyi_core::event::decode;
use minyi_proto::events::event::Body;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::Instrument;
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
}

enum Outcome {
    Done,
    Retry,
    Poison(&'static str),
}

impl Worker {
    /// Consumes until `shutdown`; the delivery in hand is finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut sub = loop {
            match self.bus.subscribe(CONSUMER, BINDINGS).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            let delivery = tokio::select! {
                d = sub.next() => d,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let delivery = match delivery {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "bus error");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            let span = tracing::info_span!("dispatch.consume", routing_key = %delivery.message.routing_key, trace_id = tracing::field::Empty);
            minyi_core::trace_context::follow(&span, &delivery.message.headers);
            minyi_core::metrics::observe_delivery("dispatch", &delivery.message);
            let settled = match self.handle(&delivery).instrument(span).await {
                Outcome::Done => {
                    backoff = Duration::from_millis(100);
                    delivery.ack().await
                }
                Outcome::Retry => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    delivery.retry().await
                }
                Outcome::Poison(why) => {
                    tracing::error!(event_id = %delivery.message.event_id, why, "dead-lettering a message");
                    delivery.dead_letter().await
                }
            };
            if let Err(e) = settled {
                tracing::warn!(error = %e, "could not settle a delivery; the broker will redeliver it");
            }
        }
        tracing::info!("dispatch worker stopped");
    }

    #[tracing::instrument(skip_all, fields(ticket_id))]
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let Some(event) = decode(&delivery.message.payload) else {
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
