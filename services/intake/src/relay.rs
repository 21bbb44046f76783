//! The outbox relay: moves committed events from the ticket store to the bus.
//!
//! Entries are leased, published with confirms, and only then deleted (in the same statement
//! as the relay's next claim). If the relay dies after publishing but before deleting, the
//! lease runs out and the events are published again: consumers dedupe on the event id.
//! Several relays may run at once.

use std::sync::Arc;
use std::time::Duration;

use minyi_core::bus::Bus;
use minyi_core::store::{OutboxHandoff, TicketStore};
use tokio::sync::{Notify, watch};

/// Outbox relay settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub batch: usize,
    pub lease: Duration,
    /// Poll interval when nothing woke the relay (other processes may write the outbox).
    pub idle_poll: Duration,
    /// Shortest time between two claims after a wake-up: under load the events of many
    /// commits go out in one claim, publish and delete (each claim scans the outbox's head)
    /// instead of one round of three statements per commit. An idle relay claims at once.
    pub min_interval: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            lease: Duration::from_secs(30),
            idle_poll: Duration::from_millis(100),
            min_interval: Duration::from_millis(20),
        }
    }
}

pub struct Relay {
    store: Arc<dyn TicketStore>,
    bus: Arc<dyn Bus>,
    wake: Arc<Notify>,
    config: RelayConfig,
    /// Events this process's writers committed leased to this relay: published at once.
    handoff: Option<Arc<OutboxHandoff>>,
}

impl Relay {
    pub fn new(
        store: Arc<dyn TicketStore>,
        bus: Arc<dyn Bus>,
        wake: Arc<Notify>,
        config: RelayConfig,
    ) -> Self {
        Self {
            store,
            bus,
            wake,
            config,
            handoff: None,
        }
    }

    /// Publishes what the store's writers hand over (see [`OutboxHandoff`]) as soon as it
    /// arrives; the store deletes those rows with the relay's next claim.
    pub fn with_handoff(mut self, handoff: Arc<OutboxHandoff>) -> Self {
        self.handoff = Some(handoff);
        self
    }

    /// Publishes the events handed over so far. Returns how many went out; on a failure they
    /// are put back for the next attempt (and their rows, leased, come back to a claim once
    /// the lease runs out, should this process die first).
    pub async fn publish_handed_over(&self) -> Result<usize, String> {
        let Some(h) = &self.handoff else {
            return Ok(0);
        };
        let events = h.take();
        if events.is_empty() {
            return Ok(0);
        }
        match self.bus.publish(&events).await {
            Ok(()) => {
                h.mark_published(events.iter().map(|m| m.event_id));
                Ok(events.len())
            }
            Err(e) => {
                h.requeue(events);
                Err(e.to_string())
            }
        }
    }

    /// Removes the entries in `published` (already published by this relay) and publishes
    /// one more batch, whose entries `published` then holds, for the next call to remove (in
    /// the same statement as its claim). Returns how many events went out.
    pub async fn relay_once(&self, published: &mut Vec<i64>) -> Result<usize, String> {
        let started = std::time::Instant::now();
        let entries = self
            .store
            .complete_and_claim_outbox(published, self.config.batch, self.config.lease)
            .await
            .map_err(|e| e.to_string())?;
        published.clear();
        if entries.is_empty() {
            return Ok(0);
        }
        let n = entries.len();
        let claimed = started.elapsed();
        let (seqs, messages): (Vec<i64>, Vec<_>) =
            entries.into_iter().map(|e| (e.seq, e.message)).unzip();
        // Not published: the entries stay leased and go out again when the lease runs out.
        self.bus
            .publish(&messages)
            .await
            .map_err(|e| e.to_string())?;
        tracing::debug!(
            events = n,
            claim_ms = claimed.as_millis() as u64,
            publish_ms = (started.elapsed() - claimed).as_millis() as u64,
            "relayed"
        );
        published.extend(seqs);
        Ok(n)
    }

    /// Runs until `shutdown` turns true; the batch in flight is finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        let mut published = Vec::new();
        // When the next claim is due; `None`: `idle_poll` after the last claim, or sooner
        // when woken (see `min_interval`).
        let mut next_claim = Some(tokio::time::Instant::now());
        let mut last_claim = tokio::time::Instant::now();
        let due =
            |next: Option<tokio::time::Instant>, last| next.unwrap_or(last + self.config.idle_poll);
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Handed-over events first; a claim that is due still runs after them, so a
            // steady stream of handed-over events never starves the claims (which delete
            // what was published and pick up rows other processes left).
            match self.publish_handed_over().await {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "relay: handed-over events not published; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            let now = tokio::time::Instant::now();
            if due(next_claim, last_claim) <= now {
                last_claim = now;
                match self.relay_once(&mut published).await {
                    Ok(n) if n == self.config.batch => continue,
                    Ok(_) => {
                        backoff = Duration::from_millis(100);
                        next_claim = None;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "relay failed; events stay in the outbox");
                        next_claim = Some(now + backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            let claim_at = due(next_claim, last_claim);
            let handed_over = async {
                match &self.handoff {
                    Some(h) => h.handed_over().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(claim_at) => {}
                // Let more commits' events gather (see `min_interval`).
                _ = self.wake.notified(), if next_claim.is_none() => {
                    next_claim = Some(last_claim + self.config.min_interval);
                }
                _ = handed_over => {}
                _ = shutdown.changed() => {}
            }
        }
        if self.handoff.is_some() {
            // Handed-over events published before the stop: their rows go with a last
            // (empty) claim; the rest stay leased and come back to a claim after the lease.
            let _ = self.publish_handed_over().await;
            if let Err(e) = self
                .store
                .complete_and_claim_outbox(&published, 0, self.config.lease)
                .await
            {
                tracing::warn!(error = %e, "relay: published events not removed from the outbox");
            }
        } else if !published.is_empty()
            && let Err(e) = self.store.complete_outbox(&published).await
        {
            // Published but still in the outbox: sent again once their lease runs out, and
            // consumers dedupe them.
            tracing::warn!(error = %e, "relay: published events not removed from the outbox");
        }
        tracing::info!("relay stopped");
    }
}
