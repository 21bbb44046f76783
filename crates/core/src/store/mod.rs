//! The ticket store port: PostgreSQL is the source of truth in production; SQLite is the
//! embedded mode's (one file in the data directory). The memory adapter serves tests and
//! throwaway clusters; it can also journal to a file, the embedded store of earlier versions,
//! which the SQLite store imports once (see `minyi dev`).
//!
//! Every state change that other services must hear of writes its events into the outbox in
//! the same transaction; the relay publishes them later ([`TicketStore::claim_outbox`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::bus::Message;
use crate::petition::{Channel, TicketStatus};

mod catalog;
mod dispatch;
mod handoff;
mod memory;
mod pg_intake;
mod postgres;
mod sqlite;

pub use catalog::{CatalogStore, PgCatalogStore, follow_active, put_in_force};
pub use dispatch::{
    AUDIT_BYTES_IN_VIEW, AUDIT_LINES_IN_VIEW, AlertRecord, ArbitrationRecord, AuditPage,
    AuditRecord, CallbackRecord, CoHandler, DispatchRecord, DispatchState, ExtensionRecord,
    InboxRecord, NoteRecord, PauseRecord, ReturnRecord, Transition, TransitionOutcome,
};
pub use handoff::OutboxHandoff;
pub use memory::{MemoryStore, Snapshot};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ticket {0} not found")]
    NotFound(String),
    #[error("ticket {id} is {status} and no longer takes follow-ups")]
    Closed { id: String, status: &'static str },
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store failure: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound("row".into()),
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
            other => StoreError::Internal(other.to_string()),
        }
    }
}

/// A ticket as stored. Personal data is sealed (see [`crate::pii`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketRecord {
    pub id: Uuid,
    pub tracking_number: String,
    pub status: TicketStatus,
    pub channel: Channel,
    pub title: String,
    pub text: String,
    pub anonymous: bool,
    pub caller_name: Option<String>,
    pub caller_phone: Option<String>,
    pub caller_id_number: Option<String>,
    pub address: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub event_time: Option<DateTime<Utc>>,
    pub attachment_urls: Vec<String>,
    pub idempotency_key: Option<String>,
    pub received_at: DateTime<Utc>,
    pub received_by: String,
    pub follow_ups: Vec<FollowUpRecord>,
    /// Classification's decision, once made.
    #[serde(default)]
    pub routing: Option<RoutingRecord>,
    /// Assignment and handling, once dispatched.
    #[serde(default)]
    pub dispatch: Option<DispatchRecord>,
    /// Bumped by every change after creation (optimistic concurrency).
    #[serde(default)]
    pub version: i64,
}

/// One candidate catalog item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestionRecord {
    pub item_code: String,
    pub item_name: String,
    pub path: Vec<String>,
    pub unit: String,
    pub confidence: f64,
}

/// What classification decided (mirrors `minyi.common.v1.Routing`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RoutingRecord {
    /// `auto` or `needs_dispatcher`.
    pub decision: String,
    pub item_code: String,
    pub item_name: String,
    pub lead_unit: String,
    pub co_units: Vec<String>,
    pub grade: String,
    pub confidence: f64,
    pub suggestions: Vec<SuggestionRecord>,
    pub street: String,
    pub community: String,
    pub reason: String,
    pub model_version: String,
    pub catalog_version: String,
    pub accept_hours: u32,
    pub respond_hours: u32,
    pub complete_days: u32,
    pub duplicate_of: String,
    pub routed_at: Option<DateTime<Utc>>,
}

/// A consumer's change to a ticket.
#[derive(Debug, Clone, Default)]
pub struct TicketUpdate {
    pub status: Option<TicketStatus>,
    pub routing: Option<RoutingRecord>,
}

/// One consumer effect for [`TicketStore::apply_effects`]: the event handled, the ticket's
/// update and the events it publishes.
#[derive(Debug, Clone)]
pub struct Effect {
    pub event_id: Uuid,
    pub ticket_id: Uuid,
    pub update: TicketUpdate,
    pub events: Vec<Message>,
}

/// What [`TicketStore::apply_effects`] made of one effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EffectOutcome {
    /// Committed now.
    Applied,
    /// The event was handled before (a redelivery): nothing changed.
    AlreadyApplied,
    /// No such ticket: nothing changed, and the event is not marked handled.
    NotFound,
}

