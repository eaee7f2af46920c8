-- Which request (on which replica) holds an upload session: a lease that
-- its holder renews while it writes and deletes when done. A replica that
-- dies leaves its leases to expire.
CREATE TABLE upload_leases (
    id          TEXT COLLATE "C" PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
