-- Failed-login counts every replica sees (auth::limiter): keys are an
-- account's 64-bit hash with its source network ("pair:<hex>"), or a source
-- network ("source:<address>"). Times in Unix ms; `changed` is the
-- database's clock at the last write, the cursor replicas read after.
CREATE TABLE login_failures (
    key            TEXT COLLATE "C" PRIMARY KEY,
    failures       INTEGER NOT NULL,
    last_failure   BIGINT NOT NULL,
    cleared        BIGINT NOT NULL,
    trusted_until  BIGINT NOT NULL,
    changed        BIGINT NOT NULL
);
CREATE INDEX login_failures_changed ON login_failures (changed);
