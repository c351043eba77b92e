-- Ceiling of POST /assignments: the insert of the orchestration Postgres store.
INSERT INTO orchestration.assignments
  (assignment_id, agent_id, workload_id, tenant_id, project_id, status, status_message,
   metadata, created_at, updated_at)
VALUES (bench.uuid_v7(), :agent, :workload, :tenant, :project, 'pending', 'queued',
        :metadata::jsonb, statement_timestamp(), statement_timestamp());
