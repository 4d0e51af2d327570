-- Set, in one transaction with the kind's `on_destroy` writes, when the actor is being destroyed (see
-- src/runtime/actor/lifecycle.rs): an activation that finds it set resumes the destruction instead of serving calls,
-- so a crash between accepting a destroy and deleting the file never brings the actor back.
ALTER TABLE _foundry_identity ADD COLUMN destroying INTEGER NOT NULL DEFAULT 0;
