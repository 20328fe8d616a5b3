-- Resends are recognised by time (README "Ordering and erasure"): each
-- remembered body hash gets the time it was last received, in a parallel
-- array (same length and order as recent_body_hashes). Rows from before
-- this migration take their state's last update as that time.
ALTER TABLE subject_state
    ADD COLUMN recent_body_received_at timestamptz[] NOT NULL DEFAULT '{}';
UPDATE subject_state
SET recent_body_received_at = array_fill(updated_at, ARRAY[cardinality(recent_body_hashes)])
WHERE cardinality(recent_body_hashes) > 0;

-- A removed LINA store keeps a removal key of its own (no personal data):
-- every event for the store ordered before it is stale, also after the
-- store is added again, and also for employees who had no row yet.
CREATE TABLE lina_store_removal (
    webhook uuid PRIMARY KEY,
    removed_event_at timestamptz NOT NULL,
    removed_event_id uuid NOT NULL,
    removed_at timestamptz NOT NULL DEFAULT now()
);
