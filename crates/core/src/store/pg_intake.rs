//! Group commit for new tickets on PostgreSQL.
//!
//! Every submit is one ticket and its events. Written one statement each, the per-statement
//! cost (a round trip, a transaction, a commit) dominates PostgreSQL's CPU at a few hundred
//! submits a second. [`IntakeWriter`] hands the submits that are waiting to a writer task, which
//! inserts them all, with their events, in one statement. Nothing waits for a batch to fill: an
//! idle store writes a submit at once; under load, statements start at most every
//! [`MIN_INTERVAL`], and each takes whatever has queued since the last one.
//!
//! Each submit keeps its own outcome: a batch the database refuses (a value it cannot store,
//! say) is written again one submit at a time, so only the offending submit fails.

use sqlx::Row;
use sqlx::postgres::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use std::sync::Arc;

use super::{OutboxHandoff, StoreError, TicketRecord, headers_to_json};
use crate::bus::Message;

/// The least time between the starts of two statements: what a submit may wait, under load,
/// for the others it is written with.
pub(super) const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(4);
/// The most submits one statement writes.
pub(super) const MAX_BATCH: usize = 128;

type Reply = oneshot::Sender<Result<(TicketRecord, bool), StoreError>>;

struct Submit {
    ticket: TicketRecord,
    events: Vec<Message>,
    reply: Reply,
}

/// The submit side of the writer task; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct IntakeWriter {
    tx: mpsc::Sender<Submit>,
}

impl IntakeWriter {
    /// Starts the writer task on the current runtime. It ends when every `IntakeWriter` is
    /// dropped, after writing what was queued.
    pub(super) fn start(pool: PgPool, handoff: Option<Arc<OutboxHandoff>>) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_batches(pool, handoff, rx));
        Self { tx }
    }

    /// Queues the ticket and waits for its statement. Gives the ticket back when the writer is
    /// gone (its runtime ended): the caller writes it itself.
    pub(super) async fn create(
        &self,
        ticket: TicketRecord,
        events: Vec<Message>,
    ) -> Result<Result<(TicketRecord, bool), StoreError>, (TicketRecord, Vec<Message>)> {
        let (reply, answer) = oneshot::channel();
        let submit = Submit {
            ticket,
            events,
            reply,
        };
        if let Err(mpsc::error::SendError(s)) = self.tx.send(submit).await {
            return Err((s.ticket, s.events));
        }
        Ok(answer.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the ticket writer stopped before answering".into(),
            ))
        }))
    }
}

async fn write_batches(
    pool: PgPool,
    handoff: Option<Arc<OutboxHandoff>>,
    mut rx: mpsc::Receiver<Submit>,
) {
    let handoff = handoff.as_deref();
    let mut started = tokio::time::Instant::now() - MIN_INTERVAL;
    loop {
        let mut batch = Vec::new();
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        // Under load, let the next submits gather (an idle writer starts at once).
        if batch.len() < MAX_BATCH && started.elapsed() < MIN_INTERVAL {
            tokio::time::sleep_until(started + MIN_INTERVAL).await;
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(s) => batch.push(s),
                    Err(_) => break,
                }
            }
        }
        started = tokio::time::Instant::now();
        let (tickets, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|s| ((s.ticket, s.events), s.reply))
            .unzip();
        match insert(&pool, handoff, &tickets).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            // The store is down: every submit of the batch fails alike (trying them one by
            // one would only wait out the outage once per submit).
            Err(StoreError::Unavailable(why)) => {
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
                }
            }
            // Refused: one submit at a time, so each gets its own outcome.
            Err(e) if tickets.len() > 1 => {
                tracing::debug!(error = %e, submits = tickets.len(), "batch refused; writing one by one");
                for (ticket, reply) in tickets.into_iter().zip(replies) {
                    let result = insert(&pool, handoff, std::slice::from_ref(&ticket))
                        .await
                        .map(|mut r| r.remove(0));
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }
}