/// [`TicketStore::apply_effects`] one effect at a time, with [`TicketStore::apply_effect`].
pub async fn apply_one_by_one<S: TicketStore + ?Sized>(
    store: &S,
    consumer: &str,
    effects: Vec<Effect>,
) -> Result<Vec<EffectOutcome>, StoreError> {
    let mut out = Vec::with_capacity(effects.len());
    for e in effects {
        let applied = store
            .apply_effect(consumer, e.event_id, e.ticket_id, e.update, e.events)
            .await;
        out.push(match applied {
            Ok(true) => EffectOutcome::Applied,
            Ok(false) => EffectOutcome::AlreadyApplied,
            Err(StoreError::NotFound(_)) => EffectOutcome::NotFound,
            Err(e) => return Err(e),
        });
    }
    Ok(out)
}

/// [`TicketStore::transitions`] one transition at a time.
pub async fn transition_one_by_one<S: TicketStore + ?Sized>(
    store: &S,
    ts: Vec<Transition>,
) -> Result<Vec<TransitionOutcome>, StoreError> {
    let mut out = Vec::with_capacity(ts.len());
    for t in ts {
        out.push(match store.transition(t).await {
            Ok(outcome) => outcome,
            Err(StoreError::NotFound(_)) => TransitionOutcome::NotFound,
            Err(e) => return Err(e),
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUpRecord {
    pub text: String,
    pub author: String,
    pub at: DateTime<Utc>,
}

/// A new ticket; the store assigns its tracking number.
#[derive(Debug, Clone)]
pub struct NewTicket {
    pub record: TicketRecord,
}

/// Filters and page of a listing. Newest first (or oldest first); the cursor is the last
/// (received_at, id) of the previous page, in the same order.
#[derive(Debug, Clone, Default)]
pub struct TicketQuery {
    pub status: Option<TicketStatus>,
    pub channel: Option<Channel>,
    pub received_after: Option<DateTime<Utc>>,
    pub received_before: Option<DateTime<Utc>>,
    /// Only tickets this unit leads or co-handles.
    pub unit: Option<String>,
    pub limit: usize,
    pub after: Option<(DateTime<Utc>, Uuid)>,
    /// Oldest first (the arbitration queue: the cases nearest their deadline first).
    pub oldest_first: bool,
}

/// An outbox entry waiting for the relay.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub seq: i64,
    pub message: Message,
}

/// The page token that continues a listing after `t` (newest-first keyset pagination).
pub fn page_token(t: &TicketRecord) -> String {
    cursor_token((t.received_at, t.id))
}

/// [`page_token`] of the ticket with this `(received_at, id)`.
pub fn cursor_token((received_at, id): (DateTime<Utc>, Uuid)) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "{}|{}",
        received_at.timestamp_micros(),
        id
    ))
}

/// Reads a [`page_token`]; `None` for a token that is not one.
pub fn parse_page_token(token: &str) -> Option<(DateTime<Utc>, Uuid)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (micros, id) = raw.split_once('|')?;
    Some((
        DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        Uuid::parse_str(id).ok()?,
    ))
}

/// Formats the readable tracking number of the `seq`-th ticket received on `day`.
pub fn tracking_number(received_at: DateTime<Utc>, seq: i64) -> String {
    let local = received_at.with_timezone(&crate::clock::shanghai());
    format!("MY-{}-{:06}", local.format("%Y%m%d"), seq)
}

