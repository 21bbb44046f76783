//! The message bus port: RabbitMQ in production, an in-process broker in embedded mode.
//!
//! Semantics both adapters keep (checked by the contract suite in `tests/bus_contract.rs`):
//! - `publish` returns only once the broker has taken responsibility for every message
//!   (publisher confirms on RabbitMQ).
//! - Each subscriber *queue* gets every message whose routing key matches one of its bindings;
//!   several subscriptions to the same queue share its messages (competing consumers).
//! - A delivery is settled by exactly one of `ack`, `retry` (redelivered later; after
//!   `max_deliveries` attempts it goes to the queue's dead-letter queue) or `dead_letter`.
//!   Deliveries still unsettled when their subscription is dropped are redelivered.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod amqp;
pub mod consume;
mod memory;

pub use amqp::{AmqpBus, AmqpConfig};
pub use consume::{BatchItem, BatchOptions, Outcome, consume_batches};
pub use memory::MemoryBus;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    #[error("broker refused the message: {0}")]
    Nacked(String),
    #[error("subscription closed")]
    Closed,
}

/// A message on the bus: an encoded `minyi.events.v1.Event` plus routing metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub event_id: Uuid,
    pub routing_key: String,
    pub payload: Vec<u8>,
    /// Carries the W3C trace context (`traceparent`) across services.
    pub headers: BTreeMap<String, String>,
}

/// What a consumer gets.
pub struct Delivery {
    pub message: Message,
    /// How many times this message was delivered before (0 on the first delivery), where the
    /// broker knows it.
    pub attempt: u32,
    acker: Box<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("event_id", &self.message.event_id)
            .field("routing_key", &self.message.routing_key)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl Delivery {
    pub(crate) fn new(message: Message, attempt: u32, acker: Box<dyn Acker>) -> Self {
        Self {
            message,
            attempt,
            acker,
        }
    }

    /// The effect is committed: forget the message.
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.settle(Settle::Ack, &self.message).await
    }

    /// Try again later; dead-lettered once the queue's delivery limit is reached.
    pub async fn retry(self) -> Result<(), BusError> {
        self.acker.settle(Settle::Retry, &self.message).await
    }

    /// Poison: straight to the dead-letter queue, never dropped.
    pub async fn dead_letter(self) -> Result<(), BusError> {
        self.acker.settle(Settle::DeadLetter, &self.message).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    Ack,
    Retry,
    DeadLetter,
}

#[async_trait]
pub(crate) trait Acker: Send + Sync {
    /// Settles the delivery of `message`.
    async fn settle(&self, how: Settle, message: &Message) -> Result<(), BusError>;
}

/// A consumer's stream of deliveries from one queue.
#[async_trait]
pub trait Subscription: Send {
    /// The next delivery. Reconnects by itself after a broker restart.
    async fn next(&mut self) -> Result<Delivery, BusError>;

    /// How often a transient subscription's queue was lost and declared afresh (a broker
    /// restart): messages published in between were missed. Always 0 for durable queues.
    fn gaps(&self) -> u64 {
        0
    }
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes every message and waits until the broker has confirmed them all.
    async fn publish(&self, messages: &[Message]) -> Result<(), BusError>;

    /// Declares (idempotently) the durable queue `queue` bound to `routing_keys` (`#` and `*`
    /// wildcards as in AMQP topics) with its dead-letter queue, and consumes from it.
    async fn subscribe(
        &self,
        queue: &str,
        routing_keys: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError>;

    /// Consumes from a queue of this subscription's own, bound to `routing_keys`, that lives
    /// only as long as the subscription: for read models that load their state from the store
    /// and only need what happens next. Every such subscriber sees every message (one per
    /// replica), and nothing piles up for subscribers that are not running. Load from the
    /// store after subscribing, and again when [`Subscription::gaps`] grows.
    async fn subscribe_transient(
        &self,
        name: &str,
        routing_keys: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError>;

    /// Declares (idempotently) the durable queue `queue` bound to `routing_keys`, so messages
    /// published before its first consumer starts wait for it.
    async fn declare(&self, queue: &str, routing_keys: &[&str]) -> Result<(), BusError>;

    /// Messages waiting in `queue` (ready, not delivered), for metrics and tests. On RabbitMQ
    /// a pack (several events of one publish) counts once.
    async fn queue_depth(&self, queue: &str) -> Result<u64, BusError>;

    /// Messages in `queue`'s dead-letter queue.
    async fn dead_letter_depth(&self, queue: &str) -> Result<u64, BusError>;
}

/// Every durable consumer queue of the cluster and its bindings. Each process declares all of
/// them at start, so no event is published to an exchange without its queues. (The dashboard's
/// read model has no durable queue: each replica subscribes transiently and loads from the
/// store.)
pub const TOPOLOGY: &[(&str, &[&str])] = &[
    ("classification", &["ticket.received"]),
    ("dispatch", &["ticket.routed", "ticket.follow_up_added"]),
    (
        "deadline",
        &[
            "ticket.dispatched",
            "ticket.accepted",
            "ticket.returned",
            "ticket.extension_decided",
            "ticket.paused",
            "ticket.resumed",
            "ticket.completed",
            "ticket.reopened",
            "ticket.archived",
            "ticket.escalated",
            "ticket.arbitrated",
        ],
    ),
];

/// Declares [`TOPOLOGY`].
pub async fn declare_topology(bus: &dyn Bus) -> Result<(), BusError> {
    for (queue, keys) in TOPOLOGY {
        bus.declare(queue, keys).await?;
    }
    Ok(())
}

/// AMQP topic matching: `*` is one word, `#` zero or more.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match (p.first(), k.first()) {
            (None, None) => true,
            (Some(&"#"), _) => go(&p[1..], k) || (!k.is_empty() && go(p, &k[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &k[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &k[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn topics() {
        assert!(topic_matches("ticket.received", "ticket.received"));
        assert!(topic_matches("ticket.*", "ticket.received"));
        assert!(topic_matches("#", "ticket.received"));
        assert!(topic_matches("ticket.#", "ticket"));
        assert!(!topic_matches("ticket.*", "ticket.a.b"));
        assert!(!topic_matches("ticket.routed", "ticket.received"));
    }
}
