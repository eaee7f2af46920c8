-- Storage lifecycle: garbage collection, project policies (quotas, tag
-- immutability, untagged manifests, retention), scrub. The protocol that
-- makes garbage collection safe beside pushes is written in DESIGN.md
-- ("Garbage collection").

-- A blob's state: `live` (servable), `deleting` (a collection run, `gc_run`,
-- is removing its bytes; no link may be made to it until the row is gone),
-- `corrupt` (scrub found its bytes missing or not matching its digest: it is
-- never served, and a new upload replaces it). `touched_at` is the last time
-- an upload, a mount or a link made or used it (Unix ms).
ALTER TABLE blobs ADD COLUMN state TEXT NOT NULL DEFAULT 'live'
    CHECK (state IN ('live', 'deleting', 'corrupt'));
ALTER TABLE blobs ADD COLUMN touched_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN gc_run INTEGER;
UPDATE blobs SET touched_at = created_at;
CREATE INDEX blobs_not_live ON blobs(state, digest) WHERE state <> 'live';

-- A link's last use by an upload, a mount or a client asking whether the
-- repository has the blob (HEAD or GET, refreshed at most every half grace
-- period): an unreferenced link younger than the grace period is kept, so a
-- push between its blob uploads and its manifest loses nothing.
ALTER TABLE repo_blobs ADD COLUMN touched_at INTEGER NOT NULL DEFAULT 0;
UPDATE repo_blobs SET touched_at = created_at;

-- A manifest's last push or lookup by digest (refreshed at most every half
-- grace period): an untagged manifest younger than the grace period is kept,
-- so a client told that the registry has it (and so not pushing it again)
-- can still reference it from the index it pushes next.
ALTER TABLE manifests ADD COLUMN touched_at INTEGER NOT NULL DEFAULT 0;
UPDATE manifests SET touched_at = created_at;

-- The last pull of a tag (Unix ms), refreshed at most once a minute per tag.
ALTER TABLE tags ADD COLUMN pulled_at INTEGER;

-- Tags per project, for the tag quota.
ALTER TABLE project_stats ADD COLUMN tags INTEGER NOT NULL DEFAULT 0;
UPDATE project_stats SET tags = (SELECT COUNT(*) FROM tags t
    JOIN repositories r ON r.id = t.repo_id WHERE r.project = project_stats.project);

CREATE TRIGGER tags_project_insert AFTER INSERT ON tags
BEGIN
    UPDATE project_stats SET tags = tags + 1
    WHERE project = (SELECT project FROM repositories WHERE id = NEW.repo_id);
END;

CREATE TRIGGER tags_project_delete AFTER DELETE ON tags
BEGIN
    UPDATE project_stats SET tags = tags - 1
    WHERE project = (SELECT project FROM repositories WHERE id = OLD.repo_id);
END;

-- Garbage collection runs. At most one is requested or running at a time
-- (the partial unique index); a running one renews `heartbeat_at`, and one
-- whose heartbeat stopped (its process died) is marked failed by the next.
CREATE TABLE gc_runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    state         TEXT NOT NULL CHECK (state IN ('requested', 'running', 'succeeded', 'failed')),
    active        INTEGER GENERATED ALWAYS AS (CASE WHEN state IN ('requested', 'running') THEN 1 END) VIRTUAL,
    dry_run       INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
    requested_by  TEXT NOT NULL,
    requested_at  INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    heartbeat_at  INTEGER,
    holder        TEXT,
    phase         TEXT,
    -- Counts and bytes (JSON object), updated as the run goes.
    stats         TEXT NOT NULL DEFAULT '{}',
    error         TEXT
);
CREATE UNIQUE INDEX gc_runs_one_active ON gc_runs(active) WHERE active IS NOT NULL;

-- Per project (by name, like `project_stats`): quotas, tag immutability,
-- the untagged-manifest policy and retention rules. No row: no limits,
-- nothing immutable, untagged manifests kept, no retention.
CREATE TABLE project_policies (
    project             TEXT PRIMARY KEY,
    quota_bytes         INTEGER,
    quota_repositories  INTEGER,
    quota_tags          INTEGER,
    -- Untagged manifests are deleted this many days after their push
    -- (NULL: kept).
    untagged_days       INTEGER,
    -- JSON array of tag patterns (`v*`) whose tags are immutable.
    immutable_tags      TEXT NOT NULL DEFAULT '[]',
    -- JSON object of retention rules (see `metadata::Retention`).
    retention           TEXT NOT NULL DEFAULT '{}',
    updated_at          INTEGER NOT NULL
) WITHOUT ROWID;

-- The links a dry run would remove, so that it can count the blobs that
-- would go with them; cleared at the end of the run.
CREATE TABLE gc_dry_links (
    run      INTEGER NOT NULL,
    digest   TEXT NOT NULL,
    repo_id  INTEGER NOT NULL,
    PRIMARY KEY (run, digest, repo_id)
) WITHOUT ROWID;

-- Scrub runs: re-hash stored blobs. One at a time; `cursor` is the last
-- digest checked, so a run that stopped (its heartbeat did) is resumed
-- from there by the next. `problems` lists what was found (JSON array).
CREATE TABLE scrub_runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    state         TEXT NOT NULL CHECK (state IN ('requested', 'running', 'succeeded', 'failed')),
    active        INTEGER GENERATED ALWAYS AS (CASE WHEN state IN ('requested', 'running') THEN 1 END) VIRTUAL,
    requested_by  TEXT NOT NULL,
    requested_at  INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    heartbeat_at  INTEGER,
    cursor        TEXT,
    stats         TEXT NOT NULL DEFAULT '{}',
    problems      TEXT NOT NULL DEFAULT '[]',
    error         TEXT
);
CREATE UNIQUE INDEX scrub_runs_one_active ON scrub_runs(active) WHERE active IS NOT NULL;
