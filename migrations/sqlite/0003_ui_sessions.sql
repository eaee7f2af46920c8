-- Web UI sessions that ended (logout) before their cookie expired. A row
-- lives until that expiry; signed cookies are otherwise self-contained.
CREATE TABLE ui_ended_sessions (
    id          TEXT PRIMARY KEY,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX ui_ended_sessions_by_expiry ON ui_ended_sessions(expires_at);
