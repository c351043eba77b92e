-- Ceiling of the log pipeline's Postgres sink: one INSERT of :batch events, as many as
-- one sink connection loads at once. The sink sends them as binary COPY, which pgbench
-- cannot send, so a plain multi-row INSERT replaces it. The rows come from
-- generate_series rather than from bound arrays (pgbench cannot bind arrays).
INSERT INTO logs.events
  (origin, sequence, source, severity, message, fields, event_time, received_at)
SELECT :origin::uuid, nextval('bench.log_sequence'), :source, 9, :message, :fields::jsonb,
       statement_timestamp(), statement_timestamp()
FROM generate_series(1, :batch::int);
