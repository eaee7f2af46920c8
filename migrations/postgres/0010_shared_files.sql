-- Files every replica must hold the same copy of (token signing keys, the
-- web UI's session key), by their path under the data directory.
CREATE TABLE shared_files (
    name        TEXT PRIMARY KEY,
    content     BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);
