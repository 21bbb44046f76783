//! The classification worker: `ticket.received` in; the decision (and `ticket.routed`,
//! `ticket.needs_dispatcher` or `ticket.duplicate_linked`) committed exactly once; then ack.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use minyi_core::bus::{BatchItem, BatchOptions, Bus, Message, Outcome, consume_batches};
use minyi_core::clock::Clock;
use minyi_core::event::{decode, from_timestamp, new_event, routing_proto};
use minyi_core::petition::TicketStatus;
use minyi_core::store::{
    Effect, EffectOutcome, RoutingRecord, StoreError, TicketStore, TicketUpdate,
};
use minyi_proto::events::event::Body;
use minyi_proto::events::{DuplicateLinked, NeedsDispatcher, TicketReceived, TicketRouted};
use tokio::sync::{Notify, watch};
use tracing::Instrument;
use uuid::Uuid;

use crate::duplicates::{ShingleCache, Shingles};
use crate::router::{AUTO, RouterHandle};

/// Open tickets a petition is compared with: the newest of its community's window.
const CANDIDATES: usize = 200;

/// How long a community's candidates read from the store serve later batches (with this
/// process's own decisions added). Under load one read serves many batches; a ticket another
/// replica classified, or one closed, in the meantime is seen at most this much later.
const POOL_TTL: std::time::Duration = std::time::Duration::from_millis(250);

/// The consumer name: its queue and its dedupe key.
pub const CONSUMER: &str = "classification";

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How far back an open ticket at the same place counts as "the same matter".
    pub duplicate_window: chrono::Duration,
    /// Text similarity (bigram Jaccard) from which a petition is a duplicate.
    pub duplicate_threshold: f64,
    /// Most petitions classified and committed together (one statement). Batches form from
    /// what has arrived: one petition at a time when traffic is light, bigger under load.
    pub max_batch: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            duplicate_window: chrono::Duration::days(3),
            duplicate_threshold: 0.6,
            max_batch: 256,
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
    /// Candidates' shingles by ticket id, so each text is analysed once, not per petition.
    pub shingles: ShingleCache,
    /// Each community's candidates as last read from the store, with this process's
    /// decisions since (see [`POOL_TTL`]).
    pub pools: Mutex<HashMap<String, Pool>>,
}

/// A community's duplicate candidates as read from the store at `fetched_at` (those received
/// since `since`), plus the petitions this process has classified there since.
#[derive(Clone)]
pub struct Pool {
    fetched_at: std::time::Instant,
    since: chrono::DateTime<chrono::Utc>,
    candidates: Vec<Candidate>,
}

/// A received petition of the batch in hand.
struct Petition {
    /// Its place in the batch.
    n: usize,
    event_id: Uuid,
    ticket_id: Uuid,
    received: TicketReceived,
    received_at: chrono::DateTime<chrono::Utc>,
}

/// An open ticket the duplicate check compares with.
#[derive(Clone)]
struct Candidate {
    id: Uuid,
    received_at: chrono::DateTime<chrono::Utc>,
    shingles: Arc<Shingles>,
}

impl Worker {
    /// Consumes until `shutdown`; the batch in hand is finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // No decisions without a model: tickets wait in the queue until the first one is ready.
        tokio::select! {
            _ = self.router.wait_ready() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let bus = self.bus.clone();
        let max_batch = self.config.max_batch;
        let me = Arc::new(self);
        consume_batches(
            bus,
            BatchOptions {
                consumer: CONSUMER,
                routing_keys: &["ticket.received"],
                max_batch,
                span: |m| tracing::info_span!("classification.consume", routing_key = %m.routing_key, ticket_id = tracing::field::Empty, trace_id = tracing::field::Empty),
            },
            shutdown,
            move |items| {
                let me = me.clone();
                async move { me.handle_batch(items).await }
            },
        )
        .await;
    }

