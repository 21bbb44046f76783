//! In-process broker for the embedded mode.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{Acker, Bus, BusError, Delivery, Message, Settle, Subscription};

#[derive(Default)]
struct Queue {
    bindings: Vec<String>,
    ready: VecDeque<(Message, u32)>,
    dead: Vec<Message>,
    notify: Arc<Notify>,
}

#[derive(Default)]
struct Broker {
    queues: HashMap<String, Queue>,
}

/// An in-process bus with the same settle semantics as the RabbitMQ adapter.
#[derive(Clone)]
pub struct MemoryBus {
    broker: Arc<Mutex<Broker>>,
    max_deliveries: u32,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new(5)
    }
}

impl MemoryBus {
    pub fn new(max_deliveries: u32) -> Self {
        Self {
            broker: Arc::default(),
            max_deliveries,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Broker> {
        self.broker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, messages: &[Message]) -> Result<(), BusError> {
        let mut broker = self.lock();
        for m in messages {
            for q in broker.queues.values_mut() {
                if q.bindings
                    .iter()
                    .any(|b| super::topic_matches(b, &m.routing_key))
                {
                    q.ready.push_back((m.clone(), 0));
                    q.notify.notify_one();
                }
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        queue: &str,
        routing_keys: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.declare(queue, routing_keys).await?;
        Ok(Box::new(MemorySubscription {
            bus: self.clone(),
            queue: queue.to_owned(),
            unsettled: Arc::default(),
            transient: false,
        }))
    }

    async fn subscribe_transient(
        &self,
        name: &str,
        routing_keys: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        let queue = format!("{name}.{}", uuid::Uuid::new_v4().simple());
        self.declare(&queue, routing_keys).await?;
        Ok(Box::new(MemorySubscription {
            bus: self.clone(),
            queue,
            unsettled: Arc::default(),
            transient: true,
        }))
    }

    async fn declare(&self, queue: &str, routing_keys: &[&str]) -> Result<(), BusError> {
        let mut broker = self.lock();
        let q = broker.queues.entry(queue.to_owned()).or_default();
        for k in routing_keys {
            if !q.bindings.iter().any(|b| b == k) {
                q.bindings.push((*k).to_owned());
            }
        }
        Ok(())
    }

    async fn queue_depth(&self, queue: &str) -> Result<u64, BusError> {
        Ok(self.lock().queues.get(queue).map_or(0, |q| q.ready.len()) as u64)
    }

    async fn dead_letter_depth(&self, queue: &str) -> Result<u64, BusError> {
        Ok(self.lock().queues.get(queue).map_or(0, |q| q.dead.len()) as u64)
    }
}

type Unsettled = Arc<Mutex<HashMap<u64, (Message, u32)>>>;

struct MemorySubscription {
    bus: MemoryBus,
    queue: String,
    /// Delivered but not yet settled, by tag: returned to the queue if the subscription drops.
    unsettled: Unsettled,
    /// The queue is this subscription's own and goes with it.
    transient: bool,
}

static NEXT_TAG: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        loop {
            let notify = {
                let mut broker = self.bus.lock();
                let q = broker.queues.entry(self.queue.clone()).or_default();
                if let Some((message, attempt)) = q.ready.pop_front() {
                    let tag = NEXT_TAG.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.unsettled
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(tag, (message.clone(), attempt));
                    let acker = MemoryAcker {
                        bus: self.bus.clone(),
                        queue: self.queue.clone(),
                        unsettled: self.unsettled.clone(),
                        tag,
                    };
                    return Ok(Delivery::new(message, attempt, Box::new(acker)));
                }
                q.notify.clone()
            };
            notify.notified().await;
        }
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        if self.transient {
            self.bus.lock().queues.remove(&self.queue);
            return;
        }
        let pending: Vec<_> = self
            .unsettled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, v)| v)
            .collect();
        if pending.is_empty() {
            return;
        }
        let mut broker = self.bus.lock();
        if let Some(q) = broker.queues.get_mut(&self.queue) {
            for (m, attempt) in pending {
                q.ready.push_front((m, attempt + 1));
            }
            q.notify.notify_waiters();
            q.notify.notify_one();
        }
    }
}

struct MemoryAcker {
    bus: MemoryBus,
    queue: String,
    unsettled: Unsettled,
    tag: u64,
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn settle(&self, how: Settle, _: &Message) -> Result<(), BusError> {
        let Some((message, attempt)) = self
            .unsettled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.tag)
        else {
            return Err(BusError::Closed);
        };
        let mut broker = self.bus.lock();
        // A transient queue may be gone with its subscription: nothing left to settle into.
        let Some(q) = broker.queues.get_mut(&self.queue) else {
            return Ok(());
        };
        match how {
            Settle::Ack => {}
            Settle::Retry if attempt + 1 < self.bus.max_deliveries => {
                q.ready.push_back((message, attempt + 1));
                q.notify.notify_one();
            }
            Settle::Retry | Settle::DeadLetter => q.dead.push(message),
        }
        Ok(())
    }
}
