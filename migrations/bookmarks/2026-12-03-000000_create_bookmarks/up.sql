-- One row per actor: what belongs to the shelf as a whole. `CHECK (id = 1)` makes a second row impossible, and the
-- row is inserted here, with the file: `Entity::load` runs read-only and cannot create it.
CREATE TABLE shelf (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    shared INTEGER NOT NULL DEFAULT 0
);
INSERT INTO shelf (id, shared) VALUES (1, 0);

CREATE TABLE bookmarks (
    id INTEGER PRIMARY KEY NOT NULL,
    url TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    -- Who shared it with this shelf (NULL: added by the owner).
    from_user TEXT,
    reminded INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
