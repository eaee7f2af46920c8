-- Credential generations: bumped by every change that must end the refresh
-- tokens and web sessions derived from an account (password, admin flag,
-- disabled). Tokens and sessions carry the account id and the generation
-- they were issued under, so a re-created account of the same name (a new
-- id) or a changed one (a new generation) inherits none of them.
ALTER TABLE users ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE robots ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;

-- One counter bumped by every change to access control, whichever process
-- makes it (the CLI writes this file while the server runs): a server checks
-- it before trusting what it cached (verified passwords, roles), so such a
-- change applies at once. Bumping it costs a write in the same transaction.
CREATE TABLE access_generation (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO access_generation (id, value) VALUES (1, 0);

CREATE TRIGGER users_insert_bump AFTER INSERT ON users
BEGIN UPDATE access_generation SET value = value + 1; END;
CREATE TRIGGER users_update_bump AFTER UPDATE ON users
BEGIN UPDATE access_generation SET value = value + 1; END;
CREATE TRIGGER users_delete_bump AFTER DELETE ON users
BEGIN UPDATE access_generation SET value = value + 1; END;
CREATE TRIGGER projects_insert_bump AFTER INSERT ON projects
BEGIN UPDATE access_generation SET value = value + 1; END;
CREATE TRIGGER projects_update_bump AFTER UPDATE ON projects
BEGIN UPDATE access_generation SET value = value + 1; END;
CREATE TRIGGER projects_delete_bump AFTER DELETE ON projects
BEGIN UPDATE access_generation SET value = value + 1; END;
CREATE TRIGGER members_insert_bump AFTER INSERT ON members
BEGIN UPDATE access_generation SET value = value + 1; END;
CREATE TRIGGER members_update_bump AFTER UPDATE ON members
BEGIN UPDATE access_generation SET value = value + 1; END;
CREATE TRIGGER members_delete_bump AFTER DELETE ON members
BEGIN UPDATE access_generation SET value = value + 1; END;
CREATE TRIGGER robots_insert_bump AFTER INSERT ON robots
BEGIN UPDATE access_generation SET value = value + 1; END;
CREATE TRIGGER robots_update_bump AFTER UPDATE ON robots
BEGIN UPDATE access_generation SET value = value + 1; END;
CREATE TRIGGER robots_delete_bump AFTER DELETE ON robots
BEGIN UPDATE access_generation SET value = value + 1; END;
-- A recorded use (last_used_at) changes no right: not a bump.
CREATE TRIGGER access_tokens_update_bump AFTER UPDATE OF secret_hash, expires_at, user_id ON access_tokens
BEGIN UPDATE access_generation SET value = value + 1; END;
CREATE TRIGGER access_tokens_delete_bump AFTER DELETE ON access_tokens
BEGIN UPDATE access_generation SET value = value + 1; END;
