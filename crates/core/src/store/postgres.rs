//! PostgreSQL adapter of the ticket store.

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use std::sync::Arc;

use super::pg_intake::{self, IntakeWriter};
use super::{
    AuditPage, AuditRecord, Effect, EffectOutcome, FollowUpRecord, InboxRecord, OutboxEntry,
    OutboxHandoff, StoreError, TicketQuery, TicketRecord, TicketStore, Transition,
    TransitionOutcome, headers_to_json,
};
use crate::bus::Message;
use crate::petition::{Channel, TicketStatus};

/// The ticket store on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    writer: IntakeWriter,
    /// This process's relay, to which the hot writers (intake's group insert, batched
    /// effects and transitions) hand their committed events (see [`OutboxHandoff`]).
    handoff: Option<Arc<OutboxHandoff>>,
}

/// Indexes the migrations build `CONCURRENTLY`: one whose build failed midway (a deadlock, a
/// cancelled start) is left INVALID, and the retried `CREATE INDEX CONCURRENTLY IF NOT EXISTS`
/// skips it, so the planner never uses it. Rebuilt here, under the migration lock.
const CONCURRENT_INDEXES: &[&str] = &["tickets_community_idx"];

async fn repair_invalid_indexes(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    for name in CONCURRENT_INDEXES {
        let invalid: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace \
             AND NOT i.indisvalid)",
        )
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
        if invalid {
            tracing::warn!(
                index = name,
                "rebuilding an index a failed migration left invalid"
            );
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "REINDEX INDEX CONCURRENTLY {name}"
            )))
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

