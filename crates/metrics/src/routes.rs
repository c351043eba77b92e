//! HTTP endpoints of the collector: parse, call the service, map errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use platform::ApiError;
use platform::extract::Params;
use serde::Serialize;

use crate::input::{self, IngestBody};
use crate::model::{SeriesFilter, Summary};
use crate::rollups::RecordError;
use crate::service::{self, Collector, Error, SummaryQuery};
use crate::store::StoreError;

/// Builds the collector's routes.
pub fn router(collector: Arc<Collector>) -> Router {
    Router::new()
        .route("/metrics/ingest", post(ingest))
        .route("/metrics/summary", get(summary))
        .with_state(collector)
}

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
}

async fn ingest(
    State(collector): State<Arc<Collector>>,
    request: Request,
) -> Result<Response, ApiError> {
    let bytes = platform::extract::json_body(request, &()).await?;
    let response = match input::parse(&bytes)? {
        IngestBody::One(sample) => {
            let summary = collector.ingest_one(sample).await?;
            (StatusCode::ACCEPTED, platform::extract::Json(summary)).into_response()
        }
        IngestBody::Batch(samples) => {
            let accepted = collector.ingest_batch(samples).await?;
            (
                StatusCode::ACCEPTED,
                platform::extract::Json(Accepted { accepted }),
            )
                .into_response()
        }
    };
    Ok(response)
}

async fn summary(
    State(collector): State<Arc<Collector>>,
    params: Params,
) -> Result<platform::extract::Json<BTreeMap<String, Summary>>, ApiError> {
    let query = SummaryQuery {
        filter: SeriesFilter {
            namespace: params.parsed("namespace", service::parse_name_filter)?,
            name: params.parsed("name", service::parse_name_filter)?,
        },
        window: params.parsed("window", |text| collector.parse_window(text))?,
    };
    let summaries = collector.summary(&query).await?;
    Ok(platform::extract::Json(summaries))
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid { field, message } => ApiError::invalid_field(field, message),
            Error::EmptyBatch => ApiError::invalid_argument(error.to_string()),
            Error::Store(StoreError::Record(RecordError::SeriesLimit { retry_after, .. })) => {
                ApiError::resource_exhausted(error.to_string(), retry_after.as_secs())
            }
            Error::Store(StoreError::Record(RecordError::Contended)) => {
                ApiError::unavailable(error.to_string(), 1)
            }
            Error::Store(StoreError::Database(source)) => ApiError::from_database(source),
            Error::Store(corrupt @ StoreError::Corrupt { .. }) => ApiError::internal(corrupt),
        }
    }
}
