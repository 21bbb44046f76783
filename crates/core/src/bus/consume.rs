//! The consumer loop every service shares: subscribe (retrying until the broker answers),
//! hand deliveries to a handler, settle each by the handler's [`Outcome`], back off on
//! infrastructure trouble, stop cleanly on shutdown.
//!
//! Deliveries are handled `lanes` at a time. Messages about the same ticket always go to the
//! same lane, so they are handled one after the other in the order the broker delivered them;
//! different tickets proceed side by side. Settling is per delivery, so acks may go out of
//! order: the broker allows that, and every effect is idempotent (see
//! [`crate::store::TicketStore::apply_effect`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::{Bus, Delivery, Message};

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

/// How a consumer runs.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// Queue (consumer group) name.
    pub consumer: &'static str,
    pub routing_keys: &'static [&'static str],
    /// Deliveries handled at once (different tickets). 1 handles strictly in order.
    pub lanes: usize,
    /// Use a transient queue of this subscriber's own (read models), not the shared durable one.
    pub transient: bool,
    /// The span each delivery is handled in (e.g. `classification.consume`); it continues the
    /// trace the message carries.
    pub span: fn(&Message) -> tracing::Span,
}

/// The lane of a message: its ticket, so one ticket's events stay in order.
fn lane_of(m: &Message, lanes: usize) -> usize {
    if lanes <= 1 {
        return 0;
    }
    let key = crate::event::decode(&m.payload)
        .map(|e| e.ticket_id)
        .unwrap_or_else(|| m.event_id.to_string());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&key, &mut h);
    (std::hash::Hasher::finish(&h) % lanes as u64) as usize
}

/// Runs a consumer until `shutdown` turns true: deliveries already being handled finish and
/// are settled; deliveries not yet started are left unacknowledged for the broker to
/// redeliver. `handle` gets each delivery's message inside its span
/// ([`ConsumeOptions::span`]), which continues the trace the message carries.
pub async fn consume<H, F>(
    bus: Arc<dyn Bus>,
    options: ConsumeOptions,
    mut shutdown: watch::Receiver<bool>,
    handle: H,
) where
    H: Fn(Arc<Message>) -> F + Send + Sync + 'static,
    F: Future<Output = Outcome> + Send + 'static,
{
    let consumer = options.consumer;
    let mut sub = loop {
        let subscribed = if options.transient {
            bus.subscribe_transient(consumer, options.routing_keys)
                .await
        } else {
            bus.subscribe(consumer, options.routing_keys).await
        };
        match subscribed {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(consumer, error = %e, "cannot subscribe; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        }
    };
    let handle = Arc::new(handle);
    let lanes = options.lanes.max(1);
    let mut senders = Vec::with_capacity(lanes);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..lanes {
        // One waiting delivery per lane: the rest stay with the broker (prefetch) until a lane
        // is free, so a slow ticket does not hoard messages.
        let (tx, rx) = mpsc::channel::<Delivery>(1);
        senders.push(tx);
        workers.spawn(lane(
            consumer,
            options.span,
            rx,
            handle.clone(),
            shutdown.clone(),
        ));
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        let delivery = tokio::select! {
            d = sub.next() => d,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let delivery = match delivery {
            Ok(d) => {
                backoff = Duration::from_millis(100);
                d
            }
            Err(e) => {
                tracing::warn!(consumer, error = %e, "bus error");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let n = lane_of(&delivery.message, lanes);
        tokio::select! {
            sent = senders[n].send(delivery) => if sent.is_err() { break },
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    drop(senders);
    while workers.join_next().await.is_some() {}
    tracing::info!(consumer, "consumer stopped");
}

async fn lane<H, F>(
    consumer: &'static str,
    make_span: fn(&Message) -> tracing::Span,
    mut rx: mpsc::Receiver<Delivery>,
    handle: Arc<H>,
    shutdown: watch::Receiver<bool>,
) where
    H: Fn(Arc<Message>) -> F + Send + Sync + 'static,
    F: Future<Output = Outcome> + Send + 'static,
{
    let mut backoff = Duration::from_millis(100);
    while let Some(delivery) = rx.recv().await {
        if *shutdown.borrow() {
            // Not started: the broker redelivers it once this consumer is gone.
            continue;
        }
        let span = make_span(&delivery.message);
        crate::trace_context::follow(&span, &delivery.message.headers);
        crate::metrics::observe_delivery(consumer, &delivery.message);
        let message = Arc::new(delivery.message.clone());
        let settled = match handle(message).instrument(span).await {
            Outcome::Done => {
                backoff = Duration::from_millis(100);
                delivery.ack().await
            }
            Outcome::Retry => {
                // Wait before the broker redelivers, so a short outage does not burn through
                // the delivery limit.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                delivery.retry().await
            }
            Outcome::Poison(why) => {
                tracing::error!(consumer, event_id = %delivery.message.event_id, why, "dead-lettering a message");
                delivery.dead_letter().await
            }
        };
        if let Err(e) = settled {
            tracing::warn!(consumer, error = %e, "could not settle a delivery; the broker will redeliver it");
        }
    }
}