impl PostgresStore {
    /// Connects and runs the migrations (idempotent; guarded by an advisory lock, so several
    /// replicas may start at once).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_with_handoff(url, max_connections, None).await
    }

    /// [`PostgresStore::connect`]; with `handoff`, the hot writers insert their outbox rows
    /// leased and hand the events to it, for this process's relay to publish at once.
    pub async fn connect_with_handoff(
        url: &str,
        max_connections: u32,
        handoff: Option<Arc<OutboxHandoff>>,
    ) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            // Pinging every connection before use costs 6-10% at low concurrency; a broken
            // connection fails its query and the pool replaces it.
            .test_before_acquire(false)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        Self::migrate(&pool).await?;
        let writer = IntakeWriter::start(pool.clone(), handoff.clone());
        Ok(Self {
            pool,
            writer,
            handoff,
        })
    }

    /// Applies the migrations, one process at a time. The others wait by polling a
    /// non-blocking advisory lock: a session blocked in a lock statement (as in the
    /// migrator's own `pg_advisory_lock`) holds a snapshot, which a `CREATE INDEX
    /// CONCURRENTLY` in the migrating process waits for while it holds the lock — a deadlock
    /// that failed one of several replicas starting together on a new database.
    pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
        /// "minyi migrate", any constant all Minyi processes share.
        const MIGRATION_LOCK: i64 = 0x6d69_6e79_696d_6967;
        let mut conn = pool.acquire().await?;
        while !sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .fetch_one(&mut *conn)
            .await?
        {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // The migrator takes its own lock on this connection too: held by nobody else now.
        // (`run_direct`: `run` on a connection is refused in a Send future, sqlx's documented
        // way around.)
        let applied = match sqlx::migrate!("./migrations")
            .run_direct(None, &mut *conn, false)
            .await
        {
            Ok(()) => repair_invalid_indexes(&mut conn).await,
            Err(e) => Err(StoreError::Internal(format!("migration failed: {e}"))),
        };
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await;
        if unlocked.is_err() {
            // The lock goes with the connection.
            conn.detach();
        }
        applied
    }

    /// The newest migration applied to this database (0 when none).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        Ok(v.unwrap_or(0))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The lease, in seconds, for the outbox rows a hot writer is about to insert: `None`
    /// (claimable at once) without a handoff or while the relay is far behind.
    fn handoff_lease(&self) -> Option<f64> {
        self.handoff
            .as_ref()
            .and_then(|h| h.lease_for_next_write())
            .map(|l| l.as_secs_f64())
    }

    /// After the commit of rows inserted with [`PostgresStore::handoff_lease`]'s lease.
    fn hand_over<'a>(&self, leased: Option<f64>, events: impl IntoIterator<Item = &'a Message>) {
        if let (Some(h), Some(_)) = (&self.handoff, leased) {
            h.push(events.into_iter().cloned());
        }
    }

    /// Deletes the published rows (by sequence number, and by event id for handed-over
    /// ones) and claims up to `limit` entries, in one statement.
    async fn claim(
        &self,
        published: &[i64],
        handed: &[Uuid],
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        // The published rows are leased, so the claim never picks them.
        let rows = sqlx::query(
            "WITH done AS (DELETE FROM outbox WHERE seq = ANY($3) OR event_id = ANY($4)) \
             UPDATE outbox SET leased_until = now() + $2 \
             WHERE seq IN (SELECT seq FROM outbox WHERE leased_until < now() \
                           ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING seq, event_id, routing_key, payload, headers",
        )
        // Planned for each call: a plan cached while the outbox was small scans the whole
        // table, dead rows included, on every claim.
        .persistent(false)
        .bind(limit as i64)
        .bind(
            sqlx::postgres::types::PgInterval::try_from(lease)
                .map_err(|e| StoreError::Internal(e.to_string()))?,
        )
        .bind(published)
        .bind(handed)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                let headers: serde_json::Value = r.try_get("headers")?;
                Ok(OutboxEntry {
                    seq: r.try_get("seq")?,
                    message: Message {
                        event_id: r.try_get("event_id")?,
                        routing_key: r.try_get("routing_key")?,
                        payload: r.try_get("payload")?,
                        headers: serde_json::from_value(headers).unwrap_or_default(),
                    },
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by_key(|e| e.seq);
        Ok(out)
    }

    async fn insert_events(
        tx: &mut Transaction<'_, Postgres>,
        events: &[Message],
    ) -> Result<(), StoreError> {
        for m in events {
            sqlx::query(
                "INSERT INTO outbox (event_id, routing_key, payload, headers) VALUES ($1, $2, $3, $4)",
            )
            .bind(m.event_id)
            .bind(&m.routing_key)
            .bind(&m.payload)
            .bind(headers_to_json(&m.headers))
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

/// A data-modifying CTE `ev` that appends `events` to the outbox, in order, when `guard` (a
/// SQL condition) holds; its four arrays are bound from parameter `$first` on with
/// [`bind_outbox`]. Lets a write and its events go in one statement: one round trip, its own
/// transaction.
fn outbox_cte(first: usize, guard: &str) -> String {
    format!(
        "ev AS (INSERT INTO outbox (event_id, routing_key, payload, headers) \
           SELECT e.event_id, e.routing_key, e.payload, e.headers \
           FROM unnest(${}::uuid[], ${}::text[], ${}::bytea[], ${}::jsonb[]) \
             WITH ORDINALITY AS e(event_id, routing_key, payload, headers, n) \
           WHERE {guard} ORDER BY e.n)",
        first,
        first + 1,
        first + 2,
        first + 3
    )
}

/// The outbox columns of `events`, bound to `unnest(…::uuid[], …::text[], …::bytea[],
/// …::jsonb[])`.
type EventColumns<'a> = (
    Vec<Uuid>,
    Vec<&'a str>,
    Vec<&'a [u8]>,
    Vec<serde_json::Value>,
);

fn event_columns<'a>(events: &[&'a Message]) -> EventColumns<'a> {
    (
        events.iter().map(|m| m.event_id).collect(),
        events.iter().map(|m| m.routing_key.as_str()).collect(),
        events.iter().map(|m| m.payload.as_slice()).collect(),
        events.iter().map(|m| headers_to_json(&m.headers)).collect(),
    )
}

fn bind_outbox<'q, O>(
    q: sqlx::query::QueryScalar<'q, Postgres, O, sqlx::postgres::PgArguments>,
    events: &'q [Message],
) -> sqlx::query::QueryScalar<'q, Postgres, O, sqlx::postgres::PgArguments> {
    let events: Vec<&Message> = events.iter().collect();
    let (event_ids, routing_keys, payloads, headers) = event_columns(&events);
    q.bind(event_ids)
        .bind(routing_keys)
        .bind(payloads)
        .bind(headers)
}

pub(super) const SELECT_TICKET: &str = "SELECT id, tracking_number, status, channel, title, body, anonymous, \
     caller_name, caller_phone, caller_id_number, address, latitude, longitude, event_time, \
     attachment_urls, idempotency_key, received_at, received_by, follow_ups, routing, dispatch, \
     version FROM tickets";

