-- Tickets, the outbox and consumer dedupe. Migrations are additive only, so an older and a
-- newer replica can both run against the schema during a rolling upgrade.
CREATE SEQUENCE IF NOT EXISTS ticket_seq;

CREATE TABLE IF NOT EXISTS tickets (
    id               uuid PRIMARY KEY,
    tracking_number  text NOT NULL UNIQUE,
    status           text NOT NULL,
    channel          text NOT NULL,
    title            text NOT NULL,
    body             text NOT NULL,
    anonymous        boolean NOT NULL,
    -- Sealed personal data: "{key_id}:{base64(nonce||ciphertext)}".
    caller_name      text,
    caller_phone     text,
    caller_id_number text,
    address          text NOT NULL,
    latitude         double precision,
    longitude        double precision,
    event_time       timestamptz,
    attachment_urls  jsonb NOT NULL DEFAULT '[]',
    idempotency_key  text UNIQUE,
    received_at      timestamptz NOT NULL,
    received_by      text NOT NULL,
    follow_ups       jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS tickets_received_idx ON tickets (received_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS tickets_status_idx ON tickets (status, received_at DESC);

CREATE TABLE IF NOT EXISTS outbox (
    seq          bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    routing_key  text NOT NULL,
    payload      bytea NOT NULL,
    headers      jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    leased_until timestamptz NOT NULL DEFAULT '-infinity'
);

CREATE TABLE IF NOT EXISTS processed_events (
    consumer     text NOT NULL,
    event_id     uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
