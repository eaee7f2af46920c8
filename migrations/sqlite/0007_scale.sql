-- Costs that stay flat however big the registry grows.
--
-- 1. Each repository's project (its name's first component) as a column with
--    an index, so what a caller may see is found from the projects it may
--    see (a user in one project among thousands reads that project's rows),
--    not by testing every repository.
-- 2. Usage kept as counters, updated by triggers in the transaction of the
--    write that changes it, so the UI's overview and project pages read one
--    row per project or repository instead of counting tags, summing blob
--    sizes and finding the last push on every view.

ALTER TABLE repositories ADD COLUMN project TEXT NOT NULL DEFAULT '';
UPDATE repositories SET project = CASE WHEN instr(name, '/') > 0
    THEN substr(name, 1, instr(name, '/') - 1) ELSE name END;
CREATE INDEX repositories_by_project ON repositories(project, name);

-- Public projects, found without reading the others.
CREATE INDEX projects_public ON projects(name) WHERE public = 1;

-- Per repository: manifests and tags held, bytes of the blobs it links (each
-- once), the last manifest or tag push (Unix ms).
CREATE TABLE repo_stats (
    repo_id     INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
    manifests   INTEGER NOT NULL DEFAULT 0,
    tags        INTEGER NOT NULL DEFAULT 0,
    bytes       INTEGER NOT NULL DEFAULT 0,
    last_push   INTEGER
);

-- Per project name (whether or not a project row exists): repositories
-- holding a manifest, bytes of the distinct blobs its repositories link, the
-- last push. `project_blobs` counts, per project, the repositories linking
-- each blob, so a layer shared by many repositories counts once.
CREATE TABLE project_stats (
    project       TEXT PRIMARY KEY,
    repositories  INTEGER NOT NULL DEFAULT 0,
    bytes         INTEGER NOT NULL DEFAULT 0,
    last_push     INTEGER
) WITHOUT ROWID;

CREATE TABLE project_blobs (
    project     TEXT NOT NULL,
    digest      TEXT NOT NULL,
    links       INTEGER NOT NULL,
    PRIMARY KEY (project, digest)
) WITHOUT ROWID;

-- What the registry holds today.
INSERT INTO repo_stats (repo_id, manifests, tags, bytes, last_push)
SELECT r.id,
    (SELECT COUNT(*) FROM manifests m WHERE m.repo_id = r.id),
    (SELECT COUNT(*) FROM tags t WHERE t.repo_id = r.id),
    (SELECT COALESCE(SUM(b.size), 0) FROM repo_blobs l JOIN blobs b ON b.digest = l.digest
        WHERE l.repo_id = r.id),
    (SELECT MAX(at) FROM (SELECT MAX(updated_at) AS at FROM tags WHERE repo_id = r.id
        UNION ALL SELECT MAX(created_at) FROM manifests WHERE repo_id = r.id))
FROM repositories r;

INSERT INTO project_blobs (project, digest, links)
SELECT r.project, l.digest, COUNT(*) FROM repo_blobs l JOIN repositories r ON r.id = l.repo_id
GROUP BY r.project, l.digest;

INSERT INTO project_stats (project, repositories, bytes, last_push)
SELECT r.project, SUM(s.manifests > 0),
    (SELECT COALESCE(SUM(b.size), 0) FROM project_blobs pb JOIN blobs b ON b.digest = pb.digest
        WHERE pb.project = r.project),
    MAX(s.last_push)
FROM repositories r JOIN repo_stats s ON s.repo_id = r.id GROUP BY r.project;

-- Keeping them: each trigger changes one or two rows, in the writer's
-- transaction. Deleting repositories (with their project) also deletes
-- their project's rows here, in the same transaction.

CREATE TRIGGER repositories_stats AFTER INSERT ON repositories
BEGIN
    INSERT INTO repo_stats (repo_id) VALUES (NEW.id);
    INSERT INTO project_stats (project) VALUES (NEW.project) ON CONFLICT DO NOTHING;
END;

CREATE TRIGGER manifests_stats_insert AFTER INSERT ON manifests
BEGIN
    UPDATE repo_stats SET manifests = manifests + 1,
        last_push = max(COALESCE(last_push, 0), NEW.created_at)
    WHERE repo_id = NEW.repo_id;
    UPDATE project_stats SET last_push = max(COALESCE(last_push, 0), NEW.created_at)
    WHERE project = (SELECT project FROM repositories WHERE id = NEW.repo_id);
END;

CREATE TRIGGER manifests_stats_delete AFTER DELETE ON manifests
BEGIN
    UPDATE repo_stats SET manifests = manifests - 1 WHERE repo_id = OLD.repo_id;
END;

-- A repository counts for its project while it holds a manifest.
CREATE TRIGGER repo_stats_holding AFTER UPDATE OF manifests ON repo_stats
WHEN (OLD.manifests > 0) <> (NEW.manifests > 0)
BEGIN
    UPDATE project_stats
    SET repositories = repositories + CASE WHEN NEW.manifests > 0 THEN 1 ELSE -1 END
    WHERE project = (SELECT project FROM repositories WHERE id = NEW.repo_id);
END;

CREATE TRIGGER tags_stats_insert AFTER INSERT ON tags
BEGIN
    UPDATE repo_stats SET tags = tags + 1,
        last_push = max(COALESCE(last_push, 0), NEW.updated_at)
    WHERE repo_id = NEW.repo_id;
    UPDATE project_stats SET last_push = max(COALESCE(last_push, 0), NEW.updated_at)
    WHERE project = (SELECT project FROM repositories WHERE id = NEW.repo_id);
END;

CREATE TRIGGER tags_stats_update AFTER UPDATE OF updated_at ON tags
BEGIN
    UPDATE repo_stats SET last_push = max(COALESCE(last_push, 0), NEW.updated_at)
    WHERE repo_id = NEW.repo_id;
    UPDATE project_stats SET last_push = max(COALESCE(last_push, 0), NEW.updated_at)
    WHERE project = (SELECT project FROM repositories WHERE id = NEW.repo_id);
END;

CREATE TRIGGER tags_stats_delete AFTER DELETE ON tags
BEGIN
    UPDATE repo_stats SET tags = tags - 1 WHERE repo_id = OLD.repo_id;
END;

CREATE TRIGGER repo_blobs_stats_insert AFTER INSERT ON repo_blobs
BEGIN
    UPDATE repo_stats SET bytes = bytes + (SELECT size FROM blobs WHERE digest = NEW.digest)
    WHERE repo_id = NEW.repo_id;
    -- The project's first link to this blob adds its bytes.
    UPDATE project_stats SET bytes = bytes + (SELECT size FROM blobs WHERE digest = NEW.digest)
    WHERE project = (SELECT project FROM repositories WHERE id = NEW.repo_id)
      AND NOT EXISTS (SELECT 1 FROM project_blobs pb WHERE pb.digest = NEW.digest
          AND pb.project = (SELECT project FROM repositories WHERE id = NEW.repo_id));
    INSERT INTO project_blobs (project, digest, links)
    SELECT project, NEW.digest, 1 FROM repositories WHERE id = NEW.repo_id
    ON CONFLICT (project, digest) DO UPDATE SET links = links + 1;
END;

CREATE TRIGGER repo_blobs_stats_delete AFTER DELETE ON repo_blobs
BEGIN
    UPDATE repo_stats SET bytes = bytes - (SELECT size FROM blobs WHERE digest = OLD.digest)
    WHERE repo_id = OLD.repo_id;
    UPDATE project_blobs SET links = links - 1
    WHERE digest = OLD.digest
      AND project = (SELECT project FROM repositories WHERE id = OLD.repo_id);
    -- The project's last link to this blob takes its bytes away.
    UPDATE project_stats SET bytes = bytes - (SELECT size FROM blobs WHERE digest = OLD.digest)
    WHERE project = (SELECT project FROM repositories WHERE id = OLD.repo_id)
      AND EXISTS (SELECT 1 FROM project_blobs pb WHERE pb.digest = OLD.digest
          AND pb.project = project_stats.project AND pb.links <= 0);
    DELETE FROM project_blobs WHERE digest = OLD.digest AND links <= 0
      AND project = (SELECT project FROM repositories WHERE id = OLD.repo_id);
END;

-- Repository search by substring: a trigram index of the names, so that a
-- search for a rare part of a name reads its matches, not every name.
CREATE VIRTUAL TABLE repository_names USING fts5(
    name, content = 'repositories', content_rowid = 'id', tokenize = 'trigram'
);
INSERT INTO repository_names (repository_names) VALUES ('rebuild');

CREATE TRIGGER repositories_names_insert AFTER INSERT ON repositories
BEGIN
    INSERT INTO repository_names (rowid, name) VALUES (NEW.id, NEW.name);
END;

CREATE TRIGGER repositories_names_delete AFTER DELETE ON repositories
BEGIN
    INSERT INTO repository_names (repository_names, rowid, name) VALUES ('delete', OLD.id, OLD.name);
END;
