-- UGC Worker: moderation jobs waiting for a worker, and decisions waiting to be fetched.
CREATE SCHEMA IF NOT EXISTS moderation;

-- A job stays here until a worker has stored its decision. A claimed job carries the
-- claim's token and lease end; once the lease has passed, any worker may claim it again.
CREATE TABLE moderation.jobs (
    job_id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    content_id    text        NOT NULL CHECK (content_id <> ''),
    author_id     text        NOT NULL CHECK (author_id <> ''),
    body          text        NOT NULL CHECK (body <> ''),
    submitted     timestamptz NOT NULL,
    claim_token   uuid,
    claimed_until timestamptz,
    attempts      integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    CHECK ((claim_token IS NULL) = (claimed_until IS NULL))
);
-- Claims take the oldest unclaimed or expired job in primary key order. The rows that
-- scan skips are the jobs in hand, at most one per worker, so no other index is needed.

-- Jobs ever accepted and jobs ever decided, in two rows. Their difference is the number
-- of rows in moderation.jobs: a submission adds 1 to `submitted` in the statement that
-- inserts its job, and a decision adds 1 to `decided` in the statement that deletes it.
-- A submission checks the queue size against the difference while it holds the lock on
-- the `submitted` row, so concurrent submissions on any replica never exceed it.
-- Decisions lock the other row, so they never wait for submissions. Empty this table
-- together with moderation.jobs; missing rows count as 0.
CREATE TABLE moderation.job_counts (
    kind  text   PRIMARY KEY CHECK (kind IN ('submitted', 'decided')),
    total bigint NOT NULL CHECK (total >= 0)
);
INSERT INTO moderation.job_counts (kind, total) VALUES ('submitted', 0), ('decided', 0);

-- A decision stays here until it is handed out once; the identity gives the order in
-- which decisions were recorded.
CREATE TABLE moderation.decisions (
    decision_id   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    content_id    text        NOT NULL,
    author_id     text        NOT NULL,
    body          text        NOT NULL,
    submitted     timestamptz NOT NULL,
    decision      text        NOT NULL CHECK (decision IN ('approved', 'flagged')),
    reason        text        NOT NULL,
    matched_terms text[]      NOT NULL,
    processed_at  timestamptz NOT NULL,
    CHECK ((decision = 'flagged') = (cardinality(matched_terms) > 0))
);
