-- Who runs each builder key: a short name the admin gives at approval (1 to 64 of ASCII
-- letters, digits, `._-`, checked by buildsrs_domain::Operator before it is written). Keys
-- of one operator count once toward a quorum. NULL: the key is its own operator, as every
-- builder approved before this migration is. A key is not leased a task another key of its
-- operator holds or has a counted result for (the leasing query, ops/lease.rs).
ALTER TABLE builders ADD COLUMN operator TEXT;

-- Builder names now follow one rule (buildsrs_domain::BuilderName: 1 to 64 of ASCII
-- letters, digits, `._-`), so that no name can add a word or a line to the served keyring.
-- A stored name that breaks it is replaced by one that does not; the builder's next hello
-- sets its name again (and is refused, saying why, if it still breaks the rule).
UPDATE builders SET name = 'builder-' || id
WHERE name = '' OR length(name) > 64 OR name GLOB '*[^A-Za-z0-9._-]*';
