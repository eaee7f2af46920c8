-- The PostgreSQL schema: the final state of migrations/sqlite/0001..0009,
-- table for table and column for column (same names, same order), so that
-- both backends' queries read alike. SQLite's INTEGER is BIGINT here (ids
-- BIGSERIAL), its BLOB is BYTEA; flags stay BIGINT 0/1 with the same CHECKs.
-- Times are Unix milliseconds. Text compares and sorts by bytes (COLLATE
-- "C"), as in SQLite, whatever the database's locale: page cursors
-- (`name > $1 ORDER BY name`) and listings agree with the other backend.
--
-- Unlike SQLite, several replicas write at once. The usage counters are
-- kept by triggers written so that two concurrent writers cannot both
-- decide they made "the first link" of a blob: the decision is the result of
-- an upsert on `project_blobs`, which PostgreSQL serialises on that row.

-- Core registry metadata: repositories, blob links, manifests, tags, uploads.
-- `project` is the name's first component.
CREATE TABLE repositories (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    project     TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX repositories_by_project ON repositories(project, name);

-- Repository search by substring (SQLite's `repository_names` trigram
-- table): a trigram index serves `name LIKE '%part%'`, so a search for a
-- rare part of a name reads its matches, not every name. pg_trgm is a
-- trusted extension: the database's owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX repository_names ON repositories USING gin (name gin_trgm_ops);

-- Every committed blob, once, whatever the number of repositories using it.
-- `state`: `live` (servable), `deleting` (collection run `gc_run` is
-- removing its bytes; no link may be made to it until the row is gone),
-- `corrupt` (scrub found its bytes missing or wrong: never served, a new
-- upload replaces it). `touched_at`: last upload, mount or link.
CREATE TABLE blobs (
    digest      TEXT COLLATE "C" PRIMARY KEY,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    state       TEXT COLLATE "C" NOT NULL DEFAULT 'live' CHECK (state IN ('live', 'deleting', 'corrupt')),
    touched_at  BIGINT NOT NULL DEFAULT 0,
    gc_run      BIGINT
);
CREATE INDEX blobs_not_live ON blobs(state, digest) WHERE state <> 'live';

-- What each repository may serve; `touched_at` is the link's last use.
CREATE TABLE repo_blobs (
    repo_id     BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest      TEXT COLLATE "C" NOT NULL REFERENCES blobs(digest),
    created_at  BIGINT NOT NULL,
    touched_at  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX repo_blobs_by_digest ON repo_blobs(digest);

CREATE TABLE manifests (
    repo_id       BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest        TEXT COLLATE "C" NOT NULL,
    media_type    TEXT COLLATE "C" NOT NULL,
    artifact_type TEXT COLLATE "C",
    subject       TEXT COLLATE "C",
    annotations   TEXT COLLATE "C",
    size          BIGINT NOT NULL,
    content       BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    touched_at    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX manifests_by_subject ON manifests(repo_id, subject) WHERE subject IS NOT NULL;

-- Edges from a manifest to the blobs (kind 0) and manifests (kind 1) it
-- references: what garbage collection marks from.
CREATE TABLE manifest_refs (
    repo_id         BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    manifest_digest TEXT COLLATE "C" NOT NULL,
    child_digest    TEXT COLLATE "C" NOT NULL,
    kind            BIGINT NOT NULL,
    PRIMARY KEY (repo_id, manifest_digest, kind, child_digest)
);

-- `pulled_at`: the last pull, refreshed at most once a minute per tag.
CREATE TABLE tags (
    repo_id     BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    name        TEXT COLLATE "C" NOT NULL,
    digest      TEXT COLLATE "C" NOT NULL,
    updated_at  BIGINT NOT NULL,
    pulled_at   BIGINT,
    PRIMARY KEY (repo_id, name)
);
CREATE INDEX tags_by_digest ON tags(repo_id, digest);

CREATE TABLE uploads (
    id          TEXT COLLATE "C" PRIMARY KEY,
    repo_id     BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL
);

-- Access control: users, projects and their members, robot accounts,
-- personal access tokens, and the audit log. `generation` is bumped by
-- every change that must end the tokens and sessions derived from an
-- account.
CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT COLLATE "C" NOT NULL UNIQUE,
    password_hash TEXT COLLATE "C" NOT NULL,
    admin         BIGINT NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
    disabled      BIGINT NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    BIGINT NOT NULL,
    generation    BIGINT NOT NULL DEFAULT 0
);

-- A project owns every repository whose first path component is its name.
CREATE TABLE projects (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    public      BIGINT NOT NULL DEFAULT 0 CHECK (public IN (0, 1)),
    created_at  BIGINT NOT NULL
);
CREATE INDEX projects_public ON projects(name) WHERE public = 1;

CREATE TABLE members (
    project_id  BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        TEXT COLLATE "C" NOT NULL CHECK (role IN ('guest', 'developer', 'maintainer', 'admin')),
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX members_by_user ON members(user_id);

-- Robot accounts belong to one project and die with it. `created_by` is a
-- plain name, not a reference: the robot outlives the user who made it.
CREATE TABLE robots (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    secret_hash TEXT COLLATE "C" NOT NULL,
    project_id  BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    -- Comma-separated actions, e.g. 'pull,push'.
    actions     TEXT COLLATE "C" NOT NULL,
    expires_at  BIGINT,
    created_by  TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    disabled    BIGINT NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    generation  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX robots_by_project ON robots(project_id);

-- Personal access tokens. The id is random and travels inside the token the
-- user holds, so a presented token is found without scanning hashes.
CREATE TABLE access_tokens (
    id           TEXT COLLATE "C" PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT COLLATE "C" NOT NULL,
    secret_hash  TEXT COLLATE "C" NOT NULL,
    expires_at   BIGINT,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    UNIQUE (user_id, name)
);

-- Append-only. A sequence never hands out an id twice, so paging cursors
-- (`id < $1`) stay valid after the newest rows are pruned.
CREATE TABLE audit (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT COLLATE "C" NOT NULL,
    source      TEXT COLLATE "C",
    action      TEXT COLLATE "C" NOT NULL,
    repository  TEXT COLLATE "C",
    digest      TEXT COLLATE "C",
    detail      TEXT COLLATE "C",
    success     BIGINT NOT NULL CHECK (success IN (0, 1))
);
-- Each filter also serves the newest-first order (id DESC) of the page.
CREATE INDEX audit_by_actor ON audit(actor, id);
CREATE INDEX audit_by_action ON audit(action, id);
CREATE INDEX audit_by_repository ON audit(repository, id);
CREATE INDEX audit_by_at ON audit(at);

-- Web UI sessions that ended (logout) before their cookie expired.
CREATE TABLE ui_ended_sessions (
    id          TEXT COLLATE "C" PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX ui_ended_sessions_by_expiry ON ui_ended_sessions(expires_at);

-- One counter bumped by every change to access control, whichever replica
-- or CLI makes it: a server checks it before trusting what it cached.
CREATE TABLE access_generation (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO access_generation (id, value) VALUES (1, 0);

CREATE FUNCTION access_generation_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE access_generation SET value = value + 1;
    RETURN NULL;
END $$;

CREATE TRIGGER users_bump AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION access_generation_bump();
CREATE TRIGGER projects_bump AFTER INSERT OR UPDATE OR DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION access_generation_bump();
CREATE TRIGGER members_bump AFTER INSERT OR UPDATE OR DELETE ON members
    FOR EACH ROW EXECUTE FUNCTION access_generation_bump();
CREATE TRIGGER robots_bump AFTER INSERT OR UPDATE OR DELETE ON robots
    FOR EACH ROW EXECUTE FUNCTION access_generation_bump();
-- A recorded use (last_used_at) changes no right: not a bump.
CREATE TRIGGER access_tokens_update_bump AFTER UPDATE OF secret_hash, expires_at, user_id
    ON access_tokens FOR EACH ROW EXECUTE FUNCTION access_generation_bump();
CREATE TRIGGER access_tokens_delete_bump AFTER DELETE ON access_tokens
    FOR EACH ROW EXECUTE FUNCTION access_generation_bump();

-- A counter of repository deletions: a server that sees it move drops its
-- cached lookups at once.
CREATE TABLE removals (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO removals (id, value) VALUES (1, 0);

CREATE FUNCTION removals_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE removals SET value = value + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER repositories_removals AFTER DELETE ON repositories
    FOR EACH ROW EXECUTE FUNCTION removals_bump();

-- Usage counters, kept by triggers in the transaction of the write that
-- changes them. Per repository: manifests and tags held, bytes of the blobs
-- it links (each once), the last manifest or tag push.
CREATE TABLE repo_stats (
    repo_id     BIGINT PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
    manifests   BIGINT NOT NULL DEFAULT 0,
    tags        BIGINT NOT NULL DEFAULT 0,
    bytes       BIGINT NOT NULL DEFAULT 0,
    last_push   BIGINT
);

-- Per project name (whether or not a project row exists): repositories
-- holding a manifest, bytes of the distinct blobs its repositories link, the
-- last push, tags (for the tag quota). `project_blobs` counts, per project,
-- the repositories linking each blob, so a shared layer counts once.
CREATE TABLE project_stats (
    project       TEXT COLLATE "C" PRIMARY KEY,
    repositories  BIGINT NOT NULL DEFAULT 0,
    bytes         BIGINT NOT NULL DEFAULT 0,
    last_push     BIGINT,
    tags          BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE project_blobs (
    project     TEXT COLLATE "C" NOT NULL,
    digest      TEXT COLLATE "C" NOT NULL,
    links       BIGINT NOT NULL,
    PRIMARY KEY (project, digest)
);

-- A deleted repository's cascaded rows find no `repositories` row any more,
-- so they change no project counter (as in SQLite): deleting repositories
-- also deletes their project's counters, in the same transaction.
CREATE FUNCTION repositories_stats() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO repo_stats (repo_id) VALUES (NEW.id);
    INSERT INTO project_stats (project) VALUES (NEW.project) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER repositories_stats AFTER INSERT ON repositories
    FOR EACH ROW EXECUTE FUNCTION repositories_stats();

CREATE FUNCTION manifests_stats() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE repo_stats SET manifests = manifests + 1,
            last_push = GREATEST(COALESCE(last_push, 0), NEW.created_at)
        WHERE repo_id = NEW.repo_id;
        UPDATE project_stats SET last_push = GREATEST(COALESCE(last_push, 0), NEW.created_at)
        WHERE project = (SELECT project FROM repositories WHERE id = NEW.repo_id);
    ELSE
        UPDATE repo_stats SET manifests = manifests - 1 WHERE repo_id = OLD.repo_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER manifests_stats AFTER INSERT OR DELETE ON manifests
    FOR EACH ROW EXECUTE FUNCTION manifests_stats();

-- A repository counts for its project while it holds a manifest.
CREATE FUNCTION repo_stats_holding() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE project_stats
    SET repositories = repositories + CASE WHEN NEW.manifests > 0 THEN 1 ELSE -1 END
    WHERE project = (SELECT project FROM repositories WHERE id = NEW.repo_id);
    RETURN NULL;
END $$;
CREATE TRIGGER repo_stats_holding AFTER UPDATE OF manifests ON repo_stats
    FOR EACH ROW WHEN ((OLD.manifests > 0) <> (NEW.manifests > 0))
    EXECUTE FUNCTION repo_stats_holding();

CREATE FUNCTION tags_stats() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE repo_stats SET tags = tags - 1 WHERE repo_id = OLD.repo_id;
        UPDATE project_stats SET tags = tags - 1
        WHERE project = (SELECT project FROM repositories WHERE id = OLD.repo_id);
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        UPDATE repo_stats SET tags = tags + 1,
            last_push = GREATEST(COALESCE(last_push, 0), NEW.updated_at)
        WHERE repo_id = NEW.repo_id;
        UPDATE project_stats SET tags = tags + 1,
            last_push = GREATEST(COALESCE(last_push, 0), NEW.updated_at)
        WHERE project = (SELECT project FROM repositories WHERE id = NEW.repo_id);
    ELSE
        UPDATE repo_stats SET last_push = GREATEST(COALESCE(last_push, 0), NEW.updated_at)
        WHERE repo_id = NEW.repo_id;
        UPDATE project_stats SET last_push = GREATEST(COALESCE(last_push, 0), NEW.updated_at)
        WHERE project = (SELECT project FROM repositories WHERE id = NEW.repo_id);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER tags_stats AFTER INSERT OR DELETE OR UPDATE OF updated_at ON tags
    FOR EACH ROW EXECUTE FUNCTION tags_stats();

-- The project's first link to a blob adds its bytes, its last link takes
-- them away; "first" and "last" are what the upsert on the project's
-- `project_blobs` row returns, which concurrent writers see one at a time.
-- Every trigger locks `repo_stats` before `project_stats`, and
-- `project_stats` before `project_blobs`: a sweep deleting links of one
-- repository and a push linking into another of the same project wait for
-- each other instead of deadlocking.
CREATE FUNCTION repo_blobs_stats() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    blob_size BIGINT;
    repo_project TEXT;
    remaining BIGINT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT size INTO blob_size FROM blobs WHERE digest = NEW.digest;
        UPDATE repo_stats SET bytes = bytes + blob_size WHERE repo_id = NEW.repo_id;
        SELECT project INTO repo_project FROM repositories WHERE id = NEW.repo_id;
        IF repo_project IS NULL THEN
            RETURN NULL;
        END IF;
        PERFORM 1 FROM project_stats WHERE project = repo_project FOR UPDATE;
        INSERT INTO project_blobs AS pb (project, digest, links)
        VALUES (repo_project, NEW.digest, 1)
        ON CONFLICT (project, digest) DO UPDATE SET links = pb.links + 1
        RETURNING links INTO remaining;
        IF remaining = 1 THEN
            UPDATE project_stats SET bytes = bytes + blob_size WHERE project = repo_project;
        END IF;
    ELSE
        SELECT size INTO blob_size FROM blobs WHERE digest = OLD.digest;
        UPDATE repo_stats SET bytes = bytes - blob_size WHERE repo_id = OLD.repo_id;
        SELECT project INTO repo_project FROM repositories WHERE id = OLD.repo_id;
        IF repo_project IS NULL THEN
            RETURN NULL;
        END IF;
        PERFORM 1 FROM project_stats WHERE project = repo_project FOR UPDATE;
        UPDATE project_blobs SET links = links - 1
        WHERE project = repo_project AND digest = OLD.digest
        RETURNING links INTO remaining;
        IF remaining IS NOT NULL AND remaining <= 0 THEN
            UPDATE project_stats SET bytes = bytes - blob_size WHERE project = repo_project;
            DELETE FROM project_blobs WHERE project = repo_project AND digest = OLD.digest;
        END IF;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER repo_blobs_stats AFTER INSERT OR DELETE ON repo_blobs
    FOR EACH ROW EXECUTE FUNCTION repo_blobs_stats();

-- Garbage collection runs. At most one is requested or running at a time
-- (the partial unique index); a running one renews `heartbeat_at`, and one
-- whose heartbeat stopped (its process died) is marked failed by the next.
CREATE TABLE gc_runs (
    id            BIGSERIAL PRIMARY KEY,
    state         TEXT COLLATE "C" NOT NULL CHECK (state IN ('requested', 'running', 'succeeded', 'failed')),
    active        BIGINT GENERATED ALWAYS AS (CASE WHEN state IN ('requested', 'running') THEN 1 END) STORED,
    dry_run       BIGINT NOT NULL CHECK (dry_run IN (0, 1)),
    requested_by  TEXT COLLATE "C" NOT NULL,
    requested_at  BIGINT NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT,
    heartbeat_at  BIGINT,
    holder        TEXT COLLATE "C",
    phase         TEXT COLLATE "C",
    -- Counts and bytes (JSON object), updated as the run goes.
    stats         TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    error         TEXT COLLATE "C"
);
CREATE UNIQUE INDEX gc_runs_one_active ON gc_runs(active) WHERE active IS NOT NULL;

-- Per project (by name, like `project_stats`): quotas, tag immutability,
-- the untagged-manifest policy and retention rules. No row: no limits.
CREATE TABLE project_policies (
    project             TEXT COLLATE "C" PRIMARY KEY,
    quota_bytes         BIGINT,
    quota_repositories  BIGINT,
    quota_tags          BIGINT,
    -- Untagged manifests are deleted this many days after their push
    -- (NULL: kept).
    untagged_days       BIGINT,
    -- JSON array of tag patterns (`v*`) whose tags are immutable.
    immutable_tags      TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    -- JSON object of retention rules (see `metadata::Retention`).
    retention           TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    updated_at          BIGINT NOT NULL
);

-- The links a dry run would remove, so that it can count the blobs that
-- would go with them; cleared at the end of the run.
CREATE TABLE gc_dry_links (
    run      BIGINT NOT NULL,
    digest   TEXT COLLATE "C" NOT NULL,
    repo_id  BIGINT NOT NULL,
    PRIMARY KEY (run, digest, repo_id)
);

-- Scrub runs: re-hash stored blobs. One at a time; `cursor` is the last
-- digest checked, so a run that stopped is resumed from there by the next.
-- `problems` lists what was found (JSON array).
CREATE TABLE scrub_runs (
    id            BIGSERIAL PRIMARY KEY,
    state         TEXT COLLATE "C" NOT NULL CHECK (state IN ('requested', 'running', 'succeeded', 'failed')),
    active        BIGINT GENERATED ALWAYS AS (CASE WHEN state IN ('requested', 'running') THEN 1 END) STORED,
    requested_by  TEXT COLLATE "C" NOT NULL,
    requested_at  BIGINT NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT,
    heartbeat_at  BIGINT,
    cursor        TEXT COLLATE "C",
    stats         TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    problems      TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    error         TEXT COLLATE "C"
);
CREATE UNIQUE INDEX scrub_runs_one_active ON scrub_runs(active) WHERE active IS NOT NULL;
