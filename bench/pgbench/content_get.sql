-- Ceiling of GET /content/{id}: the read by primary key of the content Postgres store,
-- always of the row :id (the harness inserts it with 999 others).
SELECT content_id, tenant_id, project_id, filename, mime_type, size_bytes, state, reason,
       labels, attributes, submitted_at, updated_at
FROM content.items WHERE content_id = :id;
