//! The classification worker: `ticket.received` in; the decision (and `ticket.routed`,
//! `ticket.needs_dispatcher` or `ticket.duplicate_linked`) committed exactly once; then ack.

use std::sync::Arc;
use std::time::Duration;

use minyi_core::bus::{Bus, Delivery};
use minyi_core::clock::Clock;
use minyi_core::event::{decode, from_timestamp, new_event, routing_proto};
use minyi_core::petition::TicketStatus;
use minyi_core::store::{StoreError, TicketStore, TicketUpdate};
use minyi_proto::events::event::Body;
use minyi_proto::events::{DuplicateLinked, NeedsDispatcher, TicketReceived, TicketRouted};
use tokio::sync::{Notify, watch};
use tracing::Instrument;
use uuid::Uuid;

use crate::duplicates::similarity;
use crate::router::{AUTO, RouterHandle};

/// The consumer name: its queue and its dedupe key.
pub const CONSUMER: &str = "classification";

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How far back an open ticket at the same place counts as "the same matter".
    pub duplicate_window: chrono::Duration,
    /// Text similarity (bigram Jaccard) from which a petition is a duplicate.
    pub duplicate_threshold: f64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            duplicate_window: chrono::Duration::days(3),
            duplicate_threshold: 0.6,
        }
    }
}

pub struct Worker {
    pub store: Arc<dyn TicketStore>,
    pub bus: Arc<dyn Bus>,
    pub router: RouterHandle,
    pub clock: Arc<dyn Clock>,
    pub config: WorkerConfig,
    /// Wakes this process's outbox relay after a commit.
    pub outbox_written: Arc<Notify>,
}

enum Outcome {
    Done,
    Retry,
    Poison(&'static str),
}

impl Worker {
    /// Consumes until `shutdown`; the delivery in hand is finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // No decisions without a model: tickets wait in the queue until the first one is ready.
        tokio::select! {
            _ = self.router.wait_ready() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let mut sub = loop {
            match self.bus.subscribe(CONSUMER, &["ticket.received"]).await {
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
            let span = tracing::info_span!("classification.consume", routing_key = %delivery.message.routing_key, trace_id = tracing::field::Empty);
            minyi_core::trace_context::follow(&span, &delivery.message.headers);
            minyi_core::metrics::observe_delivery("classification", &delivery.message);
            let settled = match self.handle(&delivery).instrument(span).await {
                Outcome::Done => {
                    backoff = Duration::from_millis(100);
                    delivery.ack().await
                }
                Outcome::Retry => {
                    // Infrastructure trouble: wait before the broker redelivers, so a short
                    // outage does not burn through the delivery limit.
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
        tracing::info!("classification worker stopped");
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
        let Some(Body::Received(received)) = event.body else {
            return Outcome::Done;
        };
        let (update, body) = self.decide(ticket_id, &received).await;
        let status = update.status;
        let out = new_event(ticket_id, self.clock.now(), body);
        match self
            .store
            .apply_effect(CONSUMER, event_id, ticket_id, update, vec![out])
            .await
        {
            Ok(applied) => {
                if applied {
                    self.outbox_written.notify_one();
                    tracing::info!(status = ?status, "ticket classified");
                }
                Outcome::Done
            }
            Err(StoreError::NotFound(_)) => Outcome::Poison("ticket not in the store"),
            Err(e) => {
                tracing::warn!(error = %e, "store failed; will retry");
                Outcome::Retry
            }
        }
    }

    async fn decide(&self, ticket_id: Uuid, t: &TicketReceived) -> (TicketUpdate, Body) {
        let text = if t.title.is_empty() {
            t.text.clone()
        } else {
            format!("{}\n{}", t.title, t.text)
        };
        let point = t.point.as_ref().map(|p| (p.latitude, p.longitude));
        let router = self.router.wait_ready().await;
        let mut routing = router.decide(&text, &t.address, point);
        let now = self.clock.now();
        routing.routed_at = Some(now);
        // Duplicate of an open ticket at the same place?
        if !routing.community.is_empty() {
            let since = t
                .received_at
                .as_ref()
                .and_then(from_timestamp)
                .unwrap_or(now)
                - self.config.duplicate_window;
            match self
                .store
                .recent_open_in_community(&routing.community, since, 200)
                .await
            {
                Ok(candidates) => {
                    let best = candidates
                        .iter()
                        .filter(|c| {
                            c.id != ticket_id
                                && c.routing
                                    .as_ref()
                                    .is_some_and(|r| r.duplicate_of.is_empty())
                        })
                        .map(|c| (similarity(&c.text, &t.text), c))
                        .max_by(|a, b| a.0.total_cmp(&b.0));
                    if let Some((sim, original)) = best
                        && sim >= self.config.duplicate_threshold
                    {
                        routing.duplicate_of = original.id.to_string();
                        let body = Body::DuplicateLinked(DuplicateLinked {
                            duplicate_of: original.id.to_string(),
                            similarity: sim,
                        });
                        return (
                            TicketUpdate {
                                status: Some(TicketStatus::LinkedDuplicate),
                                routing: Some(routing),
                            },
                            body,
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "duplicate check skipped"),
            }
        }
        let proto = Some(routing_proto(&routing));
        if routing.decision == AUTO {
            (
                TicketUpdate {
                    status: Some(TicketStatus::Routed),
                    routing: Some(routing),
                },
                Body::Routed(TicketRouted { routing: proto }),
            )
        } else {
            (
                TicketUpdate {
                    status: Some(TicketStatus::NeedsDispatcher),
                    routing: Some(routing),
                },
                Body::NeedsDispatcher(NeedsDispatcher { routing: proto }),
            )
        }
    }
}
