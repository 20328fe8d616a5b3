-- The LINA stores (webhooks) we registered: our tenants.
CREATE TABLE lina_webhook (
    uuid uuid PRIMARY KEY,
    label text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Employees who consented to share their master data with us, per store.
CREATE TABLE lina_employee (
    webhook uuid NOT NULL REFERENCES lina_webhook (uuid),
    user_uuid uuid NOT NULL,
    first_name text,
    last_name text,
    email text,
    bereich text,
    -- The whole call as LINA sent it (unknown fields included).
    data jsonb NOT NULL,
    consented_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (webhook, user_uuid)
);
