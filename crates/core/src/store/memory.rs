//! Embedded adapter of the ticket store: state in memory, every change appended to a journal
//! file (one JSON line, fsync'd before the call returns) and replayed at start. Used by
//! `minyi dev`, so the embedded cluster keeps its tickets across restarts with nothing installed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    AuditPage, AuditRecord, FollowUpRecord, InboxRecord, OutboxEntry, StoreError, TicketQuery,
    TicketRecord, TicketStore, Transition, TransitionOutcome, tracking_number,
};
use crate::bus::Message;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum JournalOp {
    Create {
        ticket: Box<TicketRecord>,
        events: Vec<Message>,
    },
    FollowUp {
        id: Uuid,
        follow_up: FollowUpRecord,
        events: Vec<Message>,
    },
    OutboxDone {
        seqs: Vec<i64>,
    },
    Processed {
        consumer: String,
        event_id: Uuid,
    },
    Effect {
        consumer: String,
        event_id: Uuid,
        ticket_id: Uuid,
        status: Option<crate::petition::TicketStatus>,
        routing: Option<Box<super::RoutingRecord>>,
        events: Vec<Message>,
    },
    Transition {
        ticket_id: Uuid,
        status: crate::petition::TicketStatus,
        dispatch: Box<super::DispatchRecord>,
        routing: Option<Box<super::RoutingRecord>>,
        audit: Box<AuditRecord>,
        inbox: Vec<(String, String)>,
        events: Vec<Message>,
        dedupe: Option<(String, Uuid)>,
    },
    Audit {
        audit: Box<AuditRecord>,
    },
}

#[derive(Default)]
struct State {
    tickets: HashMap<Uuid, TicketRecord>,
    by_received: BTreeMap<(DateTime<Utc>, Uuid), ()>,
    by_tracking: HashMap<String, Uuid>,
    by_key: HashMap<String, Uuid>,
    next_ticket_seq: i64,
    outbox: BTreeMap<i64, (Message, std::time::Instant)>,
    next_outbox_seq: i64,
    processed: HashSet<(String, Uuid)>,
    audit: HashMap<Uuid, Vec<AuditRecord>>,
    inbox: HashMap<String, Vec<InboxRecord>>,
    next_inbox_seq: i64,
}

impl State {
    /// Applies an operation; returns the stored ticket for creates. Replay and live calls share
    /// this code, so a replayed journal rebuilds exactly the state that was acknowledged.
    fn apply(&mut self, op: &JournalOp) -> Option<TicketRecord> {
        let now = std::time::Instant::now();
        match op {
            JournalOp::Create { ticket, events } => {
                self.next_ticket_seq += 1;
                let mut t = (**ticket).clone();
                t.tracking_number = tracking_number(t.received_at, self.next_ticket_seq);
                self.by_received.insert((t.received_at, t.id), ());
                self.by_tracking.insert(t.tracking_number.clone(), t.id);
                if let Some(k) = &t.idempotency_key {
                    self.by_key.insert(k.clone(), t.id);
                }
                self.tickets.insert(t.id, t.clone());
                self.push_events(events, now);
                Some(t)
            }
            JournalOp::FollowUp {
                id,
                follow_up,
                events,
            } => {
                if let Some(t) = self.tickets.get_mut(id) {
                    t.follow_ups.push(follow_up.clone());
                }
                self.push_events(events, now);
                None
            }
            JournalOp::OutboxDone { seqs } => {
                for s in seqs {
                    self.outbox.remove(s);
                }
                None
            }
            JournalOp::Processed { consumer, event_id } => {
                self.processed.insert((consumer.clone(), *event_id));
                None
            }
            JournalOp::Effect {
                consumer,
                event_id,
                ticket_id,
                status,
                routing,
                events,
            } => {
                self.processed.insert((consumer.clone(), *event_id));
                if let Some(t) = self.tickets.get_mut(ticket_id) {
                    if let Some(s) = status {
                        t.status = *s;
                    }
                    if let Some(r) = routing {
                        t.routing = Some((**r).clone());
                    }
                    t.version += 1;
                }
                self.push_events(events, now);
                None
            }
            JournalOp::Transition {
                ticket_id,
                status,
                dispatch,
                routing,
                audit,
                inbox,
                events,
                dedupe,
            } => {
                if let Some(d) = dedupe {
                    self.processed.insert(d.clone());
                }
                if let Some(t) = self.tickets.get_mut(ticket_id) {
                    t.status = *status;
                    t.dispatch = Some((**dispatch).clone());
                    if let Some(r) = routing {
                        t.routing = Some((**r).clone());
                    }
                    t.version += 1;
                }
                self.audit
                    .entry(*ticket_id)
                    .or_default()
                    .push((**audit).clone());
                let mut inbox = inbox.clone();
                inbox.sort();
                inbox.dedup();
                for (unit, kind) in inbox {
                    self.next_inbox_seq += 1;
                    self.inbox
                        .entry(unit.clone())
                        .or_default()
                        .push(InboxRecord {
                            seq: self.next_inbox_seq,
                            unit,
                            ticket_id: *ticket_id,
                            kind,
                            at: audit.at,
                        });
                }
                self.push_events(events, now);
                None
            }
            JournalOp::Audit { audit } => {
                self.audit
                    .entry(audit.ticket_id)
                    .or_default()
                    .push((**audit).clone());
                None
            }
        }
    }

