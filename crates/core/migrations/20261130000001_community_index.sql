-- no-transaction
-- The duplicate check (every classified petition) reads the open tickets of one community in
-- the last days: index that instead of scanning every ticket of the window. Built
-- concurrently, so a large table keeps taking writes during a rolling upgrade.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tickets_community_idx
    ON tickets ((routing->>'community'), received_at DESC);
