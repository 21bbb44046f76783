-- Classification's decision, kept on the ticket (additive: older replicas ignore it).
ALTER TABLE tickets ADD COLUMN IF NOT EXISTS routing jsonb;
