//! Publish right after commit: a writer that commits outbox rows already leased to this
//! process hands their events to the process's relay, which publishes them at once instead of
//! at its next claim (one relay wait and one claim fewer per hop).
//!
//! Nothing is lost when the process dies in between: the rows are in the outbox, leased for
//! [`OutboxHandoff::lease`], and any relay claims them once the lease runs out (consumers
//! dedupe on the event id, so a row published and then claimed again is harmless). The relay
//! deletes what it published by event id with its next claim.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use crate::bus::Message;

/// Events handed over and not yet taken by the relay, beyond which writers stop leasing (their
/// rows then wait for a claim, as without a handoff): bounds the memory a stalled broker costs.
const MAX_PENDING: usize = 20_000;

/// The mailbox between a store's writers and the relay of the same process.
#[derive(Debug)]
pub struct OutboxHandoff {
    pending: Mutex<Vec<Message>>,
    /// Published by the relay, to delete with the store's next claim.
    published: Mutex<Vec<uuid::Uuid>>,
    wake: Notify,
    lease: Duration,
}

impl OutboxHandoff {
    /// `lease`: how long handed-over rows stay reserved for this process's relay.
    pub fn new(lease: Duration) -> Self {
        Self {
            pending: Mutex::new(Vec::new()),
            published: Mutex::new(Vec::new()),
            wake: Notify::new(),
            lease,
        }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Message>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lease a writer should give the rows it is about to insert: `None` (claimable at
    /// once) while the relay is far behind.
    pub fn lease_for_next_write(&self) -> Option<Duration> {
        (self.lock().len() < MAX_PENDING).then_some(self.lease)
    }

    /// Hands over the events of rows committed leased, in commit order.
    pub fn push(&self, events: impl IntoIterator<Item = Message>) {
        let mut pending = self.lock();
        let before = pending.len();
        pending.extend(events);
        if pending.len() > before {
            drop(pending);
            self.wake.notify_one();
        }
    }

    /// Puts back events the relay could not publish, ahead of newer ones.
    pub fn requeue(&self, mut events: Vec<Message>) {
        let mut pending = self.lock();
        events.append(&mut pending);
        *pending = events;
    }

    /// Everything handed over so far, oldest first.
    pub fn take(&self) -> Vec<Message> {
        std::mem::take(&mut *self.lock())
    }

    /// Resolves when events were handed over since the last [`OutboxHandoff::take`] (or at
    /// once if some are pending).
    pub async fn handed_over(&self) {
        if !self.lock().is_empty() {
            return;
        }
        self.wake.notified().await;
    }

    /// The relay published these handed-over events: the store deletes their rows with its
    /// next claim.
    pub fn mark_published(&self, event_ids: impl IntoIterator<Item = uuid::Uuid>) {
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(event_ids);
    }

    /// Published events whose rows are still to delete (the store puts them back with
    /// [`OutboxHandoff::mark_published`] if its delete fails).
    pub fn take_published(&self) -> Vec<uuid::Uuid> {
        std::mem::take(&mut *self.published.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
