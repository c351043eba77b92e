//! HTTP endpoints of the UGC Worker: parse, call the service, map errors.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use platform::ApiError;
use platform::extract::{Json, Params, from_value};
use platform::http::get_changing_state;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::model::{Job, MAX_WAIT_MS};
use crate::service::{Error, Moderator, NewJob};
use crate::store::StoreError;

/// Seconds a client is asked to wait before resubmitting to a full queue.
const QUEUE_FULL_RETRY_SECS: u64 = 1;

/// Builds the UGC Worker's routes.
pub fn router(moderator: Arc<Moderator>) -> Router {
    Router::new()
        .route("/jobs", post(submit))
        .route("/jobs/next", get_changing_state(next, "GET"))
        .with_state(moderator)
}

#[derive(Deserialize)]
struct SubmitBody {
    content_id: Option<String>,
    author_id: Option<String>,
    body: Option<String>,
}

async fn submit(
    State(moderator): State<Arc<Moderator>>,
    Json(object): Json<Map<String, Value>>,
) -> Result<(StatusCode, platform::extract::Json<Job>), ApiError> {
    // Reading an object first matters: serde fills a struct from a JSON array by position,
    // so `["c", "a", "text"]` would otherwise pass as a job.
    let body: SubmitBody = from_value(Value::Object(object), "")?;
    let input = NewJob {
        content_id: body.content_id,
        author_id: body.author_id,
        body: body.body,
    };
    let job = moderator.submit(input).await?;
    Ok((StatusCode::ACCEPTED, platform::extract::Json(job)))
}

async fn next(
    State(moderator): State<Arc<Moderator>>,
    params: Params,
) -> Result<Response, ApiError> {
    let wait_ms = params.integer("wait_ms", 0..=MAX_WAIT_MS)?.unwrap_or(0);
    let wait = Duration::from_millis(wait_ms);
    Ok(match moderator.next_decision(wait).await? {
        Some(decision) => platform::extract::Json(decision).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid { field, message } => ApiError::invalid_field(field, message),
            Error::QueueFull { .. } => {
                ApiError::unavailable(error.to_string(), QUEUE_FULL_RETRY_SECS)
            }
            Error::Store(StoreError::Database(source)) => ApiError::from_database(source),
        }
    }
}
