-- Orchestrator: agent work assignments.
CREATE SCHEMA IF NOT EXISTS orchestration;

CREATE TABLE orchestration.assignments (
    assignment_id  uuid        PRIMARY KEY,
    agent_id       text        NOT NULL,
    workload_id    text        NOT NULL,
    tenant_id      text        NOT NULL DEFAULT '',
    project_id     text        NOT NULL DEFAULT '',
    status         text        NOT NULL
        CHECK (status IN ('pending', 'assigned', 'in_progress', 'completed', 'failed', 'cancelled')),
    status_message text        NOT NULL DEFAULT '',
    metadata       jsonb       NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

-- Lists are newest first; each filter has an index that also serves that order.
CREATE INDEX assignments_created_idx ON orchestration.assignments (created_at DESC, assignment_id DESC);
CREATE INDEX assignments_agent_idx ON orchestration.assignments (agent_id, created_at DESC, assignment_id DESC);
CREATE INDEX assignments_tenant_idx ON orchestration.assignments (tenant_id, created_at DESC, assignment_id DESC);
CREATE INDEX assignments_tenant_project_idx ON orchestration.assignments (tenant_id, project_id, created_at DESC, assignment_id DESC);
CREATE INDEX assignments_project_idx ON orchestration.assignments (project_id, created_at DESC, assignment_id DESC);
CREATE INDEX assignments_status_idx ON orchestration.assignments (status, created_at DESC, assignment_id DESC);
