-- Dispatch: assignment and handling on the ticket, audit trail, unit inbox feeds.
ALTER TABLE tickets ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 0;
ALTER TABLE tickets ADD COLUMN IF NOT EXISTS dispatch jsonb;
-- Lead and co-handling units, for "my tickets" listings.
ALTER TABLE tickets ADD COLUMN IF NOT EXISTS units text[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS tickets_units_idx ON tickets USING gin (units);

CREATE TABLE IF NOT EXISTS audit (
    seq        bigserial PRIMARY KEY,
    ticket_id  uuid NOT NULL,
    at         timestamptz NOT NULL,
    actor      text NOT NULL,
    role       text NOT NULL,
    unit       text NOT NULL,
    action     text NOT NULL,
    from_state text NOT NULL,
    to_state   text NOT NULL,
    reason     text NOT NULL,
    allowed    boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_ticket_idx ON audit (ticket_id, seq);

-- Append-only per-unit feed. Writers take a per-unit advisory lock before drawing `seq`, so
-- within a unit entries commit in `seq` order and a cursor never skips one.
CREATE TABLE IF NOT EXISTS inbox (
    seq       bigserial PRIMARY KEY,
    unit      text NOT NULL,
    ticket_id uuid NOT NULL,
    kind      text NOT NULL,
    at        timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_unit_idx ON inbox (unit, seq);
