-- Publishing backs off per artifact: one whose blob could not be fetched (its attesters are
-- gone) is tried again only after `publish_after` (unix ms), later after each failure, and
-- never holds up the artifacts verified after it.
ALTER TABLE artifacts ADD COLUMN publish_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE artifacts ADD COLUMN publish_after INTEGER NOT NULL DEFAULT 0;

-- Where each builder serves blobs, as its last hello said, so a restarted coordinator can
-- fetch a verified artifact from builders that have not said hello to it again yet.
ALTER TABLE builders ADD COLUMN blob_address TEXT;
