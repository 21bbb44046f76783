//! The outbox relay: moves committed events from the ticket store to the bus.
//!
//! Entries are leased, published with confirms, and only then deleted (in the same statement
//! as the relay's next claim). If the relay dies after publishing but before deleting, the
//! lease runs out and the events are published again: consumers dedupe on the event id.
//! Several relays may run at once.

use std::sync::Arc;
use std::time::Duration;

use minyi_core::bus::Bus;
use minyi_core::store::TicketStore;
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
        loop {
            if *shutdown.borrow() {
                break;
            }
            let claimed_at = tokio::time::Instant::now();
            match self.relay_once(&mut published).await {
                Ok(n) if n == self.config.batch => continue,
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    tokio::select! {
                        _ = self.wake.notified() => {
                            // Let more commits' events gather (see `min_interval`).
                            tokio::select! {
                                _ = tokio::time::sleep_until(claimed_at + self.config.min_interval) => {}
                                _ = shutdown.changed() => {}
                            }
                        }
                        _ = tokio::time::sleep(self.config.idle_poll) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "relay failed; events stay in the outbox");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        if !published.is_empty()
            && let Err(e) = self.store.complete_outbox(&published).await
        {
            // Published but still in the outbox: sent again once their lease runs out, and
            // consumers dedupe them.
            tracing::warn!(error = %e, "relay: published events not removed from the outbox");
        }
        tracing::info!("relay stopped");
    }
}
