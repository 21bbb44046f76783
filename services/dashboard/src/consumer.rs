//! Keeps the read model current: a full load from the store at start, then every `ticket.#`
//! event re-reads its ticket; a periodic reload repairs anything missed. Each replica has a
//! transient queue of its own (every replica sees every event; nothing piles up on the broker
//! while no dashboard runs).
//!
//! The effect of an event is "re-read the ticket and keep the newer version", which is
//! idempotent and insensitive to order, so redeliveries need no dedupe table. A delivery is
//! acked only after the model holds the re-read ticket; store outages are retried with
//! backoff; undecodable messages are logged and dropped (the read model is a cache of the store).

use std::sync::Arc;
use std::time::Duration;

use minyi_core::bus::{Bus, Delivery, Subscription};
use minyi_core::event::decode;
use minyi_core::store::StoreError;
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use crate::dashboard::Dashboard;

/// The consumer name: its queue.
pub const CONSUMER: &str = "dashboard";
/// Every ticket event.
pub const BINDINGS: &[&str] = &["ticket.#"];

pub struct Consumer {
    pub dashboard: Dashboard,
    pub bus: Arc<dyn Bus>,
    /// How often the whole model is reloaded from the store.
    pub resync_every: Duration,
}

enum Outcome {
    Done,
    Retry,
    Poison(&'static str),
}

impl Consumer {
    pub fn new(dashboard: Dashboard, bus: Arc<dyn Bus>) -> Consumer {
        Consumer {
            dashboard,
            bus,
            resync_every: Duration::from_secs(600),
        }
    }

    /// Subscribes, loads, then consumes until `shutdown`; the delivery in hand is finished
    /// first. The subscription is transient (each replica has its own queue, and none exists
    /// while no dashboard runs), so it is made before the load: an event published during the
    /// load is then applied after it, never lost between the two.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let sub = loop {
            match self.bus.subscribe_transient(CONSUMER, BINDINGS).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, "dashboard: cannot subscribe; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                }
            }
        };
        if !self.load(&mut shutdown).await {
            return;
        }
        self.dashboard.set_ready();
        let resync = tokio::spawn(resync(
            self.dashboard.clone(),
            self.resync_every,
            shutdown.clone(),
        ));
        self.consume(sub, shutdown).await;
        let _ = resync.await;
        tracing::info!("dashboard consumer stopped");
    }

    /// Loads the whole model, retrying with backoff; false when shut down first.
    async fn load(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.dashboard.load().await {
                Ok(n) => {
                    tracing::info!(tickets = n, "dashboard read model loaded");
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dashboard: loading from the store failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait_for(|s| *s) => return false,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn consume(&self, mut sub: Box<dyn Subscription>, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        let mut gaps = sub.gaps();
        loop {
            let delivery = tokio::select! {
                d = sub.next() => d,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            if sub.gaps() != gaps {
                // The broker lost our queue (a restart): events in between were missed.
                gaps = sub.gaps();
                tracing::info!("dashboard: resubscribed after a gap; reloading");
                if !self.load(&mut shutdown).await {
                    break;
                }
            }
            let delivery = match delivery {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "dashboard: bus error");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            let span = tracing::info_span!("dashboard.consume", routing_key = %delivery.message.routing_key, trace_id = tracing::field::Empty);
            minyi_core::trace_context::follow(&span, &delivery.message.headers);
            minyi_core::metrics::observe_delivery("dashboard", &delivery.message);
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
                    // A transient queue has no dead-letter queue: the message is dropped, and
                    // the periodic reload repairs whatever it would have changed.
                    tracing::error!(event_id = %delivery.message.event_id, why, "dashboard: dropping an unreadable message");
                    delivery.dead_letter().await
                }
            };
            if let Err(e) = settled {
                tracing::warn!(error = %e, "dashboard: could not settle a delivery; the broker will redeliver it");
            }
        }
    }

    #[tracing::instrument(skip_all, fields(ticket_id))]
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let Some(event) = decode(&delivery.message.payload) else {
            return Outcome::Poison("not a minyi.events.v1.Event");
        };
        let Ok(ticket_id) = Uuid::parse_str(&event.ticket_id) else {
            return Outcome::Poison("bad ticket id");
        };
        tracing::Span::current().record("ticket_id", tracing::field::display(ticket_id));
        match self.dashboard.refresh(ticket_id).await {
            Ok(_) => Outcome::Done,
            Err(StoreError::NotFound(_)) => Outcome::Poison("ticket not in the store"),
            Err(e) => {
                tracing::warn!(error = %e, "dashboard: re-reading the ticket failed; will retry");
                Outcome::Retry
            }
        }
    }
}

/// Reloads the model every `every` until `shutdown`.
async fn resync(dashboard: Dashboard, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if let Err(e) = dashboard.load().await {
            tracing::warn!(error = %e, "dashboard: periodic reload failed; the next one retries");
        }
    }
}
