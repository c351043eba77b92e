-- Ceiling of a batched publish: :batch messages in one INSERT. The service sends a batch
-- with a binary COPY, which pgbench cannot send, so this runs the INSERT the service
-- used before. The rows come from generate_series because pgbench cannot bind arrays.
-- The name keys are computed once per statement, as the service does.
WITH keys AS MATERIALIZED (
  SELECT bench.messaging_key(:topic) AS topic_key,
         bench.messaging_key(:tenant) AS tenant_key,
         bench.messaging_key(:project) AS project_key)
INSERT INTO messaging.messages
  (message_id, topic_key, topic, tenant_key, tenant_id, project_key, project_id,
   message_key, priority, published_at, attributes, payload, visible_at)
SELECT bench.uuid_v7(), keys.topic_key, :topic, keys.tenant_key, :tenant,
       keys.project_key, :project, '', 1, statement_timestamp(), :attributes::jsonb,
       decode(:payload, 'base64'), statement_timestamp()
FROM keys CROSS JOIN generate_series(1, :batch::int);
