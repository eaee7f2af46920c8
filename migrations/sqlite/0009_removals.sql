-- A counter of repository deletions, by any process on the database (the
-- server, the CLI's `berth repo del`, a project's deletion, a collection
-- run): a server that sees it move drops its cached lookups at once,
-- instead of serving a deleted repository's manifests until they age out.
CREATE TABLE removals (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO removals (id, value) VALUES (1, 0);
CREATE TRIGGER repositories_removals AFTER DELETE ON repositories
BEGIN UPDATE removals SET value = value + 1; END;
