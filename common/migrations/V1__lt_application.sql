-- Applications received from Luotettava Työntekijä, one row per person.
-- The partner's other systems read this table: plain names on purpose.
CREATE TABLE lt_application (
    mydatashare_user_id text PRIMARY KEY,
    email text NOT NULL,
    status text NOT NULL,
    -- The whole profile exactly as LT sent it.
    profile jsonb NOT NULL,
    first_received_at timestamptz NOT NULL,
    last_received_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