    /// Classifies a batch of received petitions (different tickets), checks each for an open
    /// duplicate (earlier ones of the batch included: the batch is decided in order), and
    /// commits every decision with its event in one store call.
    async fn handle_batch(&self, items: Vec<BatchItem>) -> Vec<Outcome> {
        let mut outcomes = vec![Outcome::Done; items.len()];
        let mut petitions = Vec::with_capacity(items.len());
        for (n, item) in items.iter().enumerate() {
            match Self::petition(n, &item.message, self.clock.now()) {
                Ok(Some(p)) => {
                    item.span
                        .record("ticket_id", tracing::field::display(p.ticket_id));
                    petitions.push(p);
                }
                Ok(None) => {}
                Err(why) => outcomes[n] = Outcome::Poison(why),
            }
        }
        if petitions.is_empty() {
            return outcomes;
        }
        let started = std::time::Instant::now();
        let waited_ms = petitions
            .iter()
            .map(|p| p.received_at)
            .min()
            .map_or(0, |oldest| (self.clock.now() - oldest).num_milliseconds());
        let router = self.router.wait_ready().await;
        let routings: Vec<RoutingRecord> = petitions
            .iter()
            .map(|p| {
                let _in = items[p.n].span.enter();
                let t = &p.received;
                let text = if t.title.is_empty() {
                    t.text.clone()
                } else {
                    format!("{}\n{}", t.title, t.text)
                };
                let point = t.point.as_ref().map(|p| (p.latitude, p.longitude));
                let mut routing = router.decide(&text, &t.address, point);
                routing.routed_at = Some(self.clock.now());
                routing
            })
            .collect();
        let classified = started.elapsed();
        let mut pools = self.candidate_pools(&petitions, &routings).await;
        let pooled = started.elapsed();
        let mut effects = Vec::with_capacity(petitions.len());
        let mut statuses = Vec::with_capacity(petitions.len());
        for (p, routing) in petitions.iter().zip(routings) {
            let _in = items[p.n].span.enter();
            let (update, body) = self.decide(p, routing, &mut pools);
            statuses.push(update.status);
            effects.push(Effect {
                event_id: p.event_id,
                ticket_id: p.ticket_id,
                update,
                events: vec![new_event(p.ticket_id, self.clock.now(), body)],
            });
        }
        let applied = self
            .store
            .apply_effects(CONSUMER, effects)
            .instrument(tracing::info_span!(
                "classification.commit",
                tickets = petitions.len()
            ))
            .await;
        tracing::debug!(
            petitions = petitions.len(),
            waited_ms,
            classify_ms = classified.as_millis() as u64,
            pools_ms = (pooled - classified).as_millis() as u64,
            commit_ms = (started.elapsed() - pooled).as_millis() as u64,
            "classification batch"
        );
        match applied {
            Ok(results) => {
                if results.contains(&EffectOutcome::Applied) {
                    self.outbox_written.notify_one();
                }
                // The batch's originals are candidates for the next batches (not those whose
                // ticket turned out to be missing).
                let missing: Vec<Uuid> = petitions
                    .iter()
                    .zip(&results)
                    .filter(|(_, r)| **r == EffectOutcome::NotFound)
                    .map(|(p, _)| p.ticket_id)
                    .collect();
                let mut cache = self.pools.lock().unwrap_or_else(|e| e.into_inner());
                for (community, mut pool) in pools {
                    pool.candidates.retain(|c| !missing.contains(&c.id));
                    if pool.candidates.len() > 2 * CANDIDATES + self.config.max_batch {
                        pool.candidates
                            .sort_by_key(|c| std::cmp::Reverse(c.received_at));
                        pool.candidates.truncate(CANDIDATES + self.config.max_batch);
                    }
                    cache.insert(community, pool);
                }
                drop(cache);
                for ((p, result), status) in petitions.iter().zip(results).zip(statuses) {
                    let _in = items[p.n].span.enter();
                    outcomes[p.n] = match result {
                        EffectOutcome::Applied => {
                            tracing::info!(ticket_id = %p.ticket_id, status = ?status, "ticket classified");
                            Outcome::Done
                        }
                        EffectOutcome::AlreadyApplied => Outcome::Done,
                        EffectOutcome::NotFound => Outcome::Poison("ticket not in the store"),
                    };
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, tickets = petitions.len(), "store failed; will retry");
                for p in &petitions {
                    outcomes[p.n] = Outcome::Retry;
                }
            }
        }
        outcomes
    }

    /// The received petition in `message`; `None` for other events (nothing to do).
    fn petition(
        n: usize,
        message: &Message,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Petition>, &'static str> {
        let event = decode(&message.payload).ok_or("not a minyi.events.v1.Event")?;
        let (Ok(event_id), Ok(ticket_id)) = (
            Uuid::parse_str(&event.event_id),
            Uuid::parse_str(&event.ticket_id),
        ) else {
            return Err("bad event or ticket id");
        };
        let Some(Body::Received(received)) = event.body else {
            return Ok(None);
        };
        let received_at = received
            .received_at
            .as_ref()
            .and_then(from_timestamp)
            .unwrap_or(now);
        Ok(Some(Petition {
            n,
            event_id,
            ticket_id,
            received,
            received_at,
        }))
    }

    /// Per community of the batch, the open tickets the duplicate check compares with (from
    /// the earliest window start any petition of the batch needs): a recent enough pool, or
    /// read from the store. A community whose candidates cannot be read is left out: its
    /// petitions skip the check.
    async fn candidate_pools(
        &self,
        petitions: &[Petition],
        routings: &[RoutingRecord],
    ) -> HashMap<String, Pool> {
        let mut since: HashMap<&str, chrono::DateTime<chrono::Utc>> = HashMap::new();
        for (p, r) in petitions.iter().zip(routings) {
            if r.community.is_empty() {
                continue;
            }
            let start = p.received_at - self.config.duplicate_window;
            since
                .entry(r.community.as_str())
                .and_modify(|s| *s = (*s).min(start))
                .or_insert(start);
        }
        let mut pools = HashMap::with_capacity(since.len());
        for (community, since) in since {
            let cached = self
                .pools
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(community)
                .filter(|p| p.fetched_at.elapsed() < POOL_TTL && p.since <= since)
                .cloned();
            if let Some(pool) = cached {
                pools.insert(community.to_owned(), pool);
                continue;
            }
            let fetched_at = std::time::Instant::now();
            match self.candidates(community, since).await {
                Ok(candidates) => {
                    pools.insert(
                        community.to_owned(),
                        Pool {
                            fetched_at,
                            since,
                            candidates,
                        },
                    );
                }
                Err(e) => tracing::warn!(error = %e, community, "duplicate check skipped"),
            }
        }
        pools
    }

