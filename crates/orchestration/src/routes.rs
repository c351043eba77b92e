//! HTTP endpoints of the orchestrator: parse, call the service, map errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use platform::ApiError;
use platform::extract::{Json, Params};
use platform::pagination::PageRequest;
use serde::{Deserialize, Serialize};

use crate::model::{Assignment, AssignmentFilter};
use crate::service::{self, Error, NewAssignment, Orchestrator, StatusUpdate};
use crate::store::StoreError;

/// Builds the orchestrator's routes.
pub fn router(orchestrator: Arc<Orchestrator>) -> Router {
    Router::new()
        .route("/assignments", get(list).post(create))
        .route("/assignments/{id}", get(fetch).patch(update))
        .with_state(orchestrator)
}

#[derive(Deserialize)]
struct CreateBody {
    agent_id: Option<String>,
    workload_id: Option<String>,
    tenant_id: Option<String>,
    project_id: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct UpdateBody {
    status: Option<String>,
    status_message: Option<String>,
}

#[derive(Serialize)]
struct ListBody {
    assignments: Vec<Assignment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

async fn create(
    State(orchestrator): State<Arc<Orchestrator>>,
    Json(body): Json<CreateBody>,
) -> Result<(StatusCode, platform::extract::Json<Assignment>), ApiError> {
    let input = NewAssignment {
        agent_id: body.agent_id,
        workload_id: body.workload_id,
        tenant_id: body.tenant_id,
        project_id: body.project_id,
        metadata: body.metadata,
    };
    let assignment = orchestrator.create(input).await?;
    Ok((StatusCode::CREATED, platform::extract::Json(assignment)))
}

async fn fetch(
    State(orchestrator): State<Arc<Orchestrator>>,
    Path(id): Path<String>,
) -> Result<platform::extract::Json<Assignment>, ApiError> {
    Ok(platform::extract::Json(orchestrator.get(&id).await?))
}

async fn update(
    State(orchestrator): State<Arc<Orchestrator>>,
    Path(id): Path<String>,
    Json(body): Json<UpdateBody>,
) -> Result<platform::extract::Json<Assignment>, ApiError> {
    let update = StatusUpdate {
        status: body.status,
        status_message: body.status_message,
    };
    Ok(platform::extract::Json(
        orchestrator.update_status(&id, update).await?,
    ))
}

async fn list(
    State(orchestrator): State<Arc<Orchestrator>>,
    params: Params,
) -> Result<platform::extract::Json<ListBody>, ApiError> {
    let page = PageRequest::from_params(&params)?;
    let status = params
        .text("status")
        .map(|text| service::parse_status_text("status", text))
        .transpose()?;
    let filter = AssignmentFilter {
        agent_id: params.text("agent_id").map(str::to_string),
        tenant_id: params.text("tenant_id").map(str::to_string),
        project_id: params.text("project_id").map(str::to_string),
        status,
    };

    let page = orchestrator.list(&filter, &page).await?;
    Ok(platform::extract::Json(ListBody {
        assignments: page.items,
        next_page_token: page.next.map(|cursor| cursor.encode()),
    }))
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid { field, message } => ApiError::invalid_field(field, message),
            Error::NotFound(_) => ApiError::not_found(error.to_string()),
            Error::IllegalTransition { .. } => ApiError::failed_precondition(error.to_string()),
            Error::Contended(_) => ApiError::unavailable(error.to_string(), 1),
            Error::Store(StoreError::Full { .. }) => {
                ApiError::resource_exhausted(error.to_string(), 5)
            }
            Error::Store(StoreError::Database(source)) => ApiError::from_database(source),
        }
    }
}
