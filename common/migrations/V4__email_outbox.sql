-- Acknowledgement e-mails to send: one row per new application, written in
-- the same transaction as the application (transactional outbox). The
-- e-mail job carries only the row's id. A sent row keeps no address; an
-- erasure deletes the person's pending and failed rows.
CREATE TABLE email_outbox (
    id uuid PRIMARY KEY,
    -- Whose (keyed hash, as in subject_state).
    subject_key bytea NOT NULL,
    template text NOT NULL,
    language text NOT NULL,
    -- Personal data, kept only until the e-mail is sent.
    recipient text,
    first_name text,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    -- A reason code and bounded text, never an address.
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- When its job was last published (NULL: never, the sweeper will).
    enqueued_at timestamptz,
    sent_at timestamptz
);

CREATE INDEX email_outbox_subject ON email_outbox (subject_key);
CREATE INDEX email_outbox_pending ON email_outbox (created_at) WHERE status = 'pending';