    /// The open tickets of `community` since `since` (newest 200 plus a batch) with their
    /// shingles: ids from the store, texts read only for tickets this process has not
    /// analysed yet.
    async fn candidates(
        &self,
        community: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Candidate>, StoreError> {
        let ids = self
            .store
            .duplicate_candidate_ids(community, since, CANDIDATES + self.config.max_batch)
            .await?;
        let (mut found, mut unseen) = (Vec::with_capacity(ids.len()), Vec::new());
        for (id, received_at) in ids {
            match self.shingles.get(id) {
                Some(shingles) => found.push(Candidate {
                    id,
                    received_at,
                    shingles,
                }),
                None => unseen.push((id, received_at)),
            }
        }
        if !unseen.is_empty() {
            let ids: Vec<Uuid> = unseen.iter().map(|(id, _)| *id).collect();
            for t in self.store.get_tickets(&ids).await? {
                found.push(Candidate {
                    id: t.id,
                    received_at: t.received_at,
                    shingles: self.shingles.get_or_insert(t.id, &t.text),
                });
            }
        }
        Ok(found)
    }

    /// The update and event for `routing`, after checking for an open duplicate among the
    /// community's candidates; a petition that is not a duplicate becomes one for the rest
    /// of the batch.
    fn decide(
        &self,
        p: &Petition,
        mut routing: RoutingRecord,
        pools: &mut HashMap<String, Pool>,
    ) -> (TicketUpdate, Body) {
        if let Some(pool) = pools.get_mut(&routing.community) {
            let pool = &mut pool.candidates;
            let since = p.received_at - self.config.duplicate_window;
            let mine = self
                .shingles
                .get(p.ticket_id)
                .unwrap_or_else(|| Arc::new(Shingles::of(&p.received.text)));
            self.shingles.insert(p.ticket_id, mine.clone());
            // The newest CANDIDATES of this petition's window, as when checked on its own.
            let mut window: Vec<&Candidate> = pool
                .iter()
                // Candidates are classified open tickets (linked duplicates are closed): the
                // first of a matter classified stays the original.
                .filter(|c| c.id != p.ticket_id && c.received_at >= since)
                .collect();
            keep_newest(&mut window, CANDIDATES);
            let threshold = self.config.duplicate_threshold;
            let best = window
                .iter()
                // Only a similarity at the threshold or above can link.
                .filter(|c| c.shingles.similarity_bound(&mine) >= threshold)
                .map(|c| (c.shingles.similarity(&mine), c.id))
                // The most similar; among equals the oldest.
                .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
            if let Some((sim, original)) = best
                && sim >= threshold
            {
                routing.duplicate_of = original.to_string();
                let body = Body::DuplicateLinked(DuplicateLinked {
                    duplicate_of: original.to_string(),
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
            pool.push(Candidate {
                id: p.ticket_id,
                received_at: p.received_at,
                shingles: mine,
            });
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

/// Keeps the newest `n` candidates of `window`, in no particular order: a selection, not a
/// sort, since it runs for every petition and the best match does not depend on order.
fn keep_newest(window: &mut Vec<&Candidate>, n: usize) {
    if window.len() > n {
        window.select_nth_unstable_by_key(n - 1, |c| std::cmp::Reverse(c.received_at));
        window.truncate(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_newest_keeps_exactly_the_newest() {
        let start = chrono::Utc::now();
        let shingles = Arc::new(Shingles::of("路灯不亮"));
        // Received in a shuffled order: minute k for k = (7 * i) mod 300.
        let candidates: Vec<Candidate> = (0..300)
            .map(|i| Candidate {
                id: Uuid::new_v4(),
                received_at: start + chrono::Duration::minutes((7 * i) % 300),
                shingles: shingles.clone(),
            })
            .collect();
        let mut window: Vec<&Candidate> = candidates.iter().collect();
        keep_newest(&mut window, CANDIDATES);
        let mut kept: Vec<i64> = window
            .iter()
            .map(|c| (c.received_at - start).num_minutes())
            .collect();
        kept.sort_unstable();
        assert_eq!(kept, (100..300).collect::<Vec<i64>>());

        let mut few: Vec<&Candidate> = candidates[..5].iter().collect();
        keep_newest(&mut few, CANDIDATES);
        assert_eq!(few.len(), 5, "a window smaller than n is left whole");
    }
}
