-- Credential generations: bumped by every change that must end the refresh
-- tokens and web sessions derived from an account (password, admin flag,
-- disabled). Tokens and sessions carry the account id and the generation
-- they were issued under, so a re-created account of the same name (a new
-- id) or a changed one (a new generation) inherits none of them.
ALTER TABLE users ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE robots ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