pub(super) fn ticket_from_row(row: &PgRow) -> Result<TicketRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let channel: String = row.try_get("channel")?;
    let attachments: serde_json::Value = row.try_get("attachment_urls")?;
    let follow_ups: serde_json::Value = row.try_get("follow_ups")?;
    Ok(TicketRecord {
        id: row.try_get("id")?,
        tracking_number: row.try_get("tracking_number")?,
        status: TicketStatus::parse(&status)
            .ok_or_else(|| StoreError::Internal(format!("unknown status {status}")))?,
        channel: Channel::parse(&channel)
            .ok_or_else(|| StoreError::Internal(format!("unknown channel {channel}")))?,
        title: row.try_get("title")?,
        text: row.try_get("body")?,
        anonymous: row.try_get("anonymous")?,
        caller_name: row.try_get("caller_name")?,
        caller_phone: row.try_get("caller_phone")?,
        caller_id_number: row.try_get("caller_id_number")?,
        address: row.try_get("address")?,
        latitude: row.try_get("latitude")?,
        longitude: row.try_get("longitude")?,
        event_time: row.try_get("event_time")?,
        attachment_urls: serde_json::from_value(attachments)
            .map_err(|e| StoreError::Internal(e.to_string()))?,
        idempotency_key: row.try_get("idempotency_key")?,
        received_at: row.try_get("received_at")?,
        received_by: row.try_get("received_by")?,
        follow_ups: serde_json::from_value(follow_ups)
            .map_err(|e| StoreError::Internal(e.to_string()))?,
        routing: row
            .try_get::<Option<serde_json::Value>, _>("routing")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| StoreError::Internal(e.to_string()))?,
        dispatch: row
            .try_get::<Option<serde_json::Value>, _>("dispatch")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| StoreError::Internal(e.to_string()))?,
        version: row.try_get("version")?,
    })
}

fn json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(v).map_err(|e| StoreError::Internal(e.to_string()))
}

fn audit_from_row(r: &PgRow) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        ticket_id: r.try_get("ticket_id")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        role: r.try_get("role")?,
        unit: r.try_get("unit")?,
        action: r.try_get("action")?,
        from_state: r.try_get("from_state")?,
        to_state: r.try_get("to_state")?,
        reason: r.try_get("reason")?,
        allowed: r.try_get("allowed")?,
    })
}

