-- One row per subject (a person as one sender knows them), holding no
-- personal data: the subject is a keyed hash (INTAKE_SUBJECT_HASH_KEY).
-- Every apply locks the row, so events for one person never interleave.
CREATE TABLE subject_state (
    subject_key bytea PRIMARY KEY,
    source text NOT NULL,
    -- Order key (event time, event id) of the newest event applied.
    -- (NULL until a first event is applied.)
    newest_event_at timestamptz,
    newest_event_id uuid,
    -- Keyed hashes of the last bodies applied, oldest first (bounded).
    recent_body_hashes bytea[] NOT NULL DEFAULT '{}',
    -- Set when the subject's data was erased: the row is then a tombstone.
    erased_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What an erasure leaves behind: when, which source, why. No personal data.
CREATE TABLE erasure_log (
    id bigserial PRIMARY KEY,
    subject_key bytea NOT NULL,
    source text NOT NULL,
    cause text NOT NULL,
    erased_at timestamptz NOT NULL DEFAULT now()
);
