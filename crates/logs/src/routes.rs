//! HTTP endpoints of the log pipeline: parse, call the pipeline, map errors.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use platform::ApiError;
use platform::extract::{Params, is_json_media_type, media_type, read_body};

use crate::model::{Level, RecentQuery};
use crate::parse::BodyFormat;
use crate::service::{Error, IngestSummary, Pipeline};
use crate::store::StoreError;

/// The NDJSON media type; `application/json` (or `+json`) selects JSON.
const NDJSON: &str = "application/x-ndjson";
/// The media type of every response body.
const JSON: &str = "application/json";

/// Builds the log pipeline's routes.
pub fn router(pipeline: Arc<Pipeline>) -> Router {
    Router::new()
        .route("/logs", post(ingest))
        .route("/logs/recent", get(recent))
        .with_state(pipeline)
}

async fn ingest(
    State(pipeline): State<Arc<Pipeline>>,
    request: Request,
) -> Result<(StatusCode, platform::extract::Json<IngestSummary>), ApiError> {
    let format = body_format(request.headers())?;
    let body = read_body(request, &()).await?;
    let summary = pipeline.ingest(body, format)?;
    Ok((StatusCode::ACCEPTED, platform::extract::Json(summary)))
}

fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let expected =
        "send JSON (Content-Type: application/json) or NDJSON (Content-Type: application/x-ndjson)";
    match media_type(headers) {
        Some(kind) if kind == NDJSON => Ok(BodyFormat::Ndjson),
        Some(kind) if is_json_media_type(&kind) => Ok(BodyFormat::Json),
        Some(kind) => Err(ApiError::unsupported_media_type(format!(
            "content type {kind} is not supported; {expected}"
        ))),
        None => Err(ApiError::unsupported_media_type(format!(
            "the request has no Content-Type; {expected}"
        ))),
    }
}

async fn recent(
    State(pipeline): State<Arc<Pipeline>>,
    params: Params,
) -> Result<Response, ApiError> {
    let capacity = pipeline.recent_capacity();
    let query = RecentQuery {
        source: params.text("source").map(str::to_string),
        min_level: params.parsed("level", |text| {
            Level::parse(text).ok_or_else(|| format!("must be {}", Level::EXPECTED))
        })?,
        limit: params.integer("limit", 1..=capacity)?.unwrap_or(capacity),
    };
    let json = pipeline.recent_json(&query).await?;
    Ok(([(CONTENT_TYPE, JSON)], json).into_response())
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid(invalid) => match invalid.field {
                Some(field) => ApiError::invalid_field(field, invalid.message),
                None => ApiError::invalid_argument(invalid.message),
            },
            Error::QueueFull(_) => ApiError::unavailable(error.to_string(), 1),
            Error::Store(StoreError::Database(source)) => ApiError::from_database(source),
        }
    }
}