async fn insert_audit(
    tx: &mut Transaction<'_, Postgres>,
    a: &AuditRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit (ticket_id, at, actor, role, unit, action, from_state, to_state, \
           reason, allowed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(a.ticket_id)
    .bind(a.at)
    .bind(&a.actor)
    .bind(&a.role)
    .bind(&a.unit)
    .bind(&a.action)
    .bind(&a.from_state)
    .bind(&a.to_state)
    .bind(&a.reason)
    .bind(a.allowed)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl TicketStore for PostgresStore {
    async fn create_ticket(
        &self,
        t: TicketRecord,
        events: Vec<Message>,
    ) -> Result<(TicketRecord, bool), StoreError> {
        // Ticket and events in one statement, with whatever other submits are waiting (see
        // `pg_intake`).
        match self.writer.create(t, events).await {
            Ok(result) => result,
            Err(ticket) => pg_intake::insert(&self.pool, self.handoff.as_deref(), &[ticket])
                .await
                .map(|mut r| r.remove(0)),
        }
    }

    async fn get_ticket(&self, id_or_tracking: &str) -> Result<TicketRecord, StoreError> {
        let row = match Uuid::parse_str(id_or_tracking) {
            Ok(id) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{SELECT_TICKET} WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
            }
            Err(_) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{SELECT_TICKET} WHERE tracking_number = $1"
                )))
                .bind(id_or_tracking)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        let row = row.ok_or_else(|| StoreError::NotFound(id_or_tracking.to_owned()))?;
        ticket_from_row(&row)
    }

    async fn get_tickets(&self, ids: &[Uuid]) -> Result<Vec<TicketRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_TICKET} WHERE id = ANY($1)"
        )))
        .bind(ids)
        // Planned for each call (see `apply_effects`).
        .persistent(false)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ticket_from_row).collect()
    }

    async fn list_tickets(&self, q: &TicketQuery) -> Result<Vec<TicketRecord>, StoreError> {
        let (beyond, order) = if q.oldest_first {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_TICKET} WHERE ($1::text IS NULL OR status = $1) \
               AND ($2::text IS NULL OR channel = $2) \
               AND ($3::timestamptz IS NULL OR received_at >= $3) \
               AND ($4::timestamptz IS NULL OR received_at < $4) \
               AND ($5::timestamptz IS NULL OR (received_at, id) {beyond} ($5, $6)) \
               AND ($8::text IS NULL OR $8 = ANY(units)) \
             ORDER BY received_at {order}, id {order} LIMIT $7"
        )))
        .bind(q.status.map(TicketStatus::as_str))
        .bind(q.channel.map(Channel::as_str))
        .bind(q.received_after)
        .bind(q.received_before)
        .bind(q.after.map(|a| a.0))
        .bind(q.after.map(|a| a.1))
        .bind(q.limit as i64)
        .bind(q.unit.as_deref())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ticket_from_row).collect()
    }

    async fn add_follow_up(
        &self,
        id: Uuid,
        f: FollowUpRecord,
        events: Vec<Message>,
    ) -> Result<TicketRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT_TICKET} WHERE id = $1 FOR UPDATE"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let mut ticket = ticket_from_row(&row)?;
        if !ticket.status.is_open() {
            return Err(StoreError::Closed {
                id: ticket.tracking_number,
                status: ticket.status.as_str(),
            });
        }
        sqlx::query("UPDATE tickets SET follow_ups = follow_ups || $2 WHERE id = $1")
            .bind(id)
            .bind(serde_json::json!([f]))
            .execute(&mut *tx)
            .await?;
        Self::insert_events(&mut tx, &events).await?;
        tx.commit().await?;
        ticket.follow_ups.push(f);
        Ok(ticket)
    }

    async fn claim_outbox(
        &self,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.complete_and_claim_outbox(&[], limit, lease).await
    }

    async fn complete_and_claim_outbox(
        &self,
        published: &[i64],
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        // Handed-over rows this process's relay published, deleted with this claim.
        let handed = self
            .handoff
            .as_ref()
            .map(|h| h.take_published())
            .unwrap_or_default();
        let claimed = self.claim(published, &handed, limit, lease).await;
        if claimed.is_err()
            && let Some(h) = &self.handoff
        {
            h.mark_published(handed);
        }
        claimed
    }

    async fn complete_outbox(&self, seqs: &[i64]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM outbox WHERE seq = ANY($1)")
            .bind(seqs)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    async fn mark_processed(&self, consumer: &str, event_id: Uuid) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(consumer)
        .bind(event_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn count_tickets(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    async fn apply_effect(
        &self,
        consumer: &str,
        event_id: Uuid,
        ticket_id: Uuid,
        update: super::TicketUpdate,
        events: Vec<Message>,
    ) -> Result<bool, StoreError> {
        let routing = update
            .routing
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        // Dedupe mark, update and events in one statement (one round trip, atomic).
        let sql = format!(
            "WITH first AS (INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) \
               ON CONFLICT DO NOTHING RETURNING event_id), \
             upd AS (UPDATE tickets SET status = COALESCE($4, status), \
               routing = COALESCE($5, routing), version = version + 1 \
               WHERE id = $3 AND EXISTS (SELECT 1 FROM first) RETURNING id), {} \
             SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM first) THEN 0 \
                         WHEN EXISTS (SELECT 1 FROM upd) THEN 1 ELSE 2 END",
            outbox_cte(6, "EXISTS (SELECT 1 FROM upd)")
        );
        let q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(consumer)
            .bind(event_id)
            .bind(ticket_id)
            .bind(update.status.map(TicketStatus::as_str))
            .bind(routing);
        let outcome: i32 = bind_outbox(q, &events).fetch_one(&self.pool).await?;
        match outcome {
            0 => Ok(false),
            1 => Ok(true),
            _ => {
                // No such ticket: take the dedupe mark back, so the event is not "done".
                sqlx::query("DELETE FROM processed_events WHERE consumer = $1 AND event_id = $2")
                    .bind(consumer)
                    .bind(event_id)
                    .execute(&self.pool)
                    .await?;
                Err(StoreError::NotFound(ticket_id.to_string()))
            }
        }
    }

    async fn apply_effects(
        &self,
        consumer: &str,
        effects: Vec<Effect>,
    ) -> Result<Vec<EffectOutcome>, StoreError> {
        // One UPDATE applies one row per ticket: a ticket twice in the batch goes one by one.
        let mut tickets = std::collections::HashSet::new();
        if effects.len() < 2 || !effects.iter().all(|e| tickets.insert(e.ticket_id)) {
            return super::apply_one_by_one(self, consumer, effects).await;
        }
        let mut routings = Vec::with_capacity(effects.len());
        for e in &effects {
            routings.push(e.update.routing.as_ref().map(json).transpose()?);
        }
        // Events, each with the event id of the effect it belongs to.
        let (sources, events): (Vec<Uuid>, Vec<&Message>) = effects
            .iter()
            .flat_map(|e| e.events.iter().map(|m| (e.event_id, m)))
            .unzip();
        let (event_ids, routing_keys, payloads, headers) = event_columns(&events);
        let leased = self.handoff_lease();
        // Dedupe marks, updates and events of the whole batch in one statement: one round
        // trip, one commit. Effects whose event was handled before change nothing.
        let rows = sqlx::query(
            "WITH i AS (SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::jsonb[]) \
                 AS i(event_id, ticket_id, status, routing)), \
             first AS (INSERT INTO processed_events (consumer, event_id) \
               SELECT $1, event_id FROM i ON CONFLICT DO NOTHING RETURNING event_id), \
             upd AS (UPDATE tickets t SET status = COALESCE(i.status, t.status), \
                 routing = COALESCE(i.routing, t.routing), version = t.version + 1 \
               FROM i JOIN first f ON f.event_id = i.event_id \
               WHERE t.id = i.ticket_id RETURNING i.event_id), \
             ev AS (INSERT INTO outbox (event_id, routing_key, payload, headers, leased_until) \
               SELECT e.event_id, e.routing_key, e.payload, e.headers, \
                 COALESCE(now() + make_interval(secs => $11::float8), '-infinity') \
               FROM unnest($6::uuid[], $7::uuid[], $8::text[], $9::bytea[], $10::jsonb[]) \
                 WITH ORDINALITY AS e(source, event_id, routing_key, payload, headers, n) \
               WHERE e.source IN (SELECT event_id FROM upd) ORDER BY e.n) \
             SELECT i.event_id, \
               EXISTS (SELECT 1 FROM first f WHERE f.event_id = i.event_id) AS first, \
               EXISTS (SELECT 1 FROM upd u WHERE u.event_id = i.event_id) AS updated \
             FROM i",
        )
        .bind(consumer)
        .bind(effects.iter().map(|e| e.event_id).collect::<Vec<_>>())
        .bind(effects.iter().map(|e| e.ticket_id).collect::<Vec<_>>())
        .bind(
            effects
                .iter()
                .map(|e| e.update.status.map(TicketStatus::as_str))
                .collect::<Vec<_>>(),
        )
        .bind(routings)
        .bind(sources)
        .bind(event_ids)
        .bind(routing_keys)
        .bind(payloads)
        .bind(headers)
        .bind(leased)
        // Planned for each call, with the batch's real size: a generic plan made while the
        // tickets table was small joins the batch by scanning the whole table, and is kept
        // (a fresh database goes unanalyzed for its first minutes).
        .persistent(false)
        .fetch_all(&self.pool)
        .await?;
        let mut by_event = std::collections::HashMap::with_capacity(rows.len());
        for r in &rows {
            let id: Uuid = r.try_get("event_id")?;
            let first: bool = r.try_get("first")?;
            let updated: bool = r.try_get("updated")?;
            by_event.insert(id, (first, updated));
        }
        let mut missing = Vec::new();
        let outcomes: Vec<EffectOutcome> = effects
            .iter()
            .map(|e| match by_event.get(&e.event_id) {
                Some((false, _)) => EffectOutcome::AlreadyApplied,
                Some((true, true)) => EffectOutcome::Applied,
                _ => {
                    missing.push(e.event_id);
                    EffectOutcome::NotFound
                }
            })
            .collect();
        self.hand_over(
            leased,
            effects
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| **o == EffectOutcome::Applied)
                .flat_map(|(e, _)| &e.events),
        );
        if !missing.is_empty() {
            // No such ticket: take the dedupe marks back, so those events are not "done".
            sqlx::query("DELETE FROM processed_events WHERE consumer = $1 AND event_id = ANY($2)")
                .bind(consumer)
                .bind(&missing)
                .execute(&self.pool)
                .await?;
        }
        Ok(outcomes)
    }

    async fn transition(&self, t: Transition) -> Result<TransitionOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some((consumer, event_id)) = &t.dedupe {
            let first = sqlx::query(
                "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(consumer)
            .bind(event_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !first {
                tx.rollback().await?;
                return Ok(TransitionOutcome::AlreadyApplied);
            }
        }
        let units: Vec<String> = t.dispatch.units().map(str::to_owned).collect();
        let routing = t.routing.as_ref().map(json).transpose()?;
        let version: Option<i64> = sqlx::query_scalar(
            "UPDATE tickets SET status = $2, dispatch = $3, routing = COALESCE($4, routing), \
               units = $5, version = version + 1 \
             WHERE id = $1 AND version = $6 RETURNING version",
        )
        .bind(t.ticket_id)
        .bind(t.status.as_str())
        .bind(json(&t.dispatch)?)
        .bind(routing)
        .bind(&units)
        .bind(t.expected_version)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(version) = version else {
            let current: Option<i64> =
                sqlx::query_scalar("SELECT version FROM tickets WHERE id = $1")
                    .bind(t.ticket_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.rollback().await?;
            return match current {
                Some(current_version) => Ok(TransitionOutcome::Conflict { current_version }),
                None => Err(StoreError::NotFound(t.ticket_id.to_string())),
            };
        };
        insert_audit(&mut tx, &t.audit).await?;
        let mut inbox = t.inbox.clone();
        inbox.sort();
        inbox.dedup();
        for (unit, kind) in &inbox {
            // Serializes writers per unit, so entries of a unit commit in `seq` order.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('minyi.inbox:' || $1))")
                .bind(unit)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO inbox (unit, ticket_id, kind, at) VALUES ($1, $2, $3, $4)")
                .bind(unit)
                .bind(t.ticket_id)
                .bind(kind)
                .bind(t.audit.at)
                .execute(&mut *tx)
                .await?;
        }
        Self::insert_events(&mut tx, &t.events).await?;
        tx.commit().await?;
        Ok(TransitionOutcome::Applied { version })
    }

    async fn transitions(&self, ts: Vec<Transition>) -> Result<Vec<TransitionOutcome>, StoreError> {
        // One UPDATE changes one row per ticket: a ticket twice in the batch goes one by one.
        let mut tickets = std::collections::HashSet::new();
        if ts.len() < 2 || !ts.iter().all(|t| tickets.insert(t.ticket_id)) {
            return super::transition_one_by_one(self, ts).await;
        }
        let mut dispatches = Vec::with_capacity(ts.len());
        let mut routings = Vec::with_capacity(ts.len());
        let mut units = Vec::with_capacity(ts.len());
        for t in &ts {
            dispatches.push(json(&t.dispatch)?);
            routings.push(t.routing.as_ref().map(json).transpose()?);
            units.push(json(&t.dispatch.units().collect::<Vec<_>>())?);
        }
        let (sources, events): (Vec<Uuid>, Vec<&Message>) = ts
            .iter()
            .flat_map(|t| t.events.iter().map(|m| (t.ticket_id, m)))
            .unzip();
        let (event_ids, routing_keys, payloads, headers) = event_columns(&events);
        let audits: Vec<&AuditRecord> = ts.iter().map(|t| &t.audit).collect();
        let leased = self.handoff_lease();
        let mut tx = self.pool.begin().await?;
        // Dedupe marks, version-checked updates, audit lines and events of the whole batch in
        // one statement. A transition whose event was handled before, or whose ticket moved
        // on, changes nothing. (All parts see the snapshot from before the update, so
        // `current` is the version a conflicting transition did not find.)
        let rows = sqlx::query(
            "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::jsonb[], \
                   $5::jsonb[], $6::jsonb[], $7::text[], $8::uuid[]) \
                 AS i(ticket_id, expected, status, dispatch, routing, units, consumer, event_id)), \
             first AS (INSERT INTO processed_events (consumer, event_id) \
               SELECT consumer, event_id FROM i WHERE event_id IS NOT NULL \
               ON CONFLICT DO NOTHING RETURNING event_id), \
             upd AS (UPDATE tickets t SET status = i.status, dispatch = i.dispatch, \
                 routing = COALESCE(i.routing, t.routing), \
                 units = ARRAY(SELECT jsonb_array_elements_text(i.units)), \
                 version = t.version + 1 \
               FROM i WHERE t.id = i.ticket_id AND t.version = i.expected \
                 AND (i.event_id IS NULL OR i.event_id IN (SELECT event_id FROM first)) \
               RETURNING t.id, t.version), \
             aud AS (INSERT INTO audit (ticket_id, at, actor, role, unit, action, from_state, \
                 to_state, reason, allowed) \
               SELECT a.ticket_id, a.at, a.actor, a.role, a.unit, a.action, a.from_state, \
                 a.to_state, a.reason, a.allowed \
               FROM unnest($9::uuid[], $10::timestamptz[], $11::text[], $12::text[], \
                   $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], \
                   $18::bool[]) WITH ORDINALITY \
                 AS a(ticket_id, at, actor, role, unit, action, from_state, to_state, reason, \
                   allowed, n) \
               WHERE a.ticket_id IN (SELECT id FROM upd) ORDER BY a.n), \
             ev AS (INSERT INTO outbox (event_id, routing_key, payload, headers, leased_until) \
               SELECT e.event_id, e.routing_key, e.payload, e.headers, \
                 COALESCE(now() + make_interval(secs => $24::float8), '-infinity') \
               FROM unnest($19::uuid[], $20::uuid[], $21::text[], $22::bytea[], $23::jsonb[]) \
                 WITH ORDINALITY AS e(source, event_id, routing_key, payload, headers, n) \
               WHERE e.source IN (SELECT id FROM upd) ORDER BY e.n) \
             SELECT i.ticket_id, \
               (i.event_id IS NULL OR EXISTS (SELECT 1 FROM first f WHERE f.event_id = i.event_id)) \
                 AS first, \
               (SELECT u.version FROM upd u WHERE u.id = i.ticket_id) AS applied, \
               (SELECT t.version FROM tickets t WHERE t.id = i.ticket_id) AS current \
             FROM i",
        )
        .bind(ts.iter().map(|t| t.ticket_id).collect::<Vec<_>>())
        .bind(ts.iter().map(|t| t.expected_version).collect::<Vec<_>>())
        .bind(ts.iter().map(|t| t.status.as_str()).collect::<Vec<_>>())
        .bind(dispatches)
        .bind(routings)
        .bind(units)
        .bind(
            ts.iter()
                .map(|t| t.dedupe.as_ref().map(|(c, _)| c.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            ts.iter()
                .map(|t| t.dedupe.as_ref().map(|(_, e)| *e))
                .collect::<Vec<_>>(),
        )
        .bind(audits.iter().map(|a| a.ticket_id).collect::<Vec<_>>())
        .bind(audits.iter().map(|a| a.at).collect::<Vec<_>>())
        .bind(audits.iter().map(|a| a.actor.as_str()).collect::<Vec<_>>())
        .bind(audits.iter().map(|a| a.role.as_str()).collect::<Vec<_>>())
        .bind(audits.iter().map(|a| a.unit.as_str()).collect::<Vec<_>>())
        .bind(audits.iter().map(|a| a.action.as_str()).collect::<Vec<_>>())
        .bind(audits.iter().map(|a| a.from_state.as_str()).collect::<Vec<_>>())
        .bind(audits.iter().map(|a| a.to_state.as_str()).collect::<Vec<_>>())
        .bind(audits.iter().map(|a| a.reason.as_str()).collect::<Vec<_>>())
        .bind(audits.iter().map(|a| a.allowed).collect::<Vec<_>>())
        .bind(sources)
        .bind(event_ids)
        .bind(routing_keys)
        .bind(payloads)
        .bind(headers)
        .bind(leased)
        // Planned for each call, with the batch's real size (see `apply_effects`).
        .persistent(false)
        .fetch_all(&mut *tx)
        .await?;
        let mut by_ticket = std::collections::HashMap::with_capacity(rows.len());
        for r in &rows {
            let id: Uuid = r.try_get("ticket_id")?;
            let first: bool = r.try_get("first")?;
            let applied: Option<i64> = r.try_get("applied")?;
            let current: Option<i64> = r.try_get("current")?;
            by_ticket.insert(id, (first, applied, current));
        }
        let mut taken_back = Vec::new();
        let mut inbox = std::collections::BTreeSet::new();
        let outcomes: Vec<TransitionOutcome> = ts
            .iter()
            .map(|t| {
                let outcome = match by_ticket.get(&t.ticket_id) {
                    Some((false, _, _)) => TransitionOutcome::AlreadyApplied,
                    Some((true, Some(version), _)) => {
                        TransitionOutcome::Applied { version: *version }
                    }
                    Some((true, None, Some(current))) => TransitionOutcome::Conflict {
                        current_version: *current,
                    },
                    _ => TransitionOutcome::NotFound,
                };
                match outcome {
                    TransitionOutcome::Applied { .. } => {
                        for (unit, kind) in &t.inbox {
                            inbox.insert((unit.as_str(), t.ticket_id, kind.as_str(), t.audit.at));
                        }
                    }
                    TransitionOutcome::Conflict { .. } | TransitionOutcome::NotFound => {
                        if let Some((consumer, event_id)) = &t.dedupe {
                            taken_back.push((consumer.as_str(), *event_id));
                        }
                    }
                    TransitionOutcome::AlreadyApplied => {}
                }
                outcome
            })
            .collect();
        if !taken_back.is_empty() {
            // Not applied: take the dedupe marks back, so those events are not "done".
            let (consumers, ids): (Vec<&str>, Vec<Uuid>) = taken_back.into_iter().unzip();
            sqlx::query(
                "DELETE FROM processed_events p USING unnest($1::text[], $2::uuid[]) AS d(c, e) \
                 WHERE p.consumer = d.c AND p.event_id = d.e",
            )
            .bind(consumers)
            .bind(ids)
            .execute(&mut *tx)
            .await?;
        }
        if !inbox.is_empty() {
            // Serializes writers per unit, so entries of a unit commit in `seq` order; the
            // units are locked in name order, as every batch does, so batches cannot deadlock.
            let mut locked: Vec<&str> = inbox.iter().map(|(u, ..)| *u).collect();
            locked.dedup();
            sqlx::query(
                "SELECT pg_advisory_xact_lock(hashtext('minyi.inbox:' || u)) \
                 FROM unnest($1::text[]) WITH ORDINALITY AS l(u, n) ORDER BY n",
            )
            .bind(&locked)
            .execute(&mut *tx)
            .await?;
            // Entries in the order of the batch (a set of tuples sorts by unit first).
            let mut entries: Vec<_> = inbox.into_iter().collect();
            let order: std::collections::HashMap<Uuid, usize> = ts
                .iter()
                .enumerate()
                .map(|(n, t)| (t.ticket_id, n))
                .collect();
            entries.sort_by_key(|(u, id, k, _)| (order[id], *u, *k));
            sqlx::query(
                "INSERT INTO inbox (unit, ticket_id, kind, at) \
                 SELECT unit, ticket_id, kind, at \
                 FROM unnest($1::text[], $2::uuid[], $3::text[], $4::timestamptz[]) \
                   WITH ORDINALITY AS e(unit, ticket_id, kind, at, n) ORDER BY n",
            )
            .bind(entries.iter().map(|e| e.0).collect::<Vec<_>>())
            .bind(entries.iter().map(|e| e.1).collect::<Vec<_>>())
            .bind(entries.iter().map(|e| e.2).collect::<Vec<_>>())
            .bind(entries.iter().map(|e| e.3).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.hand_over(
            leased,
            ts.iter()
                .zip(&outcomes)
                .filter(|(_, o)| matches!(o, TransitionOutcome::Applied { .. }))
                .flat_map(|(t, _)| &t.events),
        );
        Ok(outcomes)
    }

    async fn append_audit(&self, a: AuditRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_audit(&mut tx, &a).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_trail(&self, ticket_id: Uuid) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT ticket_id, at, actor, role, unit, action, from_state, to_state, reason, \
               allowed FROM audit WHERE ticket_id = $1 ORDER BY seq",
        )
        .bind(ticket_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_page(
        &self,
        ticket_id: Uuid,
        from: Option<u64>,
        limit: usize,
    ) -> Result<AuditPage, StoreError> {
        // One statement: the window count is the whole trail's, from the same snapshot.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match from {
            None => sqlx::query(
                "SELECT ticket_id, at, actor, role, unit, action, from_state, to_state, reason, \
                   allowed, count(*) OVER () AS total FROM audit WHERE ticket_id = $1 \
                 ORDER BY seq DESC LIMIT $2",
            )
            .bind(ticket_id)
            .bind(limit),
            Some(f) => sqlx::query(
                "SELECT ticket_id, at, actor, role, unit, action, from_state, to_state, reason, \
                   allowed, count(*) OVER () AS total FROM audit WHERE ticket_id = $1 \
                 ORDER BY seq LIMIT $2 OFFSET $3",
            )
            .bind(ticket_id)
            .bind(limit)
            .bind(i64::try_from(f).unwrap_or(i64::MAX)),
        }
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = match rows.first() {
            Some(r) => r.try_get("total")?,
            // Past the end (or no trail): the count alone.
            None => {
                sqlx::query_scalar("SELECT count(*) FROM audit WHERE ticket_id = $1")
                    .bind(ticket_id)
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        Ok(AuditPage::from_query(
            rows.iter().map(audit_from_row).collect::<Result<_, _>>()?,
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
            "SELECT seq, unit, ticket_id, kind, at FROM inbox WHERE unit = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(unit)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(InboxRecord {
                    seq: r.try_get("seq")?,
                    unit: r.try_get("unit")?,
                    ticket_id: r.try_get("ticket_id")?,
                    kind: r.try_get("kind")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    async fn duplicate_candidate_ids(
        &self,
        community: &str,
        since: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<(Uuid, chrono::DateTime<chrono::Utc>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, received_at FROM tickets WHERE routing->>'community' = $1 AND received_at >= $2 \
               AND status NOT IN ('completed', 'archived', 'linked_duplicate') \
             ORDER BY received_at DESC LIMIT $3",
        )
        .bind(community)
        .bind(since)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?)
    }
}
