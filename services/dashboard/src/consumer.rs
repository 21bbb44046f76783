//! Keeps the read model current: a full load from the store at start, then every `ticket.#`
//! event re-reads its ticket (the events that have arrived together, up to 1,024, in one store
//! read, each ticket once); a periodic reload repairs anything missed. Each replica has a
//! transient queue of its own (every replica sees every event; nothing piles up on the broker
//! while no dashboard runs).
//!
//! The effect of an event is "re-read the ticket and keep the newer version", which is
//! idempotent and insensitive to order, so redeliveries need no dedupe table. A delivery is
//! acked only after the model holds the re-read ticket; store outages are retried with
//! backoff; undecodable messages are logged and dropped (the read model is a cache of the store).

use std::sync::Arc;
use std::time::Duration;

use minyi_core::bus::{Bus, BusError, Delivery, Subscription};
use minyi_core::event::decode;
use tokio::sync::{mpsc, watch};
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

    async fn consume(&self, sub: Box<dyn Subscription>, mut shutdown: watch::Receiver<bool>) {
        // A reader task owns the subscription, so waiting for a delivery is never cancelled
        // halfway; this loop takes whatever has arrived, up to BATCH at once, and re-reads
        // their tickets in one store read.
        let mut gaps = sub.gaps();
        let (tx, mut rx) = mpsc::channel(BATCH);
        let reader = tokio::spawn(read(sub, tx, shutdown.clone()));
        let mut backoff = Duration::from_millis(100);
        let mut applied_at = tokio::time::Instant::now();
        loop {
            let first = tokio::select! {
                r = rx.recv() => match r { Some(r) => r, None => break },
                _ = shutdown.wait_for(|s| *s) => break,
            };
            // Under load, let events gather: one store read for many (see MIN_INTERVAL).
            if rx.len() + 1 < BATCH {
                tokio::time::sleep_until(applied_at + MIN_INTERVAL).await;
            }
            applied_at = tokio::time::Instant::now();
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let newest_gaps = batch.iter().map(|(_, g)| *g).max().unwrap_or(gaps);
            if newest_gaps != gaps {
                // The broker lost our queue (a restart): events in between were missed.
                gaps = newest_gaps;
                tracing::info!("dashboard: resubscribed after a gap; reloading");
                if !self.load(&mut shutdown).await {
                    break;
                }
            }
            let mut deliveries = Vec::with_capacity(batch.len());
            for (d, _) in batch {
                match d {
                    Ok(d) => deliveries.push(d),
                    Err(e) => {
                        tracing::warn!(error = %e, "dashboard: bus error");
                        tokio::time::sleep(backoff).await;
                    }
                }
            }
            if !deliveries.is_empty() {
                self.apply(deliveries, &mut backoff).await;
            }
        }
        reader.abort();
    }

    /// Re-reads the tickets of `deliveries` and settles each: ack once the model holds its
    /// ticket; dead-letter what can never be applied; redeliver (after a backoff) on a store
    /// outage.
    async fn apply(&self, deliveries: Vec<Delivery>, backoff: &mut Duration) {
        let mut ids = Vec::new();
        let targets: Vec<Result<Uuid, &'static str>> = deliveries
            .iter()
            .map(|d| {
                minyi_core::metrics::observe_delivery("dashboard", &d.message);
                let event = decode(&d.message.payload).ok_or("not a minyi.events.v1.Event")?;
                let id = Uuid::parse_str(&event.ticket_id).map_err(|_| "bad ticket id")?;
                if !ids.contains(&id) {
                    ids.push(id);
                }
                Ok(id)
            })
            .collect();
        let refreshed = self
            .dashboard
            .refresh_many(&ids)
            .instrument(tracing::info_span!(
                "dashboard.refresh",
                tickets = ids.len()
            ))
            .await;
        if let Err(e) = &refreshed {
            tracing::warn!(error = %e, "dashboard: re-reading tickets failed; will retry");
            tokio::time::sleep(*backoff).await;
            *backoff = (*backoff * 2).min(Duration::from_secs(10));
        } else {
            *backoff = Duration::from_millis(100);
        }
        for (delivery, target) in deliveries.into_iter().zip(targets) {
            let outcome = match (&refreshed, target) {
                (_, Err(why)) => Outcome::Poison(why),
                (Err(_), Ok(_)) => Outcome::Retry,
                (Ok(missing), Ok(id)) if missing.contains(&id) => {
                    Outcome::Poison("ticket not in the store")
                }
                (Ok(_), Ok(_)) => Outcome::Done,
            };
            // Each event's own trace shows the dashboard taking it in.
            let span = tracing::info_span!("dashboard.consume", routing_key = %delivery.message.routing_key, trace_id = tracing::field::Empty);
            minyi_core::trace_context::follow(&span, &delivery.message.headers);
            let settled = match outcome {
                Outcome::Done => delivery.ack().instrument(span).await,
                Outcome::Retry => delivery.retry().instrument(span).await,
                Outcome::Poison(why) => {
                    // A transient queue has no dead-letter queue: the message is dropped, and
                    // the periodic reload repairs whatever it would have changed.
                    span.in_scope(|| tracing::error!(event_id = %delivery.message.event_id, why, "dashboard: dropping an unreadable message"));
                    delivery.dead_letter().instrument(span).await
                }
            };
            if let Err(e) = settled {
                tracing::warn!(error = %e, "dashboard: could not settle a delivery; the broker will redeliver it");
            }
        }
    }
}

/// Deliveries settled together.
const BATCH: usize = 1024;

/// Shortest time between two store reads: an idle dashboard applies an event at once; under
/// load it re-reads the tickets of everything that arrived meanwhile in one query (a full
/// batch does not wait). A ticket's events of one window (received, routed, dispatched come
/// tens of milliseconds apart) cost one re-read, not one each; a supervisor's page does not
/// need fresher figures.
const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// Moves deliveries (with the subscription's gap count when each arrived) into `tx`, until
/// `shutdown` or the receiver is gone.
async fn read(
    mut sub: Box<dyn Subscription>,
    tx: mpsc::Sender<(Result<Delivery, BusError>, u64)>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let d = tokio::select! {
            d = sub.next() => d,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        if tx.send((d, sub.gaps())).await.is_err() {
            return;
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
