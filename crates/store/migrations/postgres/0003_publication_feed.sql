-- The publication feed mirrors follow: every artifact gets a sequence number when object
-- storage first holds it. Numbers come from a one-row counter updated in the publishing
-- transaction, so the row lock orders commits: a reader that has seen number n can never
-- later find a number below n appear (on Postgres an identity column would allow that,
-- where sequence values are handed out before commit).
ALTER TABLE artifacts ADD COLUMN published_seq BIGINT;
CREATE UNIQUE INDEX artifacts_published_seq ON artifacts (published_seq);

CREATE TABLE publication_counter (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    last  BIGINT  NOT NULL
);

-- Artifacts already stored get numbers in the order they were verified.
UPDATE artifacts SET published_seq = numbered.n
FROM (
    SELECT hash, row_number() OVER (ORDER BY verified_at, hash) AS n
    FROM artifacts WHERE storage_key IS NOT NULL
) AS numbered
WHERE artifacts.hash = numbered.hash;

INSERT INTO publication_counter (id, last)
SELECT 1, COALESCE(MAX(published_seq), 0) FROM artifacts;
