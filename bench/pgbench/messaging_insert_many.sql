-- Ceiling of a batched publish: :batch messages in one INSERT, as INSERT_MANY of the
-- messaging Postgres store does. The rows come from generate_series rather than from
-- bound arrays (pgbench cannot bind arrays), so each row's values are computed server-side.
INSERT INTO messaging.messages
  (message_id, topic, tenant_id, project_id, message_key, priority, published_at,
   attributes, payload, visible_at)
SELECT bench.uuid_v7(), :topic, :tenant, :project, '', 1, statement_timestamp(),
       :attributes::jsonb, decode(:payload, 'base64'), statement_timestamp()
FROM generate_series(1, :batch::int);
