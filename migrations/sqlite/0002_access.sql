-- Access control: users, projects and their members, robot accounts,
-- personal access tokens, and the audit log. Times are Unix milliseconds.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    admin         INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    INTEGER NOT NULL
);

-- A project owns every repository whose first path component is its name.
CREATE TABLE projects (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    public      INTEGER NOT NULL DEFAULT 0 CHECK (public IN (0, 1)),
    created_at  INTEGER NOT NULL
);

CREATE TABLE members (
    project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('guest', 'developer', 'maintainer', 'admin')),
    PRIMARY KEY (project_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members(user_id);

-- Robot accounts belong to one project and die with it. `created_by` is a
-- plain name, not a reference: the robot outlives the user who made it.
CREATE TABLE robots (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    -- Comma-separated actions, e.g. 'pull,push'.
    actions     TEXT NOT NULL,
    expires_at  INTEGER,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    disabled    INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1))
);
CREATE INDEX robots_by_project ON robots(project_id);

-- Personal access tokens. The id is random and travels inside the token the
-- user holds, so a presented token is found without scanning hashes.
CREATE TABLE access_tokens (
    id           TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    expires_at   INTEGER,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    UNIQUE (user_id, name)
) WITHOUT ROWID;

-- Append-only. AUTOINCREMENT so an id is never reused after the newest rows
-- are pruned: paging cursors (`id < ?`) stay valid.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    source      TEXT,
    action      TEXT NOT NULL,
    repository  TEXT,
    digest      TEXT,
    detail      TEXT,
    success     INTEGER NOT NULL CHECK (success IN (0, 1))
);
-- Each filter also serves the newest-first order (id DESC) of the page.
CREATE INDEX audit_by_actor ON audit(actor, id);
CREATE INDEX audit_by_action ON audit(action, id);
CREATE INDEX audit_by_repository ON audit(repository, id);
CREATE INDEX audit_by_at ON audit(at);
