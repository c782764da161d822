-- Where each version's .crate is downloaded from, stored when the index line is ingested
-- (the index config.json's dl template, expanded), and handed to builders with their lease.
-- NULL for versions stored before; the next ingest of the crate fills it.
ALTER TABLE versions ADD COLUMN download_url TEXT;
