//! Assignments in the `orchestration` schema.

use std::collections::BTreeMap;

use async_trait::async_trait;
use platform::Timestamp;
use platform::pagination::{Cursor, Page, PageRequest};
use sqlx::types::Json;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{AssignmentStore, ChangeOutcome, StatusChange, StoreError};
use crate::model::{Assignment, AssignmentFilter, WorkStatus};

/// The columns `AssignmentRow` reads, as a literal so queries can be built with `concat!`.
macro_rules! columns {
    () => {
        "assignment_id, agent_id, workload_id, tenant_id, project_id, status, status_message, \
         metadata, created_at, updated_at"
    };
}

/// Assignments in Postgres; any number of replicas may share the table.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Uses a pool whose database has the migrations applied.
    pub fn new(pool: PgPool) -> Self {
        PostgresStore { pool }
    }
}

#[derive(FromRow)]
struct AssignmentRow {
    assignment_id: Uuid,
    agent_id: String,
    workload_id: String,
    tenant_id: String,
    project_id: String,
    status: String,
    status_message: String,
    metadata: Json<BTreeMap<String, String>>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl TryFrom<AssignmentRow> for Assignment {
    type Error = sqlx::Error;

    fn try_from(row: AssignmentRow) -> Result<Self, sqlx::Error> {
        // The CHECK constraint admits only known names, so this fails only if the schema
        // and the code disagree.
        let status = WorkStatus::parse(&row.status).ok_or_else(|| {
            sqlx::Error::Decode(
                format!(
                    "unknown status {:?} in orchestration.assignments",
                    row.status
                )
                .into(),
            )
        })?;
        Ok(Assignment {
            assignment_id: row.assignment_id,
            agent_id: row.agent_id,
            workload_id: row.workload_id,
            tenant_id: row.tenant_id,
            project_id: row.project_id,
            status,
            status_message: row.status_message,
            created_at: row.created_at,
            updated_at: row.updated_at,
            metadata: row.metadata.0,
        })
    }
}

#[async_trait]
impl AssignmentStore for PostgresStore {
    async fn insert(&self, assignment: &Assignment) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO orchestration.assignments \
             (assignment_id, agent_id, workload_id, tenant_id, project_id, status, status_message, \
              metadata, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(assignment.assignment_id)
        .bind(&assignment.agent_id)
        .bind(&assignment.workload_id)
        .bind(&assignment.tenant_id)
        .bind(&assignment.project_id)
        .bind(assignment.status.as_str())
        .bind(&assignment.status_message)
        .bind(Json(&assignment.metadata))
        .bind(assignment.created_at)
        .bind(assignment.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get(&self, id: Uuid) -> Result<Option<Assignment>, StoreError> {
        let row: Option<AssignmentRow> = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM orchestration.assignments WHERE assignment_id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Assignment::try_from).transpose()?)
    }

    async fn change_status(
        &self,
        id: Uuid,
        change: &StatusChange,
    ) -> Result<ChangeOutcome, StoreError> {
        // The status condition makes the update a compare-and-set: of two racing writers
        // that read the same status, exactly one matches.
        let updated: Option<AssignmentRow> = sqlx::query_as(concat!(
            "UPDATE orchestration.assignments \
             SET status = $3, status_message = COALESCE($4, status_message), updated_at = $5 \
             WHERE assignment_id = $1 AND status = $2 RETURNING ",
            columns!()
        ))
        .bind(id)
        .bind(change.expected.as_str())
        .bind(change.status.as_str())
        .bind(change.message.as_deref())
        .bind(change.at)
        .fetch_optional(&self.pool)
        .await?;

        if let Some(row) = updated {
            return Ok(ChangeOutcome::Applied(row.try_into()?));
        }
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM orchestration.assignments WHERE assignment_id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match exists {
            Some(_) => ChangeOutcome::Stale,
            None => ChangeOutcome::Missing,
        })
    }

    async fn list(
        &self,
        filter: &AssignmentFilter,
        page: &PageRequest,
    ) -> Result<Page<Assignment>, StoreError> {
        let mut query = QueryBuilder::<Postgres>::new("SELECT ");
        query
            .push(columns!())
            .push(" FROM orchestration.assignments WHERE TRUE");
        push_filter(&mut query, filter);
        if let Some(cursor) = &page.after {
            // Ids that are not UUIDs cannot come from this service; they sort before all.
            let after_id = Uuid::try_parse(&cursor.id).unwrap_or(Uuid::max());
            query
                .push(" AND (created_at, assignment_id) < (")
                .push_bind(cursor.created_at())
                .push(", ")
                .push_bind(after_id)
                .push(")");
        }
        query
            .push(" ORDER BY created_at DESC, assignment_id DESC LIMIT ")
            .push_bind((page.size + 1) as i64);

        let rows: Vec<AssignmentRow> = query.build_query_as().fetch_all(&self.pool).await?;
        let items = rows
            .into_iter()
            .map(Assignment::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, page.size, |assignment| {
            Cursor::after(assignment.created_at, assignment.assignment_id.to_string())
        }))
    }
}

fn push_filter(query: &mut QueryBuilder<Postgres>, filter: &AssignmentFilter) {
    let text_filters = [
        ("agent_id", &filter.agent_id),
        ("tenant_id", &filter.tenant_id),
        ("project_id", &filter.project_id),
    ];
    for (column, value) in text_filters {
        if let Some(value) = value {
            query
                .push(format_args!(" AND {column} = "))
                .push_bind(value.clone());
        }
    }
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status.as_str());
    }
}
