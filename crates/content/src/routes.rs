//! HTTP endpoints of the UGC Service: parse, call the service, map errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use platform::ApiError;
use platform::extract::{Json, Params};
use platform::pagination::PageRequest;
use serde::{Deserialize, Serialize};

use crate::model::{ContentFilter, ContentItem, Review, SizeBytes};
use crate::service::{self, ContentService, Error, NewContent, ReviewRequest};
use crate::store::StoreError;

/// Builds the UGC Service's routes.
pub fn router(service: Arc<ContentService>) -> Router {
    Router::new()
        .route("/content", get(list).post(create))
        .route("/content/{id}", get(fetch))
        .route("/content/{id}/review", post(review))
        .route("/content/{id}/reviews", get(reviews))
        .with_state(service)
}

/// The `{id}` path segment, percent-decoded. A segment that does not decode to UTF-8
/// cannot name an item, so it gets 404 like any unknown id.
struct ContentId(String);

impl<S: Send + Sync> FromRequestParts<S> for ContentId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(ContentId(id)),
            Err(_) => Err(ApiError::not_found(format!(
                "no content at {}",
                parts.uri.path()
            ))),
        }
    }
}

#[derive(Deserialize)]
struct CreateBody {
    content_id: Option<String>,
    tenant_id: Option<String>,
    project_id: Option<String>,
    filename: Option<String>,
    mime_type: Option<String>,
    size_bytes: Option<SizeBytes>,
    labels: Option<BTreeMap<String, String>>,
    attributes: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct ReviewBody {
    state: Option<String>,
    reason: Option<String>,
    reviewer: Option<String>,
}

#[derive(Serialize)]
struct ListBody {
    items: Vec<ContentItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

#[derive(Serialize)]
struct ReviewsBody {
    reviews: Vec<Review>,
}

async fn create(
    State(service): State<Arc<ContentService>>,
    Json(body): Json<CreateBody>,
) -> Result<(StatusCode, platform::extract::Json<ContentItem>), ApiError> {
    let input = NewContent {
        content_id: body.content_id,
        tenant_id: body.tenant_id,
        project_id: body.project_id,
        filename: body.filename,
        mime_type: body.mime_type,
        size_bytes: body.size_bytes,
        labels: body.labels,
        attributes: body.attributes,
    };
    let item = service.create(input).await?;
    Ok((StatusCode::CREATED, platform::extract::Json(item)))
}

async fn fetch(
    State(service): State<Arc<ContentService>>,
    ContentId(id): ContentId,
) -> Result<platform::extract::Json<ContentItem>, ApiError> {
    Ok(platform::extract::Json(service.get(&id).await?))
}

async fn review(
    State(service): State<Arc<ContentService>>,
    ContentId(id): ContentId,
    Json(body): Json<ReviewBody>,
) -> Result<platform::extract::Json<ContentItem>, ApiError> {
    let request = ReviewRequest {
        state: body.state,
        reason: body.reason,
        reviewer: body.reviewer,
    };
    Ok(platform::extract::Json(service.review(&id, request).await?))
}

async fn reviews(
    State(service): State<Arc<ContentService>>,
    ContentId(id): ContentId,
) -> Result<platform::extract::Json<ReviewsBody>, ApiError> {
    let reviews = service.reviews(&id).await?;
    Ok(platform::extract::Json(ReviewsBody { reviews }))
}

async fn list(
    State(service): State<Arc<ContentService>>,
    params: Params,
) -> Result<platform::extract::Json<ListBody>, ApiError> {
    let page = PageRequest::from_params(&params)?;
    let state = params
        .text("state")
        .map(|text| service::parse_state_text("state", text))
        .transpose()?;
    let filter = ContentFilter {
        tenant_id: params.text("tenant_id").map(str::to_string),
        project_id: params.text("project_id").map(str::to_string),
        state,
    };

    let page = service.list(&filter, &page).await?;
    Ok(platform::extract::Json(ListBody {
        items: page.items,
        next_page_token: page.next.map(|cursor| cursor.encode()),
    }))
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid { field, message } => ApiError::invalid_field(field, message),
            Error::NotFound(_) => ApiError::not_found(error.to_string()),
            Error::AlreadyExists(_) => {
                ApiError::already_exists(error.to_string()).with_field("content_id")
            }
            Error::IllegalTransition { .. } => ApiError::failed_precondition(error.to_string()),
            Error::Contended(_) => ApiError::unavailable(error.to_string(), 1),
            Error::Store(StoreError::Full { .. }) => {
                ApiError::resource_exhausted(error.to_string(), 5)
            }
            Error::Store(StoreError::Database(source)) => ApiError::from_database(source),
        }
    }
}