    fn push_events(&mut self, events: &[Message], now: std::time::Instant) {
        for m in events {
            self.next_outbox_seq += 1;
            self.outbox.insert(self.next_outbox_seq, (m.clone(), now));
        }
    }
}

/// In-memory ticket store, optionally journaled to a file.
pub struct MemoryStore {
    state: Mutex<State>,
    journal: Option<Mutex<File>>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("journal", &self.path)
            .finish()
    }
}

impl MemoryStore {
    /// A store that forgets everything when dropped (tests).
    pub fn ephemeral() -> Self {
        Self {
            state: Mutex::new(State::default()),
            journal: None,
            path: None,
        }
    }

    /// Opens (or creates) the journal at `path` and replays it. A torn last line (a crash
    /// mid-write, never acknowledged) is ignored.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut state = State::default();
        if path.exists() {
            let reader = BufReader::new(File::open(path).map_err(io)?);
            for line in reader.lines() {
                let line = line.map_err(io)?;
                match serde_json::from_str::<JournalOp>(&line) {
                    Ok(op) => {
                        state.apply(&op);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring a torn journal line");
                        break;
                    }
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(Self {
            state: Mutex::new(state),
            journal: Some(Mutex::new(file)),
            path: Some(path.to_owned()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the op durably, then applies it. Called with the state lock held, so the journal
    /// order is the apply order.
    fn commit(&self, state: &mut State, op: JournalOp) -> Result<Option<TicketRecord>, StoreError> {
        if let Some(journal) = &self.journal {
            let mut line =
                serde_json::to_vec(&op).map_err(|e| StoreError::Internal(e.to_string()))?;
            line.push(b'\n');
            let mut f = journal.lock().unwrap_or_else(|e| e.into_inner());
            f.write_all(&line).map_err(io)?;
            f.sync_data().map_err(io)?;
        }
        Ok(state.apply(&op))
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("journal: {e}"))
}

#[async_trait]
impl TicketStore for MemoryStore {
    async fn create_ticket(
        &self,
        ticket: TicketRecord,
        events: Vec<Message>,
    ) -> Result<(TicketRecord, bool), StoreError> {
        let mut state = self.lock();
        if let Some(key) = &ticket.idempotency_key
            && let Some(existing) = state.by_key.get(key).and_then(|id| state.tickets.get(id))
        {
            return Ok((existing.clone(), false));
        }
        let stored = self
            .commit(
                &mut state,
                JournalOp::Create {
                    ticket: Box::new(ticket),
                    events,
                },
            )?
            .ok_or_else(|| StoreError::Internal("create returned nothing".into()))?;
        Ok((stored, true))
    }

    async fn get_ticket(&self, id_or_tracking: &str) -> Result<TicketRecord, StoreError> {
        let state = self.lock();
        let id = Uuid::parse_str(id_or_tracking)
            .ok()
            .or_else(|| state.by_tracking.get(id_or_tracking).copied());
        id.and_then(|id| state.tickets.get(&id))
            .cloned()
            .ok_or_else(|| StoreError::NotFound(id_or_tracking.to_owned()))
    }

    async fn list_tickets(&self, q: &TicketQuery) -> Result<Vec<TicketRecord>, StoreError> {
        let state = self.lock();
        let keys: Box<dyn Iterator<Item = _>> = if q.oldest_first {
            Box::new(state.by_received.keys())
        } else {
            Box::new(state.by_received.keys().rev())
        };
        let out = keys
            .filter(|k| {
                q.after
                    .is_none_or(|a| if q.oldest_first { **k > a } else { **k < a })
            })
            .filter_map(|(_, id)| state.tickets.get(id))
            .filter(|t| q.status.is_none_or(|s| t.status == s))
            .filter(|t| q.channel.is_none_or(|c| t.channel == c))
            .filter(|t| q.received_after.is_none_or(|a| t.received_at >= a))
            .filter(|t| q.received_before.is_none_or(|b| t.received_at < b))
            .filter(|t| {
                q.unit
                    .as_deref()
                    .is_none_or(|u| t.dispatch.as_ref().is_some_and(|d| d.involves(u)))
            })
            .take(q.limit)
            .cloned()
            .collect();
        Ok(out)
    }

    async fn add_follow_up(
        &self,
        id: Uuid,
        follow_up: FollowUpRecord,
        events: Vec<Message>,
    ) -> Result<TicketRecord, StoreError> {
        let mut state = self.lock();
        let t = state
            .tickets
            .get(&id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        if !t.status.is_open() {
            return Err(StoreError::Closed {
                id: t.tracking_number.clone(),
                status: t.status.as_str(),
            });
        }
        self.commit(
            &mut state,
            JournalOp::FollowUp {
                id,
                follow_up,
                events,
            },
        )?;
        state
            .tickets
            .get(&id)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    async fn claim_outbox(
        &self,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut state = self.lock();
        let now = std::time::Instant::now();
        let mut out = Vec::new();
        for (seq, (msg, leased_until)) in state.outbox.iter_mut() {
            if out.len() >= limit {
                break;
            }
            if *leased_until <= now {
                *leased_until = now + lease;
                out.push(OutboxEntry {
                    seq: *seq,
                    message: msg.clone(),
                });
            }
        }
        Ok(out)
    }

    async fn complete_outbox(&self, seqs: &[i64]) -> Result<(), StoreError> {
        let mut state = self.lock();
        self.commit(
            &mut state,
            JournalOp::OutboxDone {
                seqs: seqs.to_vec(),
            },
        )?;
        Ok(())
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        Ok(self.lock().outbox.len() as u64)
    }

    async fn mark_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if state.processed.contains(&(consumer.to_owned(), event_id)) {
            return Ok(false);
        }
        self.commit(
            &mut state,
            JournalOp::Processed {
                consumer: consumer.to_owned(),
                event_id,
            },
        )?;
        Ok(true)
    }

    async fn count_tickets(&self) -> Result<u64, StoreError> {
        Ok(self.lock().tickets.len() as u64)
    }

    async fn apply_effect(
        &self,
        consumer: &str,
        event_id: Uuid,
        ticket_id: Uuid,
        update: super::TicketUpdate,
        events: Vec<Message>,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if state.processed.contains(&(consumer.to_owned(), event_id)) {
            return Ok(false);
        }
        if !state.tickets.contains_key(&ticket_id) {
            return Err(StoreError::NotFound(ticket_id.to_string()));
        }
        self.commit(
            &mut state,
            JournalOp::Effect {
                consumer: consumer.to_owned(),
                event_id,
                ticket_id,
                status: update.status,
                routing: update.routing.map(Box::new),
                events,
            },
        )?;
        Ok(true)
    }

    async fn transition(&self, t: Transition) -> Result<TransitionOutcome, StoreError> {
        let mut state = self.lock();
        if let Some(d) = &t.dedupe
            && state.processed.contains(d)
        {
            return Ok(TransitionOutcome::AlreadyApplied);
        }
        let current = state
            .tickets
            .get(&t.ticket_id)
            .ok_or_else(|| StoreError::NotFound(t.ticket_id.to_string()))?
            .version;
        if current != t.expected_version {
            return Ok(TransitionOutcome::Conflict {
                current_version: current,
            });
        }
        self.commit(
            &mut state,
            JournalOp::Transition {
                ticket_id: t.ticket_id,
                status: t.status,
                dispatch: Box::new(t.dispatch),
                routing: t.routing.map(Box::new),
                audit: Box::new(t.audit),
                inbox: t.inbox,
                events: t.events,
                dedupe: t.dedupe,
            },
        )?;
        Ok(TransitionOutcome::Applied {
            version: current + 1,
        })
    }

    async fn append_audit(&self, a: AuditRecord) -> Result<(), StoreError> {
        let mut state = self.lock();
        self.commit(&mut state, JournalOp::Audit { audit: Box::new(a) })?;
        Ok(())
    }

    async fn audit_trail(&self, ticket_id: Uuid) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(self
            .lock()
            .audit
            .get(&ticket_id)
            .cloned()
            .unwrap_or_default())
    }

    async fn audit_page(
        &self,
        ticket_id: Uuid,
        from: Option<u64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        let state = self.lock();
        let trail = state.audit.get(&ticket_id).map_or(&[][..], Vec::as_slice);
        Ok(AuditPage::of(trail, from, limit))
    }

    async fn inbox(
        &self,
        unit: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<InboxRecord>, StoreError> {
        let state = self.lock();
        let Some(entries) = state.inbox.get(unit) else {
            return Ok(Vec::new());
        };
        let start = entries.partition_point(|e| e.seq <= after);
        Ok(entries[start..].iter().take(limit).cloned().collect())
    }

    async fn duplicate_candidate_ids(
        &self,
        community: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(Uuid, DateTime<Utc>)>, StoreError> {
        let state = self.lock();
        Ok(state
            .by_received
            .keys()
            .rev()
            .take_while(|(at, _)| *at >= since)
            .filter_map(|(_, id)| state.tickets.get(id))
            .filter(|t| t.status.is_open())
            .filter(|t| t.routing.as_ref().is_some_and(|r| r.community == community))
            .take(limit)
            .map(|t| (t.id, t.received_at))
            .collect())
    }
}

/// Everything a [`MemoryStore`] holds, for moving it into another store.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Oldest first.
    pub tickets: Vec<TicketRecord>,
    /// Not yet published, in outbox order.
    pub outbox: Vec<Message>,
    pub processed: Vec<(String, Uuid)>,
    /// Per ticket, oldest first.
    pub audit: Vec<AuditRecord>,
    /// In `seq` order.
    pub inbox: Vec<InboxRecord>,
}

impl MemoryStore {
    /// A copy of the whole state.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.lock();
        let mut inbox: Vec<InboxRecord> = state.inbox.values().flatten().cloned().collect();
        inbox.sort_by_key(|e| e.seq);
        Snapshot {
            tickets: state
                .by_received
                .keys()
                .filter_map(|(_, id)| state.tickets.get(id).cloned())
                .collect(),
            outbox: state.outbox.values().map(|(m, _)| m.clone()).collect(),
            processed: state.processed.iter().cloned().collect(),
            audit: state.audit.values().flatten().cloned().collect(),
            inbox,
        }
    }
}