#[async_trait]
pub trait TicketStore: Send + Sync + 'static {
    /// Stores a ticket and its events atomically. When the idempotency key was already used,
    /// nothing is written and the existing ticket is returned with `false`.
    async fn create_ticket(
        &self,
        ticket: TicketRecord,
        events: Vec<Message>,
    ) -> Result<(TicketRecord, bool), StoreError>;

    /// By id (UUID text) or tracking number.
    async fn get_ticket(&self, id_or_tracking: &str) -> Result<TicketRecord, StoreError>;

    async fn list_tickets(&self, query: &TicketQuery) -> Result<Vec<TicketRecord>, StoreError>;

    /// The tickets among `ids` that exist, in no particular order (one read for many, where
    /// the adapter can).
    async fn get_tickets(&self, ids: &[Uuid]) -> Result<Vec<TicketRecord>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            match self.get_ticket(&id.to_string()).await {
                Ok(t) => found.push(t),
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// Appends a follow-up to an open ticket, with its events, atomically.
    async fn add_follow_up(
        &self,
        id: Uuid,
        follow_up: FollowUpRecord,
        events: Vec<Message>,
    ) -> Result<TicketRecord, StoreError>;

    /// Leases up to `limit` outbox entries (oldest first) for `lease`; entries leased by a
    /// relay that died become claimable again when the lease runs out.
    async fn claim_outbox(
        &self,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Removes published entries.
    async fn complete_outbox(&self, seqs: &[i64]) -> Result<(), StoreError>;

    /// [`TicketStore::complete_outbox`] of `published`, then [`TicketStore::claim_outbox`]:
    /// a busy relay removes what it published with its next claim (PostgreSQL: one statement,
    /// where the two took a statement and a commit each). If it fails, neither happened.
    async fn complete_and_claim_outbox(
        &self,
        published: &[i64],
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        if !published.is_empty() {
            self.complete_outbox(published).await?;
        }
        self.claim_outbox(limit, lease).await
    }

    /// Number of entries not yet published (for metrics and tests).
    async fn outbox_len(&self) -> Result<u64, StoreError>;

    /// Records that `consumer` has handled `event_id`. Returns false if it already had.
    async fn mark_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool, StoreError>;

    async fn count_tickets(&self) -> Result<u64, StoreError>;

    /// Applies `consumer`'s effect of `event_id` exactly once: records the event as processed,
    /// updates the ticket and queues `events`, in one transaction. Returns false, changing
    /// nothing, when the event was already handled (a redelivery).
    async fn apply_effect(
        &self,
        consumer: &str,
        event_id: Uuid,
        ticket_id: Uuid,
        update: TicketUpdate,
        events: Vec<Message>,
    ) -> Result<bool, StoreError>;

    /// [`TicketStore::apply_effect`] for several events of different tickets, one outcome per
    /// effect, in order. Adapters that can commit them together do (PostgreSQL: one
    /// statement); on an error some may be committed and others not, and applying them all
    /// again is safe (the committed ones come back [`EffectOutcome::AlreadyApplied`]).
    async fn apply_effects(
        &self,
        consumer: &str,
        effects: Vec<Effect>,
    ) -> Result<Vec<EffectOutcome>, StoreError> {
        apply_one_by_one(self, consumer, effects).await
    }

    /// Applies a dispatch transition atomically: ticket status, dispatch record (and routing),
    /// one audit line, inbox entries and events, if the ticket is still at the expected
    /// version (and, for a consumer, the event was not applied before).
    async fn transition(&self, t: Transition) -> Result<TransitionOutcome, StoreError>;

    /// [`TicketStore::transition`] for several tickets, one outcome per transition, in order
    /// (a missing ticket is [`TransitionOutcome::NotFound`]). Adapters that can commit them
    /// together do (PostgreSQL: one transaction of a few statements for the whole batch);
    /// each transition still applies or not on its own (version, dedupe). On an error some
    /// may be committed and others not; applying the rest again is safe (a consumer's
    /// committed ones come back [`TransitionOutcome::AlreadyApplied`]).
    async fn transitions(&self, ts: Vec<Transition>) -> Result<Vec<TransitionOutcome>, StoreError> {
        transition_one_by_one(self, ts).await
    }

    /// Appends one audit line on its own (refused attempts).
    async fn append_audit(&self, a: AuditRecord) -> Result<(), StoreError>;

    /// A ticket's audit trail, oldest first.
    async fn audit_trail(&self, ticket_id: Uuid) -> Result<Vec<AuditRecord>, StoreError>;

    /// Up to `limit` lines of a ticket's audit trail, oldest first: from line `from` (0 is the
    /// first), or the last `limit` lines when `from` is `None`; with the trail's length.
    async fn audit_page(
        &self,
        ticket_id: Uuid,
        from: Option<u64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError>;

    /// A unit's inbox entries after the cursor `after`, oldest first. Entries become
    /// visible in cursor order, so a reader resuming from its last cursor misses none.
    async fn inbox(
        &self,
        unit: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<InboxRecord>, StoreError>;

    /// Open tickets received since `since` whose routing resolved to `community`, newest first:
    /// the duplicate check's candidates, ids and receipt times only (the caller keeps what it
    /// compares by id and reads texts only for tickets it has not seen).
    async fn duplicate_candidate_ids(
        &self,
        community: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(Uuid, DateTime<Utc>)>, StoreError>;
}

pub(crate) fn headers_to_json(h: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::to_value(h).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tracking_numbers_use_the_local_date() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-25T17:30:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(super::tracking_number(t, 42), "MY-20261126-000042");
    }
}
