//! The classification worker: `ticket.received` in; the decision (and `ticket.routed`,
//! `ticket.needs_dispatcher` or `ticket.duplicate_linked`) committed exactly once; then ack.

use std::sync::Arc;

use minyi_core::bus::{Bus, ConsumeOptions, Message, Outcome, consume};
use minyi_core::clock::Clock;
use minyi_core::event::{decode, from_timestamp, new_event, routing_proto};
use minyi_core::petition::TicketStatus;
use minyi_core::store::{StoreError, TicketStore, TicketUpdate};
use minyi_proto::events::event::Body;
use minyi_proto::events::{DuplicateLinked, NeedsDispatcher, TicketReceived, TicketRouted};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::duplicates::{ShingleCache, Shingles};
use crate::router::{AUTO, RouterHandle};

/// The consumer name: its queue and its dedupe key.
pub const CONSUMER: &str = "classification";

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How far back an open ticket at the same place counts as "the same matter".
    pub duplicate_window: chrono::Duration,
    /// Text similarity (bigram Jaccard) from which a petition is a duplicate.
    pub duplicate_threshold: f64,
    /// Petitions classified at once. Those resolved to the same community take turns for the
    /// duplicate check and its commit, so two near-identical reports arriving together are
    /// still linked (within one process).
    pub lanes: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            duplicate_window: chrono::Duration::days(3),
            duplicate_threshold: 0.6,
            lanes: 8,
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
    /// Serializes the duplicate check and commit per community ([`WorkerConfig::lanes`]).
    pub community_locks: CommunityLocks,
    /// Candidates' shingles by ticket id, so each text is analysed once, not per petition.
    pub shingles: ShingleCache,
}

/// Striped locks by community name.
#[derive(Debug)]
pub struct CommunityLocks(Vec<tokio::sync::Mutex<()>>);

impl Default for CommunityLocks {
    fn default() -> Self {
        Self((0..64).map(|_| tokio::sync::Mutex::new(())).collect())
    }
}

impl CommunityLocks {
    async fn lock(&self, community: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(community, &mut h);
        self.0[(std::hash::Hasher::finish(&h) % self.0.len() as u64) as usize]
            .lock()
            .await
    }
}

impl Worker {
    /// Consumes until `shutdown`; deliveries in hand are finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // No decisions without a model: tickets wait in the queue until the first one is ready.
        tokio::select! {
            _ = self.router.wait_ready() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let bus = self.bus.clone();
        let lanes = self.config.lanes;
        let me = Arc::new(self);
        consume(
            bus,
            ConsumeOptions {
                consumer: CONSUMER,
                routing_keys: &["ticket.received"],
                lanes,
                transient: false,
                span: |m| tracing::info_span!("classification.consume", routing_key = %m.routing_key, trace_id = tracing::field::Empty),
            },
            shutdown,
            move |m| {
                let me = me.clone();
                async move { me.handle(&m).await }
            },
        )
        .await;
    }

    #[tracing::instrument(skip_all, fields(ticket_id))]
    async fn handle(&self, message: &Message) -> Outcome {
        let Some(event) = decode(&message.payload) else {
            return Outcome::Poison("not a minyi.events.v1.Event");
        };
        let (Ok(event_id), Ok(ticket_id)) = (
            Uuid::parse_str(&event.event_id),
            Uuid::parse_str(&event.ticket_id),
        ) else {
            return Outcome::Poison("bad event or ticket id");
        };
        tracing::Span::current().record("ticket_id", tracing::field::display(ticket_id));
        let Some(Body::Received(received)) = event.body else {
            return Outcome::Done;
        };
        let routing = self.route(&received).await;
        // Same community: one at a time from the duplicate check to the commit.
        let _turn = if routing.community.is_empty() {
            None
        } else {
            Some(self.community_locks.lock(&routing.community).await)
        };
        let (update, body) = self.decide(ticket_id, &received, routing).await;
        let status = update.status;
        let out = new_event(ticket_id, self.clock.now(), body);
        match self
            .store
            .apply_effect(CONSUMER, event_id, ticket_id, update, vec![out])
            .await
        {
            Ok(applied) => {
                if applied {
                    self.outbox_written.notify_one();
                    tracing::info!(status = ?status, "ticket classified");
                }
                Outcome::Done
            }
            Err(StoreError::NotFound(_)) => Outcome::Poison("ticket not in the store"),
            Err(e) => {
                tracing::warn!(error = %e, "store failed; will retry");
                Outcome::Retry
            }
        }
    }

    /// The classifier's and the gazetteer's decision.
    async fn route(&self, t: &TicketReceived) -> minyi_core::store::RoutingRecord {
        let text = if t.title.is_empty() {
            t.text.clone()
        } else {
            format!("{}\n{}", t.title, t.text)
        };
        let point = t.point.as_ref().map(|p| (p.latitude, p.longitude));
        let router = self.router.wait_ready().await;
        let mut routing = router.decide(&text, &t.address, point);
        routing.routed_at = Some(self.clock.now());
        routing
    }

    /// The open tickets of `community` since `since` (newest 200) with their shingles: ids
    /// from the store, texts read only for tickets this process has not analysed yet.
    async fn candidates(
        &self,
        community: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(Uuid, Arc<Shingles>)>, StoreError> {
        let ids = self
            .store
            .duplicate_candidate_ids(community, since, 200)
            .await?;
        let (mut found, mut unseen) = (Vec::with_capacity(ids.len()), Vec::new());
        for id in ids {
            match self.shingles.get(id) {
                Some(s) => found.push((id, s)),
                None => unseen.push(id),
            }
        }
        if !unseen.is_empty() {
            for t in self.store.get_tickets(&unseen).await? {
                found.push((t.id, self.shingles.get_or_insert(t.id, &t.text)));
            }
        }
        Ok(found)
    }

    /// The update and event for `routing`, after checking for an open duplicate.
    async fn decide(
        &self,
        ticket_id: Uuid,
        t: &TicketReceived,
        mut routing: minyi_core::store::RoutingRecord,
    ) -> (TicketUpdate, Body) {
        let now = self.clock.now();
        // Duplicate of an open ticket at the same place?
        if !routing.community.is_empty() {
            let since = t
                .received_at
                .as_ref()
                .and_then(from_timestamp)
                .unwrap_or(now)
                - self.config.duplicate_window;
            match self.candidates(&routing.community, since).await {
                Ok(candidates) => {
                    let mine = self
                        .shingles
                        .get(ticket_id)
                        .unwrap_or_else(|| Arc::new(Shingles::of(&t.text)));
                    let best = candidates
                        .iter()
                        // Candidates are classified open tickets (linked duplicates are
                        // closed): the first of a matter classified stays the original.
                        .filter(|(id, _)| *id != ticket_id)
                        .map(|(id, s)| (s.similarity(&mine), *id))
                        // The most similar; among equals the oldest.
                        .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
                    self.shingles.insert(ticket_id, mine);
                    if let Some((sim, original)) = best
                        && sim >= self.config.duplicate_threshold
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
                }
                Err(e) => tracing::warn!(error = %e, "duplicate check skipped"),
            }
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
