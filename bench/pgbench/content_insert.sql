-- Ceiling of POST /content: the insert of the content Postgres store. Clients choose
-- content_id. Here it is the run's nonce, the client number and the time in microseconds.
-- One client never repeats a time, because its transactions run one at a time.
INSERT INTO content.items
  (content_id, tenant_id, project_id, filename, mime_type, size_bytes, state, reason,
   labels, attributes, submitted_at, updated_at)
VALUES (:nonce || '-' || :client_id || '-'
          || floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
        :tenant, :project, :filename, :mime_type, :size_bytes::bigint, 'pending', '',
        :labels::jsonb, '{}'::jsonb, statement_timestamp(), statement_timestamp());
