-- The ordering rules no longer depend on processing order (README
-- "Ordering and erasure"): a subject keeps its newest write and its newest
-- erasure apart, the first key of the newest write's message (an LT resend
-- counts from the first time its body was received), and its recent LT
-- writes with their keys, in one bytea (88 bytes each: body hash, receipt,
-- key and first key, microseconds big-endian and UUIDs).
--
-- Old workers read the columns dropped here and so fail instead of
-- deciding by the old rules: stop every worker of an earlier version
-- before starting this one.
ALTER TABLE subject_state
    ADD COLUMN write_at timestamptz,
    ADD COLUMN write_id uuid,
    ADD COLUMN write_origin_at timestamptz,
    ADD COLUMN write_origin_id uuid,
    ADD COLUMN write_body bytea,
    ADD COLUMN erasure_at timestamptz,
    ADD COLUMN erasure_id uuid,
    ADD COLUMN recent_writes bytea NOT NULL DEFAULT '\x';

UPDATE subject_state
SET write_at = newest_event_at, write_id = newest_event_id,
    write_origin_at = newest_event_at, write_origin_id = newest_event_id
WHERE erased_at IS NULL AND newest_event_at IS NOT NULL;

UPDATE subject_state
SET erasure_at = newest_event_at, erasure_id = newest_event_id
WHERE erased_at IS NOT NULL AND newest_event_at IS NOT NULL;

-- The remembered bodies become writes keyed by their last receipt (the
-- nil id sorts them before any event received at the same microsecond).
UPDATE subject_state AS s
SET recent_writes = (
    SELECT coalesce(string_agg(
        b.hash || int8send(b.us) || int8send(b.us)
            || uuid_send('00000000-0000-0000-0000-000000000000')
            || int8send(b.us) || uuid_send('00000000-0000-0000-0000-000000000000'),
        ''::bytea ORDER BY b.n), '\x')
    FROM (
        SELECT u.hash, (extract(epoch FROM u.received_at) * 1000000)::bigint AS us, u.n
        FROM unnest(s.recent_body_hashes, s.recent_body_received_at)
            WITH ORDINALITY AS u(hash, received_at, n)
        WHERE length(u.hash) = 32 AND u.received_at IS NOT NULL
    ) AS b)
WHERE cardinality(s.recent_body_hashes) > 0;

ALTER TABLE subject_state
    DROP COLUMN recent_body_hashes,
    DROP COLUMN recent_body_received_at;
