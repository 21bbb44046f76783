-- The responsibility catalog and the classifier's training examples, shared by every process:
-- versions are numbered here (v1, v2, …), never rewritten; one row names the active version;
-- examples (arbitration rulings, dispatchers' reclassifications) are only ever appended.
CREATE TABLE catalog_versions (
    n           integer PRIMARY KEY CHECK (n > 0),
    body        text NOT NULL,
    items       integer NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE catalog_active (
    only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    n            integer NOT NULL REFERENCES catalog_versions (n),
    activated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE training_examples (
    id          bigserial PRIMARY KEY,
    text        text NOT NULL,
    label       text NOT NULL,
    extra       jsonb NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT now()
);
