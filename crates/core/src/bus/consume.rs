//! The consumer loop the services share: subscribe (retrying until the broker answers), hand
//! the handler whatever has arrived as one batch (one ticket at most once, so a ticket's
//! events keep their order), settle each delivery by the handler's [`Outcome`], back off on
//! infrastructure trouble, stop cleanly on shutdown. Settling is per delivery, so acks may go
//! out of order: the broker allows that, and every effect is idempotent (see
//! [`crate::store::TicketStore::apply_effect`]).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{Bus, BusError, Delivery, Message, Subscription};

/// What a handler made of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The effect is committed (or was already): ack.
    Done,
    /// Infrastructure trouble: redeliver later (after a backoff), until the delivery limit.
    Retry,
    /// The message can never be handled: dead-letter it at once.
    Poison(&'static str),
}

/// What orders a message: its ticket (its own event id when it names none).
fn ticket_key(m: &Message) -> String {
    crate::event::decode(&m.payload)
        .map(|e| e.ticket_id)
        .unwrap_or_else(|| m.event_id.to_string())
}

/// Subscribes, retrying every second until the broker answers; `None` when shut down first.
async fn subscribe(
    bus: &Arc<dyn Bus>,
    consumer: &'static str,
    routing_keys: &[&str],
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Box<dyn Subscription>> {
    loop {
        match bus.subscribe(consumer, routing_keys).await {
            Ok(s) => return Some(s),
            Err(e) => {
                tracing::warn!(consumer, error = %e, "cannot subscribe; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.wait_for(|s| *s) => return None,
                }
            }
        }
    }
}

/// Settles `delivery` by `outcome` (ack, redeliver, dead-letter); a failure only means the
/// broker redelivers it.
async fn settle(consumer: &'static str, delivery: Delivery, outcome: Outcome) {
    let settled = match outcome {
        Outcome::Done => delivery.ack().await,
        Outcome::Retry => delivery.retry().await,
        Outcome::Poison(why) => {
            tracing::error!(consumer, event_id = %delivery.message.event_id, why, "dead-lettering a message");
            delivery.dead_letter().await
        }
    };
    if let Err(e) = settled {
        tracing::warn!(consumer, error = %e, "could not settle a delivery; the broker will redeliver it");
    }
}

/// How a batch consumer runs.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Queue (consumer group) name.
    pub consumer: &'static str,
    pub routing_keys: &'static [&'static str],
    /// Most deliveries handed to the handler at once.
    pub max_batch: usize,
    /// The span each message is handled in (e.g. `classification.consume`); it continues
    /// the trace the message carries.
    pub span: fn(&Message) -> tracing::Span,
}

/// One message of a batch and the span it is handled in (it continues the message's trace).
#[derive(Debug)]
pub struct BatchItem {
    pub message: Arc<Message>,
    pub span: tracing::Span,
}

/// Runs a consumer that hands its handler whatever has arrived, up to
/// [`BatchOptions::max_batch`] deliveries at a time, so the handler can commit them together
/// (one statement, one commit for many messages). A batch never holds two messages about the
/// same ticket: the later one waits for the next batch, so one ticket's events are still
/// handled in delivery order. The handler returns one [`Outcome`] per message, in order; each
/// delivery is settled by its own. Batches are handled one at a time; under load they grow
/// (everything the broker has prefetched), when idle a message is handled alone at once.
///
/// Runs until `shutdown` turns true: the batch in hand is finished and settled, the rest is
/// left unacknowledged for the broker to redeliver.
pub async fn consume_batches<H, F>(
    bus: Arc<dyn Bus>,
    options: BatchOptions,
    mut shutdown: watch::Receiver<bool>,
    handle: H,
) where
    H: Fn(Vec<BatchItem>) -> F + Send + Sync + 'static,
    F: Future<Output = Vec<Outcome>> + Send + 'static,
{
    let consumer = options.consumer;
    let Some(sub) = subscribe(&bus, consumer, options.routing_keys, &mut shutdown).await else {
        return;
    };
    let max = options.max_batch.max(1);
    // A reader task owns the subscription, so waiting for a delivery is never cancelled
    // halfway; this loop takes whatever has arrived.
    let (tx, mut rx) = mpsc::channel::<Result<Delivery, BusError>>(max);
    let reader = tokio::spawn(read_into(sub, tx));
    // Deliveries not yet handled, with their ticket (decoded once).
    let mut held: VecDeque<(String, Delivery)> = VecDeque::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        if held.is_empty() {
            let first = tokio::select! {
                r = rx.recv() => match r { Some(r) => r, None => break },
                _ = shutdown.wait_for(|s| *s) => break,
            };
            match first {
                Ok(d) => held.push_back((ticket_key(&d.message), d)),
                Err(e) => {
                    tracing::warn!(consumer, error = %e, "bus error");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            }
        }
        while held.len() < max {
            match rx.try_recv() {
                Ok(Ok(d)) => held.push_back((ticket_key(&d.message), d)),
                Ok(Err(e)) => tracing::warn!(consumer, error = %e, "bus error"),
                Err(_) => break,
            }
        }
        if *shutdown.borrow() {
            break;
        }
        // This batch: each ticket's first held message; later ones wait their turn.
        let mut tickets = HashSet::new();
        let mut batch = Vec::new();
        let mut rest = VecDeque::new();
        for (key, d) in held.drain(..) {
            if batch.len() < max && tickets.insert(key.clone()) {
                batch.push((key, d));
            } else {
                rest.push_back((key, d));
            }
        }
        held = rest;
        let items: Vec<BatchItem> = batch
            .iter()
            .map(|(_, d)| {
                let span = (options.span)(&d.message);
                crate::trace_context::follow(&span, &d.message.headers);
                crate::metrics::observe_delivery(consumer, &d.message);
                BatchItem {
                    message: Arc::new(d.message.clone()),
                    span,
                }
            })
            .collect();
        let outcomes = handle(items).await;
        let outcomes: Vec<Outcome> = (0..batch.len())
            .map(|n| outcomes.get(n).copied().unwrap_or(Outcome::Retry))
            .collect();
        if outcomes.contains(&Outcome::Retry) {
            // Once per batch: wait before the broker redelivers, so a short outage does not
            // burn through the delivery limit.
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        } else {
            backoff = Duration::from_millis(100);
        }
        for ((_, d), outcome) in batch.into_iter().zip(outcomes) {
            settle(consumer, d, outcome).await;
        }
    }
    reader.abort();
    // Held but not started: the broker redelivers them once this consumer is gone.
    drop(held);
    tracing::info!(consumer, "consumer stopped");
}

/// Moves deliveries from `sub` into `tx` until the receiver is gone.
async fn read_into(mut sub: Box<dyn Subscription>, tx: mpsc::Sender<Result<Delivery, BusError>>) {
    loop {
        let next = sub.next().await;
        if tx.send(next).await.is_err() {
            return;
        }
    }
}