/// Inserts `tickets` (each with its events) in one statement; per ticket, the stored ticket
/// and whether it was created (false: its idempotency key was already taken, and the ticket
/// returned is the one holding it). With a `handoff`, the events' rows are inserted leased and
/// the events of the tickets created are handed to it after the commit.
pub(super) async fn insert(
    pool: &PgPool,
    handoff: Option<&OutboxHandoff>,
    tickets: &[(TicketRecord, Vec<Message>)],
) -> Result<Vec<(TicketRecord, bool)>, StoreError> {
    fn col<T>(tickets: &[(TicketRecord, Vec<Message>)], f: impl Fn(&TicketRecord) -> T) -> Vec<T> {
        tickets.iter().map(|(t, _)| f(t)).collect()
    }
    let events = || {
        tickets
            .iter()
            .flat_map(|(t, ev)| ev.iter().map(|m| (t.id, m)))
    };
    let leased = handoff
        .and_then(|h| h.lease_for_next_write())
        .map(|l| l.as_secs_f64());
    // Tracking numbers are drawn in submit order; events follow their tickets in order, and
    // only tickets actually inserted get theirs.
    let rows = sqlx::query(
        "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], \
               $5::text[], $6::bool[], $7::text[], $8::text[], $9::text[], $10::text[], \
               $11::float8[], $12::float8[], $13::timestamptz[], $14::jsonb[], $15::text[], \
               $16::timestamptz[], $17::text[]) WITH ORDINALITY AS i(id, status, channel, title, \
               body, anonymous, caller_name, caller_phone, caller_id_number, address, latitude, \
               longitude, event_time, attachment_urls, idempotency_key, received_at, \
               received_by, n)), \
         s AS (SELECT i.*, nextval('ticket_seq') AS seq FROM (SELECT * FROM i ORDER BY n) i), \
         t AS (INSERT INTO tickets (id, tracking_number, status, channel, title, body, \
               anonymous, caller_name, caller_phone, caller_id_number, address, latitude, \
               longitude, event_time, attachment_urls, idempotency_key, received_at, received_by) \
             SELECT id, 'MY-' || to_char(received_at AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDD') \
                      || '-' || lpad(seq::text, greatest(6, length(seq::text)), '0'), \
                    status, channel, title, body, anonymous, caller_name, caller_phone, \
                    caller_id_number, address, latitude, longitude, event_time, attachment_urls, \
                    idempotency_key, received_at, received_by \
             FROM s ORDER BY n \
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, tracking_number), \
         ev AS (INSERT INTO outbox (event_id, routing_key, payload, headers, leased_until) \
             SELECT e.event_id, e.routing_key, e.payload, e.headers, \
               COALESCE(now() + make_interval(secs => $23::float8), '-infinity') \
             FROM unnest($18::uuid[], $19::uuid[], $20::text[], $21::bytea[], $22::jsonb[]) \
               WITH ORDINALITY AS e(ticket_id, event_id, routing_key, payload, headers, n) \
             WHERE e.ticket_id IN (SELECT id FROM t) ORDER BY e.n) \
         SELECT id, tracking_number FROM t",
    )
    .bind(col(tickets, |t| t.id))
    .bind(col(tickets, |t| t.status.as_str()))
    .bind(col(tickets, |t| t.channel.as_str()))
    .bind(col(tickets, |t| t.title.clone()))
    .bind(col(tickets, |t| t.text.clone()))
    .bind(col(tickets, |t| t.anonymous))
    .bind(col(tickets, |t| t.caller_name.clone()))
    .bind(col(tickets, |t| t.caller_phone.clone()))
    .bind(col(tickets, |t| t.caller_id_number.clone()))
    .bind(col(tickets, |t| t.address.clone()))
    .bind(col(tickets, |t| t.latitude))
    .bind(col(tickets, |t| t.longitude))
    .bind(col(tickets, |t| t.event_time))
    .bind(col(tickets, |t| {
        serde_json::to_value(&t.attachment_urls).unwrap_or_default()
    }))
    .bind(col(tickets, |t| t.idempotency_key.clone()))
    .bind(col(tickets, |t| t.received_at))
    .bind(col(tickets, |t| t.received_by.clone()))
    .bind(events().map(|(id, _)| id).collect::<Vec<_>>())
    .bind(events().map(|(_, m)| m.event_id).collect::<Vec<_>>())
    .bind(
        events()
            .map(|(_, m)| m.routing_key.clone())
            .collect::<Vec<_>>(),
    )
    .bind(events().map(|(_, m)| m.payload.clone()).collect::<Vec<_>>())
    .bind(
        events()
            .map(|(_, m)| headers_to_json(&m.headers))
            .collect::<Vec<_>>(),
    )
    .bind(leased)
    .fetch_all(pool)
    .await?;
    let mut inserted = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: Uuid = row.try_get("id")?;
        let tracking_number: String = row.try_get("tracking_number")?;
        inserted.insert(id, tracking_number);
    }
    if let (Some(h), Some(_)) = (handoff, leased) {
        h.push(
            events()
                .filter(|(id, _)| inserted.contains_key(id))
                .map(|(_, m)| m.clone()),
        );
    }
    // Those not inserted lost to a ticket holding their idempotency key (maybe one earlier in
    // this very batch): answer with that ticket.
    let taken: Vec<String> = tickets
        .iter()
        .filter(|(t, _)| !inserted.contains_key(&t.id))
        .filter_map(|(t, _)| t.idempotency_key.clone())
        .collect();
    let mut existing = std::collections::HashMap::new();
    if !taken.is_empty() {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{} WHERE idempotency_key = ANY($1)",
            super::postgres::SELECT_TICKET
        )))
        .bind(&taken)
        .fetch_all(pool)
        .await?;
        for row in &rows {
            let t = super::postgres::ticket_from_row(row)?;
            if let Some(key) = t.idempotency_key.clone() {
                existing.insert(key, t);
            }
        }
    }
    tickets
        .iter()
        .map(|(t, _)| match inserted.get(&t.id) {
            Some(tracking_number) => Ok((
                TicketRecord {
                    tracking_number: tracking_number.clone(),
                    ..t.clone()
                },
                true,
            )),
            None => t
                .idempotency_key
                .as_ref()
                .and_then(|k| existing.get(k))
                .map(|e| (e.clone(), false))
                .ok_or_else(|| {
                    StoreError::Internal(format!("ticket {} was neither inserted nor found", t.id))
                }),
        })
        .collect()
}
