-- Each version's content hash beside its item count, so that listing versions reads two
-- columns instead of loading every version (arbitration clarifications add versions often).
-- Versions stored before this have none; they are hashed when listed.
ALTER TABLE catalog_versions ADD COLUMN sha256 text;
