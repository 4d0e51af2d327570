-- Durable schedules (alarms) of the actor itself, written in a mutation's transaction (see src/runtime/schedule.rs).
-- When due, the runtime applies `message` (a kind's `Scheduled` type by its wire name, `payload` its JSON) as a
-- mutation of this actor and removes the row, or moves it on by `every_ms`, in that same transaction.
CREATE TABLE _foundry_schedules (
    -- AUTOINCREMENT: an id is never reused, so cancelling an id that already fired never cancels a newer schedule.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message TEXT NOT NULL,
    payload TEXT NOT NULL,
    -- Unix milliseconds (wall clock: it must mean the same after a restart).
    due_at_ms INTEGER NOT NULL,
    -- NULL: fires once; otherwise the period of a repeating schedule.
    every_ms INTEGER,
    -- Failed attempts in a row (the handler refused or panicked): the next one waits longer.
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at_ms INTEGER NOT NULL
);

-- The actor arms its timer for the earliest row, and fires rows in due order.
CREATE INDEX _foundry_schedules_due ON _foundry_schedules (due_at_ms, id);
