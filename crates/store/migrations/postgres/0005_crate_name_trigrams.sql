-- Crate search looks for names containing the typed text anywhere ("codec" finds
-- "tokio-codec"), which no B-tree index answers: every search read the whole crates table.
-- pg_trgm's GIN index over the lowered names finds the candidates of a `LIKE '%text%'` for
-- any text of three characters or more.
--
-- Names are ASCII, so they are lowered in the "C" collation: several times cheaper than the
-- database's (possibly UTF-8) one, which matters when a short text scans the table. The index
-- takes new names at once (`fastupdate = off`): with GIN's default, names inserted since the
-- last vacuum wait in a pending list that every search reads in full, and the planner
-- then prefers scanning the table.
--
-- pg_trgm ships with PostgreSQL (contrib) and is a trusted extension, so the database owner
-- may create it. Where it cannot be created, the migration still succeeds and search scans
-- the table as before: slower, never wrong.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pg_trgm is not available (%): crate search will scan the crates table', SQLERRM;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX crates_name_trigrams ON crates
            USING gin (lower(name COLLATE "C") gin_trgm_ops) WITH (fastupdate = off);
    END IF;
END
$$;
