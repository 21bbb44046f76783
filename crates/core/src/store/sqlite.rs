//! SQLite adapter of the ticket store: the embedded mode's durable store (`minyi dev`), one
//! file in the data directory, nothing to install.
//!
//! A ticket is kept as one JSON document beside the columns that lookups and listings filter
//! on. One connection writes (SQLite has one writer anyway, and a single writer keeps the
//! inbox feed in `seq` order); a small pool reads, which WAL mode lets run beside the writer.
//! `synchronous = FULL`: a call returns only after its transaction is on disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use super::{
    AuditPage, AuditRecord, FollowUpRecord, InboxRecord, OutboxEntry, StoreError, TicketQuery,
    TicketRecord, TicketStore, TicketUpdate, Transition, TransitionOutcome, headers_to_json,
    tracking_number,
};
use crate::bus::Message;
use crate::petition::{Channel, TicketStatus};

/// The ticket store in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and runs its migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let base = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(
                base.clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full),
            )
            .await?;
        sqlx::migrate!("./migrations-sqlite")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Internal(format!("migration failed: {e}")))?;
        // One process owns the file: leases taken by an earlier process died with it, so its
        // unpublished events go out now rather than when the leases run out.
        sqlx::query("UPDATE outbox SET leased_until = 0")
            .execute(&writer)
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(base.read_only(true))
            .await?;
        Ok(Self {
            writer,
            reader,
            path: path.to_owned(),
        })
    }

    /// Copies an earlier version's journal store (see [`super::MemoryStore::snapshot`]) into
    /// this empty store, in one transaction: tickets keep their ids and tracking numbers,
    /// unpublished events stay queued, consumers' dedupe, audit trails and inbox cursors carry
    /// over. Returns the number of tickets imported.
    pub async fn import(&self, from: super::Snapshot) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await?;
        let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets")
            .fetch_one(&mut *tx)
            .await?;
        if existing > 0 {
            return Err(StoreError::Internal(format!(
                "{} already holds {existing} tickets; import only into an empty store",
                self.path.display()
            )));
        }
        for (i, t) in from.tickets.iter().enumerate() {
            // The journal numbered tickets with one global sequence: keep its numbers.
            let seq = t
                .tracking_number
                .rsplit('-')
                .next()
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(i as i64 + 1);
            insert_ticket(&mut tx, t, seq).await?;
            if let Some(d) = &t.dispatch {
                set_units(&mut tx, t.id, d).await?;
            }
        }
        insert_events(&mut tx, &from.outbox).await?;
        for (consumer, event_id) in &from.processed {
            first_time(&mut tx, consumer, *event_id).await?;
        }
        for a in &from.audit {
            insert_audit(&mut tx, a).await?;
        }
        for e in &from.inbox {
            sqlx::query(
                "INSERT INTO inbox (seq, unit, ticket_id, kind, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(e.seq)
            .bind(&e.unit)
            .bind(e.ticket_id.to_string())
            .bind(&e.kind)
            .bind(micros(e.at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(from.tickets.len() as u64)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes both pools (the file is consistent either way; this only ends the connections).
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn now_micros() -> i64 {
    micros(Utc::now())
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

fn to_doc<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(internal)
}

fn from_doc<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T, StoreError> {
    serde_json::from_str(doc).map_err(internal)
}

fn docs<T: serde::de::DeserializeOwned>(
    rows: &[sqlx::sqlite::SqliteRow],
) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(|r| from_doc(&r.try_get::<String, _>("doc")?))
        .collect()
}

async fn load(conn: &mut SqliteConnection, id: Uuid) -> Result<TicketRecord, StoreError> {
    let doc: Option<String> = sqlx::query_scalar("SELECT doc FROM tickets WHERE id = ?1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    from_doc(&doc.ok_or_else(|| StoreError::NotFound(id.to_string()))?)
}

/// Writes back a changed ticket: the document and the columns derived from it.
async fn save(conn: &mut SqliteConnection, t: &TicketRecord) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE tickets SET status = ?2, version = ?3, community = ?4, doc = ?5 WHERE id = ?1",
    )
    .bind(t.id.to_string())
    .bind(t.status.as_str())
    .bind(t.version)
    .bind(t.routing.as_ref().map(|r| r.community.as_str()))
    .bind(to_doc(t)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_ticket(
    conn: &mut SqliteConnection,
    t: &TicketRecord,
    seq: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO tickets (id, seq, tracking_number, status, channel, received_at, \
           idempotency_key, community, version, doc) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .bind(t.id.to_string())
    .bind(seq)
    .bind(&t.tracking_number)
    .bind(t.status.as_str())
    .bind(t.channel.as_str())
    .bind(micros(t.received_at))
    .bind(&t.idempotency_key)
    .bind(t.routing.as_ref().map(|r| r.community.as_str()))
    .bind(t.version)
    .bind(to_doc(t)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The lead and co-handling units of a ticket, for "my tickets" listings (replaced whole).
async fn set_units(
    conn: &mut SqliteConnection,
    ticket_id: Uuid,
    d: &super::DispatchRecord,
) -> Result<(), StoreError> {
    let id = ticket_id.to_string();
    sqlx::query("DELETE FROM ticket_units WHERE ticket_id = ?1")
        .bind(&id)
        .execute(&mut *conn)
        .await?;
    for unit in d.units() {
        sqlx::query("INSERT OR IGNORE INTO ticket_units (unit, ticket_id) VALUES (?1, ?2)")
            .bind(unit)
            .bind(&id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn insert_events(conn: &mut SqliteConnection, events: &[Message]) -> Result<(), StoreError> {
    for m in events {
        sqlx::query(
            "INSERT INTO outbox (event_id, routing_key, payload, headers) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(m.event_id.to_string())
        .bind(&m.routing_key)
        .bind(&m.payload)
        .bind(headers_to_json(&m.headers).to_string())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Records `(consumer, event_id)`; false when it was already there.
async fn first_time(
    conn: &mut SqliteConnection,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "INSERT OR IGNORE INTO processed_events (consumer, event_id, processed_at) \
         VALUES (?1, ?2, ?3)",
    )
    .bind(consumer)
    .bind(event_id.to_string())
    .bind(now_micros())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

async fn insert_audit(conn: &mut SqliteConnection, a: &AuditRecord) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit (ticket_id, doc) VALUES (?1, ?2)")
        .bind(a.ticket_id.to_string())
        .bind(to_doc(a)?)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn uuid(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(internal)
}

fn at(us: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| internal(format!("bad time {us}")))
}

#[async_trait]
impl TicketStore for SqliteStore {
    async fn create_ticket(
        &self,
        ticket: TicketRecord,
        events: Vec<Message>,
    ) -> Result<(TicketRecord, bool), StoreError> {
        let mut tx = self.writer.begin().await?;
        if let Some(key) = &ticket.idempotency_key {
            let existing: Option<String> =
                sqlx::query_scalar("SELECT doc FROM tickets WHERE idempotency_key = ?1")
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(doc) = existing {
                tx.rollback().await?;
                return Ok((from_doc(&doc)?, false));
            }
        }
        let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM tickets")
            .fetch_one(&mut *tx)
            .await?;
        let t = TicketRecord {
            tracking_number: tracking_number(ticket.received_at, seq),
            version: 0,
            ..ticket
        };
        insert_ticket(&mut tx, &t, seq).await?;
        insert_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok((t, true))
    }

    async fn get_ticket(&self, id_or_tracking: &str) -> Result<TicketRecord, StoreError> {
        let key = match Uuid::parse_str(id_or_tracking) {
            Ok(id) => id.to_string(),
            Err(_) => id_or_tracking.to_owned(),
        };
        let doc: Option<String> =
            sqlx::query_scalar("SELECT doc FROM tickets WHERE id = ?1 OR tracking_number = ?1")
                .bind(key)
                .fetch_optional(&self.reader)
                .await?;
        from_doc(&doc.ok_or_else(|| StoreError::NotFound(id_or_tracking.to_owned()))?)
    }

    async fn list_tickets(&self, q: &TicketQuery) -> Result<Vec<TicketRecord>, StoreError> {
        let (beyond, order) = if q.oldest_first {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT doc FROM tickets WHERE (?1 IS NULL OR status = ?1) \
               AND (?2 IS NULL OR channel = ?2) \
               AND (?3 IS NULL OR received_at >= ?3) \
               AND (?4 IS NULL OR received_at < ?4) \
               AND (?5 IS NULL OR received_at {beyond} ?5 OR (received_at = ?5 AND id {beyond} ?6)) \
               AND (?7 IS NULL OR id IN (SELECT ticket_id FROM ticket_units WHERE unit = ?7)) \
             ORDER BY received_at {order}, id {order} LIMIT ?8"
        )))
        .bind(q.status.map(TicketStatus::as_str))
        .bind(q.channel.map(Channel::as_str))
        .bind(q.received_after.map(micros))
        .bind(q.received_before.map(micros))
        .bind(q.after.map(|a| micros(a.0)))
        .bind(q.after.map(|a| a.1.to_string()))
        .bind(q.unit.as_deref())
        .bind(q.limit as i64)
        .fetch_all(&self.reader)
        .await?;
        docs(&rows)
    }

    async fn add_follow_up(
        &self,
        id: Uuid,
        follow_up: FollowUpRecord,
        events: Vec<Message>,
    ) -> Result<TicketRecord, StoreError> {
        let mut tx = self.writer.begin().await?;
        let mut t = load(&mut tx, id).await?;
        if !t.status.is_open() {
            return Err(StoreError::Closed {
                id: t.tracking_number,
                status: t.status.as_str(),
            });
        }
        t.follow_ups.push(follow_up);
        save(&mut tx, &t).await?;
        insert_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(t)
    }

    async fn claim_outbox(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let now = now_micros();
        let rows = sqlx::query(
            "UPDATE outbox SET leased_until = ?2 \
             WHERE seq IN (SELECT seq FROM outbox WHERE leased_until <= ?1 ORDER BY seq LIMIT ?3) \
             RETURNING seq, event_id, routing_key, payload, headers",
        )
        .bind(now)
        .bind(now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX)))
        .bind(limit as i64)
        .fetch_all(&self.writer)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(OutboxEntry {
                    seq: r.try_get("seq")?,
                    message: Message {
                        event_id: uuid(&r.try_get::<String, _>("event_id")?)?,
                        routing_key: r.try_get("routing_key")?,
                        payload: r.try_get("payload")?,
                        headers: serde_json::from_str(&r.try_get::<String, _>("headers")?)
                            .unwrap_or_default(),
                    },
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by_key(|e| e.seq);
        Ok(out)
    }

    async fn complete_outbox(&self, seqs: &[i64]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM outbox WHERE seq IN (SELECT value FROM json_each(?1))")
            .bind(to_doc(&seqs)?)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.reader)
            .await?;
        Ok(n as u64)
    }

    async fn mark_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool, StoreError> {
        let mut conn = self.writer.acquire().await?;
        first_time(&mut conn, consumer, event_id).await
    }

    async fn count_tickets(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets")
            .fetch_one(&self.reader)
            .await?;
        Ok(n as u64)
    }

    async fn apply_effect(
        &self,
        consumer: &str,
        event_id: Uuid,
        ticket_id: Uuid,
        update: TicketUpdate,
        events: Vec<Message>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        if !first_time(&mut tx, consumer, event_id).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        let mut t = load(&mut tx, ticket_id).await?;
        if let Some(status) = update.status {
            t.status = status;
        }
        if let Some(routing) = update.routing {
            t.routing = Some(routing);
        }
        t.version += 1;
        save(&mut tx, &t).await?;
        insert_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn transition(&self, tr: Transition) -> Result<TransitionOutcome, StoreError> {
        let mut tx = self.writer.begin().await?;
        if let Some((consumer, event_id)) = &tr.dedupe
            && !first_time(&mut tx, consumer, *event_id).await?
        {
            tx.rollback().await?;
            return Ok(TransitionOutcome::AlreadyApplied);
        }
        let mut t = load(&mut tx, tr.ticket_id).await?;
        if t.version != tr.expected_version {
            tx.rollback().await?;
            return Ok(TransitionOutcome::Conflict {
                current_version: t.version,
            });
        }
        set_units(&mut tx, tr.ticket_id, &tr.dispatch).await?;
        let id = tr.ticket_id.to_string();
        t.status = tr.status;
        t.dispatch = Some(tr.dispatch);
        if let Some(routing) = tr.routing {
            t.routing = Some(routing);
        }
        t.version += 1;
        save(&mut tx, &t).await?;
        insert_audit(&mut tx, &tr.audit).await?;
        let mut inbox = tr.inbox;
        inbox.sort();
        inbox.dedup();
        for (unit, kind) in &inbox {
            sqlx::query("INSERT INTO inbox (unit, ticket_id, kind, at) VALUES (?1, ?2, ?3, ?4)")
                .bind(unit)
                .bind(&id)
                .bind(kind)
                .bind(micros(tr.audit.at))
                .execute(&mut *tx)
                .await?;
        }
        insert_events(&mut tx, &tr.events).await?;
        tx.commit().await?;
        Ok(TransitionOutcome::Applied { version: t.version })
    }

    async fn append_audit(&self, a: AuditRecord) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await?;
        insert_audit(&mut conn, &a).await
    }

    async fn audit_trail(&self, ticket_id: Uuid) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query("SELECT doc FROM audit WHERE ticket_id = ?1 ORDER BY seq")
            .bind(ticket_id.to_string())
            .fetch_all(&self.reader)
            .await?;
        docs(&rows)
    }

    async fn audit_page(
        &self,
        ticket_id: Uuid,
        from: Option<u64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        // One statement: the window count is the whole trail's, taken with the lines.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match from {
            None => sqlx::query(
                "SELECT doc, count(*) OVER () AS total FROM audit WHERE ticket_id = ?1 \
                 ORDER BY seq DESC LIMIT ?2",
            )
            .bind(ticket_id.to_string())
            .bind(limit),
            Some(f) => sqlx::query(
                "SELECT doc, count(*) OVER () AS total FROM audit WHERE ticket_id = ?1 \
                 ORDER BY seq LIMIT ?2 OFFSET ?3",
            )
            .bind(ticket_id.to_string())
            .bind(limit)
            .bind(i64::try_from(f).unwrap_or(i64::MAX)),
        }
        .fetch_all(&self.reader)
        .await?;
        let total: i64 = match rows.first() {
            Some(r) => r.try_get("total")?,
            // Past the end (or no trail): the count alone.
            None => {
                sqlx::query_scalar("SELECT count(*) FROM audit WHERE ticket_id = ?1")
                    .bind(ticket_id.to_string())
                    .fetch_one(&self.reader)
                    .await?
            }
        };
        Ok(AuditPage::from_query(
            docs(&rows)?,
            u64::try_from(total).unwrap_or(0),
            from,
        ))
    }

    async fn inbox(
        &self,
        unit: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<InboxRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, unit, ticket_id, kind, at FROM inbox WHERE unit = ?1 AND seq > ?2 \
             ORDER BY seq LIMIT ?3",
        )
        .bind(unit)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(InboxRecord {
                    seq: r.try_get("seq")?,
                    unit: r.try_get("unit")?,
                    ticket_id: uuid(&r.try_get::<String, _>("ticket_id")?)?,
                    kind: r.try_get("kind")?,
                    at: at(r.try_get("at")?)?,
                })
            })
            .collect()
    }

    async fn duplicate_candidate_ids(
        &self,
        community: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(Uuid, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, received_at FROM tickets \
             WHERE community = ?1 AND received_at >= ?2 \
               AND status NOT IN ('completed', 'archived', 'linked_duplicate') \
             ORDER BY received_at DESC LIMIT ?3",
        )
        .bind(community)
        .bind(micros(since))
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|(id, us)| Ok((uuid(id)?, at(*us)?)))
            .collect()
    }
}
