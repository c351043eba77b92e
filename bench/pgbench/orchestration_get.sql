-- Ceiling of GET /assignments/{id}: the read by primary key of the orchestration
-- Postgres store, always of the row :id (the harness inserts it with 999 others).
SELECT assignment_id, agent_id, workload_id, tenant_id, project_id, status, status_message,
       metadata, created_at, updated_at
FROM orchestration.assignments WHERE assignment_id = :id::uuid;
