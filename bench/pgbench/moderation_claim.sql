-- Ceiling of the moderation workers' claim: the job claim of the moderation Postgres
-- store, with a lease of :lease_s seconds so the prefilled jobs become claimable again.
UPDATE moderation.jobs
SET claim_token = gen_random_uuid(),
    claimed_until = statement_timestamp() + make_interval(secs => :lease_s::int),
    attempts = attempts + 1
WHERE job_id = (
  SELECT job_id FROM moderation.jobs
  WHERE claimed_until IS NULL OR claimed_until <= statement_timestamp()
  ORDER BY job_id LIMIT 1
  FOR UPDATE SKIP LOCKED)
RETURNING job_id, content_id, author_id, body, submitted, attempts;
