-- Ceiling of a single publish: the INSERT_ONE statement of the messaging Postgres store
-- (crates/messaging/src/store/postgres/sql.rs). Values the service binds come from -D
-- variables. The id and the times come from the server, as the client has no clock, and
-- so do the name keys, which the service computes itself.
INSERT INTO messaging.messages
  (message_id, topic, tenant_id, project_id, message_key, priority, published_at,
   attributes, payload, visible_at, topic_key, tenant_key, project_key)
VALUES (bench.uuid_v7(), :topic, :tenant, :project, '', 1, statement_timestamp(),
        :attributes::jsonb, decode(:payload, 'base64'), statement_timestamp(),
        bench.messaging_key(:topic), bench.messaging_key(:tenant),
        bench.messaging_key(:project));
