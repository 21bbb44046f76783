-- The embedded ticket store (SQLite). The ticket itself is kept as one JSON document; the
-- columns beside it are the ones listings and lookups filter on. Times are microseconds since
-- the Unix epoch (UTC). Like the PostgreSQL migrations, later ones only add.
CREATE TABLE IF NOT EXISTS tickets (
    id               TEXT PRIMARY KEY,
    seq              INTEGER NOT NULL UNIQUE,
    tracking_number  TEXT NOT NULL UNIQUE,
    status           TEXT NOT NULL,
    channel          TEXT NOT NULL,
    received_at      INTEGER NOT NULL,
    idempotency_key  TEXT UNIQUE,
    community        TEXT,
    version          INTEGER NOT NULL,
    doc              TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_received_idx ON tickets (received_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS tickets_community_idx ON tickets (community, received_at DESC);

-- Lead and co-handling units, for "my tickets" listings.
CREATE TABLE IF NOT EXISTS ticket_units (
    unit      TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    PRIMARY KEY (unit, ticket_id)
);

CREATE TABLE IF NOT EXISTS outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    routing_key  TEXT NOT NULL,
    payload      BLOB NOT NULL,
    headers      TEXT NOT NULL,
    leased_until INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS processed_events (
    consumer     TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    processed_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE IF NOT EXISTS audit (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id TEXT NOT NULL,
    doc       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_ticket_idx ON audit (ticket_id, seq);

-- Append-only per-unit feed. One connection writes, so `seq` commits in order and a cursor
-- never skips an entry.
CREATE TABLE IF NOT EXISTS inbox (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    unit      TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    kind      TEXT NOT NULL,
    at        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_unit_idx ON inbox (unit, seq);
