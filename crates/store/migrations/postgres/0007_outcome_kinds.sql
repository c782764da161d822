-- Two more outcome kinds, from the one outcome vocabulary (buildsrs-domain):
-- 'disk_limit' (the build wrote more than the node allows; a build failure) and
-- 'needs_newer_toolchain' (the builder's Rust is too old; like 'node_error', never counted).
-- The two CHECK constraints that name outcome kinds were named by Postgres; find them by
-- what they say and replace them with named ones.
DO $$
DECLARE
    constraint_name text;
BEGIN
    FOR constraint_name IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'attestations'::regclass AND contype = 'c'
          AND pg_get_constraintdef(oid) LIKE '%node_error%'
    LOOP
        EXECUTE format('ALTER TABLE attestations DROP CONSTRAINT %I', constraint_name);
    END LOOP;
END $$;

ALTER TABLE attestations ADD CONSTRAINT attestations_outcome_kind
    CHECK (outcome IN ('built', 'no_binaries', 'build_failed', 'timed_out', 'out_of_memory',
                       'output_too_large', 'disk_limit', 'source_checksum_mismatch',
                       'needs_newer_toolchain', 'node_error'));
ALTER TABLE attestations ADD CONSTRAINT attestations_builder_faults_never_count
    CHECK (outcome NOT IN ('node_error', 'needs_newer_toolchain') OR NOT counted);
