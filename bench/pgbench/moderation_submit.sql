-- Ceiling of POST /jobs: the transaction of the moderation Postgres store. An advisory
-- lock serialises submissions so the count of waiting jobs and the insert agree with
-- the queue size.
BEGIN;
SELECT pg_advisory_xact_lock(8459839763990803813);
INSERT INTO moderation.jobs (content_id, author_id, body, submitted)
SELECT :nonce || '-' || :client_id || '-'
         || floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
       :author, :body, statement_timestamp()
WHERE (SELECT count(*) FROM moderation.jobs) < :queue_size::bigint
RETURNING job_id;
COMMIT;
