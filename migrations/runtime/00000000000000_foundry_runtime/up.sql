-- Tables the runtime keeps in every actor database. Kind migrations must not use the `_foundry_` prefix.

-- Which actor this file belongs to: guards against two long keys hashing to one file name.
CREATE TABLE _foundry_identity (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    -- Random per database file: a sender recreated from scratch restarts its sequence under a new incarnation.
    incarnation TEXT NOT NULL
);

-- Durable cross-actor messages written in the sender's mutation transaction, delivered in `seq` order.
CREATE TABLE _foundry_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    target_kind TEXT NOT NULL,
    target_key TEXT NOT NULL,
    message TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL
);

-- Deliveries the receiver refused (a domain error): kept for inspection instead of retried forever.
CREATE TABLE _foundry_dead_letters (
    seq INTEGER PRIMARY KEY NOT NULL,
    target_kind TEXT NOT NULL,
    target_key TEXT NOT NULL,
    message TEXT NOT NULL,
    payload TEXT NOT NULL,
    error TEXT NOT NULL,
    failed_at_ms INTEGER NOT NULL
);

-- Highest outbox sequence applied per sender: makes redelivery after a crash a no-op.
CREATE TABLE _foundry_inbox (
    source_kind TEXT NOT NULL,
    source_key TEXT NOT NULL,
    source_incarnation TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (source_kind, source_key)
) WITHOUT ROWID;

-- Topic versions survive restarts so a subscriber never sees a version go backwards.
CREATE TABLE _foundry_topics (
    topic TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
