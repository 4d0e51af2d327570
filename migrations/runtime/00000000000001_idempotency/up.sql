-- Idempotency keys of creating requests, recorded in the transaction of the creation they stand for (see
-- src/runtime/idempotency.rs). One row per (scope, key): the scope names the caller and the operation.
CREATE TABLE _foundry_idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    -- SHA-256 of the request the key was first used with: another request under the same key is refused.
    fingerprint TEXT NOT NULL,
    -- 'pending': reserved while a step outside this database runs (a sandbox process starting); 'created': done.
    state TEXT NOT NULL CHECK (state IN ('pending', 'created')),
    -- The creation's result (JSON), written with it; NULL while pending.
    output TEXT,
    -- The route's whole answer (JSON `{status, body}`), once it was given: a retry gets exactly this.
    answer TEXT,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;

-- Expiry sweeps read the oldest rows first.
CREATE INDEX _foundry_idempotency_age ON _foundry_idempotency (created_at_ms);
