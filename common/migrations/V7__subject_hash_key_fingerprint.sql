-- Settings the database itself must remember. The first is the fingerprint
-- of INTAKE_SUBJECT_HASH_KEY (a keyed hash of a fixed text, computed by the
-- worker): a worker or admin command with another key would hash every
-- person to someone new and silently forget their order and tombstone, so
-- it is refused. No personal data.
CREATE TABLE intake_setting (
    name text PRIMARY KEY,
    value bytea NOT NULL,
    set_at timestamptz NOT NULL DEFAULT now()
);
