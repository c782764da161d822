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

-- The operator class is named with the extension's schema, wherever it was installed.
DO $$
DECLARE
    trgm_schema TEXT;
BEGIN
    SELECT n.nspname INTO trgm_schema FROM pg_extension e
        JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm';
    IF trgm_schema IS NOT NULL THEN
        EXECUTE format('CREATE INDEX crates_name_trigrams ON crates '
            'USING gin (lower(name COLLATE "C") %I.gin_trgm_ops) WITH (fastupdate = off)',
            trgm_schema);
    END IF;
END
$$;

-- Nothing reads names through lower(name) any more.
DROP INDEX crates_lower_name;
