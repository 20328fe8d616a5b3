-- Profiles and LINA calls of a few KiB are the common case. PostgreSQL
-- compresses any row over about 2 KiB with pglz by default, and under load
-- that compression was about a tenth of PostgreSQL's CPU (perf, issue 8).
-- Rows up to a page now stay inline and uncompressed; larger values are
-- compressed with lz4 (far cheaper than pglz) where the server has it.
ALTER TABLE lt_application SET (toast_tuple_target = 8160);
ALTER TABLE lina_employee SET (toast_tuple_target = 8160);

DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_settings
        WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)
    ) THEN
        ALTER TABLE lt_application ALTER COLUMN profile SET COMPRESSION lz4;
        ALTER TABLE lina_employee ALTER COLUMN data SET COMPRESSION lz4;
    END IF;
END
$$;
